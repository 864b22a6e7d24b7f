//! Rebuilding Redis from MySQL after Redis lost its data: `seatrush rebuild-redis`, and
//! every start-up.
//!
//! MySQL holds what the flusher wrote: every schedule with its seats, its queue tokens,
//! reservations, payments and the ledger. [`restore`] puts back into Redis each schedule
//! Redis no longer knows (its `cfg` hash is the marker, written last), with its sequences
//! above the ids MySQL holds. The schedules Redis still has are `crate::reconcile`'s: it
//! raises their sequences and the ledger's, and moves their records forwards, whenever
//! Redis may be older than MySQL (and `rebuild-redis` runs it after this).
//!
//! What a schedule gets back: its seats and the available ones; every reservation with its
//! hold, per-user counts and seat counters; live tokens (waiting in the queue's order:
//! arrival order, the pre-queue in the places its stored shuffle gives it; active until
//! their expiry) and ended ones still within `ended_record_keep`; its sequences. A pre-queue
//! whose shuffle MySQL does not have yet is shuffled again at the next tick (nobody was told
//! a place, or admitted, before the shuffle reached the outbox). A hold MySQL has RESERVED whose debit is already in the ledger (the
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

use crate::model::{
    BookingWindow, Error, PaymentId, QueueOrder, QueueSettings, ReservationId, ReservationRecord,
    ReservationStatus, Shuffle, TokenRecord, TokenStatus,
};
use crate::mysql::records::{self, Scope};
use crate::mysql::{Db, timed};
use crate::redis::keys::{ScheduleKeys, WalletKeys};
use crate::redis::schedules::{self, CHUNK};
use crate::redis::scripts::{DEBIT_KEEP, Scripts};
use crate::redis::{RedisConn, streams};

/// How long one process may hold a schedule's rebuild before another may take it over.
const CLAIM: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Options {
    /// Ended tokens are kept this long (as the admission tick keeps them).
    pub ended_record_keep: Duration,
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
        write!(f, "balances loaded: {}", self.balances_loaded)
    }
}

/// A schedule as MySQL records it: what Redis needs to know it.
struct StoredSchedule {
    id: u64,
    window: BookingWindow,
    settings: QueueSettings,
    /// The opening's shuffle of its pre-queue, and when it ran (ms).
    shuffle: Option<(Shuffle, i64)>,
}

async fn stored_schedules(
    conn: &mut mysql_async::Conn,
) -> Result<Vec<StoredSchedule>, mysql_async::Error> {
    let rows: Vec<mysql_async::Row> = timed(conn.query(
        "SELECT s.id, CAST(UNIX_TIMESTAMP(s.booking_open_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(s.booking_close_at) * 1000 AS SIGNED), s.max_active_users,
           s.max_waiting_users, s.admission_per_second, s.active_ttl_seconds,
           s.hold_ttl_seconds, s.max_seats_per_user, s.user_requests_per_second,
           s.queue_paused, s.queue_order, s.pre_queue_minutes, q.seed, q.first_seq, q.last_seq,
           CAST(UNIX_TIMESTAMP(q.shuffled_at) * 1000 AS SIGNED)
         FROM concert_schedules s LEFT JOIN queue_shuffles q ON q.schedule_id = s.id
         ORDER BY s.id",
    ))
    .await?;
    rows.into_iter().map(stored_schedule).collect()
}

