//! The `seatrush` binary itself: JSON logs carrying request ids and never a token, and a
//! SIGTERM that ends it cleanly.

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use common::TestApp;
use simd_json::prelude::*;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

/// Reads log lines until one satisfies `pick`, failing after `deadline`; returns it and
/// everything read on the way.
async fn read_until(
    lines: &mut Lines<BufReader<ChildStdout>>,
    deadline: Duration,
    what: &str,
    pick: impl Fn(&str) -> bool,
) -> (String, Vec<String>) {
    let until = Instant::now() + deadline;
    let mut seen = Vec::new();
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = tokio::time::timeout(left, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no log line for {what} in {seen:#?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("the log ended before {what}: {seen:#?}"));
        if pick(&line) {
            return (line, seen);
        }
        seen.push(line);
    }
}

fn start(port: u16) -> Child {
    let config = TestApp::config();
    Command::new(env!("CARGO_BIN_EXE_seatrush"))
        .env("SEATRUSH_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SEATRUSH_REDIS_URL", &config.redis_url)
        .env("SEATRUSH_MYSQL_PRIMARY_URL", &config.mysql_primary_url)
        .env("SEATRUSH_MYSQL_REPLICA_URL", &config.mysql_replica_url)
        .env("SEATRUSH_LOG", "seatrush=debug")
        .env("SEATRUSH_LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the seatrush binary starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_logs_json_with_request_ids_never_tokens_and_stops_on_sigterm() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = start(port);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    read_until(&mut lines, Duration::from_secs(60), "listening", |l| {
        l.contains("seatrush listening")
    })
    .await;

    let token = uuid::Uuid::new_v4().to_string();
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    s.write_all(
        format!(
            "GET /api/v1/queue/tokens/me HTTP/1.1\r\nhost: t\r\nqueue-token: {token}\r\n\
             x-request-id: log-test-1\r\nconnection: close\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
    assert!(reply.contains("x-request-id: log-test-1"), "{reply}");

    let (line, before) = read_until(&mut lines, Duration::from_secs(10), "the request", |l| {
        l.contains("log-test-1")
    })
    .await;
    let mut bytes = line.clone().into_bytes();
    let entry = simd_json::to_owned_value(&mut bytes).expect("a log line is one JSON object");
    let fields = &entry["fields"];
    assert_eq!(fields["message"].as_str(), Some("request"), "{line}");
    assert_eq!(fields["request_id"].as_str(), Some("log-test-1"));
    assert_eq!(fields["route"].as_str(), Some("/api/v1/queue/tokens/me"));
    assert_eq!(fields["status"].as_str(), Some("401"));
    assert_eq!(entry["level"].as_str(), Some("DEBUG"));

    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let (_, after) = read_until(&mut lines, Duration::from_secs(30), "shutdown", |l| {
        l.contains("shutting down")
    })
    .await;
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("seatrush exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    for line in before.iter().chain(&after).chain([&line]) {
        assert!(!line.contains(&token), "a token reached the log: {line}");
    }
}
