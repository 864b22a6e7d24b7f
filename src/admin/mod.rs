//! Administration: users, venues, concerts, schedules with their seats, and per-schedule
//! queue settings and counts. The edge checks `X-Admin-Key` before any of it runs.

use crate::catalogue::schedules::{self, NewSchedule};
use crate::model::{Error, QueueSettings};
use crate::mysql::Db;
use crate::redis::HotPath;
use crate::users::{UserDirectory, create_user};

/// Creates a user with a zero balance, known to this instance's directory at once.
pub async fn add_user(db: &Db, users: &UserDirectory, name: &str) -> Result<u64, Error> {
    let id = create_user(db, name).await?;
    users.mark(&[id]);
    Ok(id)
}

pub async fn add_venue(db: &Db, name: &str) -> Result<u64, Error> {
    Ok(schedules::create_venue(db, name).await?)
}

pub async fn add_concert(db: &Db, title: &str) -> Result<u64, Error> {
    Ok(schedules::create_concert(db, title).await?)
}

/// Creates the schedule with its seats; returns its id and the seat ids by seat number.
pub async fn add_schedule(
    hot: &HotPath,
    db: &Db,
    new: &NewSchedule,
) -> Result<(u64, Vec<u64>), Error> {
    schedules::create_schedule(db, &mut hot.conn(), new).await
}

/// The settings in force, as the scripts read them from Redis.
pub async fn settings(hot: &HotPath, schedule_id: u64) -> Result<QueueSettings, Error> {
    let cfg = hot
        .queue_settings(schedule_id)
        .await?
        .ok_or(Error::ScheduleNotFound)?;
    QueueSettings::from_fields(&cfg)
        .ok_or_else(|| Error::Internal(format!("schedule {schedule_id} has a malformed cfg hash")))
}

/// A schedule's queue and seats now.
#[derive(Debug, Clone, Copy)]
pub struct QueueCounts {
    pub waiting: u64,
    pub active: u64,
    pub admitted_total: u64,
    pub held_seats: u64,
    pub sold_seats: u64,
}

/// The settings in force and the counts.
pub async fn queue_state(
    hot: &HotPath,
    schedule_id: u64,
) -> Result<(QueueSettings, QueueCounts), Error> {
    let settings = settings(hot, schedule_id).await?;
    let [waiting, active, admitted_total, held_seats, sold_seats] =
        hot.queue_counts(schedule_id).await?;
    Ok((
        settings,
        QueueCounts {
            waiting,
            active,
            admitted_total,
            held_seats,
            sold_seats,
        },
    ))
}

/// Changes the settings in force by `change`, on the primary (the record) and in Redis
/// (what the scripts read, from the next tick).
pub async fn update_settings(
    hot: &HotPath,
    db: &Db,
    schedule_id: u64,
    change: impl FnOnce(&mut QueueSettings) -> Result<(), Error>,
) -> Result<QueueSettings, Error> {
    let mut settings = settings(hot, schedule_id).await?;
    change(&mut settings)?;
    schedules::update_queue_settings(db, &mut hot.conn(), schedule_id, &settings).await?;
    Ok(settings)
}