fn stored_schedule(mut row: mysql_async::Row) -> Result<StoredSchedule, mysql_async::Error> {
    fn take<T: FromValue>(row: &mut mysql_async::Row, i: usize) -> Result<T, mysql_async::Error> {
        match row.take_opt(i) {
            Some(Ok(value)) => Ok(value),
            _ => Err(mysql_async::Error::Other(
                format!("schedules: column {i} unreadable").into(),
            )),
        }
    }
    let id: u64 = take(&mut row, 0)?;
    let order: String = take(&mut row, 11)?;
    let seed: Option<String> = take(&mut row, 13)?;
    let shuffle = match seed {
        Some(seed) => Some((
            records::stored_shuffle(id, &seed, take(&mut row, 14)?, take(&mut row, 15)?)?,
            take(&mut row, 16)?,
        )),
        None => None,
    };
    Ok(StoredSchedule {
        id,
        window: BookingWindow {
            open_ms: take(&mut row, 1)?,
            close_ms: take(&mut row, 2)?,
        },
        settings: QueueSettings {
            max_active_users: take(&mut row, 3)?,
            max_waiting_users: take(&mut row, 4)?,
            admission_per_second: take(&mut row, 5)?,
            active_ttl_seconds: take(&mut row, 6)?,
            hold_ttl_seconds: take(&mut row, 7)?,
            max_seats_per_user: take(&mut row, 8)?,
            user_requests_per_second: take(&mut row, 9)?,
            paused: take(&mut row, 10)?,
            queue_order: QueueOrder::parse(&order).ok_or_else(|| {
                mysql_async::Error::Other(format!("schedule {id}: queue order {order:?}").into())
            })?,
            pre_queue_minutes: take(&mut row, 12)?,
        },
        shuffle,
    })
}

/// Rebuilds what Redis is missing from MySQL (see the module note). Safe to run from many
/// processes at once and while others serve: a schedule is rebuilt by one process at a
/// time, and is unknown to the scripts until its rebuild is complete.
pub async fn restore(
    db: &Db,
    redis: &mut RedisConn,
    scripts: &Scripts,
    options: &Options,
) -> Result<Report, Error> {
    streams::prepare_wallet_outboxes(redis).await?;
    let mut conn = db.primary_conn().await?;
    let mut report = Report::default();
    let mut present = Vec::new();
    for schedule in stored_schedules(&mut conn).await? {
        let id = schedule.id;
        if schedules::is_known(redis, id).await? {
            report.present += 1;
            present.push(id);
            continue;
        }
        let k = ScheduleKeys::new(id);
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
        let outcome = rebuild_schedule(&mut conn, redis, &schedule, options).await;
        redis::cmd("DEL")
            .arg(&k.rebuild)
            .query_async::<()>(redis)
            .await?;
        report.rebuilt.push(outcome?);
    }
    upgrade_free_seats(redis, scripts, &present).await?;
    if options.balances {
        report.balances_loaded = load_balances(&mut conn, redis).await?;
    }
    Ok(report)
}

/// Orders the AVAILABLE seats of the schedules Redis had that still keep them unordered, as
/// earlier versions did (one round trip finds them).
async fn upgrade_free_seats(
    redis: &mut RedisConn,
    scripts: &Scripts,
    present: &[u64],
) -> Result<(), Error> {
    for chunk in present.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        for &id in chunk {
            pipe.exists(ScheduleKeys::new(id).unordered_available());
        }
        let unordered: Vec<bool> = pipe.query_async(redis).await?;
        for (&id, _) in chunk.iter().zip(unordered).filter(|(_, old)| *old) {
            let moved = scripts.upgrade_free_seats(redis, id).await?;
            tracing::info!(
                schedule = id,
                seats = moved,
                "available seats ordered by number"
            );
        }
    }
    Ok(())
}

