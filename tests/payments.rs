//! Payment (the saga of `src/payment/saga.rs`) on the real server: the
//! payment itself, every error code, the races with real parallel requests, sagas
//! interrupted between their steps, and money conserved in Redis and MySQL after the drain.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{OPEN_NOW, TestApp, eventually, spawn_all};
use redis::AsyncCommands;
use seatrush::model::{
    Balance, Idempotency, PaymentId, Refusal, ReservationId, ReservationRecord, wallet_bucket,
};
use seatrush::redis::keys::{ScheduleKeys, WalletKeys};
use seatrush::redis::scripts::{
    BeginOutcome, BeginRequest, CommitOutcome, DebitOutcome, DebitRequest,
};
use simd_json::prelude::*;

async fn charge(app: &TestApp, user: u64, token: &str, amount: u64) {
    let rsp = app
        .post(
            &format!("/api/v1/users/{user}/balance/charge"),
            &[("queue-token", token)],
            &format!(r#"{{"amount": {amount}}}"#),
        )
        .await;
    rsp.assert_ok();
}

/// A schedule and one ACTIVE user of it with money to spend.
struct Buyer {
    schedule: u64,
    seats: Vec<u64>,
    user: u64,
    token: String,
}

/// A schedule open now with `seats` seats, and a user with an ACTIVE token for it who has
/// charged `funds` KRW.
async fn buyer(app: &TestApp, seats: u64, funds: u64) -> Buyer {
    let (schedule, seats) = app.open_schedule(seats).await;
    let (user, token) = app.active_user(schedule).await;
    charge(app, user, &token, funds).await;
    Buyer {
        schedule,
        seats,
        user,
        token,
    }
}

/// A hold that must succeed; returns its reservation id.
async fn hold(app: &TestApp, token: &str, schedule: u64, user: u64, seats: &[u64]) -> u64 {
    let rsp = app.hold(token, schedule, user, seats).await;
    rsp.assert_created();
    rsp.u64("reservationId")
}

fn pay_body(user: u64, reservation: u64) -> String {
    format!(r#"{{"reservationId": {reservation}, "paymentMethod": "BALANCE", "userId": {user}}}"#)
}

async fn pay(app: &TestApp, token: &str, user: u64, reservation: u64) -> common::Rsp {
    app.post(
        "/api/v1/payments",
        &[("queue-token", token)],
        &pay_body(user, reservation),
    )
    .await
}

async fn pay_with_key(
    app: &TestApp,
    token: &str,
    key: &str,
    user: u64,
    reservation: u64,
) -> common::Rsp {
    app.post(
        "/api/v1/payments",
        &[("queue-token", token), ("idempotency-key", key)],
        &pay_body(user, reservation),
    )
    .await
}

/// The user's balance as Redis has it.
async fn balance_of(app: &TestApp, user: u64) -> Balance {
    let record: String = app
        .redis()
        .hget(WalletKeys::of_user(user).balances, user)
        .await
        .unwrap();
    Balance::parse(&record).unwrap()
}

/// A reservation as Redis has it.
async fn reservation(app: &TestApp, id: u64) -> ReservationRecord {
    let schedule = id >> 32;
    let record: String = app
        .redis()
        .hget(ScheduleKeys::new(schedule).res, id)
        .await
        .unwrap();
    ReservationRecord::parse(ReservationId::from_u64(id), &record).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paying_debits_once_sells_the_seats_and_retires_the_token() {
    let app = TestApp::spawn().await;
    let Buyer {
        schedule,
        seats,
        user,
        token,
    } = buyer(&app, 4, 120_000).await;
    let held = app.hold(&token, schedule, user, &seats[..2]).await;
    let id = held.u64("reservationId");

    let rsp = pay(&app, &token, user, id).await;
    rsp.assert_created();
    assert_eq!(
        (
            rsp.u64("reservationId"),
            rsp.u64("userId"),
            rsp.u64("amount")
        ),
        (id, user, 100_000)
    );
    assert_eq!(rsp.str("paymentMethod"), "BALANCE");
    assert_eq!(rsp.str("status"), "COMPLETED");
    assert!(rsp.str("paidAt").ends_with('Z'));
    let paid = &rsp.data()["reservation"];
    assert_eq!(
        paid["reservationNumber"].as_str(),
        Some(held.str("reservationNumber").as_str())
    );
    assert_eq!(paid["seats"][1]["seatNumber"].as_u64(), Some(2));
    assert_eq!(paid["seats"][1]["price"].as_u64(), Some(50_000));

    let b = balance_of(&app, user).await;
    assert_eq!(
        (b.balance, b.total_charged, b.total_used),
        (20_000, 120_000, 100_000)
    );
    let r = reservation(&app, id).await;
    assert_eq!(r.status.as_str(), "PAID");
    assert_eq!(r.payment_id.map(PaymentId::get), Some(rsp.u64("paymentId")));
    for &seat in &seats[..2] {
        assert!(
            !app.is_available(schedule, seat).await,
            "sold seats stay taken"
        );
    }
    let state = app.queue_state(schedule).await;
    assert_eq!((state.u64("soldSeats"), state.u64("heldSeats")), (2, 0));
    let read = app
        .get(
            &format!("/api/v1/reservations/{id}"),
            &[("queue-token", &app.active_token(schedule).await)],
        )
        .await;
    read.assert_error(403, "FORBIDDEN");

    // No other open hold: the token is retired, and the user may queue again.
    app.me(&token)
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    let again = app.issue(user, schedule).await;
    again.assert_ok();
    let read = app
        .get(
            &format!("/api/v1/reservations/{id}"),
            &[("queue-token", &again.str("token"))],
        )
        .await;
    assert_eq!(read.str("status"), "PAID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_stays_while_another_hold_is_open() {
    let app = TestApp::spawn().await;
    let Buyer {
        schedule,
        seats,
        user,
        token,
    } = buyer(&app, 2, 100_000).await;
    let a = hold(&app, &token, schedule, user, &seats[..1]).await;
    let b = hold(&app, &token, schedule, user, &seats[1..]).await;
    pay(&app, &token, user, a).await.assert_created();
    assert_eq!(app.me(&token).await.str("status"), "ACTIVE");
    pay(&app, &token, user, a)
        .await
        .assert_error(409, "RESERVATION_ALREADY_PAID");
    pay(&app, &token, user, b).await.assert_created();
    app.me(&token)
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    assert_eq!(balance_of(&app, user).await.balance, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payment_errors() {
    let app = TestApp::spawn().await;
    let Buyer {
        schedule,
        seats,
        user,
        token,
    } = buyer(&app, 6, 40_000).await;
    let id = hold(&app, &token, schedule, user, &seats[..1]).await;

    app.post("/api/v1/payments", &[], &pay_body(user, id))
        .await
        .assert_error(401, "QUEUE_TOKEN_MISSING");
    pay(&app, "nonsense", user, id)
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    for (body, field) in [
        (
            r#"{"paymentMethod": "BALANCE", "userId": 1}"#.to_string(),
            "reservationId",
        ),
        (
            format!(r#"{{"reservationId": "{id}", "paymentMethod": "BALANCE", "userId": {user}}}"#),
            "reservationId",
        ),
        (
            format!(r#"{{"reservationId": 0, "paymentMethod": "BALANCE", "userId": {user}}}"#),
            "reservationId",
        ),
        (
            format!(r#"{{"reservationId": {id}, "paymentMethod": "CARD", "userId": {user}}}"#),
            "paymentMethod",
        ),
        (
            format!(r#"{{"reservationId": {id}, "userId": {user}}}"#),
            "paymentMethod",
        ),
        (
            format!(r#"{{"reservationId": {id}, "paymentMethod": "BALANCE"}}"#),
            "userId",
        ),
    ] {
        let rsp = app
            .post("/api/v1/payments", &[("queue-token", &token)], &body)
            .await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field, "{body}");
    }

    // Too little money: nothing is taken and the hold is RESERVED as before.
    pay(&app, &token, user, id)
        .await
        .assert_error(402, "INSUFFICIENT_BALANCE");
    assert_eq!(balance_of(&app, user).await.balance, 40_000);
    let r = reservation(&app, id).await;
    assert_eq!((r.status.as_str(), r.payment_id), ("RESERVED", None));

    // Another user's token, or another user's reservation.
    let (stranger, stranger_token) = app.active_user(schedule).await;
    pay(&app, &stranger_token, user, id)
        .await
        .assert_error(403, "FORBIDDEN");
    pay(&app, &stranger_token, stranger, id)
        .await
        .assert_error(403, "FORBIDDEN");
    pay(&app, &token, user, schedule << 32 | 999_999)
        .await
        .assert_error(404, "RESERVATION_NOT_FOUND");
    pay(&app, &token, user, 999_999 << 32 | 1)
        .await
        .assert_error(404, "RESERVATION_NOT_FOUND");
    // The user's token for another schedule.
    let (_, elsewhere) = app.create_schedule(OPEN_NOW, 1).await;
    let other_token = app.issue(user, elsewhere).await.str("token");
    pay(&app, &other_token, user, id)
        .await
        .assert_error(401, "QUEUE_TOKEN_WRONG_SCHEDULE");
    // A WAITING token.
    app.set_queue(schedule, r#"{"paused": true}"#).await;
    let waiting_user = app.create_user().await;
    let waiting = app.issue(waiting_user, schedule).await;
    assert_eq!(waiting.str("status"), "WAITING");
    pay(&app, &waiting.str("token"), waiting_user, id)
        .await
        .assert_error(401, "QUEUE_TOKEN_NOT_ACTIVE");

    // Cancelled, then expired holds cannot be paid.
    charge(&app, user, &token, 200_000).await;
    let cancelled = hold(&app, &token, schedule, user, &seats[1..2]).await;
    let rsp = app
        .request(
            hyper::Method::DELETE,
            &format!("/api/v1/reservations/{cancelled}"),
            &[("queue-token", &token)],
            None,
        )
        .await;
    rsp.assert_ok();
    pay(&app, &token, user, cancelled)
        .await
        .assert_error(422, "RESERVATION_NOT_PAYABLE");
    app.set_queue(schedule, r#"{"holdTtlSeconds": 1}"#).await;
    let expiring = hold(&app, &token, schedule, user, &seats[2..3]).await;
    eventually(Duration::from_secs(5), "the hold to expire", || async {
        (reservation(&app, expiring).await.status.as_str() == "EXPIRED").then_some(())
    })
    .await;
    pay(&app, &token, user, expiring)
        .await
        .assert_error(409, "RESERVATION_EXPIRED");
    app.set_queue(schedule, r#"{"holdTtlSeconds": 300}"#).await;

    // While an attempt runs (its request stopped after the first step): no second payment,
    // no cancel; a repeat with that request's Idempotency-Key is told it is still running.
    let running = hold(&app, &token, schedule, user, &seats[3..4]).await;
    let key = Idempotency::payment("pay-running".into(), ReservationId::from_u64(running));
    app.begin_payment(&token, user, running, Some(key)).await;
    pay(&app, &token, user, running)
        .await
        .assert_error(409, "PAYMENT_IN_PROGRESS");
    app.request(
        hyper::Method::DELETE,
        &format!("/api/v1/reservations/{running}"),
        &[("queue-token", &token)],
        None,
    )
    .await
    .assert_error(409, "PAYMENT_IN_PROGRESS");
    pay_with_key(&app, &token, "pay-running", user, running)
        .await
        .assert_error(409, "REQUEST_IN_PROGRESS");
    pay_with_key(&app, &token, "pay-running", user, id)
        .await
        .assert_error(422, "IDEMPOTENCY_KEY_REUSED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_payments_of_one_reservation_pay_and_debit_once() {
    let app = TestApp::spawn().await;
    let Buyer {
        schedule,
        seats,
        user,
        token,
    } = buyer(&app, 2, 1_000_000).await;
    // One user's stampede: their request rate is not what this test is about.
    app.set_queue(schedule, r#"{"userRequestsPerSecond": 1000}"#)
        .await;
    let id = hold(&app, &token, schedule, user, &seats[..1]).await;
    // A second open hold keeps the token ACTIVE after the payment, so every request is
    // decided by the reservation's state rather than refused for a retired token.
    hold(&app, &token, schedule, user, &seats[1..]).await;

    let responses = spawn_all((0..50).map(|_| {
        let (app, token) = (app.clone(), token.clone());
        async move { pay(&app, &token, user, id).await }
    }))
    .await;
    let mut by_code: HashMap<String, usize> = HashMap::new();
    for rsp in &responses {
        let code = match rsp.status.as_u16() {
            201 => "201".to_string(),
            _ => rsp.code().to_string(),
        };
        *by_code.entry(code).or_default() += 1;
    }
    println!("50 concurrent payments: {by_code:?}");
    assert_eq!(by_code.get("201"), Some(&1), "{by_code:?}");
    for (code, _) in by_code.iter().filter(|(c, _)| *c != "201") {
        assert!(
            code == "PAYMENT_IN_PROGRESS" || code == "RESERVATION_ALREADY_PAID",
            "{by_code:?}"
        );
    }
    let b = balance_of(&app, user).await;
    assert_eq!((b.balance, b.total_used), (950_000, 50_000), "one debit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_racing_the_holds_expiry_is_paid_or_expired_never_both() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(20).await;
    app.set_queue(schedule, r#"{"holdTtlSeconds": 1}"#).await;
    let mut buyers = Vec::new();
    for &seat in &seats {
        let (user, token) = app.active_user(schedule).await;
        charge(&app, user, &token, 50_000).await;
        buyers.push((user, token, seat));
    }
    let mut holds = Vec::new();
    for (user, token, seat) in &buyers {
        let id = hold(&app, token, schedule, *user, &[*seat]).await;
        holds.push((id, reservation(&app, id).await.expires_at_ms));
    }
    // Each payment is sent at its own offset from its hold's expiry, from 200 ms before to
    // 180 ms after, so the race is run on both sides of the moment.
    let results = spawn_all(buyers.iter().zip(&holds).enumerate().map(
        |(i, ((user, token, _), &(id, expires_at)))| {
            let (app, token, user) = (app.clone(), token.clone(), *user);
            async move {
                let at = expires_at - 200 + 20 * i as i64;
                let wait = at - chrono::Utc::now().timestamp_millis();
                if wait > 0 {
                    tokio::time::sleep(Duration::from_millis(wait as u64)).await;
                }
                pay(&app, &token, user, id).await
            }
        },
    ))
    .await;

    let (mut paid, mut expired) = (0, 0);
    for (((user, _, seat), (id, _)), rsp) in buyers.iter().zip(&holds).zip(&results) {
        let r = reservation(&app, *id).await;
        let b = balance_of(&app, *user).await;
        match rsp.status.as_u16() {
            201 => {
                paid += 1;
                assert_eq!(r.status.as_str(), "PAID");
                assert_eq!((b.balance, b.total_used), (0, 50_000));
                assert!(!app.is_available(schedule, *seat).await);
            }
            _ => {
                rsp.assert_error(409, "RESERVATION_EXPIRED");
                expired += 1;
                assert_eq!(r.status.as_str(), "EXPIRED");
                assert_eq!(
                    (b.balance, b.total_used),
                    (50_000, 0),
                    "expired, not charged"
                );
                assert!(app.is_available(schedule, *seat).await);
            }
        }
    }
    println!("payments racing expiry: {paid} paid, {expired} expired");
    assert_eq!(paid + expired, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sagas_whose_request_died_are_settled_by_the_sweeper() {
    let app = TestApp::spawn().await;
    let Buyer {
        schedule,
        seats,
        user,
        token,
    } = buyer(&app, 2, 100_000).await;
    let a = hold(&app, &token, schedule, user, &seats[..1]).await;
    let b = hold(&app, &token, schedule, user, &seats[1..]).await;
    // A's request died after the debit, B's before it.
    let (attempt_a, amount) = app.begin_payment(&token, user, a, None).await;
    let debited = app.debit(user, a, attempt_a, amount).await;
    assert!(
        matches!(debited, DebitOutcome::Debited { .. }),
        "{debited:?}"
    );
    let (attempt_b, _) = app.begin_payment(&token, user, b, None).await;
    pay(&app, &token, user, b)
        .await
        .assert_error(409, "PAYMENT_IN_PROGRESS");

    eventually(
        Duration::from_secs(10),
        "the sweeper to settle both",
        || async {
            let (ra, rb) = (reservation(&app, a).await, reservation(&app, b).await);
            (ra.status.as_str() == "PAID" && rb.status.as_str() == "RESERVED").then_some(())
        },
    )
    .await;
    assert_eq!(
        reservation(&app, a).await.payment_id,
        Some(PaymentId::from_u64(attempt_a))
    );
    let bal = balance_of(&app, user).await;
    assert_eq!(
        (bal.balance, bal.total_used),
        (50_000, 50_000),
        "A debited once"
    );
    // B's attempt is fenced off: its debit, should it still arrive, takes nothing.
    let late = app.debit(user, b, attempt_b, amount).await;
    assert_eq!(late, DebitOutcome::Voided);
    assert_eq!(balance_of(&app, user).await.balance, 50_000);
    // B was left RESERVED and can be paid as usual.
    let rsp = pay(&app, &token, user, b).await;
    rsp.assert_created();
    assert_eq!(balance_of(&app, user).await.total_used, 100_000);
}

/// Two attempts of one reservation given up in turn (A, then B): a debit of A that arrives
/// only then takes nothing, nor does a void of A that arrives after B's, and the
/// reservation is still paid once, by a new attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_debit_of_any_given_up_attempt_takes_nothing() {
    use seatrush::model::PaymentAttempt;
    use seatrush::payment::saga;
    let app = TestApp::spawn().await;
    let Buyer {
        schedule,
        seats,
        user,
        token,
    } = buyer(&app, 1, 100_000).await;
    let id = hold(&app, &token, schedule, user, &seats).await;
    let mut attempts = Vec::new();
    for _ in 0..2 {
        let (attempt, amount) = app.begin_payment(&token, user, id, None).await;
        let attempt = PaymentAttempt {
            reservation_id: ReservationId::from_u64(id),
            user_id: user,
            payment_id: PaymentId::from_u64(attempt),
            amount,
        };
        // Its request died before the debit: settled as given up, RESERVED again.
        assert_eq!(saga::settle(&app.app.hot, &attempt).await.unwrap(), None);
        attempts.push(attempt);
    }
    let (a, b) = (&attempts[0], &attempts[1]);
    assert!(a.payment_id.get() < b.payment_id.get());
    assert_eq!(app.app.hot.debit(a).await.unwrap(), DebitOutcome::Voided);
    // A void of A arriving late does not reopen B.
    assert_eq!(
        app.app.hot.void_debit(a).await.unwrap(),
        DebitOutcome::Voided
    );
    assert_eq!(app.app.hot.debit(b).await.unwrap(), DebitOutcome::Voided);
    let bal = balance_of(&app, user).await;
    assert_eq!(
        (bal.balance, bal.total_used),
        (100_000, 0),
        "nothing debited"
    );
    assert_eq!(reservation(&app, id).await.status.as_str(), "RESERVED");

    pay(&app, &token, user, id).await.assert_created();
    let paid = reservation(&app, id).await;
    assert_eq!(paid.status.as_str(), "PAID");
    assert!(paid.payment_id.unwrap().get() > b.payment_id.get());
    let bal = balance_of(&app, user).await;
    assert_eq!(
        (bal.balance, bal.total_used),
        (50_000, 50_000),
        "debited once"
    );
}

/// The saga's scripts take batches (seatrush coalesces concurrent calls); a batch that names
/// one reservation twice, as a request and the sweeper settling it at once can, changes it
/// once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_naming_one_reservation_twice_changes_it_once() {
    let app = TestApp::spawn().await;
    let Buyer {
        schedule,
        seats,
        user,
        token,
    } = buyer(&app, 2, 100_000).await;
    let id = ReservationId::from_u64(hold(&app, &token, schedule, user, &seats).await);
    let scripts = &app.app.hot.scripts();
    let mut redis = app.redis();
    let request = BeginRequest {
        token: app.app.tokens.open(&token).unwrap().sequence,
        user_id: user,
        reservation_id: id,
        idempotency: None,
    };
    let begun = scripts
        .pay_begin(&mut redis, schedule, &[request.clone(), request])
        .await
        .unwrap();
    let (BeginOutcome::Paying { payment_id, amount }, BeginOutcome::Refused(second)) =
        (&begun[0], &begun[1])
    else {
        panic!("{begun:?}");
    };
    assert_eq!(*second, Refusal::PaymentInProgress);
    let debit = DebitRequest {
        user_id: user,
        reservation_id: id,
        payment_id: *payment_id,
        amount: *amount,
    };
    let bucket = wallet_bucket(user);
    let debited = scripts
        .debit(&mut redis, bucket, &[debit.clone(), debit])
        .await
        .unwrap();
    assert_eq!(debited[0], debited[1], "the second debit finds the first");
    assert_eq!(
        balance_of(&app, user).await.total_used,
        *amount,
        "debited once"
    );

    let stats = ScheduleKeys::new(schedule).stats;
    let counters = || async {
        let (held, sold): (Option<i64>, Option<i64>) = app
            .redis()
            .hmget(&stats, &["heldSeats", "soldSeats"])
            .await
            .unwrap();
        (held.unwrap_or(0), sold.unwrap_or(0))
    };
    let (held_before, sold_before) = counters().await;
    let committed = scripts
        .pay_commit(
            &mut redis,
            schedule,
            &[(id, *payment_id), (id, *payment_id)],
        )
        .await
        .unwrap();
    assert!(
        committed
            .iter()
            .all(|c| matches!(c, CommitOutcome::Paid(p) if p.payment_id == *payment_id)),
        "{committed:?}"
    );
    let (held, sold) = counters().await;
    assert_eq!(
        (held, sold),
        (held_before - 2, sold_before + 2),
        "2 seats sold once"
    );
    assert_eq!(reservation(&app, id.get()).await.status.as_str(), "PAID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_twenty_times_at_once_pays_once() {
    let app = TestApp::spawn().await;
    let Buyer {
        schedule,
        seats,
        user,
        token,
    } = buyer(&app, 1, 80_000).await;
    let id = hold(&app, &token, schedule, user, &seats).await;
    let responses = spawn_all((0..20).map(|_| {
        let (app, token) = (app.clone(), token.clone());
        async move { pay_with_key(&app, &token, "order-1", user, id).await }
    }))
    .await;
    let paid: Vec<&common::Rsp> = responses
        .iter()
        .filter(|r| r.status.as_u16() == 201)
        .collect();
    let running = responses
        .iter()
        .filter(|r| r.code() == "REQUEST_IN_PROGRESS")
        .count();
    println!(
        "20 requests, one key: {} × 201, {running} × 409",
        paid.len()
    );
    assert_eq!(paid.len() + running, 20, "only replays or 'still running'");
    assert!(!paid.is_empty());
    for rsp in &paid {
        assert_eq!(
            rsp.u64("paymentId"),
            paid[0].u64("paymentId"),
            "one payment"
        );
        assert_eq!(rsp.str("paidAt"), paid[0].str("paidAt"));
    }
    // Once done, the key answers with the payment, even though the token is now retired.
    let again = pay_with_key(&app, &token, "order-1", user, id).await;
    again.assert_created();
    assert_eq!(again.u64("paymentId"), paid[0].u64("paymentId"));
    let b = balance_of(&app, user).await;
    assert_eq!((b.balance, b.total_used), (30_000, 50_000), "one debit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_payment_is_replayed_as_refused() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(1).await;
    let (user, token) = app.active_user(schedule).await;
    let id = hold(&app, &token, schedule, user, &seats).await;
    for _ in 0..2 {
        pay_with_key(&app, &token, "broke", user, id)
            .await
            .assert_error(402, "INSUFFICIENT_BALANCE");
    }
    // With money, the same key still answers as it first did; a new key pays.
    charge(&app, user, &token, 50_000).await;
    pay_with_key(&app, &token, "broke", user, id)
        .await
        .assert_error(402, "INSUFFICIENT_BALANCE");
    let rsp = pay_with_key(&app, &token, "flush", user, id).await;
    rsp.assert_created();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_is_conserved_and_mysql_equals_redis_after_the_drain() {
    use mysql_async::prelude::Queryable;
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(30).await;
    // Ten buyers of one or two seats, with balances from short to plenty.
    let mut buyers = Vec::new();
    for i in 0..10u64 {
        let (user, token) = app.active_user(schedule).await;
        charge(&app, user, &token, 30_000 + 10_000 * i).await;
        charge(&app, user, &token, 20_000).await;
        let n = 1 + i as usize % 2;
        let taken = &seats[3 * i as usize..3 * i as usize + n];
        let id = hold(&app, &token, schedule, user, taken).await;
        buyers.push((user, token, id));
    }
    let results = spawn_all(buyers.iter().map(|(user, token, id)| {
        let (app, token, user, id) = (app.clone(), token.clone(), *user, *id);
        async move { pay(&app, &token, user, id).await.status.as_u16() }
    }))
    .await;
    let paid = results.iter().filter(|&&s| s == 201).count();
    println!("conservation: {paid} of 10 paid, the rest short of money");
    assert!(results.iter().all(|&s| s == 201 || s == 402), "{results:?}");
    assert!(
        paid > 0 && paid < 10,
        "both outcomes are exercised: {results:?}"
    );

    let pool = app.app.db.primary.clone();
    for (user, _, id) in &buyers {
        let (user, id) = (*user, *id);
        let b = balance_of(&app, user).await;
        assert_eq!(b.balance, b.total_charged - b.total_used, "in Redis");
        let r = reservation(&app, id).await;
        // What MySQL must say once drained: the balance row, the ledger's sums and count,
        // the reservation's status and its payment.
        let expected = (
            (b.balance, b.total_charged, b.total_used),
            (
                b.total_charged,
                b.total_used,
                u64::from(r.status.as_str() == "PAID"),
            ),
            r.status.as_str().to_string(),
            r.payment_id.map(|p| (p.get(), r.total_amount)),
        );
        let got = eventually(Duration::from_secs(10), "MySQL to catch up", || {
            let (pool, expected) = (pool.clone(), expected.clone());
            async move {
                let mut conn = pool.get_conn().await.unwrap();
                let row: Option<(u64, u64, u64)> = conn
                    .exec_first(
                        "SELECT balance, total_charged, total_used FROM user_balances
                         WHERE user_id = ?",
                        (user,),
                    )
                    .await
                    .unwrap();
                let ledger: (u64, u64, u64) = conn
                    .exec_first(
                        "SELECT CAST(COALESCE(SUM(IF(type = 'CHARGE', amount, 0)), 0) AS UNSIGNED),
                           CAST(COALESCE(SUM(IF(type = 'PAYMENT', amount, 0)), 0) AS UNSIGNED),
                           CAST(COALESCE(SUM(type = 'PAYMENT'), 0) AS UNSIGNED)
                         FROM balance_transactions WHERE user_id = ?",
                        (user,),
                    )
                    .await
                    .unwrap()
                    .unwrap();
                let status: Option<String> = conn
                    .exec_first("SELECT status FROM reservations WHERE id = ?", (id,))
                    .await
                    .unwrap();
                let payment: Option<(u64, u64)> = conn
                    .exec_first(
                        "SELECT id, amount FROM payments WHERE reservation_id = ?",
                        (id,),
                    )
                    .await
                    .unwrap();
                let got = (row?, ledger, status?, payment);
                (got == expected).then_some(got)
            }
        })
        .await;
        let ((balance, charged, used), (ledger_in, ledger_out, _), ..) = got;
        assert_eq!(
            balance,
            ledger_in - ledger_out,
            "the ledger sums to the balance"
        );
        assert_eq!(charged - used - balance, 0);
    }

    // Over every user of this test at once: charged − used − balances = 0, in both stores.
    let users: Vec<u64> = buyers.iter().map(|b| b.0).collect();
    let mut redis_sum = 0i64;
    for &user in &users {
        let b = balance_of(&app, user).await;
        redis_sum += b.total_charged as i64 - b.total_used as i64 - b.balance as i64;
    }
    let mut conn = pool.get_conn().await.unwrap();
    let mysql_sum: i64 = conn
        .exec_first(
            format!(
                "SELECT CAST(SUM(total_charged) - SUM(total_used) - SUM(balance) AS SIGNED)
                 FROM user_balances WHERE user_id IN ({})",
                vec!["?"; users.len()].join(", ")
            ),
            users,
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((redis_sum, mysql_sum), (0, 0));
}
