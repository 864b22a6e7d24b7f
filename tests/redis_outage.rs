//! Redis killed (`kill -9`) under write load, then restarted from its AOF (small, or large
//! enough that Redis answers `LOADING` for seconds), and Redis full (README, "Failure
//! behaviour"). Each test runs its own redis-server (a port, a directory and an AOF of its
//! own), so killing or filling it disturbs no other test; seatrush and MariaDB are the usual
//! test ones.
//!
//! While Redis is down or loading, writes answer `503` with `Retry-After` within about a
//! second (the circuit breaker fails them at once after the first few), nothing waits
//! longer, nothing is a `500`, and `/ready` says why; when Redis is back the service resumes
//! by itself, and every write answered 2xx before the kill is still there, in Redis and,
//! after the drain, in MySQL.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::load::{Write, WriteLoad};
use common::own_redis::OwnRedis;
use common::{TestApp, eventually};
use mysql_async::prelude::Queryable;
use redis::AsyncCommands;
use seatrush::redis::keys::{ScheduleKeys, WalletKeys};
use simd_json::prelude::*;

/// One read's answer: when, what, and whether it said `X-Data-Stale: true`.
#[derive(Debug)]
struct Read {
    sent: Instant,
    answered: Instant,
    path: String,
    status: u16,
    stale: bool,
}

