//! Users: creation, and the in-process directory that answers "does user N exist?" on the hot
//! path without a query. Users are never deleted, so a positive answer is cached for good; the
//! directory is refreshed from the replica by id and asks the primary about ids it has not seen.
//! A negative answer is kept for [`ABSENT_FOR`], so a flood of requests for unknown users
//! costs one query per id and period, not one per request.

use std::collections::HashMap;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use mysql_async::prelude::*;

use crate::mysql::{Db, timed};

/// Ids above this are looked up in MySQL each time instead of growing the bit set further.
const MAX_DIRECT_ID: u64 = 1 << 28;
/// Rows fetched per refresh query.
const REFRESH_PAGE: u64 = 50_000;
/// How long "no such user" is believed: short, since another instance may create the user.
const ABSENT_FOR: Duration = Duration::from_secs(2);

#[derive(Default)]
pub struct UserDirectory {
    /// Bit `id` is set once user `id` is known to exist.
    known: RwLock<Vec<u64>>,
    /// Highest id loaded by [`UserDirectory::refresh`]; the next refresh starts after it.
    loaded_up_to: RwLock<u64>,
    /// Ids the primary said do not exist, and when (entries older than [`ABSENT_FOR`] are
    /// dropped at every insert, so the map holds at most the ids asked for in that time).
    absent: Mutex<HashMap<u64, Instant>>,
}

impl UserDirectory {
    fn is_known(&self, id: u64) -> bool {
        let known = self.known.read().expect("directory lock");
        known
            .get((id / 64) as usize)
            .is_some_and(|word| word & (1 << (id % 64)) != 0)
    }

    fn known_absent(&self, id: u64) -> bool {
        let absent = self.absent.lock().expect("directory lock");
        absent.get(&id).is_some_and(|at| at.elapsed() < ABSENT_FOR)
    }

    fn mark_absent(&self, id: u64) {
        let mut absent = self.absent.lock().expect("directory lock");
        absent.retain(|_, at| at.elapsed() < ABSENT_FOR);
        absent.insert(id, Instant::now());
    }

    /// Records that these users exist (a refresh found them, or this instance created one).
    pub fn mark(&self, ids: &[u64]) {
        {
            let mut absent = self.absent.lock().expect("directory lock");
            for id in ids {
                absent.remove(id);
            }
        }
        let mut known = self.known.write().expect("directory lock");
        for &id in ids.iter().filter(|&&id| id < MAX_DIRECT_ID) {
            let word = (id / 64) as usize;
            if known.len() <= word {
                known.resize(word + 1, 0);
            }
            known[word] |= 1 << (id % 64);
        }
    }

    /// Whether user `id` exists; asks the primary only for ids not seen yet. While the
    /// primary cannot answer, a user the replica has is known too (users are never deleted);
    /// one it lacks may be too new for it, so the primary's error stands.
    pub async fn exists(&self, db: &Db, id: u64) -> Result<bool, mysql_async::Error> {
        if self.is_known(id) {
            return Ok(true);
        }
        if self.known_absent(id) {
            return Ok(false);
        }
        let lookup = |conn: Result<mysql_async::Conn, mysql_async::Error>| async move {
            let found: Option<u64> =
                timed(conn?.exec_first("SELECT id FROM users WHERE id = ?", (id,))).await?;
            Ok::<_, mysql_async::Error>(found.is_some())
        };
        let found = match lookup(db.primary_conn().await).await {
            Ok(found) => found,
            Err(e) => match lookup(db.replica_conn().await).await {
                Ok(true) => true,
                _ => return Err(e),
            },
        };
        if found {
            self.mark(&[id]);
        } else {
            self.mark_absent(id);
        }
        Ok(found)
    }

    /// Loads users created since the last refresh (from the replica, which may lag: a user
    /// it has not seen yet is still found through the primary by [`UserDirectory::exists`]).
    pub async fn refresh(&self, db: &Db) -> Result<(), mysql_async::Error> {
        let mut conn = db.replica_conn().await?;
        loop {
            let after = *self.loaded_up_to.read().expect("directory lock");
            let ids: Vec<u64> = timed(conn.exec(
                "SELECT id FROM users WHERE id > ? ORDER BY id LIMIT ?",
                (after, REFRESH_PAGE),
            ))
            .await?;
            let Some(&last) = ids.last() else {
                return Ok(());
            };
            self.mark(&ids);
            *self.loaded_up_to.write().expect("directory lock") = last;
            if (ids.len() as u64) < REFRESH_PAGE {
                return Ok(());
            }
        }
    }
}

/// Creates a user with a zero balance; returns the new id.
pub async fn create_user(db: &Db, name: &str) -> Result<u64, mysql_async::Error> {
    let mut conn = db.primary_conn().await?;
    let mut tx = timed(conn.start_transaction(Default::default())).await?;
    timed(tx.exec_drop("INSERT INTO users (name) VALUES (?)", (name,))).await?;
    let id = tx
        .last_insert_id()
        .expect("an insert into users yields an id");
    timed(tx.exec_drop("INSERT INTO user_balances (user_id) VALUES (?)", (id,))).await?;
    timed(tx.commit()).await?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marked_ids_are_known_and_others_are_not() {
        let dir = UserDirectory::default();
        dir.mark(&[1, 63, 64, 1000, MAX_DIRECT_ID + 5]);
        for id in [1, 63, 64, 1000] {
            assert!(dir.is_known(id), "{id}");
        }
        for id in [0, 2, 65, 999, 1_000_000, MAX_DIRECT_ID + 5] {
            assert!(!dir.is_known(id), "{id}");
        }
    }

    #[test]
    fn absent_ids_are_believed_briefly_and_forgotten_once_created() {
        let dir = UserDirectory::default();
        dir.mark_absent(7);
        assert!(dir.known_absent(7));
        assert!(!dir.known_absent(8));
        dir.mark(&[7]);
        assert!(!dir.known_absent(7) && dir.is_known(7));
        dir.absent
            .lock()
            .unwrap()
            .insert(9, Instant::now() - ABSENT_FOR);
        assert!(!dir.known_absent(9), "past ABSENT_FOR it is asked again");
    }
}
