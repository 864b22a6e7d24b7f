//! Rebuilding Redis from MySQL (SPEC §7) after Redis lost its data: `seatrush rebuild-redis`,
//! and every start-up.
//!
//! MySQL holds what the flusher wrote: every schedule with its seats, its queue tokens,
//! reservations, payments and the ledger. [`restore`] puts back into Redis each schedule
//! Redis no longer knows (its `cfg` hash is the marker, written last), and raises every
//! sequence Redis hands ids out of above the ids MySQL already holds, so a new id can never
//! collide with a stored row.
//!
//! What a schedule gets back: its seats and the available ones; every reservation with its
//! hold, per-user counts and seat counters; live tokens (waiting in arrival order, active
//! until their expiry) and ended ones still within `ended_token_keep`, in the token index;
//! its sequences. A hold MySQL has RESERVED whose debit is already in the ledger (the
//! payment's last step had not been written) comes back PAYING under a new attempt begun
//! now, with its debit record, so the sweeper commits it once the saga timeout has passed.
//! Balances load on first use, or all at once with [`Options::balances`].
//!
//! Not in MySQL, so not rebuilt: Idempotency-Key outcomes, the measured admission rate,
//! outbox entries the flusher had not written yet, and the order seats were asked for in.

use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use mysql_async::prelude::*;

use crate::error::ApiError;
use crate::mysql::{Db, timed};
use crate::outbox::reservations;
use crate::outbox::tokens::{self, TokenRow};
use crate::queue::settings::{BookingWindow, QueueSettings};
use crate::redis::RedisConn;
use crate::redis::keys::{ScheduleKeys, TOKEN_INDEX, WALLET_BUCKETS, WalletKeys};
use crate::redis::scripts::{DEBIT_KEEP, Scripts, ledger_floor};

/// How long one process may hold a schedule's rebuild before another may take it over.
const CLAIM: Duration = Duration::from_secs(60);
/// Most values per Redis command.
const CHUNK: usize = 5_000;
/// Reservation and payment ids are `scheduleId * 2^32 + sequence`.
const ID_SHIFT: u32 = 32;

#[derive(Debug, Clone)]
pub struct Options {
    /// Ended tokens are kept this long (as the admission tick keeps them).
    pub ended_token_keep: Duration,
    /// Load every balance now rather than on first use.
    pub balances: bool,
}

/// What [`restore`] did.
#[derive(Debug, Default)]
pub struct Report {
    pub rebuilt: Vec<ScheduleReport>,
    /// Schedules Redis still had.
    pub present: usize,
    /// Schedules another process was rebuilding.
    pub busy: Vec<u64>,
    pub sequences_raised: u64,
    pub balances_loaded: u64,
}

#[derive(Debug, Default)]
pub struct ScheduleReport {
    pub schedule_id: u64,
    pub seats: usize,
    pub available: usize,
    pub live_tokens: usize,
    pub ended_tokens: usize,
    pub reservations: usize,
    /// RESERVED (or being paid).
    pub open: usize,
    pub paid: usize,
    /// Debited in the ledger, not yet PAID: back as PAYING for the sweeper to commit.
    pub payments_resumed: usize,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "schedules: {} rebuilt, {} already in Redis, {} being rebuilt by another process",
            self.rebuilt.len(),
            self.present,
            self.busy.len()
        )?;
        for s in &self.rebuilt {
            writeln!(
                f,
                "  schedule {}: {} seats ({} available), {} live and {} ended tokens, \
                 {} reservations ({} open, {} paid), {} payments resumed",
                s.schedule_id,
                s.seats,
                s.available,
                s.live_tokens,
                s.ended_tokens,
                s.reservations,
                s.open,
                s.paid,
                s.payments_resumed
            )?;
        }
        writeln!(f, "sequences raised: {}", self.sequences_raised)?;
        write!(f, "balances loaded: {}", self.balances_loaded)
    }
}

type ScheduleRow = (u64, i64, i64, u64, u64, u64, u64, u64, u64, bool);

