//! Per-user request rates: past `userRequestsPerSecond` a user's requests are
//! `429 RATE_LIMITED` with `Retry-After`, on every instance at once, without touching other
//! users, the token's status, or outcomes kept under an Idempotency-Key.

mod common;

use std::time::{Duration, Instant};

use common::{Rsp, TestApp, eventually, spawn_all};
use redis::AsyncCommands;

async fn balance(app: &TestApp, user: u64, token: &str) -> Rsp {
    app.get(
        &format!("/api/v1/users/{user}/balance"),
        &[("queue-token", token)],
    )
    .await
}

async fn charge(app: &TestApp, user: u64, token: &str, key: Option<&str>) -> Rsp {
    let mut headers = vec![("queue-token", token)];
    if let Some(key) = key {
        headers.push(("idempotency-key", key));
    }
    app.post(
        &format!("/api/v1/users/{user}/balance/charge"),
        &headers,
        r#"{"amount": 1000}"#,
    )
    .await
}

fn assert_rate_limited(rsp: &Rsp) {
    rsp.assert_error(429, "RATE_LIMITED");
    assert_eq!(
        rsp.headers.get("retry-after").map(|v| v.to_str().unwrap()),
        Some("1"),
        "a 429 says when to come back"
    );
}

/// A schedule open now, admitting everyone at once: (concertId, scheduleId, seat ids).
async fn open_schedule(app: &TestApp) -> (u64, u64, Vec<u64>) {
    let (concert, schedule) = app.create_schedule(common::OPEN_NOW, 10).await;
    app.set_queue(
        schedule,
        r#"{"admissionPerSecond": 100000, "maxActiveUsers": 100000}"#,
    )
    .await
    .assert_ok();
    (concert, schedule, app.seats_of(schedule).await)
}

