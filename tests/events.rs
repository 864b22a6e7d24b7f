//! The queue's event stream on the real server: a client hears its place, its admission and
//! the end of its token without polling; the limits on streams; streams end at shutdown.

mod common;

use std::time::{Duration, Instant};

use common::{OPEN_NOW, TestApp};
use simd_json::prelude::*;

const SOON: Duration = Duration::from_secs(3);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_client_hears_its_place_move_and_its_admission() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"paused": true, "maxActiveUsers": 1}"#)
        .await;
    let users = app.create_users(3).await;
    let mut tokens = Vec::new();
    for &user in &users {
        tokens.push(app.issue(user, schedule).await.str("token"));
    }
    let mut stream = app.events(&tokens[2]).await.map_err(|r| r.body).unwrap();
    let content_type = stream.headers["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "text/event-stream");
    let first = stream.expect("position", SOON).await;
    assert_eq!(first["queuePosition"].as_u64(), Some(3));
    assert!(first["estimatedWaitTimeMinutes"].as_u64().unwrap() >= 1);

    // The first is admitted; the place moves from 3 to 2 (told within the position period).
    app.set_queue(schedule, r#"{"paused": false}"#).await;
    let moved = stream.expect("position", Duration::from_secs(8)).await;
    assert_eq!(moved["queuePosition"].as_u64(), Some(2));

    // The two ahead leave one after the other; the stream tells the admission within a round
    // or two of it.
    app.leave(&tokens[0]).await.assert_ok();
    app.leave(&tokens[1]).await.assert_ok();
    let left_at = Instant::now();
    let active = stream.expect("active", SOON).await;
    let until = chrono::DateTime::parse_from_rfc3339(active["activeUntil"].as_str().unwrap());
    assert!(until.is_ok(), "{active:?}");
    assert!(
        left_at.elapsed() < Duration::from_secs(1),
        "admitted and told within a tick and a round or two: {:?}",
        left_at.elapsed()
    );
    assert_eq!(app.me(&tokens[2]).await.str("status"), "ACTIVE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_says_how_its_token_ended_then_closes() {
    let app = TestApp::spawn().await;
    let (schedule, _) = app.open_schedule(5).await;
    let (_, token) = app.active_user(schedule).await;
    let mut stream = app.events(&token).await.map_err(|r| r.body).unwrap();
    let active = stream.expect("active", SOON).await;
    assert!(active["activeUntil"].is_str());
    app.leave(&token).await.assert_ok();
    let ended = stream.expect("ended", SOON).await;
    assert_eq!(ended["status"].as_str(), Some("LEFT"));
    assert_eq!(stream.next(SOON).await, None, "the stream closes after it");
    // An ended token opens no stream.
    let refused = app.events(&token).await.err().unwrap();
    assert_eq!(refused.status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_stream_of_a_token_closes_the_oldest() {
    let app = TestApp::spawn().await;
    let (schedule, _) = app.open_schedule(5).await;
    let (_, token) = app.active_user(schedule).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        let mut stream = app.events(&token).await.map_err(|r| r.body).unwrap();
        stream.expect("active", SOON).await;
        streams.push(stream);
    }
    assert_eq!(streams[0].next(SOON).await, None, "the oldest is closed");
    // The other two still hear what happens.
    app.leave(&token).await.assert_ok();
    for stream in &mut streams[1..] {
        assert_eq!(
            stream.expect("ended", SOON).await["status"].as_str(),
            Some("LEFT")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_its_limit_an_instance_refuses_streams_with_503() {
    let mut config = TestApp::config();
    config.max_event_streams = 2;
    let app = TestApp::spawn_with(config).await;
    let (schedule, _) = app.open_schedule(5).await;
    let mut open = Vec::new();
    for _ in 0..2 {
        let (_, token) = app.active_user(schedule).await;
        let mut stream = app.events(&token).await.map_err(|r| r.body).unwrap();
        stream.expect("active", SOON).await;
        open.push(stream);
    }
    let (_, token) = app.active_user(schedule).await;
    let refused = app.events(&token).await.err().unwrap();
    refused.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(refused.headers.contains_key("retry-after"));
    // A closed stream frees its place.
    drop(open.pop());
    common::eventually(SOON, "a place for one more stream", || async {
        app.events(&token).await.ok()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stream_gets_keep_alives_and_streams_end_at_shutdown() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"paused": true}"#).await;
    let user = app.create_user().await;
    let token = app.issue(user, schedule).await.str("token");
    let mut stream = app.events(&token).await.map_err(|r| r.body).unwrap();
    stream.expect("position", SOON).await;
    let quiet = stream.next(Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        (quiet.name.as_str(), quiet.data.as_str()),
        ("comment", "keep-alive")
    );
    app.shut_down();
    assert_eq!(stream.next(SOON).await, None, "the stream ends at shutdown");
}