/// Rebuilds what Redis is missing from MySQL (see the module note). Safe to run from many
/// processes at once and while others serve: a schedule is rebuilt by one process at a
/// time, and is unknown to the scripts until its rebuild is complete.
pub async fn restore(
    db: &Db,
    redis: &mut RedisConn,
    scripts: &Scripts,
    options: &Options,
) -> Result<Report, ApiError> {
    crate::wallet::prepare_outboxes(redis).await?;
    let mut conn = db.primary_conn().await?;
    let schedules: Vec<ScheduleRow> = timed(conn.query(
        "SELECT id, CAST(UNIX_TIMESTAMP(booking_open_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(booking_close_at) * 1000 AS SIGNED), max_active_users,
           max_waiting_users, admission_per_second, active_ttl_seconds, hold_ttl_seconds,
           max_seats_per_user, queue_paused FROM concert_schedules ORDER BY id",
    ))
    .await?;
    let mut report = Report::default();
    let mut present = Vec::new();
    for row in schedules {
        let id = row.0;
        let k = ScheduleKeys::new(id);
        let exists: bool = redis::cmd("EXISTS").arg(&k.cfg).query_async(redis).await?;
        if exists {
            present.push(id);
            continue;
        }
        let claim = uuid::Uuid::new_v4().to_string();
        let claimed: Option<String> = redis::cmd("SET")
            .arg(&k.rebuild)
            .arg(&claim)
            .arg("NX")
            .arg("PX")
            .arg(CLAIM.as_millis() as u64)
            .query_async(redis)
            .await?;
        if claimed.is_none() {
            report.busy.push(id);
            continue;
        }
        let outcome = rebuild_schedule(&mut conn, redis, row, options).await;
        redis::cmd("DEL")
            .arg(&k.rebuild)
            .query_async::<()>(redis)
            .await?;
        report.rebuilt.push(outcome?);
    }
    report.present = present.len();
    report.sequences_raised = raise_sequences(&mut conn, redis, scripts, &present).await?;
    if options.balances {
        report.balances_loaded = load_balances(&mut conn, redis).await?;
    }
    Ok(report)
}

