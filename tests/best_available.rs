//! Holds by `quantity` on the real server: the seats the script chooses, the refusals, the
//! bound on how far it looks, and many buyers at once with real parallel requests.

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{TestApp, spawn_all};
use redis::AsyncCommands;
use seatrush::model::{Refusal, SeatChoice};
use seatrush::redis::keys::ScheduleKeys;
use seatrush::redis::scripts::{HoldOutcome, HoldRequest};
use simd_json::prelude::*;

/// `POST /api/v1/reservations` with `{scheduleId, quantity, userId}`.
async fn hold_best(
    app: &TestApp,
    token: &str,
    schedule: u64,
    user: u64,
    quantity: u64,
) -> common::Rsp {
    let body = format!(r#"{{"scheduleId":{schedule},"quantity":{quantity},"userId":{user}}}"#);
    app.post("/api/v1/reservations", &[("queue-token", token)], &body)
        .await
}

/// The seat numbers of a hold, in the order it lists them.
fn numbers(rsp: &common::Rsp) -> Vec<u64> {
    rsp.data()["seats"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", rsp.body))
        .iter()
        .map(|s| s["seatNumber"].as_u64().unwrap())
        .collect()
}

/// A schedule open now with `seats` seats, anyone admitted at once and allowed `per_user`
/// seats; returns it and its seat ids by seat number.
async fn schedule(app: &TestApp, seats: u64, per_user: u64) -> (u64, Vec<u64>) {
    let (schedule, ids) = app.open_schedule(seats).await;
    app.set_queue(schedule, &format!(r#"{{"maxSeatsPerUser": {per_user}}}"#))
        .await;
    (schedule, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lowest_consecutive_seats_are_chosen_else_the_lowest() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = schedule(&app, 10, 10).await;
    let (first, token) = app.active_user(schedule).await;
    // Seats 2 and 5 are someone's: 1 stands alone, 3-4 is the first pair.
    app.hold(&token, schedule, first, &[seats[1], seats[4]])
        .await
        .assert_created();

    let (buyer, token) = app.active_user(schedule).await;
    let pair = hold_best(&app, &token, schedule, buyer, 2).await;
    pair.assert_created();
    assert_eq!(numbers(&pair), [3, 4]);
    assert_eq!(pair.seat_ids(), [seats[2], seats[3]]);
    assert_eq!(pair.u64("totalAmount"), 100_000);
    assert_eq!(pair.str("status"), "RESERVED");
    for id in pair.seat_ids() {
        assert!(!app.is_available(schedule, id).await, "held in Redis");
    }
    // Left: 1, 6-10. Three together are 6-8; then a single is 1, the lowest.
    let three = hold_best(&app, &token, schedule, buyer, 3).await;
    assert_eq!(numbers(&three), [6, 7, 8]);
    assert_eq!(
        numbers(&hold_best(&app, &token, schedule, buyer, 1).await),
        [1]
    );
    // Left: 9, 10, then nothing consecutive for a pair once 9 is taken by name.
    app.hold(&token, schedule, buyer, &[seats[8]])
        .await
        .assert_created();
    let (other, token) = app.active_user(schedule).await;
    let rsp = hold_best(&app, &token, schedule, other, 2).await;
    rsp.assert_error(409, "NOT_ENOUGH_SEATS");
    assert_eq!(rsp.body["error"]["details"]["available"].as_u64(), Some(1));
    assert_eq!(
        numbers(&hold_best(&app, &token, schedule, other, 1).await),
        [10]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_run_the_lowest_seats_are_chosen() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = schedule(&app, 6, 6).await;
    let (user, token) = app.active_user(schedule).await;
    app.hold(&token, schedule, user, &[seats[1], seats[3], seats[5]])
        .await
        .assert_created();
    let (buyer, token) = app.active_user(schedule).await;
    let rsp = hold_best(&app, &token, schedule, buyer, 2).await;
    rsp.assert_created();
    assert_eq!(numbers(&rsp), [1, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_looks_no_further_than_the_lowest_512_available_seats() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = schedule(&app, 1_200, 1_200).await;
    let (user, token) = app.active_user(schedule).await;
    // Every even seat number up to 1 100 is held: the lowest 512 AVAILABLE seats are the odd
    // numbers 1…1 023, and the first pair of neighbours (1 101-1 102) lies beyond them.
    let even: Vec<u64> = (2..=1_100).step_by(2).map(|n| seats[n - 1]).collect();
    for chunk in even.chunks(100) {
        app.hold(&token, schedule, user, chunk)
            .await
            .assert_created();
    }
    let (buyer, token) = app.active_user(schedule).await;
    let rsp = hold_best(&app, &token, schedule, buyer, 2).await;
    assert_eq!(numbers(&rsp), [1, 3], "no run among the seats looked at");
    let rsp = hold_best(&app, &token, schedule, buyer, 2).await;
    assert_eq!(numbers(&rsp), [5, 7]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quantity_is_checked_before_anything_is_held() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(10).await;
    let (user, token) = app.active_user(schedule).await;
    let post = |body: String| {
        let (app, token) = (&app, token.clone());
        async move {
            app.post("/api/v1/reservations", &[("queue-token", &token)], &body)
                .await
        }
    };
    for (body, field) in [
        (
            format!(
                r#"{{"scheduleId":{schedule},"quantity":2,"seatIds":[{}],"userId":{user}}}"#,
                seats[0]
            ),
            "quantity",
        ),
        (
            format!(r#"{{"scheduleId":{schedule},"quantity":2,"seatIds":null,"userId":{user}}}"#),
            "quantity",
        ),
        (
            format!(r#"{{"scheduleId":{schedule},"quantity":0,"userId":{user}}}"#),
            "quantity",
        ),
        (
            format!(r#"{{"scheduleId":{schedule},"quantity":"2","userId":{user}}}"#),
            "quantity",
        ),
        (
            format!(r#"{{"scheduleId":{schedule},"quantity":1.5,"userId":{user}}}"#),
            "quantity",
        ),
        (
            format!(r#"{{"scheduleId":{schedule},"quantity":101,"userId":{user}}}"#),
            "quantity",
        ),
        (
            format!(r#"{{"scheduleId":{schedule},"userId":{user}}}"#),
            "seatIds",
        ),
    ] {
        let rsp = post(body.clone()).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field, "{body}");
    }
    // The default maxSeatsPerUser is 4.
    hold_best(&app, &token, schedule, user, 5)
        .await
        .assert_error(422, "SEAT_LIMIT_EXCEEDED");
    hold_best(&app, &token, schedule, user, 3)
        .await
        .assert_created();
    hold_best(&app, &token, schedule, user, 2)
        .await
        .assert_error(422, "SEAT_LIMIT_EXCEEDED");
    assert_eq!(app.available_seats(schedule).await.len(), 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_best_available_hold_gets_the_same_seats() {
    let app = TestApp::spawn().await;
    let (schedule, _) = app.open_schedule(10).await;
    let (user, token) = app.active_user(schedule).await;
    let key = uuid::Uuid::new_v4().to_string();
    let send = |quantity: u64| {
        let body = format!(r#"{{"scheduleId":{schedule},"quantity":{quantity},"userId":{user}}}"#);
        let (app, token, key) = (&app, token.clone(), key.clone());
        async move {
            app.post(
                "/api/v1/reservations",
                &[("queue-token", &token), ("idempotency-key", &key)],
                &body,
            )
            .await
        }
    };
    let first = send(2).await;
    first.assert_created();
    let again = send(2).await;
    again.assert_created();
    assert_eq!(again.u64("reservationId"), first.u64("reservationId"));
    assert_eq!(numbers(&again), numbers(&first));
    send(3).await.assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(app.available_seats(schedule).await.len(), 8, "held once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buyers_racing_for_the_best_seats_never_share_one() {
    let app = Arc::new(TestApp::spawn().await);
    let (schedule, seats) = schedule(&app, 60, 4).await;
    let mut buyers = Vec::new();
    for _ in 0..40 {
        buyers.push(app.active_user(schedule).await);
    }
    // 30 buyers ask for 2 seats by quantity, 10 name a seat of their own choosing (which a
    // quantity hold may have taken first): every request at once.
    let holds = spawn_all(buyers.into_iter().enumerate().map(|(i, (user, token))| {
        let (app, seat) = (app.clone(), seats[i * 6 % 60]);
        async move {
            if i < 30 {
                hold_best(&app, &token, schedule, user, 2).await
            } else {
                app.hold(&token, schedule, user, &[seat]).await
            }
        }
    }))
    .await;
    let mut held = HashSet::new();
    let mut granted = 0;
    for rsp in &holds {
        match rsp.status.as_u16() {
            201 => {
                granted += 1;
                for id in rsp.seat_ids() {
                    assert!(held.insert(id), "seat {id} held twice");
                }
            }
            409 => assert!(
                ["NOT_ENOUGH_SEATS", "SEAT_ALREADY_RESERVED"].contains(&rsp.code()),
                "{:?}",
                rsp.body
            ),
            _ => panic!("{:?}", rsp.body),
        }
    }
    assert!(
        granted >= 30,
        "60 seats cover every request until they run out"
    );
    let free = app.available_seats(schedule).await;
    assert!(free.is_disjoint(&held));
    assert_eq!(
        free.len() + held.len(),
        60,
        "every seat is held or available"
    );
    assert_eq!(
        app.queue_state(schedule).await.u64("heldSeats"),
        held.len() as u64
    );
}

/// One script run decides a batch of requests in order (seatrush coalesces concurrent
/// holds): each sees the seats and the seat counts the requests before it held, whether
/// they named their seats or asked for a quantity, and the batch's counters are written once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_holds_sees_the_holds_before_it() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = schedule(&app, 10, 4).await;
    let mut buyers = Vec::new();
    for _ in 0..3 {
        let (user, token) = app.active_user(schedule).await;
        buyers.push((user, app.app.tokens.open(&token).unwrap().sequence));
    }
    let [(a, a_token), (b, b_token), (c, c_token)] = buyers[..] else {
        unreachable!()
    };
    let request = |user, token, seats| HoldRequest {
        token,
        user_id: user,
        seats,
        idempotency: None,
    };
    let batch = [
        request(a, a_token, SeatChoice::BestAvailable(2)), // 1-2
        request(b, b_token, SeatChoice::Seats(vec![seats[2]])), // 3, by name
        request(c, c_token, SeatChoice::BestAvailable(2)), // 4-5: 3 is held now
        request(a, a_token, SeatChoice::BestAvailable(3)), // 2 + 3 > 4
        request(a, a_token, SeatChoice::BestAvailable(2)), // 6-7
        request(b, b_token, SeatChoice::Seats(vec![seats[0]])), // a's already
        request(c, c_token, SeatChoice::BestAvailable(3)), // 2 + 3 > 4
        request(b, b_token, SeatChoice::BestAvailable(3)), // 8-10
        request(c, c_token, SeatChoice::BestAvailable(1)), // none left
    ];
    let outcomes = app
        .app
        .hot
        .scripts()
        .hold_seats(&mut app.redis(), schedule, &batch)
        .await
        .unwrap();
    let held = |i: usize| match &outcomes[i] {
        HoldOutcome::Held(hold) => hold.seats.iter().map(|s| s.seat_number).collect::<Vec<_>>(),
        other => panic!("request {i}: {other:?}"),
    };
    let refused = |i: usize| match &outcomes[i] {
        HoldOutcome::Refused(refusal, numbers) => (*refusal, numbers.clone()),
        other => panic!("request {i}: {other:?}"),
    };
    assert_eq!(held(0), [1, 2]);
    assert_eq!(held(1), [3]);
    assert_eq!(held(2), [4, 5]);
    assert_eq!(refused(3), (Refusal::SeatLimitExceeded, vec![]));
    assert_eq!(held(4), [6, 7]);
    assert_eq!(refused(5), (Refusal::SeatAlreadyReserved, vec![seats[0]]));
    assert_eq!(refused(6), (Refusal::SeatLimitExceeded, vec![]));
    assert_eq!(held(7), [8, 9, 10]);
    assert_eq!(refused(8), (Refusal::NotEnoughSeats, vec![0]));

    assert!(app.available_seats(schedule).await.is_empty());
    assert_eq!(app.queue_state(schedule).await.u64("heldSeats"), 10);
    let k = ScheduleKeys::new(schedule);
    let users = [a, b, c];
    let counts = |key: String| {
        let mut redis = app.redis();
        async move {
            let counts: Vec<u64> = redis.hmget(key, &users[..]).await.unwrap();
            counts
        }
    };
    assert_eq!(
        counts(k.userseats.clone()).await,
        [4, 4, 2],
        "seats per user"
    );
    assert_eq!(
        counts(k.userholds.clone()).await,
        [2, 2, 1],
        "open holds per user"
    );
}
