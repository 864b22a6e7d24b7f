//! Failures of the dev stack's own MariaDB servers (README, "Failure behaviour"), stopped and started for
//! real with `scripts/stack.sh`. Every other test reads and writes those servers, so these
//! are ignored by a plain `cargo test` and run one at a time, after the rest, by
//! `make chaos` (part of `make test`). Whatever happens, a test leaves the stack up again.

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::load::{Write, WriteLoad};
use common::{OPEN_NOW, TestApp, eventually, stack};
use mysql_async::prelude::Queryable;

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

/// A schedule with 6 000 seats, 3 000 users for tokens, and one ACTIVE holder (whose request
/// rate is lifted) with a first charge in Redis: what the write load of these tests needs.
async fn loaded_schedule(app: &TestApp) -> (u64, Vec<u64>, Vec<u64>, (u64, String)) {
    let (schedule, seats) = app.open_schedule(6000).await;
    app.set_queue(
        schedule,
        r#"{"maxSeatsPerUser": 100000, "userRequestsPerSecond": 100000000}"#,
    )
    .await;
    let users = app.create_users(3000).await;
    let holder = app.active_user(schedule).await;
    // The holder's balance is in Redis before the fault (a first charge loads it).
    let charged = app
        .post(
            &format!("/api/v1/users/{}/balance/charge", holder.0),
            &[("queue-token", &holder.1)],
            r#"{"amount":1}"#,
        )
        .await;
    charged.assert_ok();
    (schedule, seats, users, holder)
}

/// Nothing lost, nothing twice: every write the load saw acknowledged is in MySQL exactly
/// once, and the holder's balance is its charges (one of 1 KRW before the load). Returns how
/// many tokens, holds and charges were checked.
async fn acknowledged_in_mysql(
    app: &TestApp,
    holder: u64,
    answers: &[common::load::Answer],
) -> (u64, u64, u64) {
    let mut db = app.app.db.primary.get_conn().await.unwrap();
    let (mut tokens, mut holds, mut charges) = (0, 0, 0u64);
    for a in answers {
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
            // (this load pays nothing)
            Some(Write::Payment(_)) | None => {}
        }
    }
    let (lines, balance): (Option<u64>, Option<u64>) = (
        db.exec_first(
            "SELECT COUNT(*) FROM balance_transactions WHERE user_id = ? AND type = 'CHARGE'",
            (holder,),
        )
        .await
        .unwrap(),
        db.exec_first(
            "SELECT balance FROM user_balances WHERE user_id = ?",
            (holder,),
        )
        .await
        .unwrap(),
    );
    assert_eq!(lines, Some(charges + 1), "one ledger line per charge");
    assert_eq!(balance, Some(charges + 1), "the balance adds up");
    (tokens, holds, charges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "stops the dev stack's primary for 30 s; run by `make chaos`"]
async fn primary_stopped_for_30_s_under_load_the_hot_path_answers_and_the_backlog_drains() {
    let app = TestApp::spawn().await;
    let (schedule, seats, users, holder) = loaded_schedule(&app).await;

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

    let (tokens, holds, charges) = acknowledged_in_mysql(&app, holder.0, &answers).await;
    println!(
        "primary stopped 30 s: {} writes answered during the outage ({by_status:?}); backlog \
         peaked at {peak} entries; drained {drained:?} after the primary was started again; \
         {tokens} tokens, {holds} holds and {charges} charges acknowledged, each in MySQL once",
        during.len()
    );
}

