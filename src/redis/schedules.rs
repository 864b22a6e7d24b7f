//! Making a schedule known to Redis: its seats, its outbox's consumer group, the registry
//! the background loops read, and last its settings and booking window (the `cfg` hash,
//! written in one command: a schedule whose `cfg` exists is complete).

use std::collections::HashMap;

use redis::AsyncCommands;

use super::RedisConn;
use super::keys::{LIVE, LIVE_TRACKED, SCHEDULES, ScheduleKeys};
use crate::model::{BookingWindow, QueueSettings, Seat};

/// Most values per Redis command.
pub const CHUNK: usize = 5_000;

/// Adds the schedule's seats (numbers and prices) and the AVAILABLE ones (ordered by seat
/// number) to `pipe`, and then deletes the schedule's seat-state version: it names the seats
/// as the scripts left them (`lua/lib/holds.lua`), and a seat listing must not take these
/// for the ones it read at that version.
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
    let number: HashMap<u64, u64> = seats.iter().map(|s| (s.seat_id, s.seat_number)).collect();
    for chunk in available.chunks(CHUNK) {
        let members: Vec<(u64, u64)> = chunk
            .iter()
            .map(|id| (number.get(id).copied().unwrap_or(0), *id))
            .collect();
        pipe.zadd_multiple(&k.avail, &members).ignore();
    }
    pipe.hdel(&k.stats, "seatVersion").ignore();
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
    pipe.query_async(&mut conn.with_replica_wait()).await
}

/// Makes a schedule known: the outbox's consumer group and the registry the background
/// loops read first, then its settings, booking window and the `order` state of its queue
/// (see `lua/issue_tokens.lua`; empty for a new schedule) in one `HSET` of the `cfg` hash.
/// `cfg` is the mark of a complete schedule (it is written whole or not at all, and last), so
/// a registration cut off anywhere leaves the schedule unknown, to be rebuilt from MySQL,
/// never half-configured; a registered schedule without `cfg` is skipped by the loops.
pub async fn register(
    conn: &mut RedisConn,
    schedule_id: u64,
    settings: &QueueSettings,
    window: BookingWindow,
    order: &[(&'static str, String)],
) -> redis::RedisResult<()> {
    let k = ScheduleKeys::new(schedule_id);
    super::streams::ensure_group(conn, &k.outbox).await?;
    let () = redis::pipe()
        .sadd(SCHEDULES, schedule_id)
        .sadd(LIVE, schedule_id)
        .query_async(conn)
        .await?;
    let mut fields = settings.fields();
    fields.push(("bookingOpenAt", window.open_ms.to_string()));
    fields.push(("bookingCloseAt", window.close_ms.to_string()));
    fields.extend_from_slice(order);
    redis::cmd("HSET")
        .arg(&k.cfg)
        .arg(fields)
        .query_async(&mut conn.with_replica_wait())
        .await
}

/// Whether Redis knows the schedule (its `cfg` hash exists).
pub async fn is_known(conn: &mut RedisConn, schedule_id: u64) -> redis::RedisResult<bool> {
    conn.exists(ScheduleKeys::new(schedule_id).cfg).await
}

/// Serves again every schedule something may happen to, as far as Redis can say: on the
/// first start with a registry of live schedules, every registered one (the admission tick
/// then sets aside those that are over); after a repair, the repaired ones.
pub async fn track_live(conn: &mut RedisConn) -> redis::RedisResult<()> {
    let first: bool = redis::cmd("SET")
        .arg(LIVE_TRACKED)
        .arg(1)
        .arg("NX")
        .query_async::<Option<String>>(conn)
        .await?
        .is_some();
    if first {
        let known: Vec<u64> = conn.smembers(SCHEDULES).await?;
        for chunk in known.chunks(CHUNK) {
            let () = conn.sadd(LIVE, chunk).await?;
        }
    }
    Ok(())
}

/// Serves `schedule_id` again (Redis was repaired from MySQL, so it may hold live records).
pub async fn serve_again(conn: &mut RedisConn, schedule_id: u64) -> redis::RedisResult<()> {
    redis::pipe()
        .sadd(LIVE, schedule_id)
        .zrem(super::keys::RETIRING, schedule_id)
        .query_async(conn)
        .await
}
