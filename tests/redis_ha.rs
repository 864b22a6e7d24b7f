//! Redis high availability (README, "High availability"): seatrush on the Sentinel-managed
//! dev Redis of `make stack-ha`, its master killed for good under load, the old master brought
//! back as a replica, and the replica killed. They stop the stack's own servers, so a plain
//! `cargo test` ignores them; `make test-ha` (part of `make test`) runs them one at a time
//! with SEATRUSH_REDIS_URL naming the Sentinels. Each leaves the pair as it found it: the dev
//! Redis on 6390 the master, 6397 its replica.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use common::load::{Answer, Write, WriteLoad};
use common::{TestApp, eventually, stack};
use mysql_async::prelude::Queryable;
use redis::AsyncCommands;
use seatrush::redis::keys::ScheduleKeys;

const SENTINEL: u16 = 26390;
const DEV_REDIS: u16 = 6390;
const REPLICA: u16 = 6397;

/// What `redis-cli -p <port> <args>` printed (empty if the server does not answer).
fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .arg("-p")
        .arg(port.to_string())
        .args(args)
        .output()
        .expect("redis-cli runs");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The port of the master, as the Sentinels name it now.
fn master_port() -> u16 {
    let addr = cli(
        SENTINEL,
        &["sentinel", "get-master-addr-by-name", "seatrush"],
    );
    addr.lines()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("the Sentinels name a master: {addr:?}"))
}

fn other(port: u16) -> u16 {
    if port == DEV_REDIS {
        REPLICA
    } else {
        DEV_REDIS
    }
}

/// `INFO replication` field of the Redis on `port`.
fn replication(port: u16, field: &str) -> String {
    cli(port, &["info", "replication"])
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_default()
        .to_string()
}

fn pidfile(port: u16) -> PathBuf {
    let dev = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/.dev"));
    match port {
        DEV_REDIS => dev.join("redis/redis.pid"),
        _ => dev.join("redis-replica/redis.pid"),
    }
}

/// SIGKILL to the Redis on `port`: no shutdown, no last fsync.
fn kill(port: u16) {
    let pid = std::fs::read_to_string(pidfile(port)).unwrap();
    let status = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());
    let until = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(Instant::now() < until, "redis on {port} still answers");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Brings the pair back as every test expects to find it (whatever a test left): both
