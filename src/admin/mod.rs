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
    Ok(settings_and_opening(hot, schedule_id).await?.0)
}

/// The settings in force and the opening's shuffle, if it ran.
async fn settings_and_opening(
    hot: &HotPath,
    schedule_id: u64,
) -> Result<(QueueSettings, Option<Opening>), Error> {
    let cfg = hot
        .queue_settings(schedule_id)
        .await?
        .ok_or(Error::ScheduleNotFound)?;
    let malformed = || Error::Internal(format!("schedule {schedule_id} has a malformed cfg hash"));
    let settings = QueueSettings::from_fields(&cfg).ok_or_else(malformed)?;
    let opening = match (cfg.get("shuffledAt"), cfg.get("shuffleSeed")) {
        (Some(at), Some(seed)) => Some(Opening {
            shuffled_at_ms: at.parse().map_err(|_| malformed())?,
            seed: seed.clone(),
        }),
        _ => None,
    };
    Ok((settings, opening))
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

/// The opening's shuffle of a `SHUFFLE_AT_OPEN` queue's pre-queue, once it ran: when, and
/// the seed its order follows from (kept for audit).
#[derive(Debug, Clone)]
pub struct Opening {
    pub shuffled_at_ms: i64,
    pub seed: String,
}

/// The settings in force, the counts, and the opening's shuffle if it ran.
pub async fn queue_state(
    hot: &HotPath,
    schedule_id: u64,
) -> Result<(QueueSettings, QueueCounts, Option<Opening>), Error> {
    let (settings, opening) = settings_and_opening(hot, schedule_id).await?;
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
        opening,
    ))
}

/// Changes the settings in force by `change`, on the primary (the record) and in Redis
/// (what the scripts read, from the next tick). The queue's order (`queueOrder`,
/// `preQueueMinutes`) changes only while the schedule has no live token, `409
/// SETTINGS_LOCKED` otherwise: checked before anything is written, and again by the script
/// that writes Redis (a token issued in between puts the primary's row back).
pub async fn update_settings(
    hot: &HotPath,
    db: &Db,
    schedule_id: u64,
    change: impl FnOnce(&mut QueueSettings) -> Result<(), Error>,
) -> Result<QueueSettings, Error> {
    let before = settings(hot, schedule_id).await?;
    let mut after = before;
    change(&mut after)?;
    let order_changes = (after.queue_order, after.pre_queue_minutes)
        != (before.queue_order, before.pre_queue_minutes);
    if order_changes {
        let [waiting, active, ..] = hot.queue_counts(schedule_id).await?;
        if waiting + active > 0 {
            return Err(Error::SettingsLocked);
        }
    }
    schedules::record_queue_settings(db, schedule_id, &after).await?;
    match hot
        .store_settings(schedule_id, &after, order_changes)
        .await?
    {
        Some(true) => Ok(after),
        Some(false) => {
            schedules::record_queue_settings(db, schedule_id, &before).await?;
            Err(Error::SettingsLocked)
        }
        None => Err(Error::ScheduleNotFound),
    }
}
