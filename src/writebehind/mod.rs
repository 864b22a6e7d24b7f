//! The write-behind: the flusher that commits what the scripts did to MySQL. Each script
//! appends its events to its slot's outbox stream in the same atomic step as the change; the
//! flusher reads them with a consumer group, writes each batch to the primary in one
//! transaction, then acknowledges and deletes them. Entries left pending by a crashed instance
//! are claimed once idle for `claim_idle`. What MySQL cannot take now (unreachable, read-only,
//! out of connections, …: [`Fault::Unavailable`]) is retried with backoff for as long as that
//! lasts; only an entry whose content MySQL refuses ([`Fault::Refused`]) [`MAX_ATTEMPTS`]
//! times goes to the outbox's dead-letter stream (`seatrush dead-letters` lists and replays
//! them). An entry naming an id MySQL holds with other immutable content
//! ([`rows::Conflict`]) goes there at once, with MySQL's version beside its own.
//!
//! The hot path comes first: while the server answers many requests per second the flusher
//! holds back, as long as its oldest entry is younger than [`Deferral::max_lag`], and catches
//! up in large batches when the burst is over or the lag bound is reached. On a machine MySQL
//! shares with seatrush this keeps a flash sale's peak for the requests that clients wait on.

pub mod dead_letters;
pub mod events;
mod ledger;
mod reservations;
mod rows;
mod tokens;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use redis::AsyncCommands;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamId, StreamReadOptions, StreamReadReply,
};

use crate::model::{DecodeError, WALLET_BUCKETS};
use crate::mysql::{Db, Fault, timed};
use crate::redis::RedisConn;
use crate::redis::keys::{FLUSH_GROUP, LIVE, Outbox, OutboxOwner, SCHEDULES};
use events::Event;
pub use rows::{Conflict, WriteError};

/// Dead letters kept per stream, about (the oldest beyond go, `MAXLEN ~`): a bound on what
/// a stream of bad entries can take of Redis. Each was logged when it was dead-lettered.
const DEAD_LETTERS_KEPT: usize = 10_000;
/// Entries per read and per MySQL transaction.
const BATCH: usize = 500;
/// Refusals of an entry's content by MySQL before it is dead-lettered.
const MAX_ATTEMPTS: u32 = 5;
/// Longest wait between retries while MySQL is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Outbox size, shared with `/health` and the metrics.
#[derive(Default)]
pub struct Backlog {
    pub entries: AtomicU64,
    /// Age of the oldest entry, in ms.
    pub oldest_age_ms: AtomicU64,
}

/// When the flusher holds back for the hot path.
#[derive(Debug)]
pub struct Deferral {
    /// HTTP requests answered so far, counted by the server.
    pub requests: Arc<AtomicU64>,
    /// From this many requests per second the flusher holds back…
    pub busy_rps: u64,
    /// …unless its oldest entry is older than this.
    pub max_lag: Duration,
    /// The last reading of `requests` and when it was taken.
    last: (Instant, u64),
    busy: bool,
}

/// Shortest window the request rate is measured over.
const RATE_WINDOW: Duration = Duration::from_millis(250);

impl Deferral {
    pub fn new(requests: Arc<AtomicU64>, busy_rps: u64, max_lag: Duration) -> Self {
        let now = requests.load(Ordering::Relaxed);
        Self {
            requests,
            busy_rps,
            max_lag,
            last: (Instant::now(), now),
            busy: false,
        }
    }

    fn holds_back(&mut self, backlog: &Backlog) -> bool {
        let elapsed = self.last.0.elapsed();
        if elapsed >= RATE_WINDOW {
            let count = self.requests.load(Ordering::Relaxed);
            let rate = (count - self.last.1) as f64 / elapsed.as_secs_f64();
            self.busy = rate >= self.busy_rps as f64;
            self.last = (Instant::now(), count);
        }
        self.busy && backlog.oldest_age_ms.load(Ordering::Relaxed) < self.max_lag.as_millis() as u64
    }
}

