//! Reconciliation: bringing a Redis that came back older than MySQL (an AOF that lost its
//! last second, a failover to a lagging replica, a restored snapshot) forwards to what MySQL
//! already holds, before it hands out another id.
//!
//! The flusher has written to MySQL what such a Redis forgot. Left alone, Redis would hand
//! out ids MySQL holds (the flusher would then meet conflicts), sell again seats MySQL has
//! sold, and let users spend money MySQL has seen them spend. [`repair`] moves each record
//! forwards, never back: sequences are raised above MySQL's largest ids; PAID reservations
//! are PAID again with their seats sold, holds MySQL has are held again, holds MySQL has
//! seen end are ended; live tokens Redis lost are back, ended ones have ended; a pre-queue's
//! shuffle MySQL has and Redis lacks is put back in force (the admission tick applies its
//! places again before it admits); balances whose sums MySQL has seen grow further are
//! MySQL's. What Redis has that MySQL has not seen yet
//! (its outbox) stays, so nothing acknowledged is lost either way.
//!
//! When it runs: the Redis a repair was made for is named by its run id in
//! [`RECONCILED`]. Every instance runs [`run`]: when its connection's fence
//! ([`crate::redis::Fence`]) closes (a lost connection, `LOADING`, …), and every [`PERIOD`],
//! it compares that marker with the run id of the Redis it talks to. A Redis that is not
//! the one reconciled last (it restarted, or another took over) is repaired by one instance
//! (claimed), the marker is set, and the fences open; until then scripts are refused, writes
//! answer `503`, and `/ready` says `RECONCILING`. A reconciled Redis is also checked every
//! period (one instance per period): a sequence below MySQL's largest id means Redis went
//! behind unnoticed; it is raised at once, logged and counted, and that schedule's records
//! and the balances are moved forwards. `seatrush rebuild-redis` runs [`repair`] too.
//!
//! Records that left Redis on purpose (ended holds and tokens past their keep time) are
//! not brought back: a record Redis lacks is restored only if its sequence lies above the
//! one Redis had reached. A record Redis holds under an id MySQL has with other content (the
//! id was handed out twice) is left as it is and counted as a conflict; the flusher
//! dead-letters Redis's version.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use mysql_async::prelude::*;
use redis::AsyncCommands;

use crate::model::{
    Error, PaymentId, ReservationId, ReservationStatus, WALLET_BUCKETS, ledger_floor,
};
use crate::mysql::records::{self, Scope};
use crate::mysql::{Db, placeholders, timed};
use crate::redis::keys::{
    RECONCILE_CHECK, RECONCILE_CLAIM, RECONCILED, SCHEDULES, ScheduleKeys, WalletKeys,
};
use crate::redis::{RedisConn, Scripts, schedules};
use crate::shutdown::Shutdown;

/// How often a reconciled Redis is checked for having gone behind MySQL unnoticed.
pub const PERIOD: Duration = Duration::from_secs(5);
/// How often an instance whose fence is closed looks again (another may be repairing).
pub const RETRY: Duration = Duration::from_millis(100);
/// How long one process may hold a repair before another may take it over.
const CLAIM: Duration = Duration::from_secs(60);
/// Records per script call: each call stays short, so the hot path waits little.
const PER_CALL: usize = 200;
/// Schedules whose largest ids one query looks up.
const FLOORS_PER_QUERY: usize = 100;

/// What [`repair`] moved forwards.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Repair {
    pub sequences_raised: u64,
    pub reservations_paid: u64,
    pub holds_restored: u64,
    pub holds_ended: u64,
    pub tokens_restored: u64,
    pub tokens_admitted: u64,
    pub tokens_ended: u64,
    /// Shuffles of pre-queues put back in force.
    pub shuffles_restored: u64,
    pub balances: u64,
    /// Records Redis holds under an id MySQL has with other content (an id handed out
    /// twice): left as they are; the flusher dead-letters Redis's versions.
    pub conflicts: u64,
}

impl Repair {
    /// Whether Redis was behind MySQL in anything.
    pub fn found_anything(&self) -> bool {
        *self != Repair::default()
    }

