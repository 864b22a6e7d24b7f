//! Writing full-state rows idempotently: the latest state of each row in a batch, updated
//! where MySQL has the row and inserted with a plain INSERT where it does not (an upsert would
//! also fire on a table's other unique keys and could fold one row into another silently).
//!
//! A row MySQL already has is only moved forwards, and only if it is the same row: when its
//! immutable content ([`Table::identity`]: owner, amount, seats, …) differs from the stored
//! one (or from another version of it in the same batch), the id was handed out twice (a
//! Redis that came back older than MySQL) and the write is a [`Conflict`], never a merge.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use mysql_async::prelude::*;

use crate::mysql::{datetime_ms, placeholders, shaped_chunks, timed};

/// What names a row: one column or several (`Table::key_column`).
pub trait Key: Eq + Hash + Clone + Debug + Send + 'static {
    /// One key's placeholders in a SQL list, e.g. `?` or `(?, ?)`.
    const PLACEHOLDERS: &'static str;
    /// How many columns name a row.
    const WIDTH: usize;
    fn values(&self) -> Vec<mysql_async::Value>;
    /// The key from the first [`Key::WIDTH`] columns of a selected row.
    fn take(row: &mut mysql_async::Row) -> Option<Self>;
}

impl Key for u64 {
    const PLACEHOLDERS: &'static str = "?";
    const WIDTH: usize = 1;
    fn values(&self) -> Vec<mysql_async::Value> {
        vec![(*self).into()]
    }
    fn take(row: &mut mysql_async::Row) -> Option<Self> {
        row.take(0)
    }
}

impl Key for (u64, u64) {
    const PLACEHOLDERS: &'static str = "(?, ?)";
    const WIDTH: usize = 2;
    fn values(&self) -> Vec<mysql_async::Value> {
        vec![self.0.into(), self.1.into()]
    }
    fn take(row: &mut mysql_async::Row) -> Option<Self> {
        Some((row.take(0)?, row.take(1)?))
    }
}

/// A row kind the flusher writes.
pub trait Row {
    type Key: Key;
    fn key(&self) -> Self::Key;
    /// The values of [`Table::columns`], in order.
    fn params(&self) -> Vec<mysql_async::Value>;
    /// The row's immutable content, as [`Table::identity`] renders the stored row.
    fn identity(&self) -> String;
}

/// Where and how rows of one kind are written.
pub struct Table {
    pub name: &'static str,
    /// The column, or comma-separated columns, of the row's [`Key`].
    pub key_column: &'static str,
    pub columns: &'static str,
    /// One row's placeholders, e.g. `(?, ?, ?)`.
    pub row: &'static str,
    /// The `ON DUPLICATE KEY UPDATE …` assignments for a row MySQL already has; they must
    /// only ever move a row forwards.
    pub update: &'static str,
    /// A SQL expression rendering a stored row's immutable content as text, the way
    /// [`Row::identity`] renders a new one (`''` for a table of state with nothing
    /// immutable but its key).
    pub identity: &'static str,
}

/// A row whose id MySQL already holds with other immutable content: the id was handed out
/// twice. Neither version is merged into the other.
#[derive(Debug, Clone, thiserror::Error)]
#[error("conflict: {table} {key} is stored as {stored:?}, the outbox has {incoming:?}")]
pub struct Conflict {
    pub table: &'static str,
    pub key: String,
    /// MySQL's version ([`Table::identity`]).
    pub stored: String,
    /// The outbox's version.
    pub incoming: String,
}

/// Why a batch could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error(transparent)]
    Mysql(#[from] mysql_async::Error),
    #[error(transparent)]
    Conflict(#[from] Conflict),
}

/// The latest state of each row of `table`, in order of first appearance; a [`Conflict`] if
/// two of them share an id but not their immutable content.
pub fn latest<'a, R: Row + 'a>(
    table: &Table,
    rows: impl IntoIterator<Item = &'a R>,
) -> Result<Vec<&'a R>, Conflict> {
    let mut order: Vec<R::Key> = Vec::new();
    let mut last: HashMap<R::Key, &'a R> = HashMap::new();
    for row in rows {
        match last.insert(row.key(), row) {
            None => order.push(row.key()),
            Some(earlier) if earlier.identity() != row.identity() => {
                return Err(Conflict {
                    table: table.name,
                    key: format!("{:?}", row.key()),
                    stored: earlier.identity(),
                    incoming: row.identity(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(order.iter().map(|k| last[k]).collect())
}

/// Writes `rows` (already reduced by [`latest`]); returns the rows that were new to MySQL.
/// Writes nothing and returns the first [`Conflict`] if MySQL holds one of the ids with other
/// immutable content.
pub async fn write<'a, R: Row>(
    tx: &mut mysql_async::Transaction<'_>,
    table: &Table,
    rows: &[&'a R],
) -> Result<Vec<&'a R>, WriteError> {
    let mut existing: HashMap<R::Key, String> = HashMap::new();
    for chunk in shaped_chunks(rows) {
        let sql = format!(
            "SELECT {key}, {identity} FROM {name} WHERE ({key}) IN ({}) FOR UPDATE",
            placeholders(chunk.len(), R::Key::PLACEHOLDERS),
            key = table.key_column,
            identity = table.identity,
            name = table.name,
        );
        let keys: Vec<mysql_async::Value> = chunk.iter().flat_map(|r| r.key().values()).collect();
        let found: Vec<mysql_async::Row> = timed(tx.exec(sql, keys)).await?;
        for mut row in found {
            let stored: Option<String> = row.take(R::Key::WIDTH);
            if let Some(key) = R::Key::take(&mut row) {
                existing.insert(key, stored.unwrap_or_default());
            }
        }
    }
    for row in rows {
        if let Some(stored) = existing.get(&row.key()) {
            let incoming = row.identity();
            if *stored != incoming {
                return Err(Conflict {
                    table: table.name,
                    key: format!("{:?}", row.key()),
                    stored: stored.clone(),
                    incoming,
                }
                .into());
            }
        }
    }
    let (known, new): (Vec<&R>, Vec<&R>) =
        rows.iter().partition(|r| existing.contains_key(&r.key()));
    // Updates first: they end old rows before their successors are inserted.
    for chunk in shaped_chunks(&known) {
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {} ON DUPLICATE KEY UPDATE {}",
            table.name,
            table.columns,
            placeholders(chunk.len(), table.row),
            table.update
        );
        timed(tx.exec_drop(sql, params(chunk))).await?;
    }
    for chunk in shaped_chunks(&new) {
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            table.name,
            table.columns,
            placeholders(chunk.len(), table.row)
        );
        timed(tx.exec_drop(sql, params(chunk))).await?;
    }
    Ok(new)
}

fn params<R: Row>(rows: &[&R]) -> Vec<mysql_async::Value> {
    rows.iter().flat_map(|r| r.params()).collect()
}

/// An optional instant (ms since the epoch) as a DATETIME or NULL.
pub fn opt_datetime(ms: Option<i64>) -> mysql_async::Value {
    ms.map_or(mysql_async::Value::NULL, datetime_ms)
}
