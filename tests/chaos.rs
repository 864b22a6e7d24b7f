//! Failures of the dev stack's own MariaDB servers (README, "Failure behaviour"), stopped and started for
//! real with `scripts/stack.sh`. Every other test reads and writes those servers, so these
//! are ignored by a plain `cargo test` and run one at a time, after the rest, by
//! `make chaos` (part of `make test`). Whatever happens, a test leaves the stack up again.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::load::{Write, WriteLoad};
use common::{OPEN_NOW, TestApp, eventually};
use mysql_async::prelude::Queryable;

fn stack(args: &[&str]) {
    let status = Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
        .args(args)
        .status()
        .expect("scripts/stack.sh runs");
    assert!(status.success(), "stack.sh {args:?}");
}

/// Stops one server of the stack; brings the whole stack back up when dropped.
struct Stopped;

impl Stopped {
    fn server(name: &str) -> Self {
        stack(&["stop", name]);
        Self
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        stack(&["up"]);
    }
}

/// `GET /health`'s view of one component ("UP" or "DOWN") and the outbox backlog.
async fn health(app: &TestApp, component: &str) -> (String, u64) {
    let rsp = app.get("/health", &[]).await;
    let body = &rsp.body;
    use simd_json::prelude::*;
    (
        body["components"][component]
            .as_str()
            .unwrap_or_default()
            .to_string(),
        body["outboxBacklog"].as_u64().unwrap_or_default(),
    )
}

