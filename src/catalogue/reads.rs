//! Catalogue reads: concerts with their schedules, and a schedule's seats (numbers and prices).
//! They come from the replica through a short-lived in-process cache; from the primary when
//! the replica is down or lagging (counted in `seatrush_replica_fallbacks_total`), and a row
//! the replica does not have yet is looked for on the primary before it is called missing.
//! When an entry expires, one request reads it again and the others wait for that read: a
//! crowd listing a venue of 10 000 seats makes one query every [`TTL`], not one each.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;

use crate::health::Health;
use crate::model::{Concert, ListedSeat, Schedule};
use crate::mysql::{Db, conn, read_replica_first, records, timed};

/// How long a catalogue read is served from memory.
const TTL: Duration = Duration::from_secs(2);

/// When an entry was read, and what was found (`None`: nothing).
type Entry<V> = (Instant, Option<Arc<V>>);

/// A map whose entries (including "not found") expire after [`TTL`], with a gate per key
/// being read, so one request reads it while the others wait.
struct TtlMap<K, V> {
    entries: Mutex<HashMap<K, Entry<V>>>,
    reading: Mutex<HashMap<K, Arc<tokio::sync::Mutex<()>>>>,
}

impl<K: Eq + Hash + Copy, V> TtlMap<K, V> {
    fn new() -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            reading: Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, key: K) -> Option<Option<Arc<V>>> {
        let map = self.entries.lock().expect("cache lock");
        map.get(&key)
            .filter(|(at, _)| at.elapsed() < TTL)
            .map(|(_, v)| v.clone())
    }

    fn put(&self, key: K, value: Option<Arc<V>>) {
        let mut map = self.entries.lock().expect("cache lock");
        map.retain(|_, (at, _)| at.elapsed() < TTL);
        map.insert(key, (Instant::now(), value));
    }

    /// The gate of `key`'s read: whoever holds it reads, the others wait their turn and
    /// then find the entry it put.
    fn gate(&self, key: K) -> Arc<tokio::sync::Mutex<()>> {
        let mut reading = self.reading.lock().expect("cache lock");
        reading.entry(key).or_default().clone()
    }

    /// The read of `key` is over (its entry is in, or it failed and the next one tries).
    fn read_done(&self, key: K) {
        self.reading.lock().expect("cache lock").remove(&key);
    }
}

pub struct Catalogue {
    db: Db,
    /// Whether the replica may be read (else reads go to the primary).
    health: Arc<Health>,
    concerts: TtlMap<u64, Concert>,
    seats: TtlMap<u64, Vec<ListedSeat>>,
    /// Reads that went to MySQL.
    reads: AtomicU64,
}

/// A schedule row as the concert query reads it.
type ScheduleColumns = (u64, u64, String, String, String, i64, i64, String);

impl Catalogue {
    pub fn new(db: Db, health: Arc<Health>) -> Self {
        Self {
            db,
            health,
            concerts: TtlMap::new(),
            seats: TtlMap::new(),
            reads: AtomicU64::new(0),
        }
    }

    /// How many reads went to MySQL so far (the rest were served from memory).
    pub fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// A concert and its schedules, or `None` if there is no such concert.
    pub async fn concert(
        &self,
        concert_id: u64,
    ) -> Result<Option<Arc<Concert>>, mysql_async::Error> {
        self.cached(&self.concerts, concert_id, load_concert).await
    }

    /// A schedule's seats by seat number, or `None` if the schedule has none.
    pub async fn seats(
        &self,
        schedule_id: u64,
    ) -> Result<Option<Arc<Vec<ListedSeat>>>, mysql_async::Error> {
        self.cached(&self.seats, schedule_id, load_seats).await
    }

    /// `map`'s entry for `id`, or what `load` reads ([`read`]) for it, kept for [`TTL`].
    async fn cached<V, F, Fut>(
        &self,
        map: &TtlMap<u64, V>,
        id: u64,
        load: F,
    ) -> Result<Option<Arc<V>>, mysql_async::Error>
    where
        F: Fn(mysql_async::Pool, &'static str, u64) -> Fut,
        Fut: std::future::Future<Output = Result<Option<V>, mysql_async::Error>>,
    {
        if let Some(hit) = map.get(id) {
            return Ok(hit);
        }
        let gate = map.gate(id);
        let _turn = gate.lock().await;
        // Another request may have read it while this one waited.
        if let Some(hit) = map.get(id) {
            return Ok(hit);
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let replica_readable = self.health.replica_readable();
        let found = read_replica_first(&self.db, replica_readable, |pool, name| {
            load(pool, name, id)
        })
        .await;
        let found = match found {
            Ok(found) => found.map(Arc::new),
            Err(e) => {
                map.read_done(id);
                return Err(e);
            }
        };
        map.put(id, found.clone());
        map.read_done(id);
        Ok(found)
    }
}

async fn load_concert(
    pool: mysql_async::Pool,
    name: &'static str,
    concert_id: u64,
) -> Result<Option<Concert>, mysql_async::Error> {
    let mut conn = conn(&pool, name).await?;
    let title: Option<String> =
        timed(conn.exec_first("SELECT title FROM concerts WHERE id = ?", (concert_id,))).await?;
    let Some(title) = title else {
        return Ok(None);
    };
    let rows: Vec<ScheduleColumns> = timed(conn.exec(
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
            |(id, venue_id, venue_name, date, time, open, close, status)| Schedule {
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
    Ok(Some(Concert { title, schedules }))
}

async fn load_seats(
    pool: mysql_async::Pool,
    name: &'static str,
    schedule_id: u64,
) -> Result<Option<Vec<ListedSeat>>, mysql_async::Error> {
    let mut conn = conn(&pool, name).await?;
    let seats: Vec<ListedSeat> = records::seats(&mut conn, schedule_id)
        .await?
        .into_iter()
        .map(|s| ListedSeat::new(s.seat_id, s.seat_number, s.price))
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
        map.entries.lock().unwrap().get_mut(&1).unwrap().0 = old;
        assert_eq!(map.get(1), None);
    }
}