/// From now on the schedule's users may make `per_second` requests per second.
async fn limit(app: &TestApp, schedule: u64, per_second: u64) {
    app.set_queue(
        schedule,
        &format!(r#"{{"userRequestsPerSecond": {per_second}}}"#),
    )
    .await
    .assert_ok();
}

/// A new user's ACTIVE token on a schedule whose users may then make `per_second` requests
/// per second (the issuance itself counted at the default rate): (scheduleId, user, token).
async fn limited_user(app: &TestApp, per_second: u64) -> (u64, u64, String) {
    let (_, schedule, _) = open_schedule(app).await;
    let (user, token) = app.active_user(schedule).await;
    limit(app, schedule, per_second).await;
    (schedule, user, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_per_second_is_shared_by_every_instance() {
    let (a, b) = (TestApp::spawn().await, TestApp::spawn().await);
    let (schedule, user, token) = limited_user(&a, 1).await;

    // (The issuance's count at the default rate is spent within 20 ms.)
    eventually(Duration::from_secs(3), "a first read", || async {
        (balance(&a, user, &token).await.status == 200).then_some(())
    })
    .await;
    assert_rate_limited(&balance(&b, user, &token).await);
    assert_rate_limited(&charge(&a, user, &token, None).await);

    // The token's own status is not counted: clients poll it as told.
    for app in [&a, &b] {
        app.me(&token).await.assert_ok();
    }
    // Another user of the same schedule is not held back (their issuance was their one
    // request of this second).
    let (other, other_token) = b.active_user(schedule).await;
    assert_rate_limited(&balance(&a, other, &other_token).await);
    assert_rate_limited(&balance(&a, user, &token).await);

    // Within about a second the user may ask again.
    eventually(
        Duration::from_secs(3),
        "the rate frees a request",
        || async { (balance(&b, user, &token).await.status == 200).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parallel_burst_gets_its_rate_and_no_more() {
    let (a, b) = (TestApp::spawn().await, TestApp::spawn().await);
    let per_second = 10;
    let (_, user, token) = limited_user(&a, per_second).await;
    // The issuance was counted at the default rate (50/s): its 20 ms pass before the burst,
    // which then has the whole of `per_second`.
    tokio::time::sleep(Duration::from_millis(20)).await;

    let started = Instant::now();
    let answers = spawn_all((0..60).map(|i| {
        let app = if i % 2 == 0 { a.clone() } else { b.clone() };
        let token = token.clone();
        async move { balance(&app, user, &token).await }
    }))
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|r| r.status == 200).count() as u64;
    for limited in answers.iter().filter(|r| r.status != 200) {
        assert_rate_limited(limited);
    }
    // GCRA: a burst of `per_second` at once, then one more every 1/per_second s.
    let most = per_second + (per_second as f64 * elapsed).ceil() as u64;
    println!("60 parallel reads at {per_second}/s over {elapsed:.3} s: {ok} answered");
    assert!(ok >= per_second.min(60), "{ok} answered");
    assert!(ok <= most, "{ok} answered, at most {most} allowed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_for_rate_are_not_kept_and_kept_outcomes_replay_past_the_limit() {
    let app = TestApp::spawn().await;
    let (_, user, token) = limited_user(&app, 1).await;

    eventually(Duration::from_secs(3), "a first charge", || async {
        (charge(&app, user, &token, None).await.status == 200).then_some(())
    })
    .await;
    assert_rate_limited(&charge(&app, user, &token, Some("rate-key")).await);
    // The 429 was not kept: the same key is tried afresh once the rate allows.
    let first = eventually(
        Duration::from_secs(3),
        "the keyed charge goes through",
        || {
            let (app, token) = (app.clone(), token.clone());
            async move {
                let rsp = charge(&app, user, &token, Some("rate-key")).await;
                (rsp.status == 200).then_some(rsp)
            }
        },
    )
    .await;
    // Its kept outcome is replayed at once, although the rate is spent again.
    let again = charge(&app, user, &token, Some("rate-key")).await;
    again.assert_ok();
    assert_eq!(again.u64("transactionId"), first.u64("transactionId"));
    assert_rate_limited(&charge(&app, user, &token, None).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issuance_holds_seats_and_payments_count_against_the_rate() {
    let app = TestApp::spawn().await;
    let (concert, schedule, seats) = open_schedule(&app).await;
    limit(&app, schedule, 1).await;
    let user = app.create_user().await;
    let issued = app.issue(user, schedule).await;
    issued.assert_ok();
    let token = issued.str("token");
    // Counted before the operation: a repeat is 429, not 409 TOKEN_ALREADY_ISSUED.
    assert_rate_limited(&app.issue(user, schedule).await);
    assert_rate_limited(&app.hold(&token, schedule, user, &seats[..1]).await);
    let rsp = app
        .get(
            &format!("/api/v1/concerts/{concert}/schedules/{schedule}/seats"),
            &[("queue-token", &token)],
        )
        .await;
    assert_rate_limited(&rsp);
    let rsp = app
        .post(
            "/api/v1/payments",
            &[("queue-token", &token)],
            &format!(
                r#"{{"reservationId": {}, "paymentMethod": "BALANCE", "userId": {user}}}"#,
                schedule << 32 | 1
            ),
        )
        .await;
    assert_rate_limited(&rsp);
    let counted = app
        .app
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("seatrush_rate_limited_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(counted >= 4.0, "{counted}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_schedule_keeps_no_request_rates() {
    let app = TestApp::spawn().await;
    let (schedule, user, token) = limited_user(&app, 5).await;
    for _ in 0..3 {
        balance(&app, user, &token).await;
    }
    let keys = [
        format!("{{s:{schedule}}}:rate:0"),
        format!("{{s:{schedule}}}:rate:1"),
    ];
    let mut redis = app.redis();
    let counted: u64 = redis.exists(&keys[..]).await.unwrap();
    assert!(counted >= 1, "the requests were counted in Redis");
    eventually(Duration::from_secs(5), "the rates are dropped", || {
        let (mut redis, keys) = (redis.clone(), keys.clone());
        async move {
            let left: u64 = redis.exists(&keys[..]).await.unwrap();
            (left == 0).then_some(())
        }
    })
    .await;
}

/// The caller's own reservations are read from MySQL and carry no Queue-Token: they count at
/// the default rate (50 a second) in the caller's wallet bucket, so no caller can send the
/// database more than that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_own_reservations_list_counts_at_the_default_rate_on_every_instance() {
    let (a, b) = (TestApp::spawn().await, TestApp::spawn().await);
    let users = a.create_users(2).await;
    let (flooder, other) = (users[0], users[1]);
    let list = |app: &TestApp, user: u64| {
        let app = app.clone();
        async move {
            app.get(&format!("/api/v1/users/{user}/reservations"), &[])
                .await
        }
    };

    let started = Instant::now();
    let answers =
        spawn_all((0..150).map(|i| list(if i % 2 == 0 { &a } else { &b }, flooder))).await;
    let elapsed = started.elapsed().as_secs_f64();
    let ok = answers.iter().filter(|r| r.status == 200).count() as u64;
    for limited in answers.iter().filter(|r| r.status != 200) {
        assert_rate_limited(limited);
    }
    let most = 50 + (50.0 * elapsed).ceil() as u64;
    println!("150 parallel lists over {elapsed:.3} s: {ok} answered");
    assert!(ok >= 50, "{ok} answered");
    assert!(ok <= most, "{ok} answered, at most {most} allowed");
    // Another caller is not held back.
    list(&a, other).await.assert_ok();
}
