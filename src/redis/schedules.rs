//! Making a schedule known to Redis: its seats, then its settings and booking window (the
//! `cfg` hash, written last: a schedule whose `cfg` exists is complete), the registry the
//! background loops read, and its outbox's consumer group.

use redis::AsyncCommands;

use super::RedisConn;
use super::keys::{SCHEDULES, ScheduleKeys};
use crate::model::{BookingWindow, QueueSettings, Seat};

/// Most values per Redis command.
pub const CHUNK: usize = 5_000;

/// Adds the schedule's seats (numbers and prices) and the AVAILABLE ones to `pipe`.
pub fn stage_seats(
    pipe: &mut redis::Pipeline,
    schedule_id: u64,
    seats: &[Seat],
    available: &[u64],
) {
    let k = ScheduleKeys::new(schedule_id);
    for chunk in seats.chunks(CHUNK) {
        let records: Vec<(u64, String)> = chunk
            .iter()
            .map(|s| (s.seat_id, s.catalogue_record()))
            .collect();
        pipe.hset_multiple(&k.seat, &records).ignore();
    }
    for chunk in available.chunks(CHUNK) {
        pipe.sadd(&k.avail, chunk).ignore();
    }
}

/// Puts a new schedule's seats, all AVAILABLE, into Redis.
pub async fn load_seats(
    conn: &mut RedisConn,
    schedule_id: u64,
    seats: &[Seat],
) -> redis::RedisResult<()> {
    let mut pipe = redis::pipe();
    let ids: Vec<u64> = seats.iter().map(|s| s.seat_id).collect();
    stage_seats(&mut pipe, schedule_id, seats, &ids);
    pipe.query_async(conn).await
}

/// Writes the settings into the schedule's `cfg` hash (in force from the next tick).
pub async fn store_settings(
    conn: &mut RedisConn,
    schedule_id: u64,
    settings: &QueueSettings,
) -> redis::RedisResult<()> {
    redis::cmd("HSET")
        .arg(ScheduleKeys::new(schedule_id).cfg)
        .arg(settings.fields())
        .query_async(conn)
        .await
}

/// Makes a schedule known: settings, booking window, the registry the background loops
/// read, and the outbox's consumer group.
pub async fn register(
    conn: &mut RedisConn,
    schedule_id: u64,
    settings: &QueueSettings,
    window: BookingWindow,
) -> redis::RedisResult<()> {
    let k = ScheduleKeys::new(schedule_id);
    redis::pipe()
        .hset_multiple(
            &k.cfg,
            &[
                ("bookingOpenAt", window.open_ms),
                ("bookingCloseAt", window.close_ms),
            ],
        )
        .ignore()
        .sadd(SCHEDULES, schedule_id)
        .ignore()
        .query_async::<()>(conn)
        .await?;
    store_settings(conn, schedule_id, settings).await?;
    super::streams::ensure_group(conn, &k.outbox).await
}

/// Whether Redis knows the schedule (its `cfg` hash exists).
pub async fn is_known(conn: &mut RedisConn, schedule_id: u64) -> redis::RedisResult<bool> {
    conn.exists(ScheduleKeys::new(schedule_id).cfg).await
}