/// Puts one schedule back (its claim held): whatever a loss or an interrupted rebuild left
/// is cleared, then seats, reservations and tokens are staged in one pipeline, the keys of
/// other slots written, and its `cfg` last, which makes it known.
async fn rebuild_schedule(
    conn: &mut mysql_async::Conn,
    redis: &mut RedisConn,
    schedule: &StoredSchedule,
    options: &Options,
) -> Result<ScheduleReport, Error> {
    let id = schedule.id;
    let k = ScheduleKeys::new(id);
    let mut report = ScheduleReport {
        schedule_id: id,
        ..ScheduleReport::default()
    };
    clear_schedule(redis, &k).await?;

    let mut pipe = redis::pipe();
    let seats = records::seats(conn, id).await?;
    let mut reservations = records::reservations(conn, Scope::Schedule(id)).await?;
    let debited = debited_unpaid(conn, id).await?;
    let holds = stage_reservations(&mut pipe, &k, &mut reservations, &debited, &mut report);
    let available: Vec<u64> = seats
        .iter()
        .map(|s| s.seat_id)
        .filter(|seat| holds.taken.binary_search(seat).is_err())
        .collect();
    report.seats = seats.len();
    report.available = available.len();
    schedules::stage_seats(&mut pipe, id, &seats, &available);

    let (max_token_sequence, admitted): (u64, u64) = timed(conn.exec_first(
        "SELECT COALESCE(MAX(seq), 0), COUNT(activated_at) FROM queue_tokens
         WHERE schedule_id = ?",
        (id,),
    ))
    .await?
    .unwrap_or_default();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let keep_from = now_ms - options.ended_record_keep.as_millis() as i64;
    let tokens = records::tokens(conn, id, keep_from).await?;
    let order = QueueOrderState::of(schedule, &tokens);
    stage_tokens(&mut pipe, &k, &tokens, &order, &mut report);
    pipe.hset_multiple(
        &k.stats,
        &[
            ("heldSeats", holds.held_seats as u64),
            ("soldSeats", holds.sold_seats as u64),
            ("admitted", admitted),
        ],
    )
    .ignore()
    .set(&k.token_sequence, max_token_sequence)
    .ignore()
    .set(&k.reservation_sequence, holds.reservation_sequence)
    .ignore()
    .set(&k.payment_sequence, holds.payment_sequence)
    .ignore();
    pipe.query_async::<()>(redis).await?;

    write_other_slots(redis, &holds.debit_records).await?;
    schedules::register(redis, id, &schedule.settings, schedule.window, &order.cfg).await?;
    Ok(report)
}

/// Deletes the schedule's keys, whatever an interrupted rebuild (or the loss) left behind.
async fn clear_schedule(redis: &mut RedisConn, k: &ScheduleKeys) -> redis::RedisResult<()> {
    redis::cmd("DEL")
        .arg(&[
            &k.seat,
            &k.avail,
            &k.unordered_available(),
            &k.res,
            &k.rended,
            &k.holds,
            &k.sagas,
            &k.userseats,
            &k.userholds,
            &k.stats,
            &k.reservation_sequence,
            &k.payment_sequence,
            &k.tokens,
            &k.users,
            &k.waiting,
            &k.active,
            &k.ended,
            &k.token_sequence,
            &k.rates[0],
            &k.rates[1],
        ])
        .query_async(redis)
        .await
}

/// A PAYMENT ledger line of a reservation MySQL still has RESERVED.
struct Debit {
    transaction_id: u64,
    balance_after: u64,
    at_ms: i64,
}

/// The schedule's RESERVED reservations whose debit is already in the ledger (the payment's
/// last step had not been written), by reservation id.
async fn debited_unpaid(
    conn: &mut mysql_async::Conn,
    schedule_id: u64,
) -> Result<HashMap<ReservationId, Debit>, mysql_async::Error> {
    let rows: Vec<(u64, u64, u64, i64)> = timed(conn.exec(
        "SELECT b.ref_id, b.id, b.balance_after,
           CAST(UNIX_TIMESTAMP(b.created_at) * 1000 AS SIGNED)
         FROM balance_transactions b JOIN reservations r ON r.id = b.ref_id
         WHERE b.type = 'PAYMENT' AND r.schedule_id = ? AND r.status = 'RESERVED'",
        (schedule_id,),
    ))
    .await?;
    Ok(rows
        .into_iter()
        .map(|(reservation, transaction_id, balance_after, at_ms)| {
            let debit = Debit {
                transaction_id,
                balance_after,
                at_ms,
            };
            (ReservationId::from_u64(reservation), debit)
        })
        .collect())
}