    /// Records moved forwards (reservations, tokens and the queue's order).
    fn records_moved(&self) -> u64 {
        self.reservations_paid
            + self.holds_restored
            + self.holds_ended
            + self.tokens_restored
            + self.tokens_admitted
            + self.tokens_ended
            + self.shuffles_restored
    }

    /// Each count with its name, for the log and the metric.
    fn counts(&self) -> [(&'static str, u64); 10] {
        [
            ("sequences_raised", self.sequences_raised),
            ("reservations_paid", self.reservations_paid),
            ("holds_restored", self.holds_restored),
            ("holds_ended", self.holds_ended),
            ("tokens_restored", self.tokens_restored),
            ("tokens_admitted", self.tokens_admitted),
            ("tokens_ended", self.tokens_ended),
            ("shuffles_restored", self.shuffles_restored),
            ("balances", self.balances),
            ("conflicts", self.conflicts),
        ]
    }

    fn record_metrics(&self) {
        for (what, n) in self.counts() {
            if n > 0 {
                metrics::counter!("seatrush_reconcile_repaired_total", "what" => what).increment(n);
            }
        }
    }
}

impl fmt::Display for Repair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .counts()
            .iter()
            .map(|(what, n)| format!("{what} {n}"))
            .collect();
        f.write_str(&parts.join(", "))
    }
}

/// What one [`check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Checked {
    /// This Redis was reconciled already, and is not behind MySQL.
    Reconciled,
    /// This Redis was not (or was behind) and has been repaired now, here.
    Repaired(Repair),
    /// Another process is repairing it; the fence stays closed.
    Waiting,
}

/// Keeps this instance's fence closed whenever its Redis is not known to be reconciled with
/// MySQL, and repairs it when it is this instance's turn (see the module note). Runs until
/// `shutdown`.
pub async fn run(
    db: Db,
    redis: RedisConn,
    scripts: std::sync::Arc<Scripts>,
    keep_ended: Duration,
    shutdown: Shutdown,
) {
    let mut redis = redis.unfenced();
    let fence = redis.fence().clone();
    loop {
        let wait = if fence.is_open() { PERIOD } else { RETRY };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = fence.closed(), if fence.is_open() => {}
            _ = shutdown.triggered() => break,
        }
        if let Err(e) = check(&db, &mut redis, &scripts, keep_ended).await {
            tracing::debug!(error = %e, "reconciliation check failed; tried again");
        }
    }
}

/// One check of the Redis `redis` talks to (see the module note), opening its fence when
/// Redis is reconciled.
pub async fn check(
    db: &Db,
    redis: &mut RedisConn,
    scripts: &Scripts,
    keep_ended: Duration,
) -> Result<Checked, Error> {
    let fence = redis.fence().clone();
    let closes = fence.closes();
    let run = crate::redis::run_id(redis).await?;
    let marker: Option<String> = redis.get(RECONCILED).await?;
    if marker.as_deref() == Some(run.as_str()) {
        fence.open(closes);
        return periodic(db, redis, scripts, keep_ended).await;
    }
    fence.close("Redis is not the one last reconciled with MySQL");
    let claim = uuid::Uuid::new_v4().to_string();
    if !take(redis, RECONCILE_CLAIM, &claim, CLAIM).await? {
        return Ok(Checked::Waiting);
    }
    let closes = fence.closes();
    let repaired = repair(db, redis, scripts, keep_ended).await;
    release(redis, RECONCILE_CLAIM, &claim).await?;
    let repaired = repaired?;
    if repaired.found_anything() {
        tracing::error!(%repaired, "Redis was behind MySQL; moved forwards");
        metrics::counter!("seatrush_reconcile_behind_total").increment(1);
        repaired.record_metrics();
    } else {
        tracing::info!("Redis reconciled with MySQL: nothing was behind");
    }
    mark_reconciled(redis, scripts, &run, closes).await?;
    Ok(Checked::Repaired(repaired))
}