/// Runs `sql` as root on the dev stack's primary, over its socket; returns what it printed.
fn primary_sql(sql: &str) -> String {
    let socket = concat!(env!("CARGO_MANIFEST_DIR"), "/.dev/primary.sock");
    let out = Command::new("mariadb")
        .args([
            "--no-defaults",
            "--socket",
            socket,
            "-uroot",
            "-N",
            "-e",
            sql,
        ])
        .output()
        .expect("the mariadb client runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A fault set on the primary; undone (even when the test fails) when dropped: the
/// connections it holds are closed, then `undo` is run as root.
struct PrimaryFault {
    undo: String,
    held: Vec<mysql_async::Conn>,
}

impl Drop for PrimaryFault {
    fn drop(&mut self) {
        self.held.clear();
        // The held connections close as they are dropped; root may need a moment to get in.
        let socket = concat!(env!("CARGO_MANIFEST_DIR"), "/.dev/primary.sock");
        for _ in 0..50 {
            let done = Command::new("mariadb")
                .args([
                    "--no-defaults",
                    "--socket",
                    socket,
                    "-uroot",
                    "-e",
                    &self.undo,
                ])
                .status()
                .is_ok_and(|s| s.success());
            if done {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("could not undo the fault: {}", self.undo);
    }
}

/// A root connection to the primary over its socket, or the server's refusal.
async fn root_conn() -> Result<mysql_async::Conn, mysql_async::Error> {
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/.dev/primary.sock"
        )))
        .user(Some("root"))
        .prefer_socket(true);
    mysql_async::Conn::new(opts).await
}

/// The primary out of connections: `max_connections` lowered to its minimum, every slot
/// taken by root connections held here, and every connection seatrush had killed, so its
/// pools meet `1040 Too many connections` until the fault is dropped.
async fn exhaust_primary_connections() -> PrimaryFault {
    let before = primary_sql("SELECT @@GLOBAL.max_connections");
    primary_sql("SET GLOBAL max_connections = 10");
    let mut fault = PrimaryFault {
        undo: format!("SET GLOBAL max_connections = {}", before.trim()),
        held: Vec::new(),
    };
    // Killing seatrush's connections frees slots its pools may take again: fill, kill, and
    // repeat until seatrush holds none.
    for _ in 0..20 {
        while let Ok(conn) = root_conn().await {
            fault.held.push(conn);
        }
        assert!(
            !fault.held.is_empty(),
            "root holds the primary's connections"
        );
        let theirs: Vec<u64> = fault.held[0]
            .query("SELECT id FROM information_schema.processlist WHERE user = 'seatrush'")
            .await
            .unwrap();
        if theirs.is_empty() {
            return fault;
        }
        for id in theirs {
            // It may have gone by itself meanwhile.
            let _ = fault.held[0]
                .query_drop(format!("KILL CONNECTION {id}"))
                .await;
        }
    }
    panic!("seatrush's pools kept the primary's connections");
}

/// A counter of the app's own metrics, summed over the series whose labels contain `labels`.
fn counter(app: &TestApp, name: &str, labels: &str) -> u64 {
    app.app
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name) && l.contains(labels))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The write load, then a fault that stops the primary taking writes for 5 s while it stays
/// up (`fault` makes it), then the drain. MySQL's refusals in that time
/// are not the entries' fault: nothing may be dead-lettered, everything acknowledged must
/// reach MySQL.
async fn primary_refusing_writes(what: &str, fault: impl Future<Output = PrimaryFault>) {
    let app = TestApp::spawn().await;
    let (schedule, seats, users, holder) = loaded_schedule(&app).await;
    let dead_before = seatrush::writebehind::dead_letters::list(&mut app.redis())
        .await
        .unwrap()
        .len();
    let unavailable_before = counter(
        &app,
        "seatrush_outbox_flush_failures_total",
        r#"reason="unavailable""#,
    );

    let load = WriteLoad::start(&app, schedule, users, holder.clone(), seats);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fault = fault.await;
    let from = Instant::now();
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(from.elapsed())).await;
    let backlog_in_fault = health(&app, "mysqlPrimary").await.1;
    drop(fault);
    let until = Instant::now();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let answers = load.finish().await;
    let drained = eventually(Duration::from_secs(60), "the backlog to drain", || {
        let app = app.clone();
        async move { (health(&app, "mysqlPrimary").await.1 == 0).then(|| until.elapsed()) }
    })
    .await;

    let refused = counter(
        &app,
        "seatrush_outbox_flush_failures_total",
        r#"reason="unavailable""#,
    ) - unavailable_before;
    let dead = seatrush::writebehind::dead_letters::list(&mut app.redis())
        .await
        .unwrap()
        .len()
        - dead_before;
    let during = answers
        .iter()
        .filter(|a| a.sent >= from && a.answered <= until)
        .count();
    let server_errors = answers.iter().filter(|a| a.status >= 500).count();
    let (tokens, holds, charges) = acknowledged_in_mysql(&app, holder.0, &answers).await;
    println!(
        "{what} for 5 s: {during} writes answered meanwhile, {server_errors} 5xx; {refused} \
         flushes refused as unavailable, backlog {backlog_in_fault} at the end of the fault; \
         {dead} dead letters; drained {drained:?} after; {tokens} tokens, {holds} holds and \
         {charges} charges acknowledged, each in MySQL once"
    );
    // The fault was real for seatrush's own MySQL user, not only for root.
    assert!(refused > 0, "the flusher met the fault");
    assert!(backlog_in_fault > 0, "the outbox held the writes meanwhile");
    assert_eq!(dead, 0, "nothing was dead-lettered");
    assert_eq!(server_errors, 0, "the hot path does not need the primary");
    assert!(tokens > 100 && holds > 100 && charges > 100, "the load ran");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "makes the dev stack's primary read-only for 5 s; run by `make chaos`"]
async fn primary_read_only_for_5_s_under_load_nothing_is_dead_lettered() {
    primary_refusing_writes("primary read-only (SET GLOBAL read_only = 1)", async {
        primary_sql("SET GLOBAL read_only = 1");
        PrimaryFault {
            undo: "SET GLOBAL read_only = 0".into(),
            held: Vec::new(),
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "exhausts the dev stack's primary's connections for 5 s; run by `make chaos`"]
async fn primary_out_of_connections_for_5_s_under_load_nothing_is_dead_lettered() {
    primary_refusing_writes(
        "primary out of connections (every slot taken, seatrush's killed)",
        exhaust_primary_connections(),
    )
    .await;
}