/// What the schedule's reservations hold.
#[derive(Default)]
struct HeldState {
    /// Seats of RESERVED and PAID reservations, sorted.
    taken: Vec<u64>,
    held_seats: usize,
    sold_seats: usize,
    reservation_sequence: u64,
    payment_sequence: u64,
    /// Debit records to write in the wallet buckets' slots.
    debit_records: Vec<(String, String)>,
}

/// Adds the schedule's reservations to `pipe`: records, open holds, per-user counts, and
/// sagas for the debited holds, which come back PAYING under a new attempt begun now.
fn stage_reservations(
    pipe: &mut redis::Pipeline,
    k: &ScheduleKeys,
    reservations: &mut [ReservationRecord],
    debited: &HashMap<ReservationId, Debit>,
    report: &mut ScheduleReport,
) -> HeldState {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut state = HeldState {
        reservation_sequence: reservations.last().map_or(0, |r| r.id.sequence()),
        payment_sequence: reservations
            .iter()
            .filter_map(|r| r.payment_id)
            .max()
            .map_or(0, |p| p.sequence()),
        ..HeldState::default()
    };
    let mut user_seats: HashMap<u64, usize> = HashMap::new();
    let mut user_holds: HashMap<u64, usize> = HashMap::new();
    for r in reservations.iter_mut() {
        match r.status {
            ReservationStatus::Reserved => {
                if let Some(debit) = debited.get(&r.id) {
                    state.payment_sequence += 1;
                    let attempt = PaymentId::new(k.schedule_id, state.payment_sequence);
                    r.status = ReservationStatus::Paying;
                    r.payment_id = Some(attempt);
                    pipe.zadd(&k.sagas, r.id.get(), now_ms).ignore();
                    state.debit_records.push((
                        WalletKeys::of_user(r.user_id).debit(r.id),
                        format!(
                            "DEBIT|{attempt}|{}|{}|{}",
                            debit.transaction_id, debit.balance_after, debit.at_ms
                        ),
                    ));
                }
                pipe.zadd(&k.holds, r.id.get(), r.expires_at_ms).ignore();
                state.held_seats += r.seats.len();
                *user_holds.entry(r.user_id).or_default() += 1;
                *user_seats.entry(r.user_id).or_default() += r.seats.len();
                state.taken.extend(r.seats.iter().map(|s| s.0));
                report.open += 1;
            }
            ReservationStatus::Paid => {
                state.sold_seats += r.seats.len();
                *user_seats.entry(r.user_id).or_default() += r.seats.len();
                state.taken.extend(r.seats.iter().map(|s| s.0));
                report.paid += 1;
            }
            _ => {}
        }
    }
    state.taken.sort_unstable();
    report.payments_resumed = state.debit_records.len();
    // Cancelled and expired holds stay in MySQL: their reads go there (as for records that
    // left Redis in service), and nothing in Redis needs them.
    let kept: Vec<(u64, String)> = reservations
        .iter()
        .filter(|r| {
            !matches!(
                r.status,
                ReservationStatus::Cancelled | ReservationStatus::Expired
            )
        })
        .map(|r| (r.id.get(), r.record()))
        .collect();
    report.reservations = kept.len();
    for chunk in kept.chunks(CHUNK) {
        pipe.hset_multiple(&k.res, chunk).ignore();
    }
    let counts = |m: HashMap<u64, usize>| m.into_iter().collect::<Vec<_>>();
    for (key, per_user) in [(&k.userseats, user_seats), (&k.userholds, user_holds)] {
        for chunk in counts(per_user).chunks(CHUNK) {
            pipe.hset_multiple(key, chunk).ignore();
        }
    }
    state
}