/// The check of a Redis reconciled already, by one instance per [`PERIOD`]: a schedule whose
/// sequences were below MySQL's ids went behind unnoticed. Raising them is the first repair
/// (no id is handed out twice from then on); its records and the balances are moved
/// forwards next, while the service goes on (each script moves records only forwards).
async fn periodic(
    db: &Db,
    redis: &mut RedisConn,
    scripts: &Scripts,
    keep_ended: Duration,
) -> Result<Checked, Error> {
    if !take(redis, RECONCILE_CHECK, "1", PERIOD).await? {
        return Ok(Checked::Reconciled);
    }
    let mut conn = db.primary_conn().await?;
    let schedules: Vec<u64> = redis.smembers(SCHEDULES).await?;
    let reached = reached_sequences(redis, &schedules).await?;
    let behind = raise_sequences(&mut conn, redis, scripts, &schedules).await?;
    raise_ledger_sequences(&mut conn, redis, scripts).await?;
    if behind.is_empty() {
        return Ok(Checked::Reconciled);
    }
    tracing::error!(
        schedules = ?behind,
        "Redis is behind MySQL: sequences were below MySQL's ids; raised, moving records forwards"
    );
    let mut repaired = Repair {
        sequences_raised: behind.len() as u64,
        ..Repair::default()
    };
    repair_records(
        &mut conn,
        redis,
        scripts,
        &behind,
        &reached,
        keep_ended,
        &mut repaired,
    )
    .await?;
    tracing::error!(%repaired, "Redis was behind MySQL; moved forwards");
    metrics::counter!("seatrush_reconcile_behind_total").increment(1);
    repaired.record_metrics();
    Ok(Checked::Repaired(repaired))
}

/// Names `run` as reconciled and opens the fence, unless Redis changed meanwhile or the
/// fence was closed since the repair began (`closes`): then the next check looks again. The
/// scripts are loaded first, so their first calls do not find them missing (`NOSCRIPT`
/// closes the fence).
pub async fn mark_reconciled(
    redis: &mut RedisConn,
    scripts: &Scripts,
    run: &str,
    closes: u64,
) -> Result<(), Error> {
    scripts.load_all(redis).await?;
    if crate::redis::run_id(redis).await? == run {
        let _: () = redis.set(RECONCILED, run).await?;
        redis.fence().open(closes);
    }
    Ok(())
}

/// Takes `key` (as `value`) for `hold` unless another process has it.
async fn take(
    redis: &mut RedisConn,
    key: &str,
    value: &str,
    hold: Duration,
) -> redis::RedisResult<bool> {
    let set: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .arg("NX")
        .arg("PX")
        .arg(hold.as_millis() as u64)
        .query_async(redis)
        .await?;
    Ok(set.is_some())
}

/// Gives `key` up if this process (`value`) still holds it.
async fn release(redis: &mut RedisConn, key: &str, value: &str) -> redis::RedisResult<()> {
    let held: Option<String> = redis.get(key).await?;
    if held.as_deref() == Some(value) {
        let _: () = redis.del(key).await?;
    }
    Ok(())
}

/// Moves every record Redis is behind MySQL on forwards (see the module note). Safe while
/// others serve: each script compares and moves in one step, and only forwards.
pub async fn repair(
    db: &Db,
    redis: &mut RedisConn,
    scripts: &Scripts,
    keep_ended: Duration,
) -> Result<Repair, Error> {
    let mut conn = db.primary_conn().await?;
    let schedules: Vec<u64> = redis.smembers(SCHEDULES).await?;
    let reached = reached_sequences(redis, &schedules).await?;
    let mut repair = Repair {
        sequences_raised: raise_sequences(&mut conn, redis, scripts, &schedules)
            .await?
            .len() as u64,
        ..Repair::default()
    };
    raise_ledger_sequences(&mut conn, redis, scripts).await?;
    repair_records(
        &mut conn,
        redis,
        scripts,
        &schedules,
        &reached,
        keep_ended,
        &mut repair,
    )
    .await?;
    Ok(repair)
}

