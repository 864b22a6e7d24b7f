//! The hot path as the services see it: one named method per Redis operation, each naming
//! the script it runs (so a handler leads to its script by go-to-definition). Concurrent calls
//! of the scripts every request makes are coalesced per schedule (or wallet bucket) into one
//! script call ([`Coalescer`]).

use std::collections::HashMap;
use std::sync::Arc;

use redis::{AsyncCommands, RedisResult};

use super::RedisConn;
use super::coalesce::Coalescer;
use super::keys::{LIVE, RETIRING, SCHEDULES, ScheduleKeys, WalletKeys};
use super::scripts::{
    AdmitOutcome, BeginOutcome, BeginRequest, ChargeMode, ChargeOutcome, CommitOutcome, Counted,
    DebitOutcome, DebitRequest, HoldOutcome, HoldRequest, IssueOutcome, IssueRequest, Retirement,
    Scripts, SeatViewOutcome, ShuffleStart, ShuffleStep, StatusOutcome,
};
use super::seat_reads::SeatReads;
use crate::model::{
    Balance, Idempotency, PaymentAttempt, PaymentId, QueueSettings, QueueToken, Refusal,
    ReservationId, ReservationRecord, SeatView, Shuffle, wallet_bucket,
};

/// A coalescer whose batches are calls of `Scripts::$script` (or of the same method of
/// another caller of the script, such as [`SeatReads`]) for the batch's slot (a schedule,
/// or a wallet bucket for debits), recording each batch's size under the script's name.
macro_rules! coalesced {
    ($scripts:ident, $conn:expr, $script:ident) => {{
        let (scripts, conn) = ($scripts.clone(), $conn.clone());
        Coalescer::new(Arc::new(move |slot, batch| {
            metrics::histogram!("seatrush_coalesced_batch_size", "operation" => stringify!($script))
                .record(batch.len() as f64);
            let (scripts, mut conn) = (scripts.clone(), conn.clone());
            Box::pin(async move { scripts.$script(&mut conn, slot, &batch).await })
        }))
    }};
}

/// What Redis knows of a record that may have left it (see [`HotPath::reservation`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Here(String),
    /// Made once, and its record has left Redis since (it ended, and MySQL has it).
    LeftRedis,
    /// Never made.
    Never,
}

/// The services' handle on Redis, built once at start-up. Every call goes over one
/// multiplexed connection (its clones share the socket and the circuit breaker).
pub struct HotPath {
    conn: RedisConn,
    scripts: Arc<Scripts>,
    token_issuer: Coalescer<IssueRequest, IssueOutcome>,
    token_checker: Coalescer<(u64, Counted), StatusOutcome>,
    seat_viewer: Coalescer<(u64, u64, SeatView), SeatViewOutcome>,
    seat_holder: Coalescer<HoldRequest, HoldOutcome>,
    payment_begins: Coalescer<BeginRequest, BeginOutcome>,
    debits: Coalescer<DebitRequest, DebitOutcome>,
    payment_commits: Coalescer<(ReservationId, PaymentId), CommitOutcome>,
}

impl HotPath {
    pub fn new(conn: RedisConn, scripts: Arc<Scripts>) -> Self {
        let seat_reads = Arc::new(SeatReads::new(scripts.clone()));
        Self {
            token_issuer: coalesced!(scripts, conn, issue_tokens),
            // These two change only request counts, which no client is told of (and the
            // listing may name seats with a first seat-state version, which a lost write
            // only makes the next listing name again): they need no replica's confirmation
            // (see `RedisConn::without_replica_wait`).
            token_checker: coalesced!(scripts, conn.without_replica_wait(), token_status),
            seat_viewer: coalesced!(seat_reads, conn.without_replica_wait(), seat_view),
            seat_holder: coalesced!(scripts, conn, hold_seats),
            payment_begins: coalesced!(scripts, conn, pay_begin),
            debits: coalesced!(scripts, conn, debit),
            payment_commits: coalesced!(scripts, conn, pay_commit),
            conn,
            scripts,
        }
    }

    /// A clone of the connection, for the few callers beside the hot path (start-up, the
    /// flusher, admin writes, tests).
    pub fn conn(&self) -> RedisConn {
        self.conn.clone()
    }

    pub fn scripts(&self) -> &Arc<Scripts> {
        &self.scripts
    }

