//! The waiting queue on the real server and the dev stack: every error
//! code, admission, expiry, and the races with real parallel requests.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{OPEN_NOW, TestApp, Window, bearer, eventually, spawn_all};
use seatrush::redis::scripts::IssueRequest;
use simd_json::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_active_at_once_when_there_is_room() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    let user = app.create_user().await;
    let rsp = app.issue(user, schedule).await;
    rsp.assert_ok();
    assert_eq!(rsp.str("status"), "ACTIVE");
    assert_eq!(rsp.u64("queuePosition"), 0);
    assert_eq!(rsp.u64("estimatedWaitTimeMinutes"), 0);
    assert_eq!(rsp.u64("pollAfterMs"), 0, "nothing to wait for");
    let token = rsp.str("token");
    // A signed token naming the schedule, its arrival sequence and the user.
    let opened = common::opened(&token);
    assert_eq!((opened.schedule_id, opened.user_id), (schedule, user));

    let me = app.me(&token).await;
    me.assert_ok();
    assert_eq!(me.u64("userId"), user);
    assert_eq!(me.u64("scheduleId"), schedule);
    assert_eq!(me.str("status"), "ACTIVE");
    let until = chrono::DateTime::parse_from_rfc3339(&me.str("activeUntil")).unwrap();
    let left = until
        .signed_duration_since(chrono::Utc::now())
        .num_seconds();
    assert!(
        (290..=300).contains(&left),
        "active for activeTtlSeconds: {left}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_errors() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    let user = app.create_user().await;
    app.issue(999_999_999, schedule)
        .await
        .assert_error(404, "USER_NOT_FOUND");
    app.issue(user, 999_999_999)
        .await
        .assert_error(404, "SCHEDULE_NOT_FOUND");
    app.issue(user, schedule).await.assert_ok();
    app.issue(user, schedule)
        .await
        .assert_error(409, "TOKEN_ALREADY_ISSUED");

    let closed = Window {
        open_in_secs: -7200,
        close_in_secs: -60,
    };
    let (_, past) = app.create_schedule(closed, 5).await;
    app.issue(user, past)
        .await
        .assert_error(422, "BOOKING_CLOSED");

    for (body, field) in [
        (r#"{"scheduleId":1}"#, "userId"),
        (r#"{"userId":"1","scheduleId":1}"#, "userId"),
        (r#"{"userId":1.0,"scheduleId":1}"#, "userId"),
        (r#"{"userId":-4,"scheduleId":1}"#, "userId"),
        (r#"{"userId":0,"scheduleId":1}"#, "userId"),
        (r#"{"userId":1}"#, "scheduleId"),
        (r#"{"userId":1,"scheduleId":[1]}"#, "scheduleId"),
    ] {
        // Syntax comes before ownership: the caller's own identity gets the 400.
        let rsp = app
            .post(
                "/api/v1/queue/tokens",
                &[("authorization", &bearer(user))],
                body,
            )
            .await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_is_429_but_a_holder_hears_409_first() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"paused": true, "maxWaitingUsers": 2}"#)
        .await;
    let users = app.create_users(3).await;
    assert_eq!(app.issue(users[0], schedule).await.str("status"), "WAITING");
    assert_eq!(app.issue(users[1], schedule).await.u64("queuePosition"), 2);
    let full = app.issue(users[2], schedule).await;
    full.assert_error(429, "QUEUE_FULL");
    // Places free only as the queue admits: the crowd is told to wait, not to hammer.
    assert_eq!(full.headers["retry-after"], "10");
    app.issue(users[0], schedule)
        .await
        .assert_error(409, "TOKEN_ALREADY_ISSUED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_status_errors() {
    let app = TestApp::spawn().await;
    let me = bearer(app.create_user().await);
    let path = "/api/v1/queue/tokens/me";
    let rsp = app.get(path, &[("authorization", &me)]).await;
    rsp.assert_error(401, "QUEUE_TOKEN_MISSING");
    for bad in [
        "nonsense",
        "0f8fad5bd9cb469fa16570867728950e",
        &uuid::Uuid::new_v4().to_string(),
    ] {
        app.get(path, &[("authorization", &me), ("queue-token", bad)])
            .await
            .assert_error(401, "QUEUE_TOKEN_INVALID");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_clients_are_told_when_to_ask_again() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"paused": true, "admissionPerSecond": 1}"#)
        .await;
    let users = app.create_users(6).await;
    let mut last = None;
    for (i, &user) in users.iter().enumerate() {
        let rsp = app.issue(user, schedule).await;
        // Position p at one admission a second: p s to wait, a quarter of it (at least 1 s).
        let expected = (i as u64 + 1) * 250;
        assert_eq!(
            rsp.u64("pollAfterMs"),
            expected.max(1_000),
            "position {}",
            i + 1
        );
        last = Some(rsp.str("token"));
    }
    let me = app.me(&last.unwrap()).await;
    assert_eq!((me.u64("queuePosition"), me.u64("pollAfterMs")), (6, 1_500));
    assert_eq!(me.u64("estimatedWaitTimeMinutes"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_tokens_know_their_place_and_are_admitted_in_order() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"paused": true, "maxActiveUsers": 2}"#)
        .await;
    let users = app.create_users(3).await;
    let mut tokens = Vec::new();
    for (i, &user) in users.iter().enumerate() {
        let rsp = app.issue(user, schedule).await;
        assert_eq!(rsp.str("status"), "WAITING");
        assert_eq!(rsp.u64("queuePosition"), i as u64 + 1);
        assert!(rsp.u64("estimatedWaitTimeMinutes") >= 1);
        tokens.push(rsp.str("token"));
    }
    let third = app.me(&tokens[2]).await;
    assert_eq!(
        (third.str("status").as_str(), third.u64("queuePosition")),
        ("WAITING", 3)
    );
    assert!(third.data()["activeUntil"].is_null());

    app.set_queue(schedule, r#"{"paused": false}"#).await;
    eventually(Duration::from_secs(5), "two admissions", || async {
        (app.queue_state(schedule).await.u64("active") == 2).then_some(())
    })
    .await;
    // The first two in arrival order are in; the third is now first in line.
    for token in &tokens[..2] {
        assert_eq!(app.me(token).await.str("status"), "ACTIVE");
    }
    let third = app.me(&tokens[2]).await;
    assert_eq!(
        (third.str("status").as_str(), third.u64("queuePosition")),
        ("WAITING", 1)
    );
    let state = app.queue_state(schedule).await;
    assert_eq!((state.u64("waiting"), state.u64("admittedTotal")), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_waits_for_booking_to_open() {
    let app = TestApp::spawn().await;
    let later = Window {
        open_in_secs: 3600,
        close_in_secs: 7200,
    };
    let (_, schedule) = app.create_schedule(later, 5).await;
    let user = app.create_user().await;
    let rsp = app.issue(user, schedule).await;
    assert_eq!(
        (rsp.str("status").as_str(), rsp.u64("queuePosition")),
        ("WAITING", 1)
    );
    // Several admission ticks later it still waits.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(app.me(&rsp.str("token")).await.str("status"), "WAITING");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_invalid_frees_its_slot_and_the_user_may_queue_again() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"activeTtlSeconds": 1, "maxActiveUsers": 1}"#)
        .await;
    let users = app.create_users(2).await;
    let first = app.issue(users[0], schedule).await;
    assert_eq!(first.str("status"), "ACTIVE");
    let second = app.issue(users[1], schedule).await;
    assert_eq!(second.str("status"), "WAITING", "the only slot is taken");

    let token = first.str("token");
    eventually(Duration::from_secs(5), "expiry", || async {
        (app.me(&token).await.status.as_u16() == 401).then_some(())
    })
    .await;
    app.me(&token)
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    eventually(
        Duration::from_secs(5),
        "the freed slot to go to the next in line",
        || async { (app.me(&second.str("token")).await.str("status") == "ACTIVE").then_some(()) },
    )
    .await;
    let again = app.issue(users[0], schedule).await;
    again.assert_ok();
    assert_ne!(again.str("token"), token);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_parallel_issuances_get_distinct_tokens_at_positions_1_to_300() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"paused": true}"#).await;
    let users = app.create_users(300).await;
    let responses = spawn_all(users.iter().map(|&user| {
        let app = app.clone();
        async move { app.issue(user, schedule).await }
    }))
    .await;
    let mut tokens = HashSet::new();
    let mut positions = Vec::new();
    for rsp in &responses {
        rsp.assert_ok();
        assert_eq!(rsp.str("status"), "WAITING");
        tokens.insert(rsp.str("token"));
        positions.push(rsp.u64("queuePosition"));
    }
    positions.sort_unstable();
    assert_eq!(tokens.len(), 300);
    assert_eq!(positions, (1..=300).collect::<Vec<u64>>());
    assert_eq!(app.queue_state(schedule).await.u64("waiting"), 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_parallel_requests_of_one_user_get_exactly_one_token() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    let user = app.create_user().await;
    let responses = spawn_all((0..50).map(|_| {
        let app = app.clone();
        async move { app.issue(user, schedule).await }
    }))
    .await;
    let ok = responses
        .iter()
        .filter(|r| r.status.as_u16() == 200)
        .count();
    let conflicts = responses
        .iter()
        .filter(|r| r.code() == "TOKEN_ALREADY_ISSUED")
        .count();
    assert_eq!((ok, conflicts), (1, 49));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_admission_loops_at_once_never_exceed_the_limits() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn().await;
    let (_, schedule) = a.create_schedule(OPEN_NOW, 5).await;
    a.set_queue(
        schedule,
        r#"{"paused": true, "maxActiveUsers": 40, "admissionPerSecond": 100000}"#,
    )
    .await;
    let users = a.create_users(120).await;
    spawn_all(users.iter().map(|&user| {
        let a = a.clone();
        async move {
            a.issue(user, schedule).await.assert_ok();
        }
    }))
    .await;
    a.set_queue(schedule, r#"{"paused": false}"#).await;
    // Both instances' background loops run, plus two extra loops hammering ticks in parallel.
    let hammer = |app: TestApp| {
        tokio::spawn(async move {
            for _ in 0..50 {
                app.app.housekeeping().tick().await.unwrap();
            }
        })
    };
    let (ha, hb) = (hammer(a.clone()), hammer(b.clone()));
    let mut samples = 0;
    while !(ha.is_finished() && hb.is_finished()) {
        let state = a.queue_state(schedule).await;
        assert!(
            state.u64("active") <= 40,
            "active {} > 40",
            state.u64("active")
        );
        samples += 1;
    }
    ha.await.unwrap();
    hb.await.unwrap();
    let state = a.queue_state(schedule).await;
    assert_eq!(
        (
            state.u64("active"),
            state.u64("waiting"),
            state.u64("admittedTotal")
        ),
        (40, 80, 40)
    );
    assert!(samples > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admission_rate_holds_across_loops() {
    let a = TestApp::spawn().await;
    let b = TestApp::spawn().await;
    let (_, schedule) = a.create_schedule(OPEN_NOW, 5).await;
    a.set_queue(schedule, r#"{"paused": true, "admissionPerSecond": 5}"#)
        .await;
    let users = a.create_users(40).await;
    for &user in &users {
        a.issue(user, schedule).await;
    }
    a.set_queue(schedule, r#"{"paused": false}"#).await;
    let started = std::time::Instant::now();
    let hammer = |app: TestApp| {
        tokio::spawn(async move {
            while started.elapsed() < Duration::from_millis(1500) {
                app.app.housekeeping().tick().await.unwrap();
            }
        })
    };
    let (ha, hb) = (hammer(a.clone()), hammer(b.clone()));
    ha.await.unwrap();
    hb.await.unwrap();
    let admitted = a.queue_state(schedule).await.u64("admittedTotal");
    // 1.5 s of hammering touches at most three wall-clock seconds: at most 3 × 5.
    assert!((1..=15).contains(&admitted), "admitted {admitted}");
}

/// An issuance of the user's without an Idempotency-Key, for the scripts driven by hand.
fn request(user_id: u64) -> IssueRequest {
    IssueRequest {
        user_id,
        idempotency: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_lives_under_its_sequence_until_its_record_is_dropped() {
    use redis::AsyncCommands;
    use seatrush::model::{Refusal, TokenStatus};
    use seatrush::redis::keys::ScheduleKeys;
    use seatrush::redis::scripts::IssueOutcome;

    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    let user = app.create_user().await;
    let mut config = TestApp::config();
    config.ended_record_keep = Duration::ZERO;
    let quiet = TestApp::quiet_with(config).await;
    let mut redis = quiet.hot.conn();
    let keys = ScheduleKeys::new(schedule);
    let _: () = redis.hset(&keys.cfg, "activeTtlSeconds", 1).await.unwrap();

    let outcomes = quiet
        .hot
        .scripts()
        .issue_tokens(&mut redis, schedule, &[request(user), request(user)])
        .await
        .unwrap();
    let IssueOutcome::Issued {
        sequence, state, ..
    } = &outcomes[0]
    else {
        panic!("{outcomes:?}");
    };
    assert_eq!(state.status, TokenStatus::Active);
    assert!(matches!(&outcomes[1], IssueOutcome::Refused(c) if *c == Refusal::TokenAlreadyIssued));
    // Redis knows the token by its sequence only: the record, the user's live token and the
    // active set all name it so, and the refused request left nothing.
    let fields: Vec<String> = redis.hkeys(&keys.tokens).await.unwrap();
    assert_eq!(fields, [sequence.to_string()]);
    let live: Option<String> = redis.hget(&keys.users, user).await.unwrap();
    assert_eq!(live, Some(sequence.to_string()));
    let active: Vec<String> = redis.zrange(&keys.active, 0, -1).await.unwrap();
    assert_eq!(active, [sequence.to_string()]);

    // After expiry (1 s) and the keep period (0), a tick drops the record.
    eventually(
        Duration::from_secs(5),
        "the ended token to be dropped",
        || async {
            let dropped = quiet.housekeeping().tick().await.is_ok();
            let left: u64 = redis.clone().hlen(&keys.tokens).await.unwrap();
            (dropped && left == 0).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tick_admits_at_most_a_thousand_and_a_big_queue_drains_in_order() {
    use redis::AsyncCommands;
    use seatrush::redis::keys::ScheduleKeys;

    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 1).await;
    // Driven by hand on the quiet app (Redis db 2), where no other loop admits.
    let quiet = TestApp::quiet().await;
    let mut redis = quiet.hot.conn();
    let keys = ScheduleKeys::new(schedule);
    let _: () = redis.hset(&keys.cfg, "paused", 1).await.unwrap();
    let users: Vec<IssueRequest> = (0..2500).map(|i| request(1_000_000 + i)).collect();
    for batch in users.chunks(seatrush::redis::coalesce::MAX_BATCH) {
        quiet
            .hot
            .scripts()
            .issue_tokens(&mut redis, schedule, batch)
            .await
            .unwrap();
    }
    let _: () = redis
        .hset_multiple(
            &keys.cfg,
            &[
                ("paused", 0),
                ("maxActiveUsers", 1_000_000),
                ("admissionPerSecond", 1_000_000),
            ],
        )
        .await
        .unwrap();
    let first = quiet
        .hot
        .scripts()
        .admit_batch(&mut redis, schedule, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!((first.admitted, first.waiting), (1000, 1500));
    // The earliest arrivals (sequences 1 to 1000) went first.
    let admitted: Vec<u64> = redis.zrange(&keys.active, 0, -1).await.unwrap();
    let mut admitted = admitted;
    admitted.sort_unstable();
    assert_eq!(admitted, (1..=1000).collect::<Vec<u64>>());
    let second = quiet
        .hot
        .scripts()
        .admit_batch(&mut redis, schedule, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(
        (second.admitted, second.waiting, second.active),
        (1000, 500, 2000)
    );
}

/// The token's row in MySQL, once the flusher has written its status there.
async fn flushed_status(app: &TestApp, token: &str, status: &str) {
    use mysql_async::prelude::Queryable;
    let t = common::opened(token);
    eventually(
        Duration::from_secs(10),
        "the token's status in MySQL",
        || async {
            let mut conn = app.app.db.primary.get_conn().await.unwrap();
            let row: Option<String> = conn
                .exec_first(
                    "SELECT status FROM queue_tokens WHERE schedule_id = ? AND seq = ?",
                    (t.schedule_id, t.sequence),
                )
                .await
                .unwrap();
            (row.as_deref() == Some(status)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_user_who_leaves_gives_up_their_place_at_once() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"paused": true}"#).await;
    let users = app.create_users(3).await;
    let mut tokens = Vec::new();
    for &user in &users {
        tokens.push(app.issue(user, schedule).await.str("token"));
    }
    // Only the token's own user may end it.
    app.request(
        hyper::Method::DELETE,
        "/api/v1/queue/tokens/me",
        &[
            ("queue-token", &tokens[1]),
            ("authorization", &bearer(users[0])),
        ],
        None,
    )
    .await
    .assert_error(403, "FORBIDDEN");

    let left = app.leave(&tokens[1]).await;
    left.assert_ok();
    assert_eq!(
        (left.str("status").as_str(), left.str("token")),
        ("LEFT", tokens[1].clone())
    );
    assert_eq!(left.u64("cancelledReservations"), 0);
    assert_eq!(app.me(&tokens[2]).await.u64("queuePosition"), 2);
    assert_eq!(app.queue_state(schedule).await.u64("waiting"), 2);
    app.me(&tokens[1])
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    app.leave(&tokens[1])
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    flushed_status(&app, &tokens[1], "LEFT").await;

    // Leaving is not a ban: the user may queue again, at the back.
    let again = app.issue(users[1], schedule).await;
    again.assert_ok();
    assert_eq!(again.u64("queuePosition"), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_user_who_leaves_frees_the_slot_and_their_seats() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"maxActiveUsers": 1}"#).await;
    let seats = app.seats_of(schedule).await;
    let (buyer, token) = app.active_user(schedule).await;
    let first = app.hold(&token, schedule, buyer, &seats[..2]).await;
    first.assert_created();
    let second = app.hold(&token, schedule, buyer, &seats[2..3]).await;
    second.assert_created();
    let next = app.create_user().await;
    let waiting = app.issue(next, schedule).await;
    assert_eq!(waiting.str("status"), "WAITING");
    let waiting = waiting.str("token");

    let left = app.leave(&token).await;
    left.assert_ok();
    assert_eq!(left.u64("cancelledReservations"), 2);
    // The slot is the next user's within a tick, and the seats are theirs to hold.
    eventually(Duration::from_secs(5), "the next user admitted", || async {
        (app.me(&waiting).await.str("status") == "ACTIVE").then_some(())
    })
    .await;
    app.hold(&waiting, schedule, next, &seats[..3])
        .await
        .assert_created();
    let state = app.queue_state(schedule).await;
    assert_eq!((state.u64("active"), state.u64("heldSeats")), (1, 3));
    // The buyer, queued again, finds both holds cancelled.
    let back = app.issue(buyer, schedule).await.str("token");
    for held in [&first, &second] {
        let id = held.u64("reservationId");
        let rsp = app
            .get(
                &format!("/api/v1/reservations/{id}"),
                &[("queue-token", &back)],
            )
            .await;
        assert_eq!(rsp.str("status"), "CANCELLED");
    }
    flushed_status(&app, &token, "LEFT").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_waits_for_a_payment_in_flight() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(3).await;
    let (user, token) = app.active_user(schedule).await;
    let held = app.hold(&token, schedule, user, &seats[..1]).await;
    held.assert_created();
    app.begin_payment(&token, user, held.u64("reservationId"), None)
        .await;
    app.leave(&token)
        .await
        .assert_error(409, "PAYMENT_IN_PROGRESS");
    assert_eq!(
        app.me(&token).await.str("status"),
        "ACTIVE",
        "nothing changed"
    );
}