/// Reads every read endpoint in turn until `stop`, with the holder's token: the schedules
/// and seats listings, the holder's reservation `held`, balance and token status.
fn read_load(
    app: &TestApp,
    concert: u64,
    schedule: u64,
    holder: (u64, String),
    held: u64,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<Read>> {
    let app = app.clone();
    tokio::spawn(async move {
        let (user, token) = holder;
        let paths = [
            format!("/api/v1/concerts/{concert}/schedules"),
            format!("/api/v1/concerts/{concert}/schedules/{schedule}/seats"),
            format!("/api/v1/reservations/{held}"),
            format!("/api/v1/users/{user}/balance"),
            "/api/v1/queue/tokens/me".to_string(),
        ];
        let mut reads = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            for path in &paths {
                let sent = Instant::now();
                let rsp = app.get(path, &[("queue-token", &token)]).await;
                reads.push(Read {
                    sent,
                    answered: Instant::now(),
                    path: path.clone(),
                    status: rsp.status.as_u16(),
                    stale: rsp.headers.get("x-data-stale").is_some_and(|v| v == "true"),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        reads
    })
}

/// `/ready` asked every 20 ms until `stop`: when each answer came, its status and reasons.
fn ready_load(app: &TestApp, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<Ready>> {
    let app = app.clone();
    tokio::spawn(async move {
        let mut answers = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let rsp = app.get("/ready", &[]).await;
            let reasons = rsp
                .body
                .get("reasons")
                .and_then(|r| r.as_array())
                .map(|r| {
                    r.iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            answers.push(Ready {
                answered: Instant::now(),
                status: rsp.status.as_u16(),
                reasons,
            });
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        answers
    })
}

#[derive(Debug)]
struct Ready {
    answered: Instant,
    status: u16,
    reasons: String,
}

/// Writes `keys` small keys into the Redis at `url` (MSETs of 1 000), so that its AOF is
/// large and a restart spends seconds loading it.
async fn fill(url: &str, keys: usize) {
    let mut conn = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let value = "x".repeat(64);
    for batch in 0..keys.div_ceil(1000) {
        let mut mset = redis::cmd("MSET");
        for i in batch * 1000..((batch + 1) * 1000).min(keys) {
            mset.arg(format!("filler:{i}")).arg(&value);
        }
        let () = mset.query_async(&mut conn).await.unwrap();
    }
}

/// The balance in a wallet record (`balance|totalCharged|totalUsed|updatedAt`), 0 if none.
fn balance_in(record: Option<String>) -> u64 {
    record
        .as_deref()
        .and_then(|r| r.split('|').next())
        .and_then(|b| b.parse().ok())
        .unwrap_or(0)
}

/// What one outage did, for the assertions and the printed figures.
struct Outage {
    /// Reads answered before the kill, and those sent and answered while Redis was down.
    reads_before: Vec<Read>,
    reads_during: Vec<Read>,
    during: Vec<(u16, bool, Duration)>,
    recovered_after: Duration,
    acknowledged_before_kill: usize,
    lost_in_redis: usize,
    /// Every write's answer from the start of the load to its end: status, `Retry-After`.
    all: Vec<(u16, bool)>,
    /// `/ready`'s answers from the restart until a write succeeded again.
    ready_while_recovering: Vec<Ready>,
}

/// Runs the write load, kills Redis for `down`, restarts it, waits for the service to
/// resume and the write-behind to drain, and checks the writes answered 2xx before the kill.
/// With `filler` keys written first, the restart loads a large AOF.
async fn outage(fsync: &'static str, down: Duration, filler: usize) -> Outage {
    let mut redis = OwnRedis::start(fsync);
    fill(&redis.url(), filler).await;
    let mut config = TestApp::config();
    config.redis_url = redis.url();
    let loading = if filler > 0 { "_loading" } else { "" };
    common::own_database(&mut config, &format!("seatrush_outage_{fsync}{loading}")).await;
    let app = TestApp::spawn_with(config).await;
    let (concert, schedule) = app.create_schedule(common::OPEN_NOW, 3000).await;
    app.set_queue(
        schedule,
        r#"{"admissionPerSecond": 100000, "maxActiveUsers": 100000, "maxSeatsPerUser": 100000,
            "userRequestsPerSecond": 100000}"#,
    )
    .await;
    let mut seats = app.seats_of(schedule).await;
    let users = app.create_users(1500).await;
    let holder = app.active_user(schedule).await;
    // A hold the reads look at, once MySQL has it (reads during the outage come from there).
    let held = app
        .hold(&holder.1, schedule, holder.0, &[seats.pop().unwrap()])
        .await
        .u64("reservationId");
    let pool = app.app.db.primary.clone();
    eventually(Duration::from_secs(10), "the hold to reach MySQL", || {
        let pool = pool.clone();
        async move {
            let mut db = pool.get_conn().await.unwrap();
            let n: Option<u64> = db
                .exec_first("SELECT COUNT(*) FROM reservations WHERE id = ?", (held,))
                .await
                .unwrap();
            (n == Some(1)).then_some(())
        }
    })
    .await;

    let load = WriteLoad::start(&app, schedule, users, holder.clone(), seats);
    let ready = ready_load(&app, load.stop.clone());
    let reader = read_load(
        &app,
        concert,
        schedule,
        holder.clone(),
        held,
        load.stop.clone(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    let killed = Instant::now();
    redis.kill();
    tokio::time::sleep(down).await;
    let restarted = Instant::now();
    redis.restart();
    let recovered = eventually(Duration::from_secs(20), "a write to succeed again", || {
        let answers = load.answers.clone();
        async move {
            let answers = answers.lock().unwrap();
            answers
                .iter()
                .filter(|a| a.sent > restarted && a.write.is_some())
                .map(|a| a.answered)
                .min()
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let answers = load.finish().await;
    let ready_while_recovering = ready
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.answered > restarted && r.answered < recovered)
        .collect();
    let all = answers.iter().map(|a| (a.status, a.retry_after)).collect();
    let (reads_before, reads_during): (Vec<Read>, Vec<Read>) = reader
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.answered < killed || (r.sent >= killed && r.answered <= restarted))
        .partition(|r| r.answered < killed);

    // Answers to writes sent while Redis was down (from the kill to the restart).
    let during: Vec<_> = answers
        .iter()
        .filter(|a| a.sent >= killed && a.answered <= restarted)
        .map(|a| (a.status, a.retry_after, a.answered - a.sent))
        .collect();
    let before: Vec<&Write> = answers
        .iter()
        .filter(|a| a.answered < killed)
        .filter_map(|a| a.write.as_ref())
        .collect();

    // Every write acknowledged before the kill, as Redis has it after the restart.
    let mut conn = app.redis();
    let k = ScheduleKeys::new(schedule);
    let mut lost = 0;
    let mut tokens = Vec::new();
    let mut holds = Vec::new();
    for write in &before {
        match write {
            Write::Token(t) => tokens.push(t.clone()),
            Write::Hold(id) => holds.push(*id),
            Write::Charge | Write::Payment(_) => {}
        }
    }
    for t in &tokens {
        let there: bool = conn
            .hexists(&k.tokens, common::opened(t).sequence)
            .await
            .unwrap();
        lost += usize::from(!there);
    }
    for id in &holds {
        let there: bool = conn.hexists(&k.res, id).await.unwrap();
        lost += usize::from(!there);
    }
    let charged_before = before.iter().filter(|w| matches!(w, Write::Charge)).count() as u64;
    let charged_total = answers
        .iter()
        .filter(|a| matches!(a.write, Some(Write::Charge)))
        .count() as u64;
    let record: Option<String> = conn
        .hget(WalletKeys::of_user(holder.0).balances, holder.0)
        .await
        .unwrap();
    let balance = balance_in(record);
    // Charges answered after the restart add to what survived; those before must all have.
    let survived = balance.saturating_sub(charged_total - charged_before);
    lost += charged_before.saturating_sub(survived) as usize;

    if lost == 0 {
        // After the drain MySQL has them too: each token and hold, and Redis's balance.
        eventually(
            Duration::from_secs(20),
            "MySQL to hold every acknowledged write",
            || {
                let (tokens, holds, pool) = (tokens.clone(), holds.clone(), pool.clone());
                async move {
                    let db = &mut pool.get_conn().await.unwrap();
                    let mut missing = 0;
                    for t in &tokens {
                        let token = common::opened(t);
                        let n: Option<u64> = db
                            .exec_first(
                                "SELECT COUNT(*) FROM queue_tokens
                                 WHERE schedule_id = ? AND seq = ?",
                                (token.schedule_id, token.sequence),
                            )
                            .await
                            .unwrap();
                        missing += usize::from(n != Some(1));
                    }
                    for id in &holds {
                        let n: Option<u64> = db
                            .exec_first("SELECT COUNT(*) FROM reservations WHERE id = ?", (id,))
                            .await
                            .unwrap();
                        missing += usize::from(n != Some(1));
                    }
                    let in_mysql: Option<u64> = db
                        .exec_first(
                            "SELECT balance FROM user_balances WHERE user_id = ?",
                            (holder.0,),
                        )
                        .await
                        .unwrap();
                    (missing == 0 && in_mysql == Some(balance)).then_some(())
                }
            },
        )
        .await;
    }
    Outage {
        reads_before,
        reads_during,
        during,
        recovered_after: recovered - restarted,
        acknowledged_before_kill: before.len(),
        lost_in_redis: lost,
        all,
        ready_while_recovering,
    }
}

fn report(fsync: &str, o: &Outage) {
    let slowest = o.during.iter().map(|d| d.2).max().unwrap_or_default();
    let mut by_status = std::collections::BTreeMap::new();
    for (status, _, _) in &o.during {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    let stale = o.reads_during.iter().filter(|r| r.stale).count();
    println!(
        "appendfsync {fsync}: {} writes answered while Redis was down ({by_status:?}), slowest \
         {slowest:?}; {} reads then, {stale} of them 200 from MySQL with X-Data-Stale; writes \
         resumed {:?} after the restart; {} acknowledged before the kill, {} of them lost",
        o.during.len(),
        o.reads_during.len(),
        o.recovered_after,
        o.acknowledged_before_kill,
        o.lost_in_redis
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_write_load_with_fsync_always_loses_no_acknowledged_write() {
    let o = outage("always", Duration::from_secs(2), 0).await;
    report("always", &o);
    assert!(o.acknowledged_before_kill > 100, "the load ran");
    assert!(o.during.len() > 50, "writes kept coming during the outage");
    for (status, retry_after, took) in &o.during {
        assert_eq!(*status, 503, "a write while Redis is down");
        assert!(retry_after, "503 says when to retry");
        assert!(*took < Duration::from_millis(1500), "answered in {took:?}");
    }
    let fast = o
        .during
        .iter()
        .filter(|d| d.2 < Duration::from_millis(50))
        .count();
    assert!(
        fast * 10 >= o.during.len() * 9,
        "the open circuit answers at once: {fast} of {} under 50 ms",
        o.during.len()
    );
    assert!(o.recovered_after < Duration::from_secs(5));
    assert_eq!(o.lost_in_redis, 0, "acknowledged writes survive the kill");
    assert!(!o.reads_before.is_empty() && o.reads_during.len() >= 5);
    for r in &o.reads_before {
        assert_eq!(
            (r.status, r.stale),
            (200, false),
            "{} before the kill",
            r.path
        );
    }
    for r in &o.reads_during {
        assert_eq!(
            (r.status, r.stale),
            (200, true),
            "{} while Redis is down",
            r.path
        );
    }
}

/// `everysec` may lose up to about a second of acknowledged writes: reported, not asserted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_under_write_load_with_fsync_everysec_resumes_and_reports_losses() {
    let o = outage("everysec", Duration::from_secs(2), 0).await;
    report("everysec", &o);
    assert!(o.during.iter().all(|d| d.0 == 503));
    assert!(o.recovered_after < Duration::from_secs(5));
}

/// Redis restarted at once, but with an AOF of FILLER keys to read back: while it answers
/// `LOADING`, every write is `503` with `Retry-After` (none is a `500`) and `/ready` is `503`
/// with `REDIS_LOADING`; then writes resume by themselves and none acknowledged is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_loading_a_large_aof_answers_503_and_ready_says_so() {
    const FILLER: usize = 3_000_000;
    let o = outage("always", Duration::ZERO, FILLER).await;
    let mut by_status = std::collections::BTreeMap::new();
    for (status, _) in &o.all {
        *by_status.entry(*status).or_insert(0) += 1;
    }
    let loading = o
        .ready_while_recovering
        .iter()
        .filter(|r| r.status == 503 && r.reasons == "REDIS_LOADING")
        .count();
    let reconciling = o
        .ready_while_recovering
        .iter()
        .filter(|r| r.status == 503 && r.reasons == "RECONCILING")
        .count();
    println!(
        "appendfsync always, restarted with {FILLER} filler keys: writes resumed {:?} after \
         the restart; all writes' answers {by_status:?}; /ready 503 REDIS_LOADING {loading} \
         times while loading, then RECONCILING {reconciling} times; {} acknowledged before \
         the kill, {} of them lost",
        o.recovered_after, o.acknowledged_before_kill, o.lost_in_redis
    );
    assert!(o.acknowledged_before_kill > 100, "the load ran");
    assert!(
        o.recovered_after > Duration::from_secs(1),
        "Redis took a while to load: {:?}",
        o.recovered_after
    );
    for (status, retry_after) in &o.all {
        assert!(
            (200..300).contains(status) || (*status == 503 && *retry_after),
            "a write answered {status} (Retry-After: {retry_after})"
        );
    }
    assert!(
        by_status.get(&503).copied().unwrap_or(0) > 0,
        "writes came while Redis loaded"
    );
    assert!(
        loading > 0,
        "/ready said REDIS_LOADING: {:?}",
        o.ready_while_recovering
    );
    for r in &o.ready_while_recovering {
        assert!(
            r.status == 200 || r.reasons.starts_with("REDIS_") || r.reasons == "RECONCILING",
            "/ready while recovering: {r:?}"
        );
    }
    assert_eq!(
        o.lost_in_redis, 0,
        "acknowledged writes survive the restart"
    );
}

/// Redis at its `maxmemory` (noeviction) refuses every write with `OOM`: a request that
/// would write is `503 SERVICE_UNAVAILABLE` with `Retry-After` (never a 500, never half
/// done), reads go on, and writes resume once Redis has room again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_redis_refuses_writes_with_503_and_keeps_serving_reads() {
    let redis = OwnRedis::start("everysec");
    let mut config = TestApp::config();
    config.redis_url = redis.url();
    common::own_database(&mut config, "seatrush_redis_full").await;
    let app = TestApp::spawn_with(config).await;
    let (schedule, seats) = app.open_schedule(4).await;
    let (user, token) = app.active_user(schedule).await;
    let newcomer = app.create_user().await;
    let conn = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let full = |limit: &'static str| {
        let mut conn = conn.clone();
        async move {
            let _: () = redis::cmd("CONFIG")
                .arg("SET")
                .arg("maxmemory")
                .arg(limit)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    };
    full("1").await;
    let unavailable = |rsp: common::Rsp, what: &str| {
        rsp.assert_error(503, "SERVICE_UNAVAILABLE");
        assert!(rsp.headers.contains_key("retry-after"), "{what}");
    };
    unavailable(
        app.hold(&token, schedule, user, &seats[..1]).await,
        "a hold",
    );
    unavailable(app.issue(newcomer, schedule).await, "an issuance");
    let charge = app
        .post(
            &format!("/api/v1/users/{user}/balance/charge"),
            &[("queue-token", &token)],
            r#"{"amount": 1000}"#,
        )
        .await;
    unavailable(charge, "a charge");
    app.me(&token).await.assert_ok();
    let avail: u64 = conn
        .clone()
        .zcard(ScheduleKeys::new(schedule).avail)
        .await
        .unwrap();
    assert_eq!(avail, 4, "the refused hold took no seat");

    full("0").await;
    app.hold(&token, schedule, user, &seats[..1])
        .await
        .assert_created();
    app.issue(newcomer, schedule).await.assert_ok();
}

/// A TCP proxy in front of the Redis on `upstream` that passes everything, except that once
/// `armed`, it forwards the next request containing `marker` to Redis and then drops Redis's
/// replies and closes the client's connection: the command ran, and the client never hears.
async fn cutting_proxy(upstream: u16, marker: &'static [u8]) -> (u16, Arc<AtomicBool>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let armed = Arc::new(AtomicBool::new(false));
    let arm = armed.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await else {
                continue;
            };
            let armed = arm.clone();
            tokio::spawn(async move {
                let (mut from_client, mut to_client) = client.into_split();
                let (mut from_server, mut to_server) = server.into_split();
                let cutting = Arc::new(AtomicBool::new(false));
                let cut = cutting.clone();
                let replies = tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = from_server.read(&mut buf).await {
                        if cut.load(Ordering::SeqCst)
                            || to_client.write_all(&buf[..n]).await.is_err()
                        {
                            return; // dropping `to_client` closes the client's connection
                        }
                    }
                });
                let mut buf = vec![0u8; 64 * 1024];
                while let Ok(n @ 1..) = from_client.read(&mut buf).await {
                    let hit = buf[..n].windows(marker.len()).any(|w| w == marker);
                    if hit && armed.swap(false, Ordering::SeqCst) {
                        cutting.store(true, Ordering::SeqCst);
                    }
                    if to_server.write_all(&buf[..n]).await.is_err()
                        || cutting.load(Ordering::SeqCst)
                    {
                        break;
                    }
                }
                // Redis has the request; its reply ends the reply task, which closes.
                let _ = replies.await;
            });
        }
    });
    (port, armed)
}

/// The connection to Redis drops after a charge script ran but before its reply arrived:
/// the client library must not send the script again (a charge without an Idempotency-Key
/// would be applied twice). The caller hears `503`; the charge is applied exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_dropped_after_a_charge_ran_does_not_charge_twice() {
    const AMOUNT: u64 = 31_337;
    let redis = OwnRedis::start("everysec");
    let (proxy, armed) = cutting_proxy(redis.port, b"\r\n31337\r\n").await;
    let mut config = TestApp::config();
    config.redis_url = format!("redis://127.0.0.1:{proxy}/0");
    common::own_database(&mut config, "seatrush_dropped_reply").await;
    let app = TestApp::spawn_with(config).await;
    let (schedule, _) = app.open_schedule(1).await;
    let (user, token) = app.active_user(schedule).await;
    let charge = |amount: u64| {
        let (app, token) = (app.clone(), token.clone());
        async move {
            app.post(
                &format!("/api/v1/users/{user}/balance/charge"),
                &[("queue-token", &token)],
                &format!(r#"{{"amount":{amount}}}"#),
            )
            .await
        }
    };
    charge(1).await.assert_ok();
    let mut direct = redis::Client::open(redis.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = WalletKeys::of_user(user).balances;
    let before = balance_in(direct.hget(&key, user).await.unwrap());

    armed.store(true, Ordering::SeqCst);
    let rsp = charge(AMOUNT).await;
    assert!(
        !armed.load(Ordering::SeqCst),
        "the proxy cut the charge's reply"
    );
    let after = balance_in(direct.hget(&key, user).await.unwrap());
    println!(
        "charge whose reply was cut: answered {}, balance {before} -> {after}",
        rsp.status
    );
    assert_eq!(after, before + AMOUNT, "the charge ran exactly once");
    assert_eq!(rsp.status.as_u16(), 503, "{:?}", rsp.body);
    // And the service goes on: the next charge is answered and applied.
    eventually(Duration::from_secs(10), "a charge to succeed again", || {
        let charge = charge(1);
        async move { charge.await.status.is_success().then_some(()) }
    })
    .await;
}

/// A hold, sent again while the service answers `503` (Redis restarting or being
/// reconciled), within a deadline.
async fn hold_when_served(
    app: &TestApp,
    user: u64,
    token: &str,
    schedule: u64,
    seat: u64,
) -> common::Rsp {
    eventually(
        Duration::from_secs(20),
        "a hold to be served",
        || async move {
            let rsp = app.hold(token, schedule, user, &[seat]).await;
            (rsp.status != 503).then_some(rsp)
        },
    )
    .await
}

/// MySQL's count of `sql` (one `?`: the schedule) once it reaches `expected`.
async fn mysql_reaches(pool: &mysql_async::Pool, sql: &'static str, schedule: u64, expected: u64) {
    eventually(Duration::from_secs(20), sql, || async move {
        let mut db = pool.get_conn().await.unwrap();
        let n: Option<u64> = db.exec_first(sql, (schedule,)).await.unwrap();
        (n == Some(expected)).then_some(())
    })
    .await;
}

const PAID: &str = "SELECT COUNT(*) FROM reservations WHERE schedule_id = ? AND status = 'PAID'";
/// The ledger lines of the schedule's buyers (each test database has its own users).
const LINES: &str = "SELECT COUNT(*) FROM balance_transactions b
     JOIN queue_tokens t ON t.user_id = b.user_id WHERE t.schedule_id = ?";

/// Each seat's status on the schedule's seat map (`?view=map`), read with `token`.
async fn seat_map(app: &TestApp, schedule: u64, token: &str) -> Vec<(u64, String)> {
    let mut db = app.app.db.primary.get_conn().await.unwrap();
    let concert: Option<u64> = db
        .exec_first(
            "SELECT concert_id FROM concert_schedules WHERE id = ?",
            (schedule,),
        )
        .await
        .unwrap();
    let path = format!(
        "/api/v1/concerts/{}/schedules/{schedule}/seats?view=map",
        concert.unwrap()
    );
    let rsp = app.get(&path, &[("queue-token", token)]).await;
    rsp.assert_ok();
    rsp.seat_statuses()
}

/// Redis comes back older than MySQL: restarted from a copy of its directory taken before
/// five buyers held, charged and paid, all of which reached MySQL. Before it hands out
/// another id the reconciler brings it forwards, so five other buyers who then try the same
/// seats are refused and buy five others: no seat is sold twice, no id is reused, no ledger
/// line is lost, money is conserved, and Redis equals MySQL after the drain. The seat map
/// shows the seats as MySQL has them, not as the copy had them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restored_from_an_older_copy_sells_no_seat_twice_and_reuses_no_id() {
    let mut redis = OwnRedis::start("always");
    let mut config = TestApp::config();
    config.redis_url = redis.url();
    common::own_database(&mut config, "seatrush_rolled_back").await;
    let app = TestApp::spawn_with(config).await;
    let pool = app.app.db.primary.clone();
    let (schedule, seats) = app.open_schedule(11).await;
    let mut buyers = Vec::new();
    for _ in 0..10 {
        let (user, token) = app.active_user(schedule).await;
        app.charge(&token, user, 100_000).await.assert_ok();
        buyers.push((user, token));
    }
    mysql_reaches(&pool, LINES, schedule, 10).await;
    let copy = redis.copy_data();

    let (first, second) = buyers.split_at(5);
    let mut sold = Vec::new();
    for ((user, token), &seat) in first.iter().zip(&seats) {
        let rsp = app.hold(token, schedule, *user, &[seat]).await;
        rsp.assert_created();
        let id = rsp.u64("reservationId");
        app.charge(token, *user, 7_000).await.assert_ok();
        app.pay(token, *user, id).await.assert_created();
        sold.push((id, *user));
    }
    // And one more joins the queue and holds the last seat.
    let (late, late_token) = app.active_user(schedule).await;
    let rsp = app.hold(&late_token, schedule, late, &[seats[10]]).await;
    rsp.assert_created();
    let late_hold = rsp.u64("reservationId");
    mysql_reaches(&pool, PAID, schedule, 5).await;
    mysql_reaches(&pool, LINES, schedule, 20).await;
    mysql_reaches(
        &pool,
        "SELECT COUNT(*) FROM reservations WHERE schedule_id = ? AND status = 'RESERVED'",
        schedule,
        1,
    )
    .await;
    let behind = counter(&app, "seatrush_reconcile_behind_total");
    let map = seat_map(&app, schedule, &late_token).await;
    assert_eq!(map.iter().filter(|(_, s)| s == "SOLD").count(), 5);
    assert_eq!(map[10], (seats[10], "HELD".to_string()));

    redis.restart_from(&copy);
    let restarted = Instant::now();
    for ((user, token), &seat) in second.iter().zip(&seats) {
        let rsp = hold_when_served(&app, *user, token, schedule, seat).await;
        rsp.assert_error(409, "SEAT_ALREADY_RESERVED");
    }
    let served_after = restarted.elapsed();
    // The late user's token and hold, which only MySQL had, are back.
    assert_eq!(app.me(&late_token).await.str("status"), "ACTIVE");
    let rsp = app
        .get(
            &format!("/api/v1/reservations/{late_hold}"),
            &[("queue-token", &late_token)],
        )
        .await;
    rsp.assert_ok();
    assert_eq!(rsp.str("status"), "RESERVED");
    assert_eq!(seat_map(&app, schedule, &late_token).await, map);
    let (user, token) = &second[0];
    let rsp = app.hold(token, schedule, *user, &[seats[10]]).await;
    rsp.assert_error(409, "SEAT_ALREADY_RESERVED");
    let mut bought = Vec::new();
    for ((user, token), &seat) in second.iter().zip(&seats[5..]) {
        let rsp = hold_when_served(&app, *user, token, schedule, seat).await;
        rsp.assert_created();
        let id = rsp.u64("reservationId");
        app.pay(token, *user, id).await.assert_created();
        bought.push((id, *user));
    }
    assert!(
        counter(&app, "seatrush_reconcile_behind_total") > behind,
        "the reconciler counts a Redis behind MySQL"
    );

    // The drain: every acknowledged payment and ledger line in MySQL, once.
    mysql_reaches(&pool, PAID, schedule, 10).await;
    mysql_reaches(&pool, LINES, schedule, 25).await;
    let mut db = pool.get_conn().await.unwrap();
    let mut paid: Vec<(u64, u64)> = db
        .exec(
            "SELECT id, user_id FROM reservations WHERE schedule_id = ? AND status = 'PAID'",
            (schedule,),
        )
        .await
        .unwrap();
    paid.sort_unstable();
    let mut acknowledged: Vec<(u64, u64)> = sold.iter().chain(&bought).copied().collect();
    acknowledged.sort_unstable();
    assert_eq!(
        paid, acknowledged,
        "each payment under its own id, to its buyer"
    );
    let sold_twice: Vec<(u64, u64)> = db
        .exec(
            "SELECT rs.seat_id, COUNT(*) FROM reservation_seats rs
             JOIN reservations r ON r.id = rs.reservation_id
             WHERE r.schedule_id = ? AND r.status = 'PAID'
             GROUP BY rs.seat_id HAVING COUNT(*) > 1",
            (schedule,),
        )
        .await
        .unwrap();
    assert!(sold_twice.is_empty(), "seats sold twice: {sold_twice:?}");
    let sold_seats: Option<u64> = db
        .exec_first(
            "SELECT COUNT(*) FROM seats WHERE schedule_id = ? AND status = 'SOLD'",
            (schedule,),
        )
        .await
        .unwrap();
    assert_eq!(sold_seats, Some(10));

    // Money: each balance is its ledger's sum, in MySQL and in Redis alike.
    let mut conn = app.redis();
    for (i, (user, _)) in buyers.iter().enumerate() {
        let expected = if i < 5 {
            100_000 + 7_000 - 50_000
        } else {
            50_000
        };
        let (stored, ledger): (u64, i64) = db
            .exec_first(
                "SELECT b.balance, (SELECT CAST(SUM(IF(type = 'CHARGE', amount, -amount)) AS SIGNED)
                   FROM balance_transactions WHERE user_id = b.user_id)
                 FROM user_balances b WHERE b.user_id = ?",
                (*user,),
            )
            .await
            .unwrap()
            .unwrap();
        assert_eq!((stored, ledger), (expected, expected as i64), "user {user}");
        let key = WalletKeys::of_user(*user).balances;
        let in_redis = balance_in(conn.hget(&key, *user).await.unwrap());
        assert_eq!(in_redis, expected, "user {user} in Redis");
    }
    let repaired: Vec<String> = app
        .app
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with("seatrush_reconcile_repaired_total{"))
        .map(|l| l.replace("seatrush_reconcile_repaired_total", ""))
        .collect();
    println!(
        "Redis restored from an older copy: holds served again {served_after:.2?} after the \
         restart; moved forwards: {}",
        repaired.join(", ")
    );
    let mut dead_letters = vec![ScheduleKeys::new(schedule).dead_letters];
    dead_letters.extend(
        buyers
            .iter()
            .map(|(user, _)| WalletKeys::of_user(*user).dead_letters),
    );
    for stream in dead_letters {
        let dead: u64 = conn.xlen(&stream).await.unwrap();
        assert_eq!(
            dead, 0,
            "{stream}: nothing conflicted, nothing was dead-lettered"
        );
    }
}

/// A counter of the app's own metrics, summed over its series.
fn counter(app: &TestApp, name: &str) -> u64 {
    app.app
        .metrics
        .render()
        .lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
