//! Many open event streams on one instance (README, "Benchmarks"): `users` users join a
//! paused queue and each opens the queue's event stream. It measures seatrush's resident
//! memory per open stream, `GET /health` with no stream open and with all of them open
//! (wrk, the ratio of the two), and, once the queue admits them (`admissionPerSecond` as
//! set), how late the `active` events left after each admission (seatrush's
//! `seatrush_event_delay_seconds` histogram, read before and after).
//!
//! `cargo run --release --example streams -- <base url> <scheduleId> <first userId> <users>
//! <server pid>`, the schedule's queue paused; `SEATRUSH_AUTH_SECRET` as the server's. With
//! `STREAMS_JSON=<file>` it also writes the figures there, for bench/report.py.

#[path = "flashsale/client.rs"]
mod client;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hyper::Method;
use seatrush::identity::Identity;
use simd_json::prelude::*;
use tokio::sync::{Semaphore, watch};

use client::Client;

/// Streams being opened at once.
const OPENING: usize = 256;
/// How long every stream may take to open, and the admitted to hear `active`.
const DEADLINE: Duration = Duration::from_secs(120);

/// seatrush's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// `GET /health` requests a second, from wrk (64 connections, 5 s).
fn health_rate(base: &str) -> Result<f64, Box<dyn std::error::Error>> {
    let out = std::process::Command::new("wrk")
        .args(["-t1", "-c64", "-d5s", &format!("{base}/health")])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("wrk printed no rate: {text}").into())
}

/// The `active` events' delay histogram: (upper bound in s, cumulative count) per bucket.
async fn active_delays(client: &Client) -> Vec<(f64, u64)> {
    let (answer, _) = client.send(Method::GET, "/metrics", &[], None).await;
    let text = answer.map_or(String::new(), |(_, body)| {
        String::from_utf8_lossy(&body).into_owned()
    });
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("seatrush_event_delay_seconds_bucket{")?;
            if !rest.contains(r#"event="active""#) {
                return None;
            }
            let le = rest.split(r#"le=""#).nth(1)?.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, l.rsplit(' ').next()?.parse().ok()?))
        })
        .collect()
}

/// The bucket bound under which `share` of the events between the two readings fell.
fn quantile(before: &[(f64, u64)], after: &[(f64, u64)], share: f64) -> Option<f64> {
    let count = |h: &[(f64, u64)], le: f64| h.iter().find(|b| b.0 == le).map_or(0, |b| b.1);
    let total = after.last().map(|b| b.1 - count(before, b.0))?;
    after
        .iter()
        .find(|(le, n)| (n - count(before, *le)) as f64 >= share * total as f64)
        .map(|b| b.0)
}

