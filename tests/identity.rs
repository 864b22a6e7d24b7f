//! Who is asking: every public endpoint needs the caller's verified identity, and nobody acts
//! for another user: not by naming them, not with their Queue-Token, not with a token of
//! another schedule, not through their Idempotency-Keys.

mod common;

use common::{TestApp, bearer};
use hyper::Method;
use seatrush::identity::Identity;
use simd_json::prelude::*;

/// The public endpoints, each with a body that would be valid.
fn public_requests(user: u64, schedule: u64) -> Vec<(Method, String, Option<String>)> {
    vec![
        (
            Method::POST,
            "/api/v1/queue/tokens".into(),
            Some(format!(r#"{{"userId":{user},"scheduleId":{schedule}}}"#)),
        ),
        (Method::GET, "/api/v1/queue/tokens/me".into(), None),
        (Method::GET, "/api/v1/concerts/1/schedules".into(), None),
        (
            Method::GET,
            "/api/v1/concerts/1/schedules/1/seats".into(),
            None,
        ),
        (
            Method::POST,
            "/api/v1/reservations".into(),
            Some(format!(
                r#"{{"scheduleId":{schedule},"seatIds":[1],"userId":{user}}}"#
            )),
        ),
        (Method::GET, "/api/v1/reservations/7".into(), None),
        (Method::DELETE, "/api/v1/reservations/7".into(), None),
        (
            Method::POST,
            format!("/api/v1/users/{user}/balance/charge"),
            Some(r#"{"amount":1000}"#.into()),
        ),
        (Method::GET, format!("/api/v1/users/{user}/balance"), None),
        (
            Method::POST,
            "/api/v1/payments".into(),
            Some(format!(
                r#"{{"reservationId":7,"paymentMethod":"BALANCE","userId":{user}}}"#
            )),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_public_endpoint_needs_a_valid_identity_first() {
    let app = TestApp::spawn().await;
    let (schedule, _) = app.open_schedule(2).await;
    let (user, token) = app.active_user(schedule).await;
    let foreign = Identity::shared_secrets(&["not-the-server-secret"])
        .unwrap()
        .sign(user, 3600)
        .unwrap();
    let valid = bearer(user);
    let mut mangled = valid.clone();
    mangled.insert(20, 'x');
    let cases: Vec<(Option<String>, &str)> = vec![
        (None, "AUTH_REQUIRED"),
        (Some("Basic dXNlcjpwYXNz".into()), "AUTH_REQUIRED"),
        (
            Some(valid.trim_start_matches("Bearer ").into()),
            "AUTH_REQUIRED",
        ),
        (Some("Bearer not-a-jwt".into()), "AUTH_INVALID"),
        (Some(format!("Bearer {foreign}")), "AUTH_INVALID"),
        (Some(mangled), "AUTH_INVALID"),
    ];
    for (method, path, body) in public_requests(user, schedule) {
        for (authorization, code) in &cases {
            let mut headers = vec![("queue-token", token.as_str())];
            if let Some(a) = authorization {
                headers.push(("authorization", a.as_str()));
            }
            let rsp = app
                .request_as_is(
                    method.clone(),
                    &path,
                    &headers,
                    body.clone().map(String::into_bytes),
                )
                .await
                .unwrap();
            rsp.assert_error(401, code);
            assert_eq!(rsp.headers["www-authenticate"], "Bearer", "{method} {path}");
        }
    }
    // Identity comes before size and syntax: a bad or oversized body without one is 401.
    let big = vec![b' '; 70 * 1024];
    for body in [b"{not json".to_vec(), big] {
        let rsp = app
            .request_as_is(Method::POST, "/api/v1/reservations", &[], Some(body))
            .await
            .unwrap();
        rsp.assert_error(401, "AUTH_REQUIRED");
    }
    // Operations and admin endpoints take none.
    assert_eq!(app.get("/health", &[]).await.status.as_u16(), 200);
    app.queue_state(schedule).await.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_identities_are_refused_after_the_leeway() {
    let app = TestApp::spawn().await;
    let user = app.create_user().await;
    let secret = &TestApp::config().auth_secrets[0];
    let sign = |exp: i64| {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &serde_json::json!({"sub": user.to_string(), "exp": exp}),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    };
    let now = chrono::Utc::now().timestamp();
    // Within the 60 s leeway an expired identity still counts; past it, it does not.
    let rsp = app
        .get(
            &format!("/api/v1/users/{user}/balance"),
            &[("authorization", &format!("Bearer {}", sign(now - 30)))],
        )
        .await;
    rsp.assert_error(401, "QUEUE_TOKEN_MISSING");
    let token = sign(now - 120);
    let rsp = app
        .get(
            &format!("/api/v1/users/{user}/balance"),
            &[("authorization", &format!("Bearer {token}"))],
        )
        .await;
    rsp.assert_error(401, "AUTH_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_issues_a_token_in_another_users_name() {
    let app = TestApp::spawn().await;
    let (schedule, _) = app.open_schedule(2).await;
    let (victim, scalper) = (app.create_user().await, app.create_user().await);
    let body = format!(r#"{{"userId":{victim},"scheduleId":{schedule}}}"#);
    let rsp = app
        .post(
            "/api/v1/queue/tokens",
            &[("authorization", &bearer(scalper))],
            &body,
        )
        .await;
    rsp.assert_error(403, "FORBIDDEN");
    // Nothing was issued in the victim's name: they queue normally.
    let rsp = app.issue(victim, schedule).await;
    rsp.assert_ok();
    assert_eq!(rsp.str("status"), "ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_queue_token_is_forbidden_everywhere() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(4).await;
    let (victim, victim_token) = app.active_user(schedule).await;
    let held = app.hold(&victim_token, schedule, victim, &[seats[0]]).await;
    held.assert_created();
    let reservation = held.u64("reservationId");
    let (attacker, _) = app.active_user(schedule).await;
    let as_attacker = bearer(attacker);
    let with_victims_token = [
        ("authorization", as_attacker.as_str()),
        ("queue-token", victim_token.as_str()),
    ];
    for (method, path) in [
        (Method::GET, "/api/v1/queue/tokens/me".to_string()),
        (Method::GET, "/api/v1/concerts/1/schedules".to_string()),
        (Method::GET, format!("/api/v1/reservations/{reservation}")),
        (
            Method::DELETE,
            format!("/api/v1/reservations/{reservation}"),
        ),
        (Method::GET, format!("/api/v1/users/{attacker}/balance")),
    ] {
        let rsp = app
            .request(method.clone(), &path, &with_victims_token, None)
            .await;
        rsp.assert_error(403, "FORBIDDEN");
    }
    // The hold is untouched and still the victim's.
    let rsp = app
        .get(
            &format!("/api/v1/reservations/{reservation}"),
            &[("queue-token", &victim_token)],
        )
        .await;
    rsp.assert_ok();
    assert_eq!(rsp.str("status"), "RESERVED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_attackers_own_token_of_another_schedule_cannot_read_or_cancel_a_victims_hold() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(4).await;
    let (elsewhere, _) = app.open_schedule(1).await;
    let (victim, victim_token) = app.active_user(schedule).await;
    let held = app.hold(&victim_token, schedule, victim, &[seats[1]]).await;
    held.assert_created();
    let reservation = held.u64("reservationId");
    let (_, attacker_token) = app.active_user(elsewhere).await;
    let path = format!("/api/v1/reservations/{reservation}");
    let own = [("queue-token", attacker_token.as_str())];
    app.get(&path, &own).await.assert_error(403, "FORBIDDEN");
    app.request(Method::DELETE, &path, &own, None)
        .await
        .assert_error(403, "FORBIDDEN");
    // Nor the victim's balance, with a valid identity and a live token of their own.
    app.get(&format!("/api/v1/users/{victim}/balance"), &own)
        .await
        .assert_error(403, "FORBIDDEN");
    let charge = app
        .post(
            &format!("/api/v1/users/{victim}/balance/charge"),
            &own,
            r#"{"amount":1000}"#,
        )
        .await;
    charge.assert_error(403, "FORBIDDEN");
    let rsp = app.get(&path, &[("queue-token", &victim_token)]).await;
    rsp.assert_ok();
    assert_eq!(rsp.str("status"), "RESERVED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_can_poison_or_read_another_callers_idempotency_key() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(4).await;
    let (victim, victim_token) = app.active_user(schedule).await;
    let (attacker, attacker_token) = app.active_user(schedule).await;
    let key = "order-1";
    let hold_body = |user: u64| {
        format!(
            r#"{{"scheduleId":{schedule},"seatIds":[{}],"userId":{user}}}"#,
            seats[0]
        )
    };

    // Poisoning: the attacker sends the victim's request under the victim's key.
    let rsp = app
        .post(
            "/api/v1/reservations",
            &[
                ("authorization", &bearer(attacker)),
                ("queue-token", &attacker_token),
                ("idempotency-key", key),
            ],
            &hold_body(victim),
        )
        .await;
    rsp.assert_error(403, "FORBIDDEN");
    // The victim's request with that key is evaluated afresh, not answered 403.
    let held = app
        .post(
            "/api/v1/reservations",
            &[("queue-token", &victim_token), ("idempotency-key", key)],
            &hold_body(victim),
        )
        .await;
    held.assert_created();

    // Stealing: the same key from the attacker is the attacker's own key: no replay of the
    // victim's hold (their request for the same seat is refused on its own merits).
    let rsp = app
        .post(
            "/api/v1/reservations",
            &[("queue-token", &attacker_token), ("idempotency-key", key)],
            &hold_body(attacker),
        )
        .await;
    rsp.assert_error(409, "SEAT_ALREADY_RESERVED");
    assert_ne!(
        rsp.data().get("reservationId").and_then(|v| v.as_u64()),
        Some(held.u64("reservationId"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_of_the_token_are_not_kept_under_an_idempotency_key() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(common::OPEN_NOW, 3).await;
    app.set_queue(schedule, r#"{"paused": true}"#).await;
    let seats = app.seats_of(schedule).await;
    let user = app.create_user().await;
    let issued = app.issue(user, schedule).await;
    issued.assert_ok();
    assert_eq!(issued.str("status"), "WAITING");
    let token = issued.str("token");
    let headers = [("queue-token", token.as_str()), ("idempotency-key", "k-1")];
    let body = format!(
        r#"{{"scheduleId":{schedule},"seatIds":[{}],"userId":{user}}}"#,
        seats[0]
    );
    app.post("/api/v1/reservations", &headers, &body)
        .await
        .assert_error(401, "QUEUE_TOKEN_NOT_ACTIVE");
    app.set_queue(schedule, r#"{"paused": false, "admissionPerSecond": 1000}"#)
        .await;
    common::eventually(std::time::Duration::from_secs(5), "admission", || async {
        (app.me(&token).await.str("status") == "ACTIVE").then_some(())
    })
    .await;
    // Same key, same request: now held, not the stored 401.
    app.post("/api/v1/reservations", &headers, &body)
        .await
        .assert_created();
}

/// The value of a counter without labels in the app's Prometheus text, or 0.
fn counter(app: &TestApp, name: &str) -> u64 {
    app.app
        .metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_queue_tokens_are_refused_at_the_edge() {
    let app = TestApp::spawn().await;
    let (schedule, _) = app.open_schedule(2).await;
    let (user, token) = app.active_user(schedule).await;
    let (other, _) = app.active_user(schedule).await;
    // The token names its schedule, sequence and user, then the MAC.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 4, "{token}");
    assert_eq!(parts[0], schedule.to_string());
    assert_eq!(parts[2], user.to_string());
    let mac = parts[3];
    let forged = [
        // The victim's token rewritten to name the attacker (who sends it as themself).
        (format!("{}.{}.{other}.{mac}", parts[0], parts[1]), other),
        // Another sequence of the same schedule, the MAC kept.
        (
            format!(
                "{}.{}.{user}.{mac}",
                parts[0],
                parts[1].parse::<u64>().unwrap() + 1
            ),
            user,
        ),
        // A MAC made up.
        (
            format!("{}.{}.{user}.{}", parts[0], parts[1], "A".repeat(22)),
            user,
        ),
        // A v1 token.
        (uuid::Uuid::new_v4().to_string(), user),
    ];
    let before = counter(&app, "seatrush_queue_tokens_forged_total");
    for (text, caller) in &forged {
        let rsp = app
            .get(
                "/api/v1/queue/tokens/me",
                &[("authorization", &bearer(*caller)), ("queue-token", text)],
            )
            .await;
        rsp.assert_error(401, "QUEUE_TOKEN_INVALID");
    }
    let counted = counter(&app, "seatrush_queue_tokens_forged_total") - before;
    assert!(counted >= forged.len() as u64, "{counted}");
    // The real one still works.
    app.me(&token).await.assert_ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_is_routed_by_the_schedule_it_names() {
    let app = TestApp::spawn().await;
    let (a, seats_a) = app.open_schedule(2).await;
    let (b, _) = app.open_schedule(2).await;
    let (user, token_a) = app.active_user(a).await;
    // The same user queues for b too; each token reads as its own schedule's.
    let token_b = app.issue(user, b).await.str("token");
    assert_eq!(app.me(&token_a).await.u64("scheduleId"), a);
    assert_eq!(app.me(&token_b).await.u64("scheduleId"), b);
    // A's token holds nothing of b, and b's nothing of a.
    app.hold(&token_b, a, user, &seats_a[..1])
        .await
        .assert_error(401, "QUEUE_TOKEN_WRONG_SCHEDULE");
    app.hold(&token_a, a, user, &seats_a[..1])
        .await
        .assert_created();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_issuance_repeated_with_its_idempotency_key_gets_the_same_token() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(common::OPEN_NOW, 2).await;
    app.set_queue(schedule, r#"{"paused": true, "maxWaitingUsers": 1}"#)
        .await;
    let (user, other) = (app.create_user().await, app.create_user().await);
    let issue = |user: u64, key: &'static str| {
        let app = app.clone();
        async move {
            app.post(
                "/api/v1/queue/tokens",
                &[("idempotency-key", key)],
                &format!(r#"{{"userId":{user},"scheduleId":{schedule}}}"#),
            )
            .await
        }
    };
    let first = issue(user, "join-1").await;
    first.assert_ok();
    assert_eq!(first.str("status"), "WAITING");
    // The answer was lost; the client asks again with the same key: the same token.
    let again = issue(user, "join-1").await;
    again.assert_ok();
    assert_eq!(again.str("token"), first.str("token"));
    assert_eq!(again.u64("queuePosition"), 1);
    // Without the key it is a second issuance, refused.
    app.issue(user, schedule)
        .await
        .assert_error(409, "TOKEN_ALREADY_ISSUED");
    // The same key is another caller's own: the queue is full for them (429, not kept),
    // and once there is room their repeat is tried afresh.
    issue(other, "join-1").await.assert_error(429, "QUEUE_FULL");
    app.set_queue(schedule, r#"{"maxWaitingUsers": 5}"#).await;
    let theirs = issue(other, "join-1").await;
    theirs.assert_ok();
    assert_ne!(theirs.str("token"), first.str("token"));
    assert_eq!(common::opened(&theirs.str("token")).user_id, other);
}
