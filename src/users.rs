//! Users: creation, and the in-process directory that answers "does user N exist?" on the hot
//! path without a query. Users are never deleted, so a positive answer is cached for good; the
//! directory is refreshed from the replica by id and asks the primary about ids it has not seen.

use std::sync::RwLock;

use mysql_async::prelude::*;

use crate::mysql::{Db, timed};

/// Ids above this are looked up in MySQL each time instead of growing the bit set further.
const MAX_DIRECT_ID: u64 = 1 << 28;
/// Rows fetched per refresh query.
const REFRESH_PAGE: u64 = 50_000;

#[derive(Default)]
pub struct UserDirectory {
    /// Bit `id` is set once user `id` is known to exist.
    known: RwLock<Vec<u64>>,
    /// Highest id loaded by [`UserDirectory::refresh`]; the next refresh starts after it.
    loaded_up_to: RwLock<u64>,
}

impl UserDirectory {
    fn is_known(&self, id: u64) -> bool {
        let known = self.known.read().expect("directory lock");
        known
            .get((id / 64) as usize)
            .is_some_and(|word| word & (1 << (id % 64)) != 0)
    }

    /// Records that these users exist (a refresh found them, or this instance created one).
    pub fn mark(&self, ids: &[u64]) {
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
}