/// Puts one schedule back (its claim held); its `cfg` last, which makes it known.
async fn rebuild_schedule(
    conn: &mut mysql_async::Conn,
    redis: &mut RedisConn,
    row: ScheduleRow,
    options: &Options,
) -> Result<ScheduleReport, ApiError> {
    let (id, open_ms, close_ms, active, waiting, rate, active_ttl, hold_ttl, seats, paused) = row;
    let k = ScheduleKeys::new(id);
    let mut report = ScheduleReport {
        schedule_id: id,
        ..ScheduleReport::default()
    };
    // Whatever an interrupted rebuild (or the loss) left behind goes first.
    redis::cmd("DEL")
        .arg(&[
            &k.seat,
            &k.avail,
            &k.res,
            &k.holds,
            &k.sagas,
            &k.userseats,
            &k.userholds,
            &k.stats,
            &k.rseq,
            &k.pseq,
            &k.tokens,
            &k.users,
            &k.waiting,
            &k.active,
            &k.ended,
            &k.seq,
        ])
        .query_async::<()>(redis)
        .await?;

    // Seats, reservations, and the payments to resume.
    let all_seats: Vec<(u64, u64, u64)> = timed(conn.exec(
        "SELECT id, seat_number, price FROM seats WHERE schedule_id = ? ORDER BY seat_number",
        (id,),
    ))
    .await?;
    let mut rows = reservations::load(conn, reservations::Scope::Schedule(id)).await?;
    let debited: Vec<(u64, u64, u64, i64)> = timed(conn.exec(
        "SELECT b.ref_id, b.id, b.balance_after,
           CAST(UNIX_TIMESTAMP(b.created_at) * 1000 AS SIGNED)
         FROM balance_transactions b JOIN reservations r ON r.id = b.ref_id
         WHERE b.type = 'PAYMENT' AND r.schedule_id = ? AND r.status = 'RESERVED'",
        (id,),
    ))
    .await?;
    let debited: HashMap<u64, (u64, u64, i64)> = debited
        .into_iter()
        .map(|(reservation, tx, after, at)| (reservation, (tx, after, at)))
        .collect();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let base = id << ID_SHIFT;
    let mut pseq = rows
        .iter()
        .filter_map(|r| r.payment_id)
        .max()
        .map_or(0, |p| p - base);
    let rseq = rows.last().map_or(0, |r| r.id - base);

    let mut pipe = redis::pipe();
    let mut taken: Vec<u64> = Vec::new();
    let (mut held, mut sold) = (0, 0);
    let mut user_seats: HashMap<u64, usize> = HashMap::new();
    let mut user_holds: HashMap<u64, usize> = HashMap::new();
    let mut debit_records = Vec::new();
    for r in &mut rows {
        match r.status.as_str() {
            "RESERVED" => {
                if let Some(&(tx, after, at)) = debited.get(&r.id) {
                    pseq += 1;
                    let attempt = base + pseq;
                    r.status = "PAYING".into();
                    r.payment_id = Some(attempt);
                    pipe.zadd(&k.sagas, r.id, now_ms).ignore();
                    debit_records.push((
                        WalletKeys::of_user(r.user_id).debit(r.id),
                        format!("DEBIT|{attempt}|{tx}|{after}|{at}"),
                    ));
                }
                pipe.zadd(&k.holds, r.id, r.expires_at_ms).ignore();
                held += r.seats.len();
                *user_holds.entry(r.user_id).or_default() += 1;
                *user_seats.entry(r.user_id).or_default() += r.seats.len();
                taken.extend(r.seats.iter().map(|s| s.0));
                report.open += 1;
            }
            "PAID" => {
                sold += r.seats.len();
                *user_seats.entry(r.user_id).or_default() += r.seats.len();
                taken.extend(r.seats.iter().map(|s| s.0));
                report.paid += 1;
            }
            _ => {}
        }
    }
    report.payments_resumed = debit_records.len();
    report.reservations = rows.len();
    taken.sort_unstable();
    let available: Vec<u64> = all_seats
        .iter()
        .map(|s| s.0)
        .filter(|seat| taken.binary_search(seat).is_err())
        .collect();
    report.seats = all_seats.len();
    report.available = available.len();
    for chunk in all_seats.chunks(CHUNK) {
        let infos: Vec<(u64, String)> = chunk
            .iter()
            .map(|&(seat, number, price)| (seat, format!("{number}|{price}")))
            .collect();
        pipe.hset_multiple(&k.seat, &infos).ignore();
    }
    for chunk in available.chunks(CHUNK) {
        pipe.sadd(&k.avail, chunk).ignore();
    }
    for chunk in rows.chunks(CHUNK) {
        let records: Vec<(u64, String)> = chunk.iter().map(|r| (r.id, r.record())).collect();
        pipe.hset_multiple(&k.res, &records).ignore();
    }
    let counts = |m: HashMap<u64, usize>| m.into_iter().collect::<Vec<_>>();
    for (key, per_user) in [(&k.userseats, user_seats), (&k.userholds, user_holds)] {
        for chunk in counts(per_user).chunks(CHUNK) {
            pipe.hset_multiple(key, chunk).ignore();
        }
    }

    // Tokens: the live ones and those ended within the keep period.
    let (max_seq, admitted): (u64, u64) = timed(conn.exec_first(
        "SELECT COALESCE(MAX(seq), 0), COUNT(activated_at) FROM queue_tokens
         WHERE schedule_id = ?",
        (id,),
    ))
    .await?
    .unwrap_or_default();
    let keep_from = now_ms - options.ended_token_keep.as_millis() as i64;
    let tokens = tokens::load(conn, id, keep_from).await?;
    let index = stage_tokens(&mut pipe, &k, &tokens, &mut report);
    pipe.hset_multiple(
        &k.stats,
        &[
            ("heldSeats", held as u64),
            ("soldSeats", sold as u64),
            ("admitted", admitted),
        ],
    )
    .ignore()
    .set(&k.seq, max_seq)
    .ignore()
    .set(&k.rseq, rseq)
    .ignore()
    .set(&k.pseq, pseq)
    .ignore();
    pipe.query_async::<()>(redis).await?;

    // Keys of other slots: the token index and the wallet buckets' debit records.
    for chunk in index.chunks(CHUNK) {
        redis::cmd("HSET")
            .arg(TOKEN_INDEX)
            .arg(chunk)
            .query_async::<()>(redis)
            .await?;
    }
    for (key, record) in &debit_records {
        redis::cmd("SET")
            .arg(key)
            .arg(record)
            .arg("PX")
            .arg(DEBIT_KEEP.as_millis() as u64)
            .query_async::<()>(redis)
            .await?;
    }

    let settings = QueueSettings {
        max_active_users: active,
        max_waiting_users: waiting,
        admission_per_second: rate,
        active_ttl_seconds: active_ttl,
        hold_ttl_seconds: hold_ttl,
        max_seats_per_user: seats,
        paused,
    };
    settings
        .register(redis, id, BookingWindow { open_ms, close_ms })
        .await?;
    Ok(report)
}