/// Catalogue reads that went to the primary because the replica could not serve them.
fn replica_fallbacks(app: &TestApp) -> u64 {
    app.app
        .metrics
        .render()
        .lines()
        .filter(|l| {
            l.starts_with(r#"seatrush_replica_fallbacks_total{reason="replica_unreadable"}"#)
                || l.starts_with(r#"seatrush_replica_fallbacks_total{reason="replica_error"}"#)
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// Reads the concert `n` times with an empty cache each time, so every read goes to MySQL.
async fn read_concert(app: &TestApp, concert: u64, n: usize) {
    for _ in 0..n {
        let fresh = seatrush::catalogue::Catalogue::new(app.app.db.clone(), app.app.health.clone());
        let found = fresh
            .concert(concert)
            .await
            .expect("the catalogue answers")
            .expect("the concert exists");
        assert_eq!(found.schedules.len(), 1);
    }
}

/// `Some` when a read of the concert went to the replica.
async fn served_by_replica(app: &TestApp, concert: u64) -> Option<()> {
    let before = replica_fallbacks(app);
    read_concert(app, concert, 1).await;
    (replica_fallbacks(app) == before).then_some(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops the dev stack's replica; run by `make chaos`"]
async fn replica_stopped_reads_go_to_the_primary_and_come_back_when_it_returns() {
    let app = TestApp::spawn().await;
    let (concert, _) = app.create_schedule(OPEN_NOW, 5).await;
    eventually(
        Duration::from_secs(10),
        "the replica to serve reads",
        || served_by_replica(&app, concert),
    )
    .await;

    let stopped = Stopped::server("replica");
    let since = Instant::now();
    eventually(
        Duration::from_secs(10),
        "/health to see the replica down",
        || {
            let app = app.clone();
            async move { (health(&app, "mysqlReplica").await.0 == "DOWN").then_some(()) }
        },
    )
    .await;
    let noticed = since.elapsed();
    let before = replica_fallbacks(&app);
    read_concert(&app, concert, 20).await;
    let fell_back = replica_fallbacks(&app) - before;
    assert_eq!(fell_back, 20, "every read went to the primary");

    drop(stopped); // the stack comes back up
    let since = Instant::now();
    eventually(
        Duration::from_secs(60),
        "reads to return to the replica",
        || served_by_replica(&app, concert),
    )
    .await;
    let returned = since.elapsed();
    let before = replica_fallbacks(&app);
    read_concert(&app, concert, 20).await;
    assert_eq!(
        replica_fallbacks(&app),
        before,
        "reads are back on the replica"
    );
    println!(
        "replica stopped: /health said DOWN after {noticed:?}; 20 of 20 reads answered by the \
         primary (seatrush_replica_fallbacks_total +{fell_back}); reads back on the replica \
         {returned:?} after it was started again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops the dev stack's primary for 30 s; run by `make chaos`"]
async fn primary_stopped_for_30_s_under_load_the_hot_path_answers_and_the_backlog_drains() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(6000).await;
    // One holder makes every hold and charge of the load: their request rate is lifted.
    app.set_queue(
        schedule,
        r#"{"maxSeatsPerUser": 100000, "userRequestsPerSecond": 100000000}"#,
    )
    .await;
    let users = app.create_users(3000).await;
    let holder = app.active_user(schedule).await;
    // The holder's balance is in Redis before the primary goes (a first charge loads it).
    let charged = app
        .post(
            &format!("/api/v1/users/{}/balance/charge", holder.0),
            &[("queue-token", &holder.1)],
            r#"{"amount":1}"#,
        )
        .await;
    charged.assert_ok();

    let load = WriteLoad::start(&app, schedule, users, holder.clone(), seats);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stopped = Stopped::server("primary");
    let down_at = Instant::now();
    // Throughout the outage: the backlog as /health reports it, once a second.
    let mut backlog = Vec::new();
    while down_at.elapsed() < Duration::from_secs(30) {
        backlog.push(health(&app, "mysqlPrimary").await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    drop(stopped);
    let up_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answers = load.finish().await;
    let drained = eventually(Duration::from_secs(120), "the backlog to drain", || {
        let app = app.clone();
        async move { (health(&app, "mysqlPrimary").await.1 == 0).then(|| up_at.elapsed()) }
    })
    .await;

    let during: Vec<_> = answers
        .iter()
        .filter(|a| a.sent >= down_at && a.answered <= up_at)
        .collect();
    let mut by_status: HashMap<(u16, &str, &str), usize> = HashMap::new();
    for a in &during {
        *by_status.entry((a.status, a.kind, &a.error)).or_default() += 1;
    }
    let ok_during = during.iter().filter(|a| a.write.is_some()).count();
    let peak = backlog.iter().map(|b| b.1).max().unwrap_or(0);
    assert!(
        backlog.iter().any(|b| b.0 == "DOWN"),
        "/health saw the primary down"
    );
    assert!(peak > 0, "the backlog grew while the primary was down");
    assert!(
        ok_during * 10 >= during.len() * 9,
        "the hot path kept answering 2xx: {by_status:?}"
    );
    assert!(
        during.iter().all(|a| a.status < 500),
        "no 5xx: {by_status:?}"
    );

    // Nothing lost, nothing twice: every acknowledged write in MySQL exactly once.
    let mut db = app.app.db.primary.get_conn().await.unwrap();
    let (mut tokens, mut holds, mut charges) = (0, 0, 0u64);
    for a in &answers {
        match &a.write {
            Some(Write::Token(t)) => {
                let token = common::opened(t);
                let n: Option<u64> = db
                    .exec_first(
                        "SELECT COUNT(*) FROM queue_tokens WHERE schedule_id = ? AND seq = ?",
                        (token.schedule_id, token.sequence),
                    )
                    .await
                    .unwrap();
                assert_eq!(n, Some(1), "token {t}");
                tokens += 1;
            }
            Some(Write::Hold(id)) => {
                let n: Option<u64> = db
                    .exec_first("SELECT COUNT(*) FROM reservations WHERE id = ?", (id,))
                    .await
                    .unwrap();
                assert_eq!(n, Some(1), "hold {id}");
                holds += 1;
            }
            Some(Write::Charge) => charges += 1,
            None => {}
        }
    }
    let (lines, balance): (Option<u64>, Option<u64>) = (
        db.exec_first(
            "SELECT COUNT(*) FROM balance_transactions WHERE user_id = ? AND type = 'CHARGE'",
            (holder.0,),
        )
        .await
        .unwrap(),
        db.exec_first(
            "SELECT balance FROM user_balances WHERE user_id = ?",
            (holder.0,),
        )
        .await
        .unwrap(),
    );
    assert_eq!(lines, Some(charges + 1), "one ledger line per charge");
    assert_eq!(balance, Some(charges + 1), "the balance adds up");
    println!(
        "primary stopped 30 s: {} writes answered during the outage ({by_status:?}); backlog \
         peaked at {peak} entries; drained {drained:?} after the primary was started again; \
         {tokens} tokens, {holds} holds and {charges} charges acknowledged, each in MySQL once",
        during.len()
    );
}
