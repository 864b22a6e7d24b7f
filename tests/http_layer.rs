//! The HTTP conventions (README, "API") on the real server: the envelope for every outcome, 404/405/413,
//! malformed bodies, `/health` and `/metrics`.

mod common;

use common::{TestApp, bearer};
use hyper::Method;
use simd_json::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_are_404_in_the_envelope() {
    let app = TestApp::spawn().await;
    for path in [
        "/index.html",
        "/waiting-room/1/2/3",
        "/waiting-room/app.js",
        "/api/v1/nothing",
        "/api/v1/queue/tokens/me/extra",
        "/healthz",
    ] {
        app.get(path, &[]).await.assert_error(404, "NOT_FOUND");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiting_room_page_is_served_with_its_files() {
    let app = TestApp::spawn().await;
    for path in ["/", "/waiting-room", "/waiting-room/3/17"] {
        let rsp = app.get(path, &[]).await;
        assert_eq!(rsp.status.as_u16(), 200, "{path}");
        assert_eq!(rsp.headers["content-type"], "text/html; charset=utf-8");
        assert!(
            rsp.headers["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("'self'")
        );
        assert!(String::from_utf8_lossy(&rsp.raw).contains("waiting-room.js"));
    }
    for (file, kind) in [
        ("waiting-room.js", "javascript"),
        ("waiting-room.css", "css"),
    ] {
        let rsp = app.get(&format!("/waiting-room/{file}"), &[]).await;
        assert_eq!(rsp.status.as_u16(), 200, "{file}");
        assert!(rsp.headers["content-type"].to_str().unwrap().contains(kind));
        let etag = rsp.etag();
        let again = app
            .get(
                &format!("/waiting-room/{file}"),
                &[("if-none-match", &etag)],
            )
            .await;
        assert_eq!(again.status.as_u16(), 304, "{file}");
    }
    // Ids in the page's path are checked like the API's, in the JSON envelope.
    app.get("/waiting-room/0/1", &[])
        .await
        .assert_error(400, "INVALID_REQUEST");
    let rsp = app
        .request(Method::POST, "/waiting-room/1/1", &[], Some(b"{}".to_vec()))
        .await;
    rsp.assert_error(405, "METHOD_NOT_ALLOWED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_methods_are_405_with_an_allow_header() {
    let app = TestApp::spawn().await;
    let rsp = app.get("/api/v1/queue/tokens", &[]).await;
    rsp.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(rsp.headers["allow"], "POST");
    let rsp = app
        .request(Method::DELETE, "/api/v1/admin/schedules/1/queue", &[], None)
        .await;
    rsp.assert_error(405, "METHOD_NOT_ALLOWED");
    assert_eq!(rsp.headers["allow"], "GET, PUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_64_kib_are_413() {
    let app = TestApp::spawn().await;
    let big = format!(
        r#"{{"userId":1,"scheduleId":1,"pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    app.post("/api/v1/queue/tokens", &[], &big)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    // Just under the cap is parsed (and fails later, on the unknown user).
    let fits = format!(
        r#"{{"userId":999999999,"scheduleId":1,"pad":"{}"}}"#,
        "x".repeat(60 * 1024)
    );
    app.post("/api/v1/queue/tokens", &[], &fits)
        .await
        .assert_error(404, "USER_NOT_FOUND");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_400_naming_the_body() {
    let app = TestApp::spawn().await;
    for body in [
        "",
        "{",
        "not json",
        "[1,2]",
        "42",
        r#"{"userId":1,"scheduleId":1"#,
    ] {
        let rsp = app
            .post(
                "/api/v1/queue/tokens",
                &[("authorization", &bearer(1))],
                body,
            )
            .await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), "body", "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_are_bare_json_with_component_states() {
    let app = TestApp::spawn().await;
    let rsp = app.get("/health", &[]).await;
    assert_eq!(rsp.status.as_u16(), 200);
    assert_eq!(rsp.body["status"].as_str(), Some("UP"));
    for component in ["redis", "mysqlPrimary", "mysqlReplica"] {
        assert_eq!(
            rsp.body["components"][component].as_str(),
            Some("UP"),
            "{component}"
        );
    }
    assert!(rsp.body["outboxBacklog"].as_u64().is_some());
    assert!(
        rsp.body.get("success").is_none(),
        "operations endpoints are not enveloped"
    );
    let ready = app.get("/ready", &[]).await;
    assert_eq!(ready.status.as_u16(), 200, "{:?}", ready.body);
    assert_eq!(ready.body["status"].as_str(), Some("READY"));
    assert_eq!(ready.body["reasons"].as_array().map(Vec::len), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_template_and_status() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/admin/schedules/777/queue", &[]).await;
    let (_, schedule) = app.create_schedule(common::OPEN_NOW, 1).await;
    app.active_token(schedule).await;
    // The body is Prometheus text, not JSON: fetch it raw.
    let text = raw_get(&app, "/metrics").await;
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains(r#"seatrush_http_requests_total{route="/api/v1/admin/schedules/{scheduleId}/queue",method="GET",status="401"}"#),
        "{text}"
    );
    assert!(
        text.contains("seatrush_http_request_duration_seconds_bucket"),
        "histograms have buckets"
    );
    assert!(!text.contains("/777/"), "raw paths never become labels");
    for expected in [
        "# HELP seatrush_http_requests_total HTTP requests answered",
        r#"seatrush_redis_script_duration_seconds_bucket{script="issue_tokens",result="ok""#,
        r#"seatrush_coalesced_batch_size_count{operation="issue_tokens"}"#,
        r#"seatrush_mysql_pool_wait_seconds_count{pool="primary"}"#,
        "seatrush_redis_in_flight ",
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }
}

async fn raw_get(app: &TestApp, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let given = app
        .get("/health", &[("x-request-id", "checkout-7f3a.2_b")])
        .await;
    assert_eq!(
        given.headers["x-request-id"], "checkout-7f3a.2_b",
        "a valid id is kept"
    );
    let made = app.get("/nowhere", &[]).await;
    let id = made.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_ne!(
        app.get("/nowhere", &[]).await.headers["x-request-id"],
        id.as_str(),
        "each request gets its own"
    );
    let unsafe_id = app
        .get("/health", &[("x-request-id", "two words\"quoted\"")])
        .await;
    assert_ne!(unsafe_id.headers["x-request-id"], "two words\"quoted\"");
}
