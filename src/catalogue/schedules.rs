//! Venues, concerts and schedules: created on the primary, and each schedule made known to
//! Redis (its queue settings and booking window) so the hot path never asks MySQL about it.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use mysql_async::prelude::*;

use crate::model::{BookingWindow, Error, MAX_SCHEDULE_ID, QueueSettings};
use crate::mysql::{
    Db, datetime_ms, placeholders, records, retry_lock_conflicts, shaped_chunks, timed,
};
use crate::redis::{RedisConn, schedules};

pub async fn create_venue(db: &Db, name: &str) -> Result<u64, mysql_async::Error> {
    insert_named(db, "INSERT INTO venues (name) VALUES (?)", name).await
}

pub async fn create_concert(db: &Db, title: &str) -> Result<u64, mysql_async::Error> {
    insert_named(db, "INSERT INTO concerts (title) VALUES (?)", title).await
}

async fn insert_named(db: &Db, sql: &str, value: &str) -> Result<u64, mysql_async::Error> {
    let mut conn = db.primary_conn().await?;
    timed(conn.exec_drop(sql, (value,))).await?;
    Ok(conn.last_insert_id().expect("an insert yields an id"))
}

#[derive(Debug, Clone)]
pub struct NewSchedule {
    pub concert_id: u64,
    pub venue_id: u64,
    pub performance_date: NaiveDate,
    pub performance_time: NaiveTime,
    pub booking_open_at: DateTime<Utc>,
    pub booking_close_at: DateTime<Utc>,
    /// (seatNumber, price), seat numbers distinct.
    pub seats: Vec<(u64, u64)>,
}

/// Creates the schedule and its seats in one transaction, then registers it in Redis.
/// Returns the schedule id and the seat ids in seat-number order.
pub async fn create_schedule(
    db: &Db,
    redis: &mut RedisConn,
    new: &NewSchedule,
) -> Result<(u64, Vec<u64>), Error> {
    let mut conn = db.primary_conn().await?;
    let mut tx = timed(conn.start_transaction(Default::default())).await?;
    let concert: Option<u64> =
        timed(tx.exec_first("SELECT id FROM concerts WHERE id = ?", (new.concert_id,))).await?;
    if concert.is_none() {
        return Err(Error::ConcertNotFound);
    }
    let venue: Option<u64> =
        timed(tx.exec_first("SELECT id FROM venues WHERE id = ?", (new.venue_id,))).await?;
    if venue.is_none() {
        return Err(Error::invalid("venueId", "no venue has this id"));
    }
    timed(tx.exec_drop(
        "INSERT INTO concert_schedules (concert_id, venue_id, performance_date, performance_time,
           booking_open_at, booking_close_at) VALUES (?, ?, ?, ?, ?, ?)",
        (
            new.concert_id,
            new.venue_id,
            new.performance_date.format("%Y-%m-%d").to_string(),
            new.performance_time.format("%H:%M:%S").to_string(),
            datetime_ms(new.booking_open_at.timestamp_millis()),
            datetime_ms(new.booking_close_at.timestamp_millis()),
        ),
    ))
    .await?;
    let schedule_id = tx.last_insert_id().expect("an insert yields an id");
    if schedule_id > MAX_SCHEDULE_ID {
        // Dropping the transaction rolls the schedule back.
        tracing::error!(schedule_id, "schedule ids exhausted; schedule not created");
        return Err(Error::ScheduleIdsExhausted);
    }
    for chunk in shaped_chunks(&new.seats) {
        let sql = format!(
            "INSERT INTO seats (schedule_id, seat_number, price) VALUES {}",
            placeholders(chunk.len(), "(?, ?, ?)")
        );
        let params: Vec<mysql_async::Value> = chunk
            .iter()
            .flat_map(|&(number, price)| [schedule_id.into(), number.into(), price.into()])
            .collect();
        timed(tx.exec_drop(sql, params)).await?;
    }
    let seats = records::seats(&mut tx, schedule_id).await?;
    let seat_ids: Vec<u64> = seats.iter().map(|s| s.seat_id).collect();
    timed(tx.commit()).await?;

    // Seats first, the settings (`cfg`) last: a schedule whose `cfg` exists is complete, and
    // one left without it (a crash here) is rebuilt from MySQL at the next start-up.
    schedules::load_seats(redis, schedule_id, &seats).await?;
    let window = BookingWindow {
        open_ms: new.booking_open_at.timestamp_millis(),
        close_ms: new.booking_close_at.timestamp_millis(),
    };
    schedules::register(redis, schedule_id, &QueueSettings::default(), window, &[]).await?;
    Ok((schedule_id, seat_ids))
}

/// Stores a schedule's settings on the primary (the record; Redis is written by the caller).
pub async fn record_queue_settings(
    db: &Db,
    schedule_id: u64,
    settings: &QueueSettings,
) -> Result<(), Error> {
    // The flusher's inserts lock the schedule row (foreign keys); a deadlock with them is
    // retried rather than reported.
    retry_lock_conflicts(|| async {
        let mut conn = db.primary_conn().await?;
        timed(conn.exec_drop(
            "UPDATE concert_schedules SET max_active_users = ?, max_waiting_users = ?,
               admission_per_second = ?, active_ttl_seconds = ?, hold_ttl_seconds = ?,
               max_seats_per_user = ?, user_requests_per_second = ?, queue_paused = ?,
               queue_order = ?, pre_queue_minutes = ?
             WHERE id = ?",
            (
                settings.max_active_users,
                settings.max_waiting_users,
                settings.admission_per_second,
                settings.active_ttl_seconds,
                settings.hold_ttl_seconds,
                settings.max_seats_per_user,
                settings.user_requests_per_second,
                settings.paused,
                settings.queue_order.as_str(),
                settings.pre_queue_minutes,
                schedule_id,
            ),
        ))
        .await
    })
    .await?;
    Ok(())
}
