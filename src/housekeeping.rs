//! Housekeeping: about every 100 ms, per live schedule, one `admit_batch` script expires
//! tokens that are due and admits from the head of the queue, and one `expire_holds` script
//! ends the seat holds that are due (so seats come back within a second of expiry) and names
//! the payment sagas that ran too long, which are then settled ([`payment::saga::sweep`]).
//! Every instance runs it; the scripts hold the limits, so running it on many instances at
//! once admits and expires no more than one would. When a `SHUFFLE_AT_OPEN` queue's
//! booking opens, the tick starts its pre-queue's shuffle ([`queue::shuffle`]) as a task of
//! its own, so a large one holds back no other schedule; the queue admits from the first
//! tick after the shuffle is done.
//!
//! Only schedules something may still happen to are served, so the tick's work follows the
//! live sales, not the history: once a schedule is past its close with nobody queued,
//! nothing open, everything flushed and no ended record left to remove, nothing can happen
//! to it any more (nobody can queue after the close), and it is set aside until a day after
//! its close, when it is retired (its records leave Redis). Setting aside and retiring are
//! one script each (`retire_schedule`); the set-aside schedules due are found with one
//! command per tick.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::redis::HotPath;
use crate::redis::scripts::Retirement;
use crate::shutdown::Shutdown;
use crate::{payment, queue};

/// What the tick needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Records of ended tokens and holds leave Redis after this long (once MySQL has them).
    pub keep_ended_records: Duration,
    /// Payment sagas running longer than this are settled.
    pub payment_saga_timeout: Duration,
}

/// The housekeeping of one instance: the tick, and the openings' shuffles it started.
#[derive(Clone)]
pub struct Housekeeping {
    hot: Arc<HotPath>,
    timing: Timing,
    /// Schedules whose opening's shuffle runs now, as a task of its own beside the ticks: a
    /// large pre-queue's takes seconds (a million arrivals, about 2 000 script calls), and
    /// the other schedules' admission and expiry go on meanwhile.
    shuffling: Arc<Mutex<HashSet<u64>>>,
}

impl Housekeeping {
    pub fn new(hot: Arc<HotPath>, timing: Timing) -> Self {
        Self {
            hot,
            timing,
            shuffling: Arc::default(),
        }
    }

    /// Runs [`Self::tick`] every `interval` until `shutdown` fires.
    pub async fn run(self, interval: Duration, shutdown: Shutdown) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while !shutdown.is_triggered() {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = shutdown.triggered() => break,
            }
            if let Err(e) = self.tick().await {
                tracing::warn!(error = %e, "admission tick failed");
            }
        }
    }

    /// One pass over every live schedule, then the set-aside schedules due for retirement; a
    /// schedule that fails does not hold back the others (its error is logged, and the first
    /// one returned).
    pub async fn tick(&self) -> redis::RedisResult<()> {
        let hot = &self.hot;
        let mut first_error = None;
        for id in hot.live_schedules().await? {
            if let Err(e) = self.tick_schedule(id).await {
                tracing::warn!(schedule = id, error = %e, "admission tick failed for a schedule");
                first_error.get_or_insert(e);
            }
        }
        for id in hot.due_retirements(RETIRE_PER_TICK).await? {
            match hot.settle_schedule(id).await {
                Ok(Retirement::Retired) => retired(id),
                // Repaired from MySQL since it was set aside: served again.
                Ok(Retirement::InUse) => hot.revive_schedule(id).await?,
                Ok(Retirement::IdleUntil(_)) => {}
                Err(e) => {
                    tracing::warn!(schedule = id, error = %e, "retiring a schedule failed");
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    async fn tick_schedule(&self, id: u64) -> redis::RedisResult<()> {
        let (hot, timing) = (&self.hot, self.timing);
        let outcome = hot.admit(id, timing.keep_ended_records).await?;
        if outcome.shuffle_due {
            // Booking has opened on a shuffled queue: its pre-queue gets its order, and the
            // first tick after that admits.
            self.shuffle(id);
        }
        let (holds_expired, stale_sagas) = hot
            .expire_holds(id, timing.payment_saga_timeout, timing.keep_ended_records)
            .await?;
        if !stale_sagas.is_empty() {
            payment::saga::sweep(hot, stale_sagas).await;
        }
        let schedule = id.to_string();
        metrics::counter!("seatrush_holds_expired_total", "schedule" => schedule.clone())
            .increment(holds_expired);
        metrics::counter!("seatrush_queue_admitted_total", "schedule" => schedule.clone())
            .increment(outcome.admitted);
        metrics::counter!("seatrush_queue_expired_total", "schedule" => schedule.clone())
            .increment(outcome.expired);
        metrics::counter!("seatrush_redis_records_removed_total", "record" => "token")
            .increment(outcome.dropped);
        metrics::gauge!("seatrush_queue_waiting", "schedule" => schedule.clone())
            .set(outcome.waiting as f64);
        metrics::gauge!("seatrush_queue_active", "schedule" => schedule).set(outcome.active as f64);
        if outcome.waiting == 0 && outcome.active == 0 {
            match hot.settle_schedule(id).await? {
                Retirement::Retired => retired(id),
                Retirement::IdleUntil(_) => {
                    tracing::debug!(schedule = id, "schedule set aside: its sale is over")
                }
                Retirement::InUse => {}
            }
        }
        Ok(())
    }

    /// Starts the opening's shuffle of the schedule's pre-queue as a task of its own, unless
    /// this instance runs it already. Another instance may run it at the same time: the
    /// script calls apply each chunk once.
    fn shuffle(&self, id: u64) {
        let mut shuffling = self.shuffling.lock().unwrap_or_else(|e| e.into_inner());
        if !shuffling.insert(id) {
            return;
        }
        drop(shuffling);
        let running = Running {
            shuffling: self.shuffling.clone(),
            id,
        };
        let hot = self.hot.clone();
        tokio::spawn(async move {
            if let Err(e) = queue::shuffle::open(&hot, id).await {
                // The next tick starts it again, from where the stored cursor stands.
                tracing::warn!(schedule = id, error = %e, "the opening's shuffle failed");
            }
            drop(running);
        });
    }
}

/// Set-aside schedules retired per tick, at most (the rest in the next ones).
const RETIRE_PER_TICK: isize = 20;

fn retired(schedule: u64) {
    tracing::info!(
        schedule,
        "schedule retired: its sale is over and MySQL has it all"
    );
}

/// A shuffle running on this instance: its schedule leaves [`Housekeeping`]'s set when it
/// ends, however it ends.
struct Running {
    shuffling: Arc<Mutex<HashSet<u64>>>,
    id: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        let mut shuffling = self.shuffling.lock().unwrap_or_else(|e| e.into_inner());
        shuffling.remove(&self.id);
    }
}
