//! Every Redis key seatrush uses. Per-schedule state shares the hash tag `{s:<id>}`, so each
//! script's keys live in one cluster slot.

use crate::model::{ReservationId, wallet_bucket};

/// Ids of every schedule Redis knows (until retired): the registry reconciliation and the
/// dead-letter tools read.
pub const SCHEDULES: &str = "seatrush:schedules";
/// SET of the schedules something may still happen to (a superset of those with WAITING or
/// ACTIVE tokens, open holds, payments, unflushed outbox entries or ended records to
/// remove): the ones the admission tick, hold expiry and the flusher serve.
pub const LIVE: &str = "seatrush:live";
/// ZSET schedule -> when it may be retired (ms): schedules past their close that nothing
/// can happen to any more, no longer served until then.
pub const RETIRING: &str = "seatrush:retiring";
/// Set once the registry of live schedules has been filled from [`SCHEDULES`] (on the
/// first start of a version that keeps it).
pub const LIVE_TRACKED: &str = "seatrush:live:tracked";
/// STRING: the run id (`crate::redis::run_id`) of the Redis last reconciled with MySQL (see
/// `crate::reconcile`).
pub const RECONCILED: &str = "seatrush:reconciled";
/// STRING: the process reconciling Redis with MySQL now.
pub const RECONCILE_CLAIM: &str = "seatrush:reconcile";
/// STRING: the process running this period's check that Redis is not behind MySQL.
pub const RECONCILE_CHECK: &str = "seatrush:reconcile:check";
/// Consumer group of the outbox flushers.
pub const FLUSH_GROUP: &str = "flusher";

/// The keys of one schedule's queue and its outbox.
#[derive(Debug, Clone)]
pub struct ScheduleKeys {
    pub schedule_id: u64,
    /// HASH: queue settings, booking window and measured admission rate (absent: the
    /// schedule is unknown).
    pub cfg: String,
    /// STRING: arrival sequence of the queue. A token is named in Redis by its sequence.
    pub token_sequence: String,
    /// ZSET token (sequence) -> sequence: WAITING tokens in arrival order.
    pub waiting: String,
    /// ZSET token (sequence) -> expiresAt ms: ACTIVE tokens.
    pub active: String,
    /// HASH token (sequence) -> record (see lua/lib/queue.lua).
    pub tokens: String,
    /// HASH userId -> the user's live token (sequence).
    pub users: String,
    /// HASH: admission and seat counters.
    pub stats: String,
    /// ZSET token -> endedAt ms, for removing old records.
    pub ended: String,
    /// ZSET seatId -> seatNumber: the schedule's AVAILABLE seats, lowest numbers first.
    pub avail: String,
    /// HASH seatId -> "seatNumber|price": every seat of the schedule.
    pub seat: String,
    /// HASH reservationId -> record (see lua/lib/holds.lua).
    pub res: String,
    /// ZSET reservationId -> expiresAt ms: RESERVED holds, for expiry.
    pub holds: String,
    /// ZSET reservationId -> when its CANCELLED or EXPIRED record was appended to the outbox
    /// (ms): records waiting to leave Redis (see lua/lib/holds.lua).
    pub rended: String,
    /// HASH userId -> the user's RESERVED + PAID seats.
    pub userseats: String,
    /// HASH userId -> the user's open (RESERVED or PAYING) holds.
    pub userholds: String,
    /// STRING: reservation sequence.
    pub reservation_sequence: String,
    /// ZSET reservationId -> when its payment attempt began (ms): the PAYING reservations.
    pub sagas: String,
    /// STRING: payment (attempt) sequence.
    pub payment_sequence: String,
    /// STRING: the process rebuilding the schedule from MySQL (see `crate::rebuild`).
    pub rebuild: String,
    /// Two HASHes userId -> when the user's next request is due, by alternate seconds: the
    /// per-user request rate (see lua/lib/rate.lua).
    pub rates: [String; 2],
    /// STREAM: events for the write-behind flusher.
    pub outbox: String,
    /// STREAM: outbox entries that could not be applied.
    pub dead_letters: String,
}

