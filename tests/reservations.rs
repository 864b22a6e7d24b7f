//! Seat holds on the real server: the hold itself, every
//! error code, and the races with real parallel requests.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{TestApp, bearer, eventually, spawn_all};
use redis::AsyncCommands;
use seatrush::redis::keys::ScheduleKeys;
use simd_json::prelude::*;

fn detail_seats(rsp: &common::Rsp) -> Vec<u64> {
    rsp.body["error"]["details"]["seatIds"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", rsp.body))
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_takes_every_seat_it_names() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(5).await;
    let (user, token) = app.active_user(schedule).await;
    let rsp = app
        .hold(&token, schedule, user, &[seats[3], seats[1]])
        .await;
    rsp.assert_created();
    assert_eq!(rsp.str("status"), "RESERVED");
    assert_eq!((rsp.u64("userId"), rsp.u64("scheduleId")), (user, schedule));
    assert_eq!(rsp.u64("totalAmount"), 100_000);
    assert_eq!(rsp.seat_ids(), vec![seats[3], seats[1]]);
    assert_eq!(rsp.data()["seats"][0]["seatNumber"].as_u64(), Some(4));
    assert_eq!(rsp.data()["seats"][0]["price"].as_u64(), Some(50_000));
    let number = rsp.str("reservationNumber");
    assert!(number.starts_with('R') && number.contains('-'), "{number}");
    let reserved = chrono::DateTime::parse_from_rfc3339(&rsp.str("reservedAt")).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(&rsp.str("expiresAt")).unwrap();
    assert_eq!((expires - reserved).num_seconds(), 300, "holdTtlSeconds");
    assert!(rsp.u64("reservationId") > 0);

    let state = app.queue_state(schedule).await;
    assert_eq!(state.u64("heldSeats"), 2);
    let free: HashSet<u64> = app.available_seats(schedule).await;
    assert_eq!(free, HashSet::from([seats[0], seats[2], seats[4]]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_errors() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(6).await;
    let (other_schedule, other_seats) = app.open_schedule(2).await;
    let (user, token) = app.active_user(schedule).await;
    let (someone, someones_token) = app.active_user(schedule).await;

    let path = "/api/v1/reservations";
    app.post(path, &[], r#"{"scheduleId":1,"seatIds":[1],"userId":1}"#)
        .await
        .assert_error(401, "QUEUE_TOKEN_MISSING");
    for (body, field) in [
        (
            format!(r#"{{"seatIds":[{}],"userId":{user}}}"#, seats[0]),
            "scheduleId",
        ),
        (
            format!(r#"{{"scheduleId":{schedule},"seatIds":[],"userId":{user}}}"#),
            "seatIds",
        ),
        (
            format!(
                r#"{{"scheduleId":{schedule},"seatIds":[{0},{0}],"userId":{user}}}"#,
                seats[0]
            ),
            "seatIds[1]",
        ),
        (
            format!(
                r#"{{"scheduleId":{schedule},"seatIds":["{}"],"userId":{user}}}"#,
                seats[0]
            ),
            "seatIds[0]",
        ),
        (
            format!(
                r#"{{"scheduleId":{schedule},"seatIds":[{}],"userId":-1}}"#,
                seats[0]
            ),
            "userId",
        ),
        ("[]".to_string(), "body"),
    ] {
        let rsp = app.post(path, &[("queue-token", &token)], &body).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field, "{body}");
    }

    let unknown = uuid::Uuid::new_v4().to_string();
    app.hold(&unknown, schedule, user, &seats[..1])
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    app.hold(&token, other_schedule, user, &other_seats[..1])
        .await
        .assert_error(401, "QUEUE_TOKEN_WRONG_SCHEDULE");
    app.hold(&someones_token, schedule, user, &seats[..1])
        .await
        .assert_error(403, "FORBIDDEN");
    app.hold(&token, 999_999_999, user, &seats[..1])
        .await
        .assert_error(404, "SCHEDULE_NOT_FOUND");

    let rsp = app
        .hold(&token, schedule, user, &[seats[0], other_seats[0]])
        .await;
    rsp.assert_error(404, "SEAT_NOT_FOUND");
    assert_eq!(detail_seats(&rsp), vec![other_seats[0]]);

    assert_eq!(
        app.hold(&someones_token, schedule, someone, &seats[..2])
            .await
            .status
            .as_u16(),
        201
    );
    let rsp = app
        .hold(&token, schedule, user, &[seats[1], seats[2]])
        .await;
    rsp.assert_error(409, "SEAT_ALREADY_RESERVED");
    assert_eq!(detail_seats(&rsp), vec![seats[1]]);

    app.hold(&token, schedule, user, &seats[1..6])
        .await
        .assert_error(422, "SEAT_LIMIT_EXCEEDED");

    // A WAITING token may not hold.
    app.set_queue(schedule, r#"{"paused": true}"#).await;
    let waiter = app.create_user().await;
    let waiting = app.issue(waiter, schedule).await;
    app.hold(&waiting.str("token"), schedule, waiter, &seats[5..])
        .await
        .assert_error(401, "QUEUE_TOKEN_NOT_ACTIVE");

    // Outside the booking window (moved in Redis, where the scripts read it).
    let cfg = ScheduleKeys::new(schedule).cfg;
    let mut redis = app.redis();
    let now = chrono::Utc::now().timestamp_millis();
    let _: () = redis
        .hset(&cfg, "bookingOpenAt", now + 60_000)
        .await
        .unwrap();
    app.hold(&token, schedule, user, &seats[5..])
        .await
        .assert_error(422, "BOOKING_NOT_OPEN");
    let _: () = redis
        .hset(&cfg, "bookingOpenAt", now - 60_000)
        .await
        .unwrap();
    let _: () = redis
        .hset(&cfg, "bookingCloseAt", now - 1_000)
        .await
        .unwrap();
    app.hold(&token, schedule, user, &seats[5..])
        .await
        .assert_error(422, "BOOKING_CLOSED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_users_racing_for_one_seat_leave_one_winner() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(3).await;
    let racers = spawn_all((0..200).map(|_| {
        let app = app.clone();
        async move { app.active_user(schedule).await }
    }))
    .await;
    let seat = seats[1];
    let results = spawn_all(racers.into_iter().map(|(user, token)| {
        let app = app.clone();
        async move { app.hold(&token, schedule, user, &[seat]).await }
    }))
    .await;
    let won = results.iter().filter(|r| r.status.as_u16() == 201).count();
    let lost = results
        .iter()
        .filter(|r| r.code() == "SEAT_ALREADY_RESERVED")
        .count();
    assert_eq!((won, lost), (1, 199));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_pairs_never_share_a_seat() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(10).await;
    let holders = spawn_all((0..100).map(|_| {
        let app = app.clone();
        async move { app.active_user(schedule).await }
    }))
    .await;
    let results = spawn_all(holders.into_iter().enumerate().map(|(i, (user, token))| {
        let app = app.clone();
        let pair = [seats[i % 10], seats[(i + 1) % 10]];
        async move { app.hold(&token, schedule, user, &pair).await }
    }))
    .await;
    let mut held = Vec::new();
    for rsp in &results {
        match rsp.status.as_u16() {
            201 => held.extend(rsp.seat_ids()),
            409 => assert_eq!(rsp.code(), "SEAT_ALREADY_RESERVED"),
            other => panic!("{other}: {:?}", rsp.body),
        }
    }
    let distinct: HashSet<u64> = held.iter().copied().collect();
    assert_eq!(
        distinct.len(),
        held.len(),
        "a seat is in two holds: {held:?}"
    );
    assert!(!held.is_empty());
    let free: HashSet<u64> = app.available_seats(schedule).await;
    assert!(free.is_disjoint(&distinct));
    assert_eq!(
        free.len() + distinct.len(),
        10,
        "every seat is free or held"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hold_leaves_its_free_seats_free() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(4).await;
    let (a, a_token) = app.active_user(schedule).await;
    let (b, b_token) = app.active_user(schedule).await;
    assert_eq!(
        app.hold(&a_token, schedule, a, &[seats[1]])
            .await
            .status
            .as_u16(),
        201
    );
    let rsp = app.hold(&b_token, schedule, b, &[seats[0], seats[1]]).await;
    rsp.assert_error(409, "SEAT_ALREADY_RESERVED");
    let free: bool = app.is_available(schedule, seats[0]).await;
    assert!(free, "the free seat of a refused hold stays available");
    assert_eq!(
        app.hold(&b_token, schedule, b, &[seats[0]])
            .await
            .status
            .as_u16(),
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_holds_of_one_user_stay_within_the_seat_limit() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(30).await;
    let (user, token) = app.active_user(schedule).await;
    let results = spawn_all(seats.iter().take(20).map(|&seat| {
        let app = app.clone();
        let token = token.clone();
        async move { app.hold(&token, schedule, user, &[seat]).await }
    }))
    .await;
    let held = results.iter().filter(|r| r.status.as_u16() == 201).count();
    let refused = results
        .iter()
        .filter(|r| r.code() == "SEAT_LIMIT_EXCEEDED")
        .count();
    assert_eq!((held, refused), (4, 16), "maxSeatsPerUser is 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_and_seat_states_in_mysql_equal_redis_after_the_drain() {
    use mysql_async::prelude::Queryable;
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(8).await;
    let holders = spawn_all((0..6).map(|_| {
        let app = app.clone();
        async move { app.active_user(schedule).await }
    }))
    .await;
    let mut ids = Vec::new();
    for (i, (user, token)) in holders.iter().enumerate() {
        let rsp = app.hold(token, schedule, *user, &[seats[i]]).await;
        rsp.assert_created();
        ids.push(rsp.u64("reservationId"));
    }
    // One hold is cancelled, so MySQL must also show a CANCELLED reservation and its seat
    // AVAILABLE again.
    let auth = [("queue-token", holders[0].1.as_str())];
    let cancelled = app
        .request(
            hyper::Method::DELETE,
            &reservation_path(ids[0]),
            &auth,
            None,
        )
        .await;
    cancelled.assert_ok();
    let keys = ScheduleKeys::new(schedule);
    let redis = app.redis();
    eventually(Duration::from_secs(10), "the outbox to drain", || {
        let mut redis = redis.clone();
        let outbox = keys.outbox.clone();
        async move { (redis.xlen::<_, u64>(&outbox).await.unwrap() == 0).then_some(()) }
    })
    .await;
    let in_redis: std::collections::HashMap<String, String> =
        redis.clone().hgetall(&keys.res).await.unwrap();
    let mut conn = app.app.db.primary.get_conn().await.unwrap();
    let rows: Vec<(u64, u64, String, u64)> = conn
        .exec(
            "SELECT id, user_id, status, total_amount FROM reservations WHERE schedule_id = ?",
            (schedule,),
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), in_redis.len());
    assert_eq!(rows.len(), 6);
    assert!(rows.iter().any(|r| r.0 == ids[0] && r.2 == "CANCELLED"));
    for (id, user, status, total) in rows {
        let record: Vec<String> = in_redis[&id.to_string()]
            .split('|')
            .map(String::from)
            .collect();
        assert_eq!(
            (user.to_string(), status, total.to_string()),
            (record[0].clone(), record[1].clone(), record[2].clone())
        );
    }
    let free: HashSet<u64> = redis.clone().zrange(&keys.avail, 0, -1).await.unwrap();
    let states: Vec<(u64, String)> = conn
        .exec(
            "SELECT id, status FROM seats WHERE schedule_id = ?",
            (schedule,),
        )
        .await
        .unwrap();
    for (seat, status) in states {
        let expected = if free.contains(&seat) {
            "AVAILABLE"
        } else {
            "HELD"
        };
        assert_eq!(status, expected, "seat {seat}");
    }
}

fn reservation_path(id: u64) -> String {
    format!("/api/v1/reservations/{id}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_reads_and_cancels_a_hold() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(3).await;
    let (user, token) = app.active_user(schedule).await;
    let held = app.hold(&token, schedule, user, &[seats[2]]).await;
    let id = held.u64("reservationId");
    let auth = [("queue-token", token.as_str())];

    let read = app.get(&reservation_path(id), &auth).await;
    read.assert_ok();
    assert_eq!(read.str("status"), "RESERVED");
    assert_eq!(read.str("reservationNumber"), held.str("reservationNumber"));
    assert_eq!(read.data()["seats"][0]["seatNumber"].as_u64(), Some(3));
    assert_eq!(read.str("expiresAt"), held.str("expiresAt"));

    let cancelled = app
        .request(hyper::Method::DELETE, &reservation_path(id), &auth, None)
        .await;
    cancelled.assert_ok();
    assert_eq!(cancelled.str("status"), "CANCELLED");
    assert_eq!(
        app.get(&reservation_path(id), &auth).await.str("status"),
        "CANCELLED"
    );
    let free: bool = app.is_available(schedule, seats[2]).await;
    assert!(free, "a cancelled hold's seats are available again");
    assert_eq!(app.queue_state(schedule).await.u64("heldSeats"), 0);
    app.request(hyper::Method::DELETE, &reservation_path(id), &auth, None)
        .await
        .assert_error(422, "RESERVATION_NOT_CANCELLABLE");
    // The seats count towards the limit no more: four new ones fit.
    let more = app.hold(&token, schedule, user, &seats).await;
    more.assert_created();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reading_and_cancelling_errors() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(3).await;
    let (user, token) = app.active_user(schedule).await;
    let (_, stranger) = app.active_user(schedule).await;
    let id = app
        .hold(&token, schedule, user, &[seats[0]])
        .await
        .u64("reservationId");
    // The owner asks, with no token, a bad one, a stranger's, then their own.
    let me = bearer(user);
    for method in [hyper::Method::GET, hyper::Method::DELETE] {
        let call = |path: String, token: Option<&str>| {
            let app = app.clone();
            let method = method.clone();
            let token = token.map(str::to_string);
            let me = me.clone();
            async move {
                let mut headers = vec![("authorization", me.as_str())];
                headers.extend(token.as_deref().map(|t| ("queue-token", t)));
                app.request(method, &path, &headers, None).await
            }
        };
        call(reservation_path(id), None)
            .await
            .assert_error(401, "QUEUE_TOKEN_MISSING");
        call(reservation_path(id), Some("nonsense"))
            .await
            .assert_error(401, "QUEUE_TOKEN_INVALID");
        call(reservation_path(id), Some(&stranger))
            .await
            .assert_error(403, "FORBIDDEN");
        call(reservation_path(schedule << 32 | 999_999), Some(&token))
            .await
            .assert_error(404, "RESERVATION_NOT_FOUND");
        call(reservation_path(999_999), Some(&token))
            .await
            .assert_error(404, "RESERVATION_NOT_FOUND");
        let rsp = call("/api/v1/reservations/abc".into(), Some(&token)).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), "reservationId");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn holds_expire_on_their_own_within_a_second() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(3).await;
    app.set_queue(schedule, r#"{"holdTtlSeconds": 1}"#).await;
    let (user, token) = app.active_user(schedule).await;
    let held = app.hold(&token, schedule, user, &seats[..2]).await;
    let id = held.u64("reservationId");
    let expires = chrono::DateTime::parse_from_rfc3339(&held.str("expiresAt")).unwrap();
    let auth = [("queue-token", token.as_str())];
    let ended = eventually(Duration::from_secs(5), "the hold to expire", || async {
        (app.get(&reservation_path(id), &auth).await.str("status") == "EXPIRED")
            .then(chrono::Utc::now)
    })
    .await;
    let late = (ended - expires.with_timezone(&chrono::Utc)).num_milliseconds();
    assert!(late < 1000, "expired {late} ms after expiresAt");
    let free: HashSet<u64> = app.available_seats(schedule).await;
    assert_eq!(free.len(), 3);
    assert_eq!(app.queue_state(schedule).await.u64("heldSeats"), 0);
    app.request(hyper::Method::DELETE, &reservation_path(id), &auth, None)
        .await
        .assert_error(422, "RESERVATION_NOT_CANCELLABLE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiry_racing_cancels_ends_each_hold_exactly_once() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(30).await;
    app.set_queue(schedule, r#"{"holdTtlSeconds": 1}"#).await;
    let holders = spawn_all((0..30).map(|_| {
        let app = app.clone();
        async move { app.active_user(schedule).await }
    }))
    .await;
    let mut holds = Vec::new();
    for (i, (user, token)) in holders.into_iter().enumerate() {
        let rsp = app.hold(&token, schedule, user, &[seats[i]]).await;
        holds.push((rsp.u64("reservationId"), token));
    }
    // Cancels spread across the moment the holds expire.
    let outcomes = spawn_all(holds.into_iter().enumerate().map(|(i, (id, token))| {
        let app = app.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(700 + 20 * i as u64)).await;
            let auth = [("queue-token", token.as_str())];
            let cancel = app
                .request(hyper::Method::DELETE, &reservation_path(id), &auth, None)
                .await;
            (id, token, cancel.status.as_u16(), cancel.code().to_string())
        }
    }))
    .await;
    let mut cancelled = 0;
    for (id, token, status, code) in &outcomes {
        let auth = [("queue-token", token.as_str())];
        let final_status = eventually(Duration::from_secs(5), "the hold to end", || async {
            let s = app.get(&reservation_path(*id), &auth).await.str("status");
            (s != "RESERVED").then_some(s)
        })
        .await;
        match status {
            200 => {
                assert_eq!(final_status, "CANCELLED");
                cancelled += 1;
            }
            422 => {
                assert_eq!(code, "RESERVATION_NOT_CANCELLABLE");
                assert_eq!(final_status, "EXPIRED");
            }
            other => panic!("cancel answered {other} {code}"),
        }
    }
    let free: HashSet<u64> = app.available_seats(schedule).await;
    assert_eq!(free.len(), 30, "every seat came back exactly once");
    assert_eq!(app.queue_state(schedule).await.u64("heldSeats"), 0);
    println!("{cancelled} cancelled, {} expired first", 30 - cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_being_paid_is_not_expired_under_the_payment() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(2).await;
    app.set_queue(schedule, r#"{"holdTtlSeconds": 1}"#).await;
    let (user, token) = app.active_user(schedule).await;
    let paying = app
        .hold(&token, schedule, user, &[seats[0]])
        .await
        .u64("reservationId");
    let lapsing = app
        .hold(&token, schedule, user, &[seats[1]])
        .await
        .u64("reservationId");
    // The payment saga marks its reservation PAYING while it runs.
    let keys = ScheduleKeys::new(schedule);
    let mut redis = app.redis();
    let record: String = redis.hget(&keys.res, paying).await.unwrap();
    let _: () = redis
        .hset(
            &keys.res,
            paying,
            record.replacen("|RESERVED|", "|PAYING|", 1),
        )
        .await
        .unwrap();
    let auth = [("queue-token", token.as_str())];
    eventually(
        Duration::from_secs(5),
        "the unpaid hold to expire",
        || async {
            (app.get(&reservation_path(lapsing), &auth)
                .await
                .str("status")
                == "EXPIRED")
                .then_some(())
        },
    )
    .await;
    let record: String = redis.hget(&keys.res, paying).await.unwrap();
    assert!(record.contains("|PAYING|"), "{record}");
    assert_eq!(
        app.get(&reservation_path(paying), &auth)
            .await
            .str("status"),
        "RESERVED"
    );
    let free = app.is_available(keys.schedule_id, seats[0]).await;
    assert!(!free, "the seat under payment stays held");
    app.request(
        hyper::Method::DELETE,
        &reservation_path(paying),
        &auth,
        None,
    )
    .await
    .assert_error(409, "PAYMENT_IN_PROGRESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_twenty_times_at_once_holds_once() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(5).await;
    let (user, token) = app.active_user(schedule).await;
    let body = format!(
        r#"{{"scheduleId":{schedule},"seatIds":[{},{}],"userId":{user}}}"#,
        seats[0], seats[1]
    );
    let responses = spawn_all((0..20).map(|_| {
        let app = app.clone();
        let (token, body) = (token.clone(), body.clone());
        async move {
            app.post(
                "/api/v1/reservations",
                &[
                    ("queue-token", &token),
                    ("idempotency-key", "seats-for-two"),
                ],
                &body,
            )
            .await
        }
    }))
    .await;
    let first = &responses[0];
    for rsp in &responses {
        rsp.assert_created();
        assert_eq!(
            rsp.u64("reservationId"),
            first.u64("reservationId"),
            "one hold, replayed"
        );
        assert_eq!(rsp.str("expiresAt"), first.str("expiresAt"));
        assert_eq!(rsp.seat_ids(), vec![seats[0], seats[1]]);
    }
    assert_eq!(app.queue_state(schedule).await.u64("heldSeats"), 2);

    let other = format!(
        r#"{{"scheduleId":{schedule},"seatIds":[{}],"userId":{user}}}"#,
        seats[2]
    );
    app.post(
        "/api/v1/reservations",
        &[
            ("queue-token", &token),
            ("idempotency-key", "seats-for-two"),
        ],
        &other,
    )
    .await
    .assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    // A refusal is kept too: the same taken seats under a new key stay refused on repeat.
    for _ in 0..2 {
        let rsp = app
            .post(
                "/api/v1/reservations",
                &[("queue-token", &token), ("idempotency-key", "again")],
                &body,
            )
            .await;
        rsp.assert_error(409, "SEAT_ALREADY_RESERVED");
        assert_eq!(detail_seats(&rsp), vec![seats[0], seats[1]]);
    }
}