/// Moves the records of `schedules` (whose sequences had `reached` these values before
/// they were raised) and every balance forwards, counting in `repair`.
async fn repair_records(
    conn: &mut mysql_async::Conn,
    redis: &mut RedisConn,
    scripts: &Scripts,
    schedules: &[u64],
    reached: &HashMap<u64, [u64; 2]>,
    keep_ended: Duration,
    repair: &mut Repair,
) -> Result<(), Error> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    for &schedule in schedules {
        let at = Progress {
            now_ms,
            reached: reached[&schedule],
        };
        let before = repair.records_moved();
        repair_schedule(conn, redis, scripts, schedule, at, keep_ended, repair).await?;
        if repair.records_moved() > before {
            // Records came back: the background loops serve it again, if it was set aside.
            schedules::serve_again(redis, schedule).await?;
        }
    }
    repair.balances = restore_balances(conn, redis, scripts).await?;
    Ok(())
}

/// When a schedule is repaired.
#[derive(Debug, Clone, Copy)]
struct Progress {
    now_ms: i64,
    /// The token and reservation sequences Redis had reached before they were raised to
    /// MySQL's: a record Redis lacks above them was lost, one below left on purpose.
    reached: [u64; 2],
}

/// Each schedule's token and reservation sequences in Redis now.
async fn reached_sequences(
    redis: &mut RedisConn,
    schedules: &[u64],
) -> redis::RedisResult<HashMap<u64, [u64; 2]>> {
    let mut reached = HashMap::new();
    for chunk in schedules.chunks(500) {
        let mut pipe = redis::pipe();
        for &schedule in chunk {
            let k = ScheduleKeys::new(schedule);
            pipe.get(k.token_sequence).get(k.reservation_sequence);
        }
        let sequences: Vec<Option<u64>> = pipe.query_async(redis).await?;
        for (schedule, pair) in chunk.iter().zip(sequences.chunks(2)) {
            reached.insert(
                *schedule,
                [pair[0].unwrap_or_default(), pair[1].unwrap_or_default()],
            );
        }
    }
    Ok(reached)
}

/// Moves one schedule's reservations and tokens forwards to MySQL's, counting in `repair`.
async fn repair_schedule(
    conn: &mut mysql_async::Conn,
    redis: &mut RedisConn,
    scripts: &Scripts,
    schedule: u64,
    at: Progress,
    keep_ended: Duration,
    repair: &mut Repair,
) -> Result<(), Error> {
    let [tokens_reached, reservations_reached] = at.reached;
    let mut reservations = records::reservations(conn, Scope::Schedule(schedule)).await?;
    // Endings first: a seat one of them released may be one a later reservation took.
    reservations.sort_by_key(|r| {
        let ends = matches!(
            r.status,
            ReservationStatus::Cancelled | ReservationStatus::Expired
        );
        (!ends, r.id)
    });
    let rows: Vec<(u64, String)> = reservations
        .iter()
        .map(|r| (r.id.get(), r.record()))
        .collect();
    for chunk in rows.chunks(PER_CALL) {
        let [paid, held, ended, conflicts] = scripts
            .restore_reservations(redis, schedule, at.now_ms, reservations_reached, chunk)
            .await?;
        repair.reservations_paid += paid;
        repair.holds_restored += held;
        repair.holds_ended += ended;
        repair.conflicts += conflicts;
    }
    let ended_since = at.now_ms - keep_ended.as_millis() as i64;
    let tokens = records::tokens(conn, schedule, ended_since).await?;
    let rows: Vec<(u64, String)> = tokens.iter().map(|t| (t.sequence, t.record())).collect();
    for chunk in rows.chunks(PER_CALL) {
        let [restored, admitted, ended, conflicts] = scripts
            .restore_tokens(redis, schedule, tokens_reached, chunk)
            .await?;
        repair.tokens_restored += restored;
        repair.tokens_admitted += admitted;
        repair.tokens_ended += ended;
        repair.conflicts += conflicts;
    }
    // After the tokens: a WAITING token brought back here is placed with the rest.
    if let Some(shuffle) = records::shuffle(conn, schedule).await?
        && scripts.restore_shuffle(redis, schedule, &shuffle).await?
    {
        repair.shuffles_restored += 1;
    }
    Ok(())
}