impl ScheduleKeys {
    /// STRING: the first outcome of a user's request with this Idempotency-Key.
    pub fn idempotency(&self, user_id: u64, key: &str) -> String {
        format!("{{s:{}}}:idem:{user_id}:{key}", self.schedule_id)
    }

    /// SET: the AVAILABLE seat ids as seatrush kept them before they were ordered by seat
    /// number (see `lua/upgrade_free_seats.lua`).
    pub fn unordered_available(&self) -> String {
        format!("{{s:{}}}:avail", self.schedule_id)
    }

    pub fn new(schedule_id: u64) -> Self {
        let key = |name: &str| format!("{{s:{schedule_id}}}:{name}");
        Self {
            schedule_id,
            cfg: key("cfg"),
            token_sequence: key("seq"),
            waiting: key("waiting"),
            active: key("active"),
            tokens: key("tokens"),
            users: key("users"),
            stats: key("stats"),
            ended: key("ended"),
            avail: key("free"),
            seat: key("seat"),
            res: key("res"),
            holds: key("holds"),
            rended: key("rended"),
            userseats: key("userseats"),
            userholds: key("userholds"),
            reservation_sequence: key("rseq"),
            sagas: key("sagas"),
            payment_sequence: key("pseq"),
            rebuild: key("rebuild"),
            rates: [key("rate:0"), key("rate:1")],
            outbox: key("outbox"),
            dead_letters: key("outbox:dead"),
        }
    }
}

/// The keys of one wallet bucket, under the hash tag `{w:<bucket>}` (see
/// [`crate::model::wallet_bucket`]).
#[derive(Debug, Clone)]
pub struct WalletKeys {
    pub bucket: u64,
    /// HASH userId -> "balance|totalCharged|totalUsed|updatedAt" (absent: not loaded yet).
    pub balances: String,
    /// STRING: ledger sequence of the bucket.
    pub txseq: String,
    /// STREAM: ledger entries and balances for the write-behind flusher.
    pub outbox: String,
    pub dead_letters: String,
    /// HASHes of per-user request rates for requests of no schedule (`lua/lib/rate.lua`).
    pub rates: [String; 2],
}

impl WalletKeys {
    /// STRING: the first outcome of a user's request with this Idempotency-Key.
    pub fn idempotency(&self, user_id: u64, key: &str) -> String {
        format!("{{w:{}}}:idem:{user_id}:{key}", self.bucket)
    }

    /// STRING: what happened to the debit of a reservation (see `lua/debit.lua`).
    pub fn debit(&self, reservation_id: ReservationId) -> String {
        format!("{{w:{}}}:debit:{reservation_id}", self.bucket)
    }

    pub fn of_user(user_id: u64) -> Self {
        Self::bucket(wallet_bucket(user_id))
    }

    pub fn bucket(bucket: u64) -> Self {
        let key = |name: &str| format!("{{w:{bucket}}}:{name}");
        Self {
            bucket,
            balances: key("bal"),
            txseq: key("txseq"),
            outbox: key("outbox"),
            dead_letters: key("outbox:dead"),
            rates: [key("rate:0"), key("rate:1")],
        }
    }
}

/// Whose changes an outbox stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxOwner {
    Schedule(u64),
    WalletBucket(u64),
}

/// An outbox stream, its dead-letter stream, and whose changes it carries.
#[derive(Debug, Clone)]
pub struct Outbox {
    pub owner: OutboxOwner,
    pub stream: String,
    pub dead_letters: String,
}

impl Outbox {
    pub fn of_schedule(schedule_id: u64) -> Self {
        let k = ScheduleKeys::new(schedule_id);
        Self {
            owner: OutboxOwner::Schedule(schedule_id),
            stream: k.outbox,
            dead_letters: k.dead_letters,
        }
    }

    pub fn of_wallet_bucket(bucket: u64) -> Self {
        let k = WalletKeys::bucket(bucket);
        Self {
            owner: OutboxOwner::WalletBucket(bucket),
            stream: k.outbox,
            dead_letters: k.dead_letters,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_keys_share_one_hash_tag() {
        let k = ScheduleKeys::new(42);
        for key in [&k.cfg, &k.waiting, &k.outbox, &k.dead_letters] {
            assert!(key.starts_with("{s:42}:"), "{key}");
        }
    }
}