    /// Whether scripts run: Redis is known to be reconciled with MySQL (see
    /// `crate::reconcile`).
    pub fn reconciled(&self) -> bool {
        self.conn.fence().is_open()
    }

    // The queue.

    /// `issue_tokens`: a new token for the user, WAITING or already ACTIVE (or, with an
    /// Idempotency-Key used before, the first answer again).
    pub async fn issue_token(
        &self,
        schedule_id: u64,
        request: IssueRequest,
    ) -> RedisResult<IssueOutcome> {
        self.token_issuer.call(schedule_id, request).await
    }

    /// `token_status`: the token's live state, if it is a live token of its schedule (and,
    /// when the check is [`Counted`], its user has requests left).
    pub async fn token_status(
        &self,
        token: QueueToken,
        counted: Counted,
    ) -> RedisResult<StatusOutcome> {
        self.token_checker
            .call(token.schedule_id, (token.sequence, counted))
            .await
    }

    /// `leave_queue`: the token's user leaves the queue (the token ends as LEFT, their
    /// RESERVED holds of the schedule are cancelled); how many holds were.
    pub async fn leave_queue(&self, token: QueueToken) -> RedisResult<Result<u64, Refusal>> {
        self.scripts.leave_queue(&mut self.conn(), token).await
    }

    /// `admit_batch`: one admission step for the schedule.
    pub async fn admit(
        &self,
        schedule_id: u64,
        keep_ended: std::time::Duration,
    ) -> RedisResult<AdmitOutcome> {
        self.scripts
            .admit_batch(&mut self.conn(), schedule_id, keep_ended)
            .await
    }

    /// `shuffle_begin`: the opening's shuffle of the schedule's pre-queue, started with
    /// `seed` unless one is stored.
    pub async fn shuffle_begin(
        &self,
        schedule_id: u64,
        seed: &[u8; 32],
    ) -> RedisResult<ShuffleStart> {
        self.scripts
            .shuffle_begin(&mut self.conn(), schedule_id, seed)
            .await
    }

    /// `shuffle_apply`: one chunk of a shuffle, from sequence `cursor` on.
    pub async fn shuffle_apply(
        &self,
        schedule_id: u64,
        shuffle: &Shuffle,
        cursor: u64,
        places: &[u64],
    ) -> RedisResult<ShuffleStep> {
        self.scripts
            .shuffle_apply(&mut self.conn(), schedule_id, shuffle, cursor, places)
            .await
    }

    /// `retire_schedule`: a schedule that nothing can happen to any more leaves the
    /// schedules the background loops serve (kept aside until it may be retired), and once
    /// its sale is a day over its records leave Redis.
    pub async fn settle_schedule(&self, schedule_id: u64) -> RedisResult<Retirement> {
        let settled = self
            .scripts
            .retire_schedule(&mut self.conn(), schedule_id)
            .await?;
        let mut pipe = redis::pipe();
        match settled {
            Retirement::InUse => return Ok(settled),
            // Kept aside before it leaves the live set, so it is always in one of them.
            Retirement::IdleUntil(from_ms) => pipe.zadd(RETIRING, schedule_id, from_ms),
            Retirement::Retired => pipe
                .srem(SCHEDULES, schedule_id)
                .zrem(RETIRING, schedule_id),
        };
        pipe.srem(LIVE, schedule_id);
        let () = pipe.query_async(&mut self.conn()).await?;
        Ok(settled)
    }

    /// Schedules kept aside whose retirement is due, at most `limit`.
    pub async fn due_retirements(&self, limit: isize) -> RedisResult<Vec<u64>> {
        let now = chrono::Utc::now().timestamp_millis();
        self.conn()
            .zrangebyscore_limit(RETIRING, "-inf", now, 0, limit)
            .await
    }

    /// A schedule kept aside that is in use again (Redis was repaired from MySQL): served
    /// again.
    pub async fn revive_schedule(&self, schedule_id: u64) -> RedisResult<()> {
        super::schedules::serve_again(&mut self.conn(), schedule_id).await
    }

    /// The schedules the background loops serve: those something may still happen to.
    pub async fn live_schedules(&self) -> RedisResult<Vec<u64>> {
        self.conn().smembers(LIVE).await
    }