#[derive(serde::Serialize)]
struct Figures {
    users: u64,
    streams_open: u64,
    streams_refused: u64,
    rss_per_stream_bytes: f64,
    rss_before_bytes: u64,
    rss_open_bytes: u64,
    health_without: f64,
    health_with: f64,
    admitted: u64,
    active_p50_s: Option<f64>,
    active_p99_s: Option<f64>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, schedule, first_user, users, pid] = &args[..] else {
        return Err(
            "usage: streams <base url> <scheduleId> <first userId> <users> <server pid>".into(),
        );
    };
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let (schedule, first_user, users, pid): (u64, u64, u64, u32) = (
        schedule.parse()?,
        first_user.parse()?,
        users.parse()?,
        pid.parse()?,
    );
    let config = seatrush::config::Config::from_env()?;
    let identity = Identity::from_config(&config)?;
    let client = Arc::new(Client::new(addr, 64).await);

    // Every user joins the paused queue.
    let joined = Arc::new(Semaphore::new(OPENING));
    let mut joins = Vec::new();
    for user in first_user..first_user + users {
        let (client, joined) = (client.clone(), joined.clone());
        let auth = format!("Bearer {}", identity.sign(user, 3600)?);
        joins.push(tokio::spawn(async move {
            let _turn = joined.acquire().await.ok()?;
            let body = format!(r#"{{"userId":{user},"scheduleId":{schedule}}}"#);
            let headers = [("authorization", auth.as_str())];
            let (status, json, _) = client
                .call(Method::POST, "/api/v1/queue/tokens", &headers, Some(body))
                .await;
            let token = json.get("data")?.get("token")?.as_str()?.to_string();
            (status == 200).then_some((auth, token))
        }));
    }
    let mut holders = Vec::new();
    for join in joins {
        holders.extend(join.await?);
    }
    println!(
        "streams: {} of {users} users joined the paused queue",
        holders.len()
    );

    let total = holders.len() as u64;
    let health_without = health_rate(base)?;
    let rss_before = rss(pid);
    // Each user opens their stream and waits for `active`.
    let (open, refused, admitted) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let (go_home, home) = watch::channel(false);
    let opening = Arc::new(Semaphore::new(OPENING));
    let mut tasks = Vec::new();
    for (auth, token) in holders {
        let (client, opening) = (client.clone(), opening.clone());
        let (open, refused, admitted) = (open.clone(), refused.clone(), admitted.clone());
        let mut home = home.clone();
        tasks.push(tokio::spawn(async move {
            let turn = opening.acquire().await;
            let headers = [("authorization", auth.as_str()), ("queue-token", &token)];
            let (stream, _) = client
                .events("/api/v1/queue/tokens/me/events", &headers)
                .await;
            drop(turn);
            let Ok(mut stream) = stream else {
                refused.fetch_add(1, Ordering::Relaxed);
                return;
            };
            open.fetch_add(1, Ordering::Relaxed);
            loop {
                tokio::select! {
                    event = stream.next() => match event.as_deref() {
                        Some("active") => {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                        Some(_) => continue,
                        None => break,
                    },
                    _ = home.wait_for(|&done| done) => break,
                }
            }
        }));
    }
    let started = Instant::now();

    while open.load(Ordering::Relaxed) + refused.load(Ordering::Relaxed) < total
        && started.elapsed() < DEADLINE
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let streams_open = open.load(Ordering::Relaxed);
    println!(
        "streams: {streams_open} open after {:.1} s, {} refused",
        started.elapsed().as_secs_f64(),
        refused.load(Ordering::Relaxed)
    );
    let rss_open = rss(pid);
    let health_with = health_rate(base)?;

    // The queue opens: every admission is announced on its stream.
    let delays_before = active_delays(&client).await;
    let admin = [
        ("x-admin-key", "dev-admin-key"),
        ("content-type", "application/json"),
    ];
    let (status, _, _) = client
        .call(
            Method::PUT,
            &format!("/api/v1/admin/schedules/{schedule}/queue"),
            &admin,
            Some(r#"{"paused":false}"#.into()),
        )
        .await;
    if status != 200 {
        return Err(format!("opening the queue: {status}").into());
    }
    let opened_at = Instant::now();
    while admitted.load(Ordering::Relaxed) < streams_open && opened_at.elapsed() < DEADLINE {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let delays_after = active_delays(&client).await;
    go_home.send_replace(true);
    for task in tasks {
        task.await?;
    }
    let figures = Figures {
        users,
        streams_open,
        streams_refused: refused.load(Ordering::Relaxed),
        rss_per_stream_bytes: rss_open.saturating_sub(rss_before) as f64
            / streams_open.max(1) as f64,
        rss_before_bytes: rss_before,
        rss_open_bytes: rss_open,
        health_without,
        health_with,
        admitted: admitted.load(Ordering::Relaxed),
        active_p50_s: quantile(&delays_before, &delays_after, 0.5),
        active_p99_s: quantile(&delays_before, &delays_after, 0.99),
    };
    println!(
        "streams: {} open ({} refused): seatrush RSS {:.1} KB per stream ({:.0} → {:.0} MB); \
         /health {:.0} req/s without, {:.0} with them open (ratio {:.2}); {} admitted in {:.1} \
         s, `active` sent within {} ms of admission at p50, {} ms at p99",
        figures.streams_open,
        figures.streams_refused,
        figures.rss_per_stream_bytes / 1024.0,
        rss_before as f64 / 1e6,
        rss_open as f64 / 1e6,
        health_without,
        health_with,
        health_with / health_without,
        figures.admitted,
        opened_at.elapsed().as_secs_f64(),
        figures
            .active_p50_s
            .map_or("?".into(), |s| format!("{:.0}", s * 1000.0)),
        figures
            .active_p99_s
            .map_or("?".into(), |s| format!("{:.0}", s * 1000.0)),
    );
    if let Ok(path) = std::env::var("STREAMS_JSON") {
        std::fs::write(path, simd_json::to_string(&figures)?)?;
    }
    if figures.admitted < streams_open {
        return Err("not every open stream heard its admission".into());
    }
    Ok(())
}
