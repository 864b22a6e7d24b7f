//! The admin API on the real server: keys, creation, validation, and
//! queue settings with every error code.

mod common;

use std::time::Duration;

use common::{OPEN_NOW, TestApp};
use hyper::Method;
use simd_json::prelude::*;

const ROUTES: &[(&str, &str)] = &[
    ("POST", "/api/v1/admin/users"),
    ("POST", "/api/v1/admin/venues"),
    ("POST", "/api/v1/admin/concerts"),
    ("POST", "/api/v1/admin/concerts/1/schedules"),
    ("GET", "/api/v1/admin/schedules/1/queue"),
    ("PUT", "/api/v1/admin/schedules/1/queue"),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_route_refuses_a_missing_or_wrong_key() {
    let app = TestApp::spawn().await;
    for (method, path) in ROUTES {
        let method: Method = method.parse().unwrap();
        for headers in [
            vec![],
            vec![("x-admin-key", "dev-admin-kez")],
            vec![("x-admin-key", "")],
        ] {
            app.request(
                method.clone(),
                path,
                &headers,
                Some(br#"{"name":"x"}"#.to_vec()),
            )
            .await
            .assert_error(401, "ADMIN_KEY_INVALID");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_venues_and_concerts_are_created_with_ids() {
    let app = TestApp::spawn().await;
    for (path, body, id) in [
        ("/api/v1/admin/users", r#"{"name":"Kim"}"#, "userId"),
        ("/api/v1/admin/venues", r#"{"name":"Hall"}"#, "venueId"),
        ("/api/v1/admin/concerts", r#"{"title":"Show"}"#, "concertId"),
    ] {
        let first = app.admin(Method::POST, path, Some(body)).await;
        let second = app.admin(Method::POST, path, Some(body)).await;
        first.assert_created();
        assert!(second.u64(id) > first.u64(id), "{path}: ids increase");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_and_titles_are_validated() {
    let app = TestApp::spawn().await;
    for (path, body, field) in [
        ("/api/v1/admin/users", r#"{}"#, "name"),
        ("/api/v1/admin/users", r#"{"name":"   "}"#, "name"),
        ("/api/v1/admin/users", r#"{"name":7}"#, "name"),
        ("/api/v1/admin/venues", r#"{"name":null}"#, "name"),
        (
            "/api/v1/admin/concerts",
            r#"{"name":"wrong field"}"#,
            "title",
        ),
    ] {
        let rsp = app.admin(Method::POST, path, Some(body)).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field, "{path} {body}");
    }
}

fn schedule_body(venue: u64, extra: &str) -> String {
    format!(
        r#"{{"venueId":{venue},"performanceDate":"2026-12-24","performanceTime":"19:00:00",
            "bookingOpenAt":"2026-12-01T10:00:00.000Z","bookingCloseAt":"2026-12-20T10:00:00.000Z"{extra}}}"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_created_with_their_seats() {
    let app = TestApp::spawn().await;
    let (venue, concert) = (app.create_venue().await, app.create_concert().await);
    let path = format!("/api/v1/admin/concerts/{concert}/schedules");

    let rsp = app
        .admin(
            Method::POST,
            &path,
            Some(&schedule_body(venue, r#","seatCount":30,"price":88000"#)),
        )
        .await;
    rsp.assert_created();
    let seat_ids = rsp.data()["seatIds"].as_array().unwrap();
    assert_eq!(seat_ids.len(), 30);

    let listed = r#","seats":[{"seatNumber":101,"price":150000},{"seatNumber":7,"price":99000}]"#;
    let rsp = app
        .admin(Method::POST, &path, Some(&schedule_body(venue, listed)))
        .await;
    rsp.assert_created();
    assert_eq!(rsp.data()["seatIds"].as_array().unwrap().len(), 2);

    // The new schedule is live in Redis at once: its queue answers with the defaults.
    let state = app.queue_state(rsp.u64("scheduleId")).await;
    assert_eq!(state.u64("maxActiveUsers"), 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_creation_errors_name_what_is_wrong() {
    let app = TestApp::spawn().await;
    let (venue, concert) = (app.create_venue().await, app.create_concert().await);
    let path = format!("/api/v1/admin/concerts/{concert}/schedules");
    let seats = r#","seatCount":3,"price":1000"#;

    app.admin(
        Method::POST,
        "/api/v1/admin/concerts/999999999/schedules",
        Some(&schedule_body(venue, seats)),
    )
    .await
    .assert_error(404, "CONCERT_NOT_FOUND");
    for (path, body, field) in [
        (
            "/api/v1/admin/concerts/abc/schedules".to_string(),
            schedule_body(venue, seats),
            "concertId",
        ),
        (
            "/api/v1/admin/concerts/0/schedules".to_string(),
            schedule_body(venue, seats),
            "concertId",
        ),
        (path.clone(), schedule_body(999_999_999, seats), "venueId"),
        (path.clone(), schedule_body(venue, ""), "seatCount"),
        (
            path.clone(),
            schedule_body(venue, r#","seatCount":3"#),
            "price",
        ),
        (
            path.clone(),
            schedule_body(venue, r#","seatCount":3,"price":-5"#),
            "price",
        ),
        (
            path.clone(),
            schedule_body(venue, r#","seatCount":100001,"price":5"#),
            "seatCount",
        ),
        (
            path.clone(),
            schedule_body(
                venue,
                r#","seats":[{"seatNumber":1,"price":5},{"seatNumber":"2","price":5}]"#,
            ),
            "seats[1].seatNumber",
        ),
        (
            path.clone(),
            schedule_body(venue, seats).replace("2026-12-24", "24.12.2026"),
            "performanceDate",
        ),
        (
            path.clone(),
            schedule_body(venue, seats).replace("19:00:00", "7pm"),
            "performanceTime",
        ),
        (
            path.clone(),
            schedule_body(venue, seats).replace("2026-12-01T10:00:00.000Z", "2026-12-01"),
            "bookingOpenAt",
        ),
        (
            path.clone(),
            schedule_body(venue, seats).replace("2026-12-20T10", "2026-11-20T10"),
            "bookingCloseAt",
        ),
        // Outside the range MariaDB's time functions cover.
        (
            path.clone(),
            schedule_body(venue, seats).replace("2026-12-01T10", "0009-08-01T01"),
            "bookingOpenAt",
        ),
        (
            path.clone(),
            schedule_body(venue, seats).replace("2026-12-20T10", "2038-01-20T10"),
            "bookingCloseAt",
        ),
    ] {
        let rsp = app.admin(Method::POST, &path, Some(&body)).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field, "{path} {body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_settings_are_read_and_updated() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    let state = app.queue_state(schedule).await;
    state.assert_ok();
    for (name, default) in [
        ("maxActiveUsers", 1000),
        ("maxWaitingUsers", 100_000),
        ("admissionPerSecond", 200),
        ("activeTtlSeconds", 300),
        ("holdTtlSeconds", 300),
        ("maxSeatsPerUser", 4),
        ("userRequestsPerSecond", 50),
        ("waiting", 0),
        ("active", 0),
        ("admittedTotal", 0),
        ("heldSeats", 0),
        ("soldSeats", 0),
    ] {
        assert_eq!(state.u64(name), default, "{name}");
    }
    assert_eq!(state.data()["paused"].as_bool(), Some(false));

    let rsp = app
        .set_queue(
            schedule,
            r#"{"maxActiveUsers": 3, "paused": true, "holdTtlSeconds": 60}"#,
        )
        .await;
    rsp.assert_ok();
    assert_eq!(rsp.u64("maxActiveUsers"), 3);
    assert_eq!(
        rsp.u64("admissionPerSecond"),
        200,
        "untouched settings stay"
    );
    let state = app.queue_state(schedule).await;
    assert_eq!(state.u64("holdTtlSeconds"), 60);
    assert_eq!(state.data()["paused"].as_bool(), Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_settings_errors() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.queue_state(999_999_999)
        .await
        .assert_error(404, "SCHEDULE_NOT_FOUND");
    app.put_queue(999_999_999, r#"{"paused": true}"#)
        .await
        .assert_error(404, "SCHEDULE_NOT_FOUND");
    let rsp = app
        .admin(Method::GET, "/api/v1/admin/schedules/x/queue", None)
        .await;
    rsp.assert_error(400, "INVALID_REQUEST");
    assert_eq!(rsp.field(), "scheduleId");
    for (body, field) in [
        (r#"{"maxActiveUsers": 0}"#, "maxActiveUsers"),
        (r#"{"maxWaitingUsers": -1}"#, "maxWaitingUsers"),
        (r#"{"admissionPerSecond": "10"}"#, "admissionPerSecond"),
        (r#"{"activeTtlSeconds": 1.5}"#, "activeTtlSeconds"),
        (r#"{"maxSeatsPerUser": 3000000000}"#, "maxSeatsPerUser"),
        (r#"{"userRequestsPerSecond": 0}"#, "userRequestsPerSecond"),
        (r#"{"paused": 1}"#, "paused"),
        (r#"{}"#, "body"),
        ("[]", "body"),
    ] {
        let rsp = app.put_queue(schedule, body).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field, "{body}");
    }
    // Nothing was half-applied by the refused updates.
    assert_eq!(app.queue_state(schedule).await.u64("maxActiveUsers"), 1000);
}

/// Reservation ids are `scheduleId << 32 | sequence`, computed in Lua doubles: exact only
/// while schedule ids stay below 2^21. A schedule that would get a higher id is refused with
/// a code that says so, and leaves nothing behind. Runs on a database of its own, whose
/// schedule ids are moved up to the limit, and on the Redis no other test of this file uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_beyond_the_exact_id_range_is_refused_and_leaves_nothing() {
    use mysql_async::prelude::Queryable;
    let mut config = TestApp::config();
    common::own_database(&mut config, "seatrush_schedule_ids").await;
    config.redis_url = common::own_redis_url();
    // What an earlier run left there (the same schedule ids) goes first.
    let mut own = seatrush::redis::connect(&config.redis_url).await.unwrap();
    common::flush_redis(&mut own).await;
    let app = TestApp::spawn_with(config).await;
    let (venue, concert) = (app.create_venue().await, app.create_concert().await);
    let path = format!("/api/v1/admin/concerts/{concert}/schedules");
    let body = schedule_body(venue, r#","seatCount":3,"price":1000"#);
    let mut db = app.app.db.primary.get_conn().await.unwrap();
    let last = seatrush::model::MAX_SCHEDULE_ID;
    db.query_drop(format!(
        "ALTER TABLE concert_schedules AUTO_INCREMENT = {last}"
    ))
    .await
    .unwrap();

    // The last id that fits is still handed out…
    let rsp = app.admin(Method::POST, &path, Some(&body)).await;
    rsp.assert_created();
    assert_eq!(rsp.u64("scheduleId"), last);

    // …the next is refused.
    let rsp = app.admin(Method::POST, &path, Some(&body)).await;
    rsp.assert_error(507, "SCHEDULE_IDS_EXHAUSTED");
    assert!(
        rsp.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("2^21")
    );
    let (schedules, seats): (Option<u64>, Option<u64>) = (
        db.query_first(format!(
            "SELECT COUNT(*) FROM concert_schedules WHERE id > {last}"
        ))
        .await
        .unwrap(),
        db.query_first(format!(
            "SELECT COUNT(*) FROM seats WHERE schedule_id > {last}"
        ))
        .await
        .unwrap(),
    );
    assert_eq!(
        (schedules, seats),
        (Some(0), Some(0)),
        "nothing was created"
    );
    let known: bool = redis::AsyncCommands::sismember(
        &mut app.redis(),
        seatrush::redis::keys::SCHEDULES,
        last + 1,
    )
    .await
    .unwrap();
    assert!(!known, "nor registered in Redis");
}

/// A schedule's registration in Redis writes its `cfg` (settings and booking window) in one
/// command, last: cut off before it, the schedule is unknown (`404`, never a half-configured
/// `500`) until the next start-up rebuilds it from MySQL, settings and all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_cut_before_its_cfg_leaves_the_schedule_unknown_until_rebuilt() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"maxActiveUsers": 7}"#).await;
    let cfg = seatrush::redis::keys::ScheduleKeys::new(schedule).cfg;
    let fields: std::collections::HashMap<String, String> =
        redis::AsyncCommands::hgetall(&mut app.redis(), &cfg)
            .await
            .unwrap();
    for name in [
        "bookingOpenAt",
        "bookingCloseAt",
        "maxActiveUsers",
        "paused",
    ] {
        assert!(fields.contains_key(name), "{name} in {fields:?}");
    }

    // Everything but the last write: seats, registry and outbox group stay, `cfg` goes.
    let () = redis::AsyncCommands::del(&mut app.redis(), &cfg)
        .await
        .unwrap();
    app.queue_state(schedule)
        .await
        .assert_error(404, "SCHEDULE_NOT_FOUND");

    // The next instance to start rebuilds it from MySQL (or finds another one starting at
    // the same moment at it, and the schedule is back once that one is done).
    let next = TestApp::spawn().await;
    let state = common::eventually(Duration::from_secs(10), "the schedule rebuilt", || async {
        let state = next.queue_state(schedule).await;
        (state.status == 200).then_some(state)
    })
    .await;
    assert_eq!(state.u64("maxActiveUsers"), 7);
}