pub struct OutboxFlusher {
    db: Db,
    redis: RedisConn,
    /// This process's consumer name in the group.
    consumer: String,
    /// MySQL refusals per entry id, for dead-lettering.
    attempts: HashMap<String, Attempts>,
    backlog: Arc<Backlog>,
    /// Pending entries idle this long belong to a consumer presumed dead and are claimed.
    claim_idle: Duration,
    last_claim: Instant,
}

/// What a pass over the streams did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub applied: usize,
    /// True when MySQL could not take writes (or Redis was unreachable): retry later,
    /// nothing was lost.
    pub mysql_down: bool,
}

impl OutboxFlusher {
    pub fn new(db: Db, redis: RedisConn, backlog: Arc<Backlog>, claim_idle: Duration) -> Self {
        Self {
            db,
            redis,
            consumer: format!("seatrush-{}", uuid::Uuid::new_v4()),
            attempts: HashMap::new(),
            backlog,
            claim_idle,
            last_claim: Instant::now(),
        }
    }

    /// Runs until `shutdown` fires, then drains what is left (bounded by `drain_for`).
    pub async fn run(
        mut self,
        interval: Duration,
        mut deferral: Deferral,
        shutdown: crate::shutdown::Shutdown,
        drain_for: Duration,
    ) {
        let mut backoff = interval;
        loop {
            if deferral.holds_back(&self.backlog) {
                metrics::counter!("seatrush_outbox_deferred_passes_total").increment(1);
                if let Err(e) = self.measure_backlog().await {
                    tracing::warn!(error = %e, "outbox backlog check failed");
                }
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = shutdown.triggered() => break,
                }
                continue;
            }
            let pass = self.pass().await.unwrap_or_else(|e| {
                tracing::warn!(error = %e, "outbox pass failed");
                Pass {
                    applied: 0,
                    mysql_down: true,
                }
            });
            backoff = if pass.mysql_down {
                (backoff * 2).min(MAX_BACKOFF)
            } else {
                interval
            };
            let busy = pass.applied > 0 && !pass.mysql_down;
            if shutdown.is_triggered() {
                break;
            }
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.triggered() => {}
                }
            }
        }
        let deadline = Instant::now() + drain_for;
        while Instant::now() < deadline {
            match self.pass().await {
                Ok(p) if p.applied == 0 && !p.mysql_down => break,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "outbox drain failed");
                    tokio::time::sleep(interval).await;
                }
            }
        }
    }

    async fn outboxes(&mut self) -> redis::RedisResult<Vec<Outbox>> {
        live_outboxes(&mut self.redis).await
    }

    /// One pass: measures every outbox, then flushes those that hold entries.
    pub async fn pass(&mut self) -> redis::RedisResult<Pass> {
        let outboxes = self.outboxes().await?;
        // Looking for abandoned entries a few times per idle period is often enough.
        let claim = self.last_claim.elapsed() >= self.claim_idle / 6;
        if claim {
            self.last_claim = Instant::now();
        }
        let lengths = self.record_backlog(&outboxes).await?;
        let mut pass = Pass::default();
        for (outbox, len) in outboxes.iter().zip(lengths) {
            if len == 0 {
                continue;
            }
            let done = self.flush(outbox, claim).await?;
            pass.applied += done.applied;
            pass.mysql_down |= done.mysql_down;
        }
        Ok(pass)
    }

    async fn measure_backlog(&mut self) -> redis::RedisResult<()> {
        let outboxes = self.outboxes().await?;
        self.record_backlog(&outboxes).await.map(drop)
    }

    /// Records the outbox size and the age of its oldest entry (one round trip); returns
    /// each outbox's length. Entries stay in a stream until acknowledged, so pending ones
    /// count too.
    async fn record_backlog(&mut self, outboxes: &[Outbox]) -> redis::RedisResult<Vec<u64>> {
        if outboxes.is_empty() {
            return Ok(Vec::new());
        }
        let mut lengths_pipe = redis::pipe();
        for outbox in outboxes {
            lengths_pipe.xlen(&outbox.stream);
        }
        let lengths: Vec<u64> = lengths_pipe.query_async(&mut self.redis).await?;
        // The oldest entry of each non-empty outbox (usually none while idle).
        let non_empty: Vec<&Outbox> = outboxes
            .iter()
            .zip(&lengths)
            .filter(|(_, len)| **len > 0)
            .map(|(outbox, _)| outbox)
            .collect();
        let mut oldest_ms: Option<u64> = None;
        if !non_empty.is_empty() {
            let mut firsts_pipe = redis::pipe();
            for outbox in &non_empty {
                firsts_pipe.xrange_count(&outbox.stream, "-", "+", 1);
            }
            let firsts: Vec<redis::streams::StreamRangeReply> =
                firsts_pipe.query_async(&mut self.redis).await?;
            oldest_ms = firsts
                .iter()
                .filter_map(|first| first.ids.first()?.id.split('-').next()?.parse().ok())
                .min();
        }
        let backlog: u64 = lengths.iter().sum();
        let age_ms = oldest_ms.map_or(0, |ms| {
            (chrono::Utc::now().timestamp_millis() as u64).saturating_sub(ms)
        });
        self.backlog.entries.store(backlog, Ordering::Relaxed);
        self.backlog.oldest_age_ms.store(age_ms, Ordering::Relaxed);
        metrics::gauge!("seatrush_outbox_backlog").set(backlog as f64);
        metrics::gauge!("seatrush_outbox_oldest_age_seconds").set(age_ms as f64 / 1000.0);
        Ok(lengths)
    }

    /// Flushes one outbox, first claiming abandoned entries when `claim` is set.
    pub async fn flush(&mut self, outbox: &Outbox, claim: bool) -> redis::RedisResult<Pass> {
        if claim {
            self.claim_abandoned(&outbox.stream).await?;
        }
        let (applied, mysql_down) = self.flush_stream(outbox).await?;
        Ok(Pass {
            applied,
            mysql_down,
        })
    }

    async fn claim_abandoned(&mut self, stream: &str) -> redis::RedisResult<()> {
        let reply: StreamAutoClaimReply = self
            .redis
            .xautoclaim_options(
                stream,
                FLUSH_GROUP,
                &self.consumer,
                self.claim_idle.as_millis() as u64,
                "0-0",
                StreamAutoClaimOptions::default().count(BATCH),
            )
            .await?;
        if !reply.claimed.is_empty() {
            tracing::info!(
                stream,
                entries = reply.claimed.len(),
                "claimed abandoned outbox entries"
            );
            metrics::counter!("seatrush_outbox_claimed_total")
                .increment(reply.claimed.len() as u64);
        }
        Ok(())
    }

    /// Flushes one stream: this consumer's pending entries first (retries, claims), then new
    /// ones. Returns (entries applied, MySQL unreachable).
    async fn flush_stream(&mut self, outbox: &Outbox) -> redis::RedisResult<(usize, bool)> {
        let mut entries = self.read(&outbox.stream, "0").await?;
        if entries.is_empty() {
            entries = self.read(&outbox.stream, ">").await?;
        }
        if entries.is_empty() {
            return Ok((0, false));
        }
        let started = Instant::now();
        match self.apply_all(outbox.owner, &entries).await {
            Ok(()) => {
                self.acknowledge(&outbox.stream, &entries).await?;
                metrics::histogram!("seatrush_outbox_flush_duration_seconds")
                    .record(started.elapsed().as_secs_f64());
                metrics::histogram!("seatrush_outbox_flush_batch_size")
                    .record(entries.len() as f64);
                metrics::counter!("seatrush_outbox_flushed_total").increment(entries.len() as u64);
                Ok((entries.len(), false))
            }
            Err(e) if e.fault() == Fault::LockConflict => {
                // Another writer held the rows: the batch stays pending for the next pass.
                tracing::debug!(error = %e, "lock conflict; outbox batch retried");
                metrics::counter!("seatrush_outbox_flush_failures_total", "reason" => "lock_conflict")
                    .increment(1);
                Ok((0, false))
            }
            Err(e) if e.fault() == Fault::Unavailable => {
                tracing::warn!(error = %e, "MySQL cannot take writes now; outbox kept for retry");
                metrics::counter!("seatrush_outbox_flush_failures_total", "reason" => "unavailable").increment(1);
                Ok((0, true))
            }
            Err(e) => {
                tracing::warn!(error = %e, "batch refused; applying entries one by one");
                metrics::counter!("seatrush_outbox_flush_failures_total", "reason" => "refused")
                    .increment(1);
                self.apply_one_by_one(outbox, entries).await
            }
        }
    }

    async fn read(&mut self, stream: &str, from: &str) -> redis::RedisResult<Vec<StreamId>> {
        let opts = StreamReadOptions::default()
            .group(FLUSH_GROUP, &self.consumer)
            .count(BATCH);
        let reply: Option<StreamReadReply> =
            self.redis.xread_options(&[stream], &[from], &opts).await?;
        Ok(reply
            .and_then(|r| r.keys.into_iter().next())
            .map(|k| k.ids)
            .unwrap_or_default())
    }

    async fn acknowledge(&mut self, stream: &str, entries: &[StreamId]) -> redis::RedisResult<()> {
        let ids: Vec<&str> = entries.iter().map(|e| e.id.as_str()).collect();
        for id in &ids {
            self.attempts.remove(*id);
        }
        redis::pipe()
            .xack(stream, FLUSH_GROUP, &ids)
            .ignore()
            .xdel(stream, &ids)
            .ignore()
            .query_async::<()>(&mut self.redis)
            .await
    }

    /// Decodes and applies a batch in one transaction.
    async fn apply_all(&self, owner: OutboxOwner, entries: &[StreamId]) -> Result<(), FlushError> {
        let events = entries
            .iter()
            .map(|e| Event::decode(&e.map, owner))
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.db.primary_conn().await?;
        let mut tx = timed(conn.start_transaction(Default::default())).await?;
        events::apply(&mut tx, &events).await?;
        timed(tx.commit()).await?;
        Ok(())
    }

    /// After a refused batch: each entry alone, so one bad entry cannot hold back the rest.
    async fn apply_one_by_one(
        &mut self,
        outbox: &Outbox,
        entries: Vec<StreamId>,
    ) -> redis::RedisResult<(usize, bool)> {
        let mut applied = 0;
        for entry in entries {
            match self
                .apply_all(outbox.owner, std::slice::from_ref(&entry))
                .await
            {
                Ok(()) => {
                    self.acknowledge(&outbox.stream, std::slice::from_ref(&entry))
                        .await?;
                    applied += 1;
                }
                // Another writer held the rows: the rest waits for the next pass.
                Err(e) if e.fault() == Fault::LockConflict => return Ok((applied, false)),
                Err(e) if e.fault() == Fault::Unavailable => return Ok((applied, true)),
                Err(FlushError::Conflict(conflict)) => {
                    metrics::counter!("seatrush_outbox_conflicts_total", "table" => conflict.table)
                        .increment(1);
                    let stored =
                        format!("{} {}: {}", conflict.table, conflict.key, conflict.stored);
                    self.dead_letter(outbox, &entry, &conflict.to_string(), Some(&stored))
                        .await?;
                }
                Err(e) => {
                    let tries = self.attempts.entry(entry.id.clone()).or_insert(Attempts {
                        count: 0,
                        since: Instant::now(),
                    });
                    tries.count += 1;
                    // An entry applied ahead of its predecessor (left pending by a crashed
                    // consumer until claimed) is retried for as long as such a claim takes.
                    let give_up = match &e {
                        FlushError::Decode(_) => true,
                        e if is_order_conflict(e) => tries.since.elapsed() > self.claim_idle * 2,
                        _ => tries.count >= MAX_ATTEMPTS,
                    };
                    if give_up {
                        self.dead_letter(outbox, &entry, &e.to_string(), None)
                            .await?;
                    }
                }
            }
        }
        Ok((applied, false))
    }

    /// Moves `entry` to the dead letters with MySQL's `error` and, for a conflict, the
    /// `stored` version of what it names.
    async fn dead_letter(
        &mut self,
        outbox: &Outbox,
        entry: &StreamId,
        error: &str,
        stored: Option<&str>,
    ) -> redis::RedisResult<()> {
        tracing::error!(stream = %outbox.stream, id = %entry.id, error, "outbox entry dead-lettered");
        let mut fields: Vec<(String, Vec<u8>)> = entry
            .map
            .iter()
            .filter_map(|(k, v)| match v {
                redis::Value::BulkString(b) => Some((k.clone(), b.clone())),
                _ => None,
            })
            .collect();
        fields.push((
            dead_letters::SOURCE_ID.into(),
            entry.id.clone().into_bytes(),
        ));
        fields.push((dead_letters::ERROR.into(), error.as_bytes().to_vec()));
        if let Some(stored) = stored {
            fields.push((dead_letters::STORED.into(), stored.as_bytes().to_vec()));
        }
        let _: String = self
            .redis
            .xadd_maxlen(
                &outbox.dead_letters,
                redis::streams::StreamMaxlen::Approx(DEAD_LETTERS_KEPT),
                "*",
                &fields,
            )
            .await?;
        metrics::counter!("seatrush_outbox_dead_letters_total").increment(1);
        self.acknowledge(&outbox.stream, std::slice::from_ref(entry))
            .await
    }
}

