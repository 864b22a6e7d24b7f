//! Catalogue reads: concerts with their schedules, and a schedule's seats (numbers and prices).
//! They come from the replica through a short-lived in-process cache; from the primary when
//! the replica is down or lagging (counted in `seatrush_replica_fallbacks_total`), and a row
//! the replica does not have yet is looked for on the primary before it is called missing.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;

use crate::health::Health;
use crate::mysql::{Db, PRIMARY, REPLICA, conn, timed};

/// How long a catalogue read is served from memory.
const TTL: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleView {
    pub schedule_id: u64,
    pub concert_id: u64,
    pub concert_title: String,
    pub venue_id: u64,
    pub venue_name: String,
    /// `YYYY-MM-DD`
    pub performance_date: String,
    /// `HH:mm:ss`
    pub performance_time: String,
    pub booking_open_ms: i64,
    pub booking_close_ms: i64,
    pub cancelled: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcertView {
    pub title: String,
    /// By performance date and time.
    pub schedules: Vec<ScheduleView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatView {
    pub seat_id: u64,
    pub seat_number: u64,
    pub price: u64,
    /// The seat as the seat listing shows it while AVAILABLE, rendered once per read.
    pub listed_json: Box<str>,
}

/// When an entry was read, and what was found (`None`: nothing).
type Entry<V> = (Instant, Option<Arc<V>>);

/// A map whose entries (including "not found") expire after [`TTL`].
struct TtlMap<K, V>(Mutex<HashMap<K, Entry<V>>>);

impl<K: Eq + Hash + Copy, V> TtlMap<K, V> {
    fn new() -> Self {
        Self(Mutex::new(HashMap::new()))
    }

    fn get(&self, key: K) -> Option<Option<Arc<V>>> {
        let map = self.0.lock().expect("cache lock");
        map.get(&key)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: Option<Arc<V>>) {
        let mut map = self.0.lock().expect("cache lock");
        map.retain(|_, (at, _)| at.elapsed() < TTL);
        map.insert(key, (Instant::now(), value));
    }
}

pub struct Catalogue {
    concerts: TtlMap<u64, ConcertView>,
    seats: TtlMap<u64, Vec<SeatView>>,
}

impl Default for Catalogue {
    fn default() -> Self {
        Self {
            concerts: TtlMap::new(),
            seats: TtlMap::new(),
        }
    }
}

type ScheduleRow = (u64, u64, String, String, String, i64, i64, String);

impl Catalogue {
    /// A concert and its schedules, or `None` if there is no such concert.
    pub async fn concert(
        &self,
        db: &Db,
        health: &Health,
        concert_id: u64,
    ) -> Result<Option<Arc<ConcertView>>, mysql_async::Error> {
        if let Some(hit) = self.concerts.get(concert_id) {
            return Ok(hit);
        }
        let found = read(db, health, |pool, name| {
            load_concert(pool, name, concert_id)
        })
        .await?;
        let found = found.map(Arc::new);
        self.concerts.put(concert_id, found.clone());
        Ok(found)
    }

    /// A schedule's seats by seat number, or `None` if the schedule has none.
    pub async fn seats(
        &self,
        db: &Db,
        health: &Health,
        schedule_id: u64,
    ) -> Result<Option<Arc<Vec<SeatView>>>, mysql_async::Error> {
        if let Some(hit) = self.seats.get(schedule_id) {
            return Ok(hit);
        }
        let found = read(db, health, |pool, name| load_seats(pool, name, schedule_id)).await?;
        let found = found.map(Arc::new);
        self.seats.put(schedule_id, found.clone());
        Ok(found)
    }
}

/// Runs `load` on the replica when it is readable (else the primary); a miss on the replica
/// is tried again on the primary, which has every committed row.
async fn read<T, F, Fut>(db: &Db, health: &Health, load: F) -> Result<Option<T>, mysql_async::Error>
where
    F: Fn(mysql_async::Pool, &'static str) -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>, mysql_async::Error>>,
{
    let reason = if !health.replica_readable() {
        "replica_unreadable"
    } else {
        match load(db.replica.clone(), REPLICA).await {
            Ok(Some(found)) => return Ok(Some(found)),
            Ok(None) => "missing_on_replica",
            Err(e) => {
                tracing::warn!(error = %e, "replica read failed; reading the primary");
                "replica_error"
            }
        }
    };
    metrics::counter!("seatrush_replica_fallbacks_total", "reason" => reason).increment(1);
    load(db.primary.clone(), PRIMARY).await
}

async fn load_concert(
    pool: mysql_async::Pool,
    name: &'static str,
    concert_id: u64,
) -> Result<Option<ConcertView>, mysql_async::Error> {
    let mut conn = conn(&pool, name).await?;
    let title: Option<String> =
        timed(conn.exec_first("SELECT title FROM concerts WHERE id = ?", (concert_id,))).await?;
    let Some(title) = title else {
        return Ok(None);
    };
    let rows: Vec<ScheduleRow> = timed(conn.exec(
        "SELECT s.id, s.venue_id, v.name, DATE_FORMAT(s.performance_date, '%Y-%m-%d'),
           TIME_FORMAT(s.performance_time, '%H:%i:%s'),
           CAST(UNIX_TIMESTAMP(s.booking_open_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(s.booking_close_at) * 1000 AS SIGNED), s.status
         FROM concert_schedules s JOIN venues v ON v.id = s.venue_id
         WHERE s.concert_id = ?
         ORDER BY s.performance_date, s.performance_time, s.id",
        (concert_id,),
    ))
    .await?;
    let schedules = rows
        .into_iter()
        .map(
            |(id, venue_id, venue_name, date, time, open, close, status)| ScheduleView {
                schedule_id: id,
                concert_id,
                concert_title: title.clone(),
                venue_id,
                venue_name,
                performance_date: date,
                performance_time: time,
                booking_open_ms: open,
                booking_close_ms: close,
                cancelled: status == "CANCELLED",
            },
        )
        .collect();
    Ok(Some(ConcertView { title, schedules }))
}

async fn load_seats(
    pool: mysql_async::Pool,
    name: &'static str,
    schedule_id: u64,
) -> Result<Option<Vec<SeatView>>, mysql_async::Error> {
    let mut conn = conn(&pool, name).await?;
    let rows: Vec<(u64, u64, u64)> = timed(conn.exec(
        "SELECT id, seat_number, price FROM seats WHERE schedule_id = ? ORDER BY seat_number",
        (schedule_id,),
    ))
    .await?;
    let seats: Vec<SeatView> = rows
        .into_iter()
        .map(|(seat_id, seat_number, price)| SeatView {
            seat_id,
            seat_number,
            price,
            listed_json: format!(
                r#"{{"seatId":{seat_id},"seatNumber":{seat_number},"price":{price},"status":"AVAILABLE"}}"#
            )
            .into(),
        })
        .collect();
    Ok((!seats.is_empty()).then_some(seats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cached_entries_and_misses_expire() {
        let map: TtlMap<u64, u64> = TtlMap::new();
        assert_eq!(map.get(1), None);
        map.put(1, Some(Arc::new(7)));
        map.put(2, None);
        assert_eq!(map.get(1), Some(Some(Arc::new(7))));
        assert_eq!(map.get(2), Some(None), "a miss is remembered too");
        let old = Instant::now() - TTL;
        map.0.lock().unwrap().get_mut(&1).unwrap().0 = old;
        assert_eq!(map.get(1), None);
    }
}