/// Moves balances forwards where MySQL has seen more of them than Redis; returns how many.
async fn restore_balances(
    conn: &mut mysql_async::Conn,
    redis: &mut RedisConn,
    scripts: &Scripts,
) -> Result<u64, Error> {
    let mut by_bucket: HashMap<u64, Vec<(u64, String)>> = HashMap::new();
    for (user, record) in records::balance_records(conn).await? {
        by_bucket
            .entry(WalletKeys::of_user(user).bucket)
            .or_default()
            .push((user, record));
    }
    let mut moved = 0;
    for (bucket, rows) in by_bucket {
        for chunk in rows.chunks(PER_CALL) {
            moved += scripts.restore_balances(redis, bucket, chunk).await?;
        }
    }
    Ok(moved)
}

/// Raises the token, reservation and payment sequences of `schedules` above the ids MySQL
/// holds; returns the schedules that had one below (none: Redis was not behind).
pub async fn raise_sequences(
    conn: &mut mysql_async::Conn,
    redis: &mut RedisConn,
    scripts: &Scripts,
    schedules: &[u64],
) -> Result<Vec<u64>, Error> {
    // Per schedule: the token, reservation and payment sequences MySQL has reached, each
    // found on an index (a schedule's ids are one range of the primary key).
    let mut floors: HashMap<u64, [u64; 3]> = HashMap::new();
    for chunk in schedules.chunks(FLOORS_PER_QUERY) {
        let sql = format!(
            "SELECT s.id,
               (SELECT COALESCE(MAX(seq), 0) FROM queue_tokens WHERE schedule_id = s.id),
               (SELECT COALESCE(MAX(id), 0) FROM reservations
                 WHERE id BETWEEN s.id << 32 AND (s.id << 32) | 4294967295),
               (SELECT COALESCE(MAX(id), 0) FROM payments
                 WHERE id BETWEEN s.id << 32 AND (s.id << 32) | 4294967295)
             FROM concert_schedules s WHERE s.id IN ({})",
            placeholders(chunk.len(), "?")
        );
        let rows: Vec<(u64, u64, u64, u64)> = timed(conn.exec(sql, chunk.to_vec())).await?;
        for (schedule, tokens, reservation, payment) in rows {
            floors.insert(
                schedule,
                [
                    tokens,
                    ReservationId::from_u64(reservation).sequence(),
                    PaymentId::from_u64(payment).sequence(),
                ],
            );
        }
    }
    let mut behind = Vec::new();
    for schedule in schedules {
        let Some([tokens, reservations, payments]) = floors.get(schedule) else {
            continue;
        };
        if *tokens == 0 && *reservations == 0 && *payments == 0 {
            continue;
        }
        let k = ScheduleKeys::new(*schedule);
        let sequences = [
            (k.token_sequence, *tokens),
            (k.reservation_sequence, *reservations),
            (k.payment_sequence, *payments),
        ];
        if scripts.raise_sequences(redis, &sequences).await? > 0 {
            behind.push(*schedule);
        }
    }
    Ok(behind)
}

/// Raises every wallet bucket's ledger sequence so that its next id lies above every id of
/// MySQL's ledger. MySQL's largest id is one number for all buckets (finding each bucket's
/// would scan the ledger), so a bucket used less than others is raised too, routinely: a
/// raise here is not a sign of a Redis behind MySQL. Returns how many were raised.
pub async fn raise_ledger_sequences(
    conn: &mut mysql_async::Conn,
    redis: &mut RedisConn,
    scripts: &Scripts,
) -> Result<u64, Error> {
    let mut raised = 0;
    let max_ledger_id: Option<u64> =
        timed(conn.query_first("SELECT COALESCE(MAX(id), 0) FROM balance_transactions")).await?;
    let floor = ledger_floor(max_ledger_id.unwrap_or(0));
    for bucket in 0..WALLET_BUCKETS {
        raised += scripts
            .raise_sequences(redis, &[(WalletKeys::bucket(bucket).txseq, floor)])
            .await?;
    }
    Ok(raised)
}
