//! The admission loop: about every 100 ms, one `admit_batch` script per schedule expires
//! tokens that are due and admits from the head of the queue, and one `expire_holds` script
//! ends the seat holds that are due (so seats come back within a second of expiry) and names
//! the payment sagas that ran too long, which are then settled (`payment::saga`). Every
//! instance runs it; the scripts hold the limits, so running it on many instances at once
//! admits and expires no more than one would.

use std::sync::Arc;
use std::time::Duration;

use redis::AsyncCommands;

use crate::app::App;
use crate::redis::RedisConn;
use crate::redis::keys::{SCHEDULES, TOKEN_INDEX};
use crate::shutdown::Shutdown;

pub async fn run(app: Arc<App>, interval: Duration, shutdown: Shutdown) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !shutdown.is_triggered() {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.triggered() => break,
        }
        if let Err(e) = tick(&app).await {
            tracing::warn!(error = %e, "admission tick failed");
        }
    }
}

/// One admission pass over every schedule; a schedule that fails does not hold back the
/// others (its error is logged, and the first one returned).
pub async fn tick(app: &App) -> redis::RedisResult<()> {
    let mut redis = app.redis.clone();
    let schedules: Vec<u64> = redis.smembers(SCHEDULES).await?;
    let mut first_error = None;
    for id in schedules {
        if let Err(e) = tick_schedule(app, &mut redis, id).await {
            tracing::warn!(schedule = id, error = %e, "admission tick failed for a schedule");
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn tick_schedule(app: &App, redis: &mut RedisConn, id: u64) -> redis::RedisResult<()> {
    let outcome = app
        .scripts
        .admit_batch(redis, id, app.config.ended_token_keep)
        .await?;
    if !outcome.dropped.is_empty() {
        // The index lives in its own slot, so it is cleaned here rather than in the script.
        redis
            .hdel::<_, _, ()>(TOKEN_INDEX, &outcome.dropped)
            .await?;
    }
    let (holds_expired, stale_sagas) = app
        .scripts
        .expire_holds(redis, id, app.config.payment_saga_timeout)
        .await?;
    if !stale_sagas.is_empty() {
        crate::payment::saga::sweep(app, stale_sagas).await;
    }
    let schedule = id.to_string();
    metrics::counter!("seatrush_holds_expired_total", "schedule" => schedule.clone())
        .increment(holds_expired);
    metrics::counter!("seatrush_queue_admitted_total", "schedule" => schedule.clone())
        .increment(outcome.admitted);
    metrics::counter!("seatrush_queue_expired_total", "schedule" => schedule.clone())
        .increment(outcome.expired);
    metrics::gauge!("seatrush_queue_waiting", "schedule" => schedule.clone())
        .set(outcome.waiting as f64);
    metrics::gauge!("seatrush_queue_active", "schedule" => schedule).set(outcome.active as f64);
    Ok(())
}