/// Adds the schedule's tokens to `pipe`: records (under their sequences), the waiting and
/// active sets, the users' live tokens and the ended set.
/// The order of a rebuilt schedule's queue: each WAITING token's place, and what `cfg`
/// keeps of it (see `lua/issue_tokens.lua` and `lua/shuffle_apply.lua`).
struct QueueOrderState {
    /// The stored shuffle's first sequence and the places from it on.
    placed: Option<(u64, Vec<u64>)>,
    cfg: Vec<(&'static str, String)>,
}

impl QueueOrderState {
    fn of(schedule: &StoredSchedule, tokens: &[TokenRecord]) -> Self {
        if let Some((shuffle, at_ms)) = &schedule.shuffle {
            return Self {
                placed: Some((shuffle.first, shuffle.places())),
                cfg: vec![
                    ("shuffleSeed", shuffle.seed_hex()),
                    ("shuffleFirst", shuffle.first.to_string()),
                    ("shuffleLast", shuffle.last.to_string()),
                    ("shuffleCursor", (shuffle.last + 1).to_string()),
                    ("shuffledAt", at_ms.to_string()),
                ],
            };
        }
        let mut cfg = Vec::new();
        if schedule.settings.queue_order == QueueOrder::ShuffleAtOpen {
            // Not shuffled yet: the pre-queue is every token issued before the opening.
            let pre_queue = tokens
                .iter()
                .filter(|t| t.issued_at_ms < schedule.window.open_ms)
                .map(|t| t.sequence);
            if let (Some(first), Some(last)) = (pre_queue.clone().min(), pre_queue.max()) {
                cfg.push(("preQueueFirst", first.to_string()));
                cfg.push(("preQueueLast", last.to_string()));
            }
        }
        Self { placed: None, cfg }
    }

    /// The token's score in the waiting queue.
    fn place(&self, sequence: u64) -> u64 {
        match &self.placed {
            Some((first, places)) => Shuffle::place_of(places, *first, sequence),
            None => sequence,
        }
    }
}

fn stage_tokens(
    pipe: &mut redis::Pipeline,
    k: &ScheduleKeys,
    tokens: &[TokenRecord],
    order: &QueueOrderState,
    report: &mut ScheduleReport,
) {
    for chunk in tokens.chunks(CHUNK) {
        let records: Vec<(u64, String)> = chunk.iter().map(|t| (t.sequence, t.record())).collect();
        pipe.hset_multiple(&k.tokens, &records).ignore();
    }
    for t in tokens {
        match (t.status, t.expires_at_ms, t.ended_at_ms) {
            (TokenStatus::Waiting, ..) => {
                pipe.zadd(&k.waiting, t.sequence, order.place(t.sequence))
                    .ignore();
                pipe.hset(&k.users, t.user_id, t.sequence).ignore();
                report.live_tokens += 1;
            }
            (TokenStatus::Active, Some(expires), _) => {
                pipe.zadd(&k.active, t.sequence, expires).ignore();
                pipe.hset(&k.users, t.user_id, t.sequence).ignore();
                report.live_tokens += 1;
            }
            (_, _, Some(ended)) => {
                pipe.zadd(&k.ended, t.sequence, ended).ignore();
                report.ended_tokens += 1;
            }
            _ => {}
        }
    }
}

/// Keys of other slots: the wallet buckets' debit records.
async fn write_other_slots(
    redis: &mut RedisConn,
    debit_records: &[(String, String)],
) -> redis::RedisResult<()> {
    for (key, record) in debit_records {
        redis::cmd("SET")
            .arg(key)
            .arg(record)
            .arg("PX")
            .arg(DEBIT_KEEP.as_millis() as u64)
            .query_async::<()>(redis)
            .await?;
    }
    Ok(())
}

/// Puts every balance MySQL has into Redis where Redis has none; returns how many.
async fn load_balances(conn: &mut mysql_async::Conn, redis: &mut RedisConn) -> Result<u64, Error> {
    let balances = records::balance_records(conn).await?;
    let mut loaded = 0;
    for chunk in balances.chunks(CHUNK) {
        let mut pipe = redis::pipe();
        for (user, record) in chunk {
            pipe.hset_nx(WalletKeys::of_user(*user).balances, user, record);
        }
        let set: Vec<u64> = pipe.query_async(redis).await?;
        loaded += set.iter().sum::<u64>();
    }
    Ok(loaded)
}
