//! The opening of a `SHUFFLE_AT_OPEN` queue: once `bookingOpenAt` has passed, the admission
//! tick (which admits nobody until then) runs [`open`]. The first instance to ask stores a
//! seed of 256 bits drawn from the operating system (`lua/shuffle_begin.lua`); the places
//! follow from the seed ([`crate::model::Shuffle`]) and are applied a chunk at a time
//! (`lua/shuffle_apply.lua`), each chunk one short script, so Redis is never held for long
//! however large the pre-queue. No reader sees a half-applied order: pre-queue tokens have
//! no position, and nobody is admitted, until the last chunk marks the queue shuffled. Any
//! instance may carry on a shuffle another began (the stored cursor says where), and two
//! applying at once apply each chunk once.

use crate::model::Shuffle;
use crate::redis::HotPath;
use crate::redis::scripts::{ShuffleStart, ShuffleStep};

/// Pre-queue tokens placed per script call. Moving a token in a sorted set of 100 000 costs
/// Redis 2–3 µs, so a call takes about 1.5 ms (2 000 a call measured up to 12.8 ms under a
/// sale's load).
pub const CHUNK: usize = 500;

/// Runs (or carries on) the opening's shuffle of the schedule's pre-queue to its end.
pub async fn open(hot: &HotPath, schedule_id: u64) -> redis::RedisResult<()> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| {
        redis::RedisError::from((
            redis::ErrorKind::Client,
            "no seed from the operating system",
            e.to_string(),
        ))
    })?;
    let ShuffleStart::Run {
        shuffle,
        mut cursor,
        drawn,
    } = hot.shuffle_begin(schedule_id, &seed).await?
    else {
        return Ok(());
    };
    if drawn {
        tracing::info!(
            schedule = schedule_id,
            seed = %shuffle.seed_hex(),
            first = shuffle.first,
            last = shuffle.last,
            "booking opens: the pre-queue's shuffle is drawn"
        );
    }
    let started = std::time::Instant::now();
    let places = {
        let shuffle = shuffle.clone();
        tokio::task::spawn_blocking(move || shuffle.places())
            .await
            .map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::Client,
                    "the shuffle's computation failed",
                    e.to_string(),
                ))
            })?
    };
    loop {
        let from = (cursor.saturating_sub(shuffle.first) as usize).min(places.len());
        let chunk = &places[from..(from + CHUNK).min(places.len())];
        match hot
            .shuffle_apply(schedule_id, &shuffle, cursor, chunk)
            .await?
        {
            ShuffleStep::At(next) => cursor = next,
            ShuffleStep::Done(_) => {
                finished(schedule_id, &shuffle, started);
                return Ok(());
            }
            ShuffleStep::Stale => return Ok(()),
        }
    }
}

fn finished(schedule_id: u64, shuffle: &Shuffle, started: std::time::Instant) {
    let took = started.elapsed();
    metrics::histogram!("seatrush_queue_shuffle_seconds").record(took.as_secs_f64());
    metrics::counter!("seatrush_queue_shuffled_total", "schedule" => schedule_id.to_string())
        .increment(shuffle.len() as u64);
    tracing::info!(
        schedule = schedule_id,
        arrivals = shuffle.len(),
        took_ms = took.as_millis() as u64,
        "the pre-queue is shuffled: admission begins"
    );
}
