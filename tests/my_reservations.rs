//! `GET /api/v1/users/{userId}/reservations` on the real server: a buyer's own reservations,
//! newest first, page by page, with the identity alone, also after their tokens ended.

mod common;

use std::time::Duration;

use common::{TestApp, bearer, eventually};
use mysql_async::prelude::Queryable;
use simd_json::prelude::*;

/// The caller's reservations page (`query` after `?`), as the user themselves.
async fn mine(app: &TestApp, user: u64, query: &str) -> common::Rsp {
    app.get(
        &format!("/api/v1/users/{user}/reservations?{query}"),
        &[("authorization", &bearer(user))],
    )
    .await
}

fn ids(rsp: &common::Rsp) -> Vec<u64> {
    rsp.data()["reservations"]
        .as_array()
        .unwrap_or_else(|| panic!("{:?}", rsp.body))
        .iter()
        .map(|r| r["reservationId"].as_u64().unwrap())
        .collect()
}

/// Waits until MySQL has the user's `n` reservations (the list is read from MySQL).
async fn written_behind(app: &TestApp, user: u64, n: usize) {
    eventually(Duration::from_secs(10), "the holds in MySQL", || async {
        let mut conn = app.app.db.primary.get_conn().await.unwrap();
        let count: Option<u64> = conn
            .exec_first(
                "SELECT COUNT(*) FROM reservations WHERE user_id = ?",
                (user,),
            )
            .await
            .unwrap();
        (count == Some(n as u64)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_buyer_sees_their_reservations_newest_first_after_their_token_ended() {
    let app = TestApp::spawn().await;
    let (first, seats_a) = app.open_schedule(5).await;
    let (second, seats_b) = app.open_schedule(5).await;
    let user = app.create_user().await;
    let token_a = app.issue(user, first).await.str("token");
    let token_b = app.issue(user, second).await.str("token");
    let mut made = Vec::new();
    for (token, schedule, seat) in [
        (&token_a, first, seats_a[0]),
        (&token_b, second, seats_b[1]),
        (&token_a, first, seats_a[2]),
    ] {
        let rsp = app.hold(token, schedule, user, &[seat]).await;
        rsp.assert_created();
        made.push(rsp.u64("reservationId"));
        tokio::time::sleep(Duration::from_millis(5)).await; // distinct reservedAt
    }
    app.charge(&token_a, user, 200_000).await.assert_ok();
    // Paying the one on the second schedule retires that token; the first stays live.
    let paid = app.pay(&token_b, user, made[1]).await;
    paid.assert_created();
    app.me(&token_b)
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    written_behind(&app, user, 3).await;

    let all = mine(&app, user, "").await;
    all.assert_ok();
    assert_eq!(ids(&all), [made[2], made[1], made[0]], "newest first");
    assert!(all.data()["nextBefore"].is_null());
    let listed = &all.data()["reservations"];
    let paid_one = &listed[1];
    assert_eq!(paid_one["status"].as_str(), Some("PAID"));
    assert_eq!(paid_one["scheduleId"].as_u64(), Some(second));
    assert_eq!(paid_one["seats"][0]["seatNumber"].as_u64(), Some(2));
    assert_eq!(
        paid_one["payment"]["paymentId"].as_u64(),
        Some(paid.u64("paymentId"))
    );
    assert_eq!(paid_one["payment"]["amount"].as_u64(), Some(50_000));
    assert_eq!(listed[0]["status"].as_str(), Some("RESERVED"));
    assert!(listed[0]["payment"].is_null());

    // Two at a time: the cursor leads to the rest.
    let page = mine(&app, user, "limit=2").await;
    assert_eq!(ids(&page), [made[2], made[1]]);
    let next = page.data()["nextBefore"].as_u64().unwrap();
    assert_eq!(next, made[1]);
    let rest = mine(&app, user, &format!("limit=2&before={next}")).await;
    assert_eq!(ids(&rest), [made[0]]);
    assert!(rest.data()["nextBefore"].is_null());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_list_shows_what_redis_knows_when_mysql_is_behind() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(3).await;
    let (user, token) = app.active_user(schedule).await;
    let held = app.hold(&token, schedule, user, &seats[..1]).await;
    let id = held.u64("reservationId");
    app.request(
        hyper::Method::DELETE,
        &format!("/api/v1/reservations/{id}"),
        &[("queue-token", &token)],
        None,
    )
    .await
    .assert_ok();
    written_behind(&app, user, 1).await;
    // MySQL one step behind (as while the write-behind catches up): Redis's record wins.
    let mut conn = app.app.db.primary.get_conn().await.unwrap();
    eventually(Duration::from_secs(10), "the cancel in MySQL", || async {
        let mut conn = app.app.db.primary.get_conn().await.unwrap();
        let status: Option<String> = conn
            .exec_first("SELECT status FROM reservations WHERE id = ?", (id,))
            .await
            .unwrap();
        (status.as_deref() == Some("CANCELLED")).then_some(())
    })
    .await;
    conn.exec_drop(
        "UPDATE reservations SET status = 'RESERVED', ended_at = NULL WHERE id = ?",
        (id,),
    )
    .await
    .unwrap();
    let rsp = mine(&app, user, "").await;
    assert_eq!(
        rsp.data()["reservations"][0]["status"].as_str(),
        Some("CANCELLED")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_user_reads_their_reservations() {
    let app = TestApp::spawn().await;
    let (user, other) = (app.create_user().await, app.create_user().await);
    let path = format!("/api/v1/users/{user}/reservations");
    app.get(&path, &[("authorization", &bearer(other))])
        .await
        .assert_error(403, "FORBIDDEN");
    app.request_as_is(hyper::Method::GET, &path, &[], None)
        .await
        .unwrap()
        .assert_error(401, "AUTH_REQUIRED");
    let empty = mine(&app, user, "").await;
    empty.assert_ok();
    assert!(ids(&empty).is_empty());
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("before=x", "before"),
    ] {
        let rsp = mine(&app, user, query).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field);
    }
    // Another user's reservation as the cursor reads nothing of theirs.
    let (schedule, seats) = app.open_schedule(2).await;
    let token = app.issue(other, schedule).await.str("token");
    let theirs = app.hold(&token, schedule, other, &seats[..1]).await;
    written_behind(&app, other, 1).await;
    let rsp = mine(
        &app,
        user,
        &format!("before={}", theirs.u64("reservationId")),
    )
    .await;
    assert!(ids(&rsp).is_empty());
}
