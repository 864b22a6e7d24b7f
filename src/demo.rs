//! Demo data for `make run`: a few users, one venue, one concert with two schedules whose
//! booking is open now. Loaded only into an empty database, through the same code the admin
//! API uses.

use chrono::{Duration, NaiveTime, Utc};
use mysql_async::prelude::*;

use crate::catalogue::schedules::{self, NewSchedule};
use crate::model::Error;
use crate::mysql::{Db, timed};
use crate::redis::RedisConn;
use crate::users::create_user;

const USERS: &[&str] = &[
    "Kim Minji",
    "Lee Junho",
    "Park Seoyeon",
    "Choi Dohyun",
    "Jung Hana",
];
const SEATS_PER_SCHEDULE: u64 = 50;
const PRICE_KRW: u64 = 110_000;

/// The first users (at most as many as the demo has), id and name: who `make run` prints a
/// ready identity for.
pub async fn first_users(db: &Db) -> Result<Vec<(u64, String)>, Error> {
    let mut conn = db.primary_conn().await?;
    Ok(timed(conn.exec(
        "SELECT id, name FROM users ORDER BY id LIMIT ?",
        (USERS.len() as u64,),
    ))
    .await?)
}

/// The first schedule and its concert, whose waiting room `make run` links to.
pub async fn first_schedule(db: &Db) -> Result<Option<(u64, u64)>, Error> {
    let mut conn = db.primary_conn().await?;
    Ok(
        timed(conn.query_first("SELECT concert_id, id FROM concert_schedules ORDER BY id LIMIT 1"))
            .await?,
    )
}

/// Loads the demo data if there are no users yet; returns whether it did.
pub async fn load_if_empty(db: &Db, redis: &mut RedisConn) -> Result<bool, Error> {
    let mut conn = db.primary_conn().await?;
    let users_now: Option<u64> = timed(conn.query_first("SELECT COUNT(*) FROM users")).await?;
    if users_now.unwrap_or(0) > 0 {
        return Ok(false);
    }
    for name in USERS {
        create_user(db, name).await?;
    }
    let venue_id = schedules::create_venue(db, "Olympic Hall, Seoul").await?;
    let concert_id = schedules::create_concert(db, "Winter Flash Live 2026").await?;
    let now = Utc::now();
    for days_ahead in [30, 31] {
        let new = NewSchedule {
            concert_id,
            venue_id,
            performance_date: (now + Duration::days(days_ahead)).date_naive(),
            performance_time: NaiveTime::from_hms_opt(19, 0, 0).expect("19:00:00 is a time"),
            booking_open_at: now,
            booking_close_at: now + Duration::days(days_ahead - 1),
            seats: (1..=SEATS_PER_SCHEDULE).map(|n| (n, PRICE_KRW)).collect(),
        };
        schedules::create_schedule(db, redis, &new).await?;
    }
    Ok(true)
}
