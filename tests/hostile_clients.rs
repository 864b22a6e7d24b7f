//! Clients that try to tie the server up: connections that send their request head a header
//! at a time or nothing at all (slowloris), and request heads too large to buffer. They are
//! cut off, and meanwhile everyone else is served as usual.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::TestApp;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's bound on reading a request head (src/api/mod.rs).
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// A client that connects and then sends a request head one header every 500 ms
/// (`trickle`) or nothing at all; returns how long until the server closed the connection,
/// or `None` if it was still open at `deadline`.
async fn slow_client(addr: SocketAddr, trickle: bool, deadline: Instant) -> Option<Duration> {
    let started = Instant::now();
    let (mut read, mut write) = TcpStream::connect(addr).await.unwrap().into_split();
    if trickle {
        write
            .write_all(b"GET /health HTTP/1.1\r\nhost: t\r\n")
            .await
            .unwrap();
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut buf = [0u8; 1024];
    let mut n = 0;
    loop {
        tokio::select! {
            read = read.read(&mut buf) => match read {
                Ok(0) | Err(_) => return Some(started.elapsed()),
                Ok(_) => {} // an error response before the close
            },
            _ = tick.tick(), if trickle => {
                n += 1;
                if write.write_all(format!("x-{n}: y\r\n").as_bytes()).await.is_err() {
                    return Some(started.elapsed());
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => return None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_cut_off_without_starving_anyone() {
    let app = TestApp::spawn().await;
    let deadline = Instant::now() + HEAD_TIMEOUT + Duration::from_secs(5);
    let slow: Vec<_> = (0..300)
        .map(|i| tokio::spawn(slow_client(app.addr, i % 2 == 0, deadline)))
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Meanwhile, ordinary requests: 200 of them, 4 at a time, each answered promptly.
    let mut slowest = Duration::ZERO;
    for _ in 0..50 {
        let rounds = common::spawn_all((0..4).map(|_| {
            let app = app.clone();
            async move {
                let sent = Instant::now();
                let rsp = app.get("/health", &[]).await;
                (rsp.status.as_u16(), sent.elapsed())
            }
        }))
        .await;
        for (status, took) in rounds {
            assert_eq!(status, 200);
            slowest = slowest.max(took);
        }
    }
    assert!(
        slowest < Duration::from_millis(500),
        "ordinary requests waited {slowest:?}"
    );

    let mut closed = Vec::new();
    for (i, client) in slow.into_iter().enumerate() {
        let kind = if i % 2 == 0 { "trickling" } else { "idle" };
        let after = client
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("a {kind} connection was still open"));
        closed.push(after);
    }
    let (first, last) = (closed.iter().min().unwrap(), closed.iter().max().unwrap());
    assert!(
        *last <= HEAD_TIMEOUT + Duration::from_secs(2),
        "cut off after {last:?}"
    );
    println!(
        "300 slow or idle connections cut off after {first:?} to {last:?}; meanwhile 200 \
         ordinary requests, the slowest in {slowest:?}"
    );
}

/// Sends `head` and returns the status line of the answer (or what came back instead).
async fn answer_to(app: &TestApp, head: &str) -> String {
    let mut stream = TcpStream::connect(app.addr).await.unwrap();
    // The server may answer and close before it has read everything.
    let _ = stream.write_all(head.as_bytes()).await;
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply).await;
    String::from_utf8_lossy(&reply)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_request_heads_are_refused_and_the_server_carries_on() {
    let app = TestApp::spawn().await;
    // Well over the 64 KiB bound: hyper reads in chunks of up to that size, so a head may pass
    // it by less than one chunk before it is refused.
    let big = "a".repeat(200 * 1024);
    let one_huge_header = format!("GET /health HTTP/1.1\r\nhost: t\r\nx-big: {big}\r\n\r\n");
    assert_eq!(
        answer_to(&app, &one_huge_header).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let many: String = (0..200).map(|i| format!("x-{i}: y\r\n")).collect();
    let too_many_headers = format!("GET /health HTTP/1.1\r\nhost: t\r\n{many}\r\n");
    assert_eq!(
        answer_to(&app, &too_many_headers).await,
        "HTTP/1.1 431 Request Header Fields Too Large"
    );
    let long_path = format!("GET /{big} HTTP/1.1\r\nhost: t\r\n\r\n");
    let answer = answer_to(&app, &long_path).await;
    assert!(
        answer.starts_with("HTTP/1.1 414") || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );
    assert_eq!(app.get("/health", &[]).await.status.as_u16(), 200);
}