/// Every outbox: each known schedule's and each wallet bucket's.
pub async fn all_outboxes(redis: &mut RedisConn) -> redis::RedisResult<Vec<Outbox>> {
    outboxes_of(redis, SCHEDULES).await
}

/// The outboxes entries may still come to: each live schedule's (one set aside has flushed
/// everything, and nothing can happen to it any more) and each wallet bucket's.
async fn live_outboxes(redis: &mut RedisConn) -> redis::RedisResult<Vec<Outbox>> {
    outboxes_of(redis, LIVE).await
}

async fn outboxes_of(redis: &mut RedisConn, set: &str) -> redis::RedisResult<Vec<Outbox>> {
    let schedules: Vec<u64> = redis.smembers(set).await?;
    Ok(schedules
        .into_iter()
        .map(Outbox::of_schedule)
        .chain((0..WALLET_BUCKETS).map(Outbox::of_wallet_bucket))
        .collect())
}

/// Refusals of one outbox entry so far.
struct Attempts {
    count: u32,
    since: Instant,
}

#[derive(Debug, thiserror::Error)]
enum FlushError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Mysql(#[from] mysql_async::Error),
    #[error(transparent)]
    Conflict(#[from] rows::Conflict),
}

impl From<rows::WriteError> for FlushError {
    fn from(e: rows::WriteError) -> Self {
        match e {
            rows::WriteError::Mysql(e) => FlushError::Mysql(e),
            rows::WriteError::Conflict(c) => FlushError::Conflict(c),
        }
    }
}

/// A second live token for a user whose previous one MySQL has not seen end yet: the entry
/// ending it is still to come (applied out of order), so this resolves itself.
fn is_order_conflict(e: &FlushError) -> bool {
    matches!(e, FlushError::Mysql(mysql_async::Error::Server(s))
        if s.code == 1062 && s.message.contains("uq_tokens_one_live"))
}

impl FlushError {
    /// An entry that does not decode, or names an id MySQL holds with other content, is
    /// refused as surely as one MySQL refuses.
    fn fault(&self) -> Fault {
        match self {
            FlushError::Decode(_) | FlushError::Conflict(_) => Fault::Refused,
            FlushError::Mysql(e) => crate::mysql::fault(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flusher_holds_back_only_while_busy_and_within_the_lag_bound() {
        let requests = Arc::new(AtomicU64::new(0));
        let mut deferral = Deferral::new(requests.clone(), 1000, Duration::from_secs(10));
        let backlog = Backlog::default();
        backlog.oldest_age_ms.store(2_000, Ordering::Relaxed);
        std::thread::sleep(RATE_WINDOW);
        assert!(!deferral.holds_back(&backlog), "idle: flush");
        requests.fetch_add(2_000, Ordering::Relaxed); // ≥ 2 000 in ≤ 1 s of window
        std::thread::sleep(RATE_WINDOW);
        assert!(deferral.holds_back(&backlog), "busy and young: hold back");
        backlog.oldest_age_ms.store(10_000, Ordering::Relaxed);
        assert!(!deferral.holds_back(&backlog), "lag bound reached: flush");
    }
}