    /// The settings in force for a schedule (`None`: Redis does not know it).
    pub async fn queue_settings(
        &self,
        schedule_id: u64,
    ) -> RedisResult<Option<HashMap<String, String>>> {
        let cfg: HashMap<String, String> = self
            .conn()
            .hgetall(ScheduleKeys::new(schedule_id).cfg)
            .await?;
        Ok((!cfg.is_empty()).then_some(cfg))
    }

    /// Writes settings into the schedule's `cfg` hash (in force from the next tick); a
    /// change of the queue's order (`order_changes`) only while nobody holds a live token.
    /// `None`: no such schedule; `Some(false)`: the order is locked.
    pub async fn store_settings(
        &self,
        schedule_id: u64,
        settings: &QueueSettings,
        order_changes: bool,
    ) -> RedisResult<Option<bool>> {
        self.scripts
            .store_settings(
                &mut self.conn().with_replica_wait(),
                schedule_id,
                settings,
                order_changes,
            )
            .await
    }

    /// (waiting, active, admitted, held seats, sold seats) of a schedule.
    pub async fn queue_counts(&self, schedule_id: u64) -> RedisResult<[u64; 5]> {
        let k = ScheduleKeys::new(schedule_id);
        let (waiting, active, counters): (u64, u64, Vec<Option<u64>>) = redis::pipe()
            .zcard(&k.waiting)
            .zcard(&k.active)
            .hmget(&k.stats, &["admitted", "heldSeats", "soldSeats"])
            .query_async(&mut self.conn())
            .await?;
        let counter = |i: usize| counters.get(i).copied().flatten().unwrap_or(0);
        Ok([waiting, active, counter(0), counter(1), counter(2)])
    }

    // Seats and holds.

    /// `seat_view`: the schedule's seats (for `view`) if the token is the user's and ACTIVE
    /// there.
    pub async fn seat_view(
        &self,
        token: QueueToken,
        user_id: u64,
        view: SeatView,
    ) -> RedisResult<SeatViewOutcome> {
        self.seat_viewer
            .call(token.schedule_id, (token.sequence, user_id, view))
            .await
    }

    /// How many seats of each schedule are AVAILABLE, in order.
    pub async fn available_counts(&self, schedule_ids: &[u64]) -> RedisResult<Vec<u64>> {
        if schedule_ids.is_empty() {
            return Ok(Vec::new()); // an empty pipeline is an error to redis-rs
        }
        let mut pipe = redis::pipe();
        for id in schedule_ids {
            pipe.zcard(ScheduleKeys::new(*id).avail);
        }
        pipe.query_async(&mut self.conn()).await
    }

    /// `hold_seats`: all the request's seats held, or none.
    pub async fn hold(&self, schedule_id: u64, request: HoldRequest) -> RedisResult<HoldOutcome> {
        self.seat_holder.call(schedule_id, request).await
    }

    /// `cancel_hold`: the owner's RESERVED hold cancelled.
    pub async fn cancel_hold(
        &self,
        id: ReservationId,
        user_id: u64,
    ) -> RedisResult<Result<ReservationRecord, Refusal>> {
        self.scripts
            .cancel_hold(&mut self.conn(), id, user_id)
            .await
    }

    /// A reservation's record as Redis has it, or whether it has left Redis.
    pub async fn reservation(&self, id: ReservationId) -> RedisResult<Stored> {
        let k = ScheduleKeys::new(id.schedule());
        let (record, sequence): (Option<String>, Option<u64>) = redis::pipe()
            .hget(&k.res, id.get())
            .get(&k.reservation_sequence)
            .query_async(&mut self.conn())
            .await?;
        Ok(match record {
            Some(record) => Stored::Here(record),
            None if id.sequence() <= sequence.unwrap_or(0) => Stored::LeftRedis,
            None => Stored::Never,
        })
    }

    /// The records Redis has of these reservations (`None`: not in Redis), in order, in one
    /// round trip.
    pub async fn reservation_records(
        &self,
        ids: &[ReservationId],
    ) -> RedisResult<Vec<Option<String>>> {
        if ids.is_empty() {
            return Ok(Vec::new()); // an empty pipeline is an error to redis-rs
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.hget(ScheduleKeys::new(id.schedule()).res, id.get());
        }
        pipe.query_async(&mut self.conn()).await
    }