/// Adds the schedule's tokens to `pipe`: records, the waiting and active sets, the users'
/// live tokens and the ended set. Returns their token index entries (another slot).
fn stage_tokens(
    pipe: &mut redis::Pipeline,
    k: &ScheduleKeys,
    tokens: &[TokenRow],
    report: &mut ScheduleReport,
) -> Vec<(String, String)> {
    let mut index = Vec::with_capacity(tokens.len());
    for chunk in tokens.chunks(CHUNK) {
        let records: Vec<(&str, String)> = chunk
            .iter()
            .map(|t| (t.token.as_str(), t.record()))
            .collect();
        pipe.hset_multiple(&k.tokens, &records).ignore();
    }
    for t in tokens {
        match (t.status.as_str(), t.expires_at_ms, t.ended_at_ms) {
            ("WAITING", ..) => {
                pipe.zadd(&k.waiting, &t.token, t.seq).ignore();
                pipe.hset(&k.users, t.user_id, &t.token).ignore();
                report.live_tokens += 1;
            }
            ("ACTIVE", Some(expires), _) => {
                pipe.zadd(&k.active, &t.token, expires).ignore();
                pipe.hset(&k.users, t.user_id, &t.token).ignore();
                report.live_tokens += 1;
            }
            (_, _, Some(ended)) => {
                pipe.zadd(&k.ended, &t.token, ended).ignore();
                report.ended_tokens += 1;
            }
            _ => {}
        }
        index.push((t.token.clone(), format!("{}:{}", k.schedule_id, t.user_id)));
    }
    index
}

/// Raises the sequences of the schedules Redis still has, and every wallet bucket's ledger
/// sequence, above the ids MySQL holds (a Redis back from an older snapshot is behind it).
async fn raise_sequences(
    conn: &mut mysql_async::Conn,
    redis: &mut RedisConn,
    scripts: &Scripts,
    schedules: &[u64],
) -> Result<u64, ApiError> {
    let mut floors: HashMap<u64, [u64; 3]> = HashMap::new();
    let token_seqs: Vec<(u64, u64)> =
        timed(conn.query("SELECT schedule_id, MAX(seq) FROM queue_tokens GROUP BY schedule_id"))
            .await?;
    for (schedule, seq) in token_seqs {
        floors.entry(schedule).or_default()[0] = seq;
    }
    let reservation_ids: Vec<(u64, u64)> =
        timed(conn.query("SELECT schedule_id, MAX(id) FROM reservations GROUP BY schedule_id"))
            .await?;
    for (schedule, id) in reservation_ids {
        floors.entry(schedule).or_default()[1] = id - (schedule << ID_SHIFT);
    }
    let payment_ids: Vec<u64> =
        timed(conn.query("SELECT MAX(id) FROM payments GROUP BY id >> 32")).await?;
    for id in payment_ids {
        let schedule = id >> ID_SHIFT;
        floors.entry(schedule).or_default()[2] = id - (schedule << ID_SHIFT);
    }
    let mut raised = 0;
    for schedule in schedules {
        let Some([seq, rseq, pseq]) = floors.get(schedule) else {
            continue;
        };
        let k = ScheduleKeys::new(*schedule);
        raised += scripts
            .raise_sequences(redis, &[(k.seq, *seq), (k.rseq, *rseq), (k.pseq, *pseq)])
            .await?;
    }
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

/// Puts every balance MySQL has into Redis where Redis has none; returns how many.
async fn load_balances(
    conn: &mut mysql_async::Conn,
    redis: &mut RedisConn,
) -> Result<u64, ApiError> {
    let balances: Vec<(u64, u64, u64, u64, i64)> = timed(conn.query(
        "SELECT user_id, balance, total_charged, total_used,
           CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED) FROM user_balances",
    ))
    .await?;
    let mut loaded = 0;
    for chunk in balances.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        for &(user, balance, total_charged, total_used, updated_at_ms) in chunk {
            let record = crate::wallet::Balance {
                balance,
                total_charged,
                total_used,
                updated_at_ms,
            }
            .record();
            pipe.hset_nx(WalletKeys::of_user(user).balances, user, record);
        }
        let set: Vec<u64> = pipe.query_async(redis).await?;
        loaded += set.iter().sum::<u64>();
    }
    Ok(loaded)
}