/// servers up, the dev Redis the master (a Sentinel failover back if needed).
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        stack(&["ha-up"]);
        let until = Instant::now() + Duration::from_secs(60);
        while master_port() != DEV_REDIS
            || replication(DEV_REDIS, "connected_slaves") != "1"
            || replication(REPLICA, "master_link_status") != "up"
        {
            assert!(Instant::now() < until, "the pair did not come back");
            if master_port() != DEV_REDIS && replication(master_port(), "connected_slaves") == "1" {
                cli(SENTINEL, &["sentinel", "failover", "seatrush"]);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// Charges of 10 000 000 KRW (the most one may be) the holder starts with: 2 000 seats.
const CHARGES: u64 = 10;

/// A schedule of 6 000 seats anyone may hold many of, 3 000 users, and a holder with an
/// ACTIVE token and a balance that pays for [`CHARGES`] × 200 seats.
async fn loaded_schedule(app: &TestApp) -> (u64, Vec<u64>, Vec<u64>, (u64, String)) {
    let (schedule, seats) = app.open_schedule(6000).await;
    app.set_queue(
        schedule,
        r#"{"maxSeatsPerUser": 100000, "userRequestsPerSecond": 100000000, "holdTtlSeconds": 3600}"#,
    )
    .await;
    let users = app.create_users(3000).await;
    let holder = app.active_user(schedule).await;
    for _ in 0..CHARGES {
        app.charge(&holder.1, holder.0, 10_000_000)
            .await
            .assert_ok();
    }
    (schedule, seats, users, holder)
}

fn by_status(answers: &[&Answer]) -> HashMap<(u16, &'static str, String), usize> {
    let mut counts = HashMap::new();
    for a in answers {
        *counts
            .entry((a.status, a.kind, a.error.clone()))
            .or_default() += 1;
    }
    counts
}

/// Every acknowledged write, in Redis (through the app's connection: the master now) and,
/// once drained, in MySQL once each; no seat held twice; the holder's money adds up. Returns
/// (tokens, holds, charges, payments) checked.
async fn nothing_lost(
    app: &TestApp,
    schedule: u64,
    holder: u64,
    answers: &[Answer],
) -> (usize, usize, u64, usize) {
    let k = ScheduleKeys::new(schedule);
    let mut redis = app.redis();
    let (mut tokens, mut holds, mut charges, mut payments) = (vec![], vec![], 0u64, vec![]);
    for a in answers {
        match &a.write {
            Some(Write::Token(t)) => tokens.push(common::opened(t).sequence),
            Some(Write::Hold(id)) => holds.push(*id),
            Some(Write::Charge) => charges += 1,
            Some(Write::Payment(id)) => payments.push(*id),
            None => {}
        }
    }
    for seq in &tokens {
        let there: bool = redis.hexists(&k.tokens, seq).await.unwrap();
        assert!(there, "acknowledged token {seq} is in Redis");
    }
    for id in &holds {
        let record: Option<String> = redis.hget(&k.res, id).await.unwrap();
        let record = record.unwrap_or_else(|| panic!("acknowledged hold {id} is in Redis"));
        if payments.contains(id) {
            assert!(record.contains("|PAID|"), "paid hold {id}: {record}");
        }
    }

    let pool = app.app.db.primary.clone();
    eventually(
        Duration::from_secs(60),
        "MySQL to hold every acknowledged write",
        || {
            let (tokens, holds, payments, pool) = (
                tokens.clone(),
                holds.clone(),
                payments.clone(),
                pool.clone(),
            );
            async move {
                let db = &mut pool.get_conn().await.unwrap();
                let mut missing = 0;
                for seq in &tokens {
                    let n: Option<u64> = db
                        .exec_first(
                            "SELECT COUNT(*) FROM queue_tokens WHERE schedule_id = ? AND seq = ?",
                            (schedule, seq),
                        )
                        .await
                        .unwrap();
                    missing += usize::from(n != Some(1));
                }
                for id in &holds {
                    let status: Option<String> = db
                        .exec_first("SELECT status FROM reservations WHERE id = ?", (id,))
                        .await
                        .unwrap();
                    let paid = payments.contains(id);
                    missing += usize::from(match status.as_deref() {
                        Some("PAID") => false,
                        Some(_) => paid,
                        None => true,
                    });
                }
                (missing == 0).then_some(())
            }
        },
    )
    .await;
    // A payment answered 503 may still be in its saga (debited, not yet committed); the
    // sweeper settles it once the saga timeout has passed. The money adds up once no saga
    // is open and the write-behind has written every outcome.
    let wallet = seatrush::redis::keys::WalletKeys::of_user(holder).outbox;
    eventually(
        Duration::from_secs(60),
        "open payment sagas settled",
        || {
            let (mut redis, k, wallet) = (redis.clone(), &k, &wallet);
            async move {
                let sagas: u64 = redis.zcard(&k.sagas).await.unwrap();
                let unflushed: u64 = redis.xlen(&k.outbox).await.unwrap();
                let ledger: u64 = redis.xlen(wallet).await.unwrap();
                (sagas + unflushed + ledger == 0).then_some(())
            }
        },
    )
    .await;

    let mut db = app.app.db.primary.get_conn().await.unwrap();
    let twice: Option<u64> = db
        .exec_first(
            "SELECT COUNT(*) FROM (SELECT rs.seat_id FROM reservation_seats rs
               JOIN reservations r ON r.id = rs.reservation_id
              WHERE r.schedule_id = ? AND r.status IN ('RESERVED', 'PAID')
              GROUP BY rs.seat_id HAVING COUNT(*) > 1) t",
            (schedule,),
        )
        .await
        .unwrap();
    assert_eq!(twice, Some(0), "no seat held or sold twice");
    // Money: what the holder was charged, less what the paid seats cost, is the balance.
    let (charged, paid, balance): (Option<u64>, Option<u64>, Option<u64>) = (
        db.exec_first(
            "SELECT SUM(amount) FROM balance_transactions WHERE user_id = ? AND type = 'CHARGE'",
            (holder,),
        )
        .await
        .unwrap(),
        db.exec_first(
            "SELECT COALESCE(SUM(total_amount), 0) FROM reservations
              WHERE user_id = ? AND status = 'PAID'",
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
    // A charge answered 503 may have been made (its batch ran, and no replica confirmed it
    // in time: the client learns its outcome by repeating it with its Idempotency-Key).
    let unconfirmed = answers
        .iter()
        .filter(|a| a.kind == "charge" && a.status == 503)
        .count() as u64;
    let acknowledged = CHARGES * 10_000_000 + charges;
    let charged_total = charged.unwrap();
    assert!(
        (acknowledged..=acknowledged + unconfirmed).contains(&charged_total),
        "every acknowledged charge is in the ledger ({charged_total} charged, {acknowledged} \
         acknowledged, {unconfirmed} answered 503)"
    );
    assert_eq!(
        balance,
        Some(charged.unwrap() - paid.unwrap()),
        "the balance is the charges less the payments"
    );
    (tokens.len(), holds.len(), charges, payments.len())
}

/// The value of an unlabelled metric of the app's (empty if it has none).
fn metric(app: &TestApp, name: &str) -> String {
    app.app
        .metrics
        .render()
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ').map(str::to_string))
        .unwrap_or_default()
}

/// `/ready`'s status code and body, as text.
async fn ready_reasons(app: &TestApp) -> String {
    let rsp = app.get("/ready", &[]).await;
    format!("{} {:?}", rsp.status.as_u16(), rsp.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "kills the dev stack's Redis master; run by `make test-ha`"]
async fn master_killed_for_good_under_load_loses_no_acknowledged_write() {
    let _restore = Restore;
    let app = TestApp::spawn().await;
    let (schedule, seats, users, holder) = loaded_schedule(&app).await;
    let old_master = master_port();

    let load = WriteLoad::start_with_payments(&app, schedule, users, holder.clone(), seats);
    tokio::time::sleep(Duration::from_secs(2)).await;
    kill(old_master);
    let killed = Instant::now();
    let promoted = eventually(
        Duration::from_secs(30),
        "a Sentinel to promote the replica",
        || async { (master_port() != old_master).then(Instant::now) },
    )
    .await;
    // Writes on the new master, then a while more under load.
    let first_write = eventually(Duration::from_secs(30), "a write on the new master", || {
        let answers = load.answers.clone();
        async move {
            answers
                .lock()
                .unwrap()
                .iter()
                .filter(|a| a.sent > promoted && a.write.is_some())
                .map(|a| a.answered)
                .min()
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers = load.finish().await;

    let last_before = answers
        .iter()
        .filter(|a| a.write.is_some() && a.answered <= killed)
        .map(|a| a.answered)
        .max()
        .expect("writes were acknowledged before the kill");
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.answered > killed && a.answered < first_write)
        .collect();
    assert!(
        during.iter().all(|a| a.status < 500 || a.status == 503),
        "only 503s among the failures: {:?}",
        by_status(&during)
    );
    assert!(
        during
            .iter()
            .filter(|a| a.status == 503)
            .all(|a| a.retry_after),
        "every 503 says when to retry"
    );
    let (tokens, holds, charges, payments) = nothing_lost(&app, schedule, holder.0, &answers).await;
    assert_eq!(
        metric(&app, "seatrush_redis_failovers_total"),
        "1",
        "seatrush followed one failover"
    );
    println!(
        "master {old_master} killed: promoted after {:?}; writes again {:?} after the \
         promotion ({:?} without an acknowledged write); answers meanwhile {:?}; \
         acknowledged and in Redis and MySQL: {tokens} tokens, {holds} holds, {charges} \
         charges, {payments} payments",
        promoted - killed,
        first_write.saturating_duration_since(promoted),
        first_write - last_before,
        by_status(&during),
    );

    // The old master back: a replica of the new one, holding what it has, and writes wait
    // for it again.
    let new_master = master_port();
    stack(&["ha-up"]);
    eventually(
        Duration::from_secs(60),
        "the old master to follow the new one",
        || async {
            (replication(old_master, "role") == "slave"
                && replication(old_master, "master_port") == new_master.to_string()
                && replication(old_master, "master_link_status") == "up")
                .then_some(())
        },
    )
    .await;
    eventually(
        Duration::from_secs(10),
        "seatrush to see the replica",
        || {
            let app = app.clone();
            async move { (!ready_reasons(&app).await.contains("REDIS_UNREPLICATED")).then_some(()) }
        },
    )
    .await;
    let token = app.active_token(schedule).await;
    let written = app.me(&token).await;
    written.assert_ok();
    // Nothing diverges: the schedule's records and the holder's wallet read the same on both
    // (the old master's own unreplicated tail, if it had one, was dropped in the resync).
    let k = ScheduleKeys::new(schedule);
    let wallet = seatrush::redis::keys::WalletKeys::of_user(holder.0).balances;
    let holder_field = holder.0.to_string();
    let views: [&[&str]; 4] = [
        &["hlen", &k.tokens],
        &["hlen", &k.res],
        &["zcard", &k.avail],
        &["hget", &wallet, &holder_field],
    ];
    let on = |port, view: &[&str]| cli(port, &[&["-n", "1"][..], view].concat());
    eventually(
        Duration::from_secs(5),
        "the same records on both",
        || async {
            views
                .iter()
                .all(|view| on(old_master, view) == on(new_master, view))
                .then_some(())
        },
    )
    .await;
    let old_master_has_it = cli(
        old_master,
        &[
            "-n",
            "1",
            "hexists",
            &ScheduleKeys::new(schedule).tokens,
            &common::opened(&token).sequence.to_string(),
        ],
    );
    assert_eq!(
        old_master_has_it, "1",
        "a write acknowledged now is on the old master, a replica again"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "kills the dev stack's Redis replica; run by `make test-ha`"]
async fn replica_killed_under_load_writes_go_on_unreplicated_and_nothing_is_lost() {
    let _restore = Restore;
    let app = TestApp::spawn().await;
    let (schedule, seats, users, holder) = loaded_schedule(&app).await;
    let replica = other(master_port());
    assert!(!ready_reasons(&app).await.contains("REDIS_UNREPLICATED"));

    let load = WriteLoad::start_with_payments(&app, schedule, users, holder.clone(), seats);
    tokio::time::sleep(Duration::from_secs(1)).await;
    kill(replica);
    let killed = Instant::now();
    let degraded = eventually(
        Duration::from_secs(10),
        "/ready to report the degraded mode",
        || {
            let app = app.clone();
            async move {
                let ready = ready_reasons(&app).await;
                (ready.starts_with("200") && ready.contains("REDIS_UNREPLICATED"))
                    .then(Instant::now)
            }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let answers = load.finish().await;
    let after: Vec<&Answer> = answers.iter().filter(|a| a.sent > degraded).collect();
    assert!(
        after.iter().all(|a| a.write.is_some()),
        "every write after the replica went is acknowledged: {:?}",
        by_status(&after)
    );
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.answered > killed && a.sent <= degraded)
        .collect();
    let (tokens, holds, charges, payments) = nothing_lost(&app, schedule, holder.0, &answers).await;
    assert_eq!(
        metric(&app, "seatrush_redis_replicas"),
        "0",
        "the replica count says none"
    );
    println!(
        "replica {replica} killed: /ready said REDIS_UNREPLICATED after {:?}; answers until \
         then {:?}; {} writes after, all acknowledged; in Redis and MySQL: {tokens} tokens, \
         {holds} holds, {charges} charges, {payments} payments",
        degraded - killed,
        by_status(&during),
        after.len(),
    );
}