    /// Whether the schedule is known (its settings are in Redis).
    pub async fn schedule_exists(&self, schedule_id: u64) -> RedisResult<bool> {
        self.conn().exists(ScheduleKeys::new(schedule_id).cfg).await
    }

    /// Whether the reservation was ever made (its record may have left Redis since).
    pub async fn reservation_exists(&self, id: ReservationId) -> RedisResult<bool> {
        Ok(self.reservation(id).await? != Stored::Never)
    }

    /// `expire_holds`: ends the schedule's holds that are due; returns how many, and the
    /// payment sagas running longer than `saga_timeout`. Records of holds that ended more
    /// than `keep` ago and that MySQL has leave Redis.
    pub async fn expire_holds(
        &self,
        schedule_id: u64,
        saga_timeout: std::time::Duration,
        keep: std::time::Duration,
    ) -> RedisResult<(u64, Vec<PaymentAttempt>)> {
        self.scripts
            .expire_holds(&mut self.conn(), schedule_id, saga_timeout, keep)
            .await
    }

    // The wallet.

    /// A user's balance as Redis has it (`None`: not loaded yet).
    pub async fn balance(&self, user_id: u64) -> RedisResult<Option<String>> {
        self.conn()
            .hget(WalletKeys::of_user(user_id).balances, user_id)
            .await
    }

    /// `charge`: adds to the balance; with an Idempotency-Key, a repeat gets its first outcome
    /// (and with [`ChargeMode::Replay`] nothing but that is done).
    pub async fn charge(
        &self,
        user_id: u64,
        amount: u64,
        balance_cap: u64,
        idempotency: Option<&Idempotency>,
        mode: ChargeMode,
    ) -> RedisResult<ChargeOutcome> {
        self.scripts
            .charge(
                &mut self.conn(),
                user_id,
                amount,
                balance_cap,
                idempotency,
                mode,
            )
            .await
    }

    /// `load_balance`: puts the balance MySQL has into Redis unless Redis has one, raising the
    /// bucket's ledger sequence to `ledger_floor`; returns the balance Redis has.
    /// `count_request`: a request of no schedule counted against the user's rate.
    pub async fn count_request(
        &self,
        user_id: u64,
        per_second: u64,
    ) -> RedisResult<Result<(), Refusal>> {
        self.scripts
            .count_request(&mut self.conn(), user_id, per_second)
            .await
    }

    pub async fn load_balance(
        &self,
        user_id: u64,
        stored: &Balance,
        ledger_floor: u64,
    ) -> RedisResult<String> {
        self.scripts
            .load_balance(&mut self.conn(), user_id, &stored.record(), ledger_floor)
            .await
    }

    // The payment saga.

    /// `pay_begin`: the RESERVED hold becomes PAYING under a new attempt.
    pub async fn begin_payment(&self, request: BeginRequest) -> RedisResult<BeginOutcome> {
        let schedule_id = request.reservation_id.schedule();
        self.payment_begins.call(schedule_id, request).await
    }

    /// `debit`: takes the attempt's amount from the user's balance, once per reservation.
    pub async fn debit(&self, attempt: &PaymentAttempt) -> RedisResult<DebitOutcome> {
        let bucket = wallet_bucket(attempt.user_id);
        self.debits.call(bucket, DebitRequest::of(attempt)).await
    }

    /// `void_debit`: whether the reservation was debited; if not, the attempt can no longer.
    pub async fn void_debit(&self, attempt: &PaymentAttempt) -> RedisResult<DebitOutcome> {
        self.scripts.void_debit(&mut self.conn(), attempt).await
    }

    /// `pay_commit`: the reservation debited by `payment_id` becomes PAID.
    pub async fn commit_payment(
        &self,
        reservation_id: ReservationId,
        payment_id: PaymentId,
    ) -> RedisResult<CommitOutcome> {
        self.payment_commits
            .call(reservation_id.schedule(), (reservation_id, payment_id))
            .await
    }

    /// `pay_rollback`: the attempt's PAYING hold is RESERVED again; with the request's
    /// Idempotency-Key, `outcome` is kept as its answer. False if it was settled already.
    pub async fn roll_back_payment(
        &self,
        attempt: &PaymentAttempt,
        kept: Option<(&Idempotency, Refusal)>,
    ) -> RedisResult<bool> {
        self.scripts
            .pay_rollback(&mut self.conn(), attempt, kept)
            .await
    }
}
