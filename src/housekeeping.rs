//! Housekeeping: about every 100 ms, per schedule, one `admit_batch` script expires tokens
//! that are due and admits from the head of the queue, and one `expire_holds` script ends
//! the seat holds that are due (so seats come back within a second of expiry) and names the
//! payment sagas that ran too long, which are then settled ([`payment::saga::sweep`]). Every
//! instance runs it; the scripts hold the limits, so running it on many instances at once
//! admits and expires no more than one would. A schedule whose sale is over (a day past its
//! close, nobody queued, nothing open, everything flushed) is retired: its records leave
//! Redis and the loops stop serving it.

use std::time::Duration;

use crate::payment;
use crate::redis::HotPath;
use crate::shutdown::Shutdown;

/// What the tick needs to know.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Records of ended tokens and holds leave Redis after this long (once MySQL has them).
    pub keep_ended_records: Duration,
    /// Payment sagas running longer than this are settled.
    pub payment_saga_timeout: Duration,
}

/// Runs [`tick`] every `interval` until `shutdown` fires.
pub async fn run(hot: &HotPath, timing: Timing, interval: Duration, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shutdown.is_triggered() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.triggered() => break,
        }
        if let Err(e) = tick(hot, timing).await {
            tracing::warn!(error = %e, "admission tick failed");
        }
    }
}

/// One pass over every schedule; a schedule that fails does not hold back the others (its
/// error is logged, and the first one returned).
pub async fn tick(hot: &HotPath, timing: Timing) -> redis::RedisResult<()> {
    let mut first_error = None;
    for id in hot.schedules().await? {
        if let Err(e) = tick_schedule(hot, timing, id).await {
            tracing::warn!(schedule = id, error = %e, "admission tick failed for a schedule");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn tick_schedule(hot: &HotPath, timing: Timing, id: u64) -> redis::RedisResult<()> {
    let outcome = hot.admit(id, timing.keep_ended_records).await?;
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
    if outcome.waiting == 0 && outcome.active == 0 && hot.retire_schedule(id).await? {
        tracing::info!(
            schedule = id,
            "schedule retired: its sale is over and MySQL has it all"
        );
    }
    Ok(())
}
