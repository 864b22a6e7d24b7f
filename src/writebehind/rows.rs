//! Writing full-state rows idempotently: the latest state of each row in a batch, updated
//! where MySQL has the row and inserted with a plain INSERT where it does not (an upsert would
//! also fire on a table's other unique keys and could fold one row into another silently).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use mysql_async::prelude::*;

use crate::mysql::{datetime_ms, placeholders, shaped_chunks, timed};

/// What names a row: one column or several (`Table::key_column`).
pub trait Key: Eq + Hash + Clone + Send + 'static + FromRow {
    /// One key's placeholders in a SQL list, e.g. `?` or `(?, ?)`.
    const PLACEHOLDERS: &'static str;
    fn values(&self) -> Vec<mysql_async::Value>;
}

impl Key for u64 {
    const PLACEHOLDERS: &'static str = "?";
    fn values(&self) -> Vec<mysql_async::Value> {
        vec![(*self).into()]
    }
}

impl Key for (u64, u64) {
    const PLACEHOLDERS: &'static str = "(?, ?)";
    fn values(&self) -> Vec<mysql_async::Value> {
        vec![self.0.into(), self.1.into()]
    }
}

/// A row kind the flusher writes.
pub trait Row {
    type Key: Key;
    fn key(&self) -> Self::Key;
    /// The values of [`Table::columns`], in order.
    fn params(&self) -> Vec<mysql_async::Value>;
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
}

/// The latest state of each row, in order of first appearance.
pub fn latest<'a, R: Row + 'a>(rows: impl IntoIterator<Item = &'a R>) -> Vec<&'a R> {
    let mut order: Vec<R::Key> = Vec::new();
    let mut last: HashMap<R::Key, &'a R> = HashMap::new();
    for row in rows {
        if last.insert(row.key(), row).is_none() {
            order.push(row.key());
        }
    }
    order.iter().map(|k| last[k]).collect()
}

/// Writes `rows` (already reduced by [`latest`]); returns the rows that were new to MySQL.
pub async fn write<'a, R: Row>(
    tx: &mut mysql_async::Transaction<'_>,
    table: &Table,
    rows: &[&'a R],
) -> Result<Vec<&'a R>, mysql_async::Error> {
    let mut existing: HashSet<R::Key> = HashSet::new();
    for chunk in shaped_chunks(rows) {
        let sql = format!(
            "SELECT {key} FROM {name} WHERE ({key}) IN ({}) FOR UPDATE",
            placeholders(chunk.len(), R::Key::PLACEHOLDERS),
            key = table.key_column,
            name = table.name,
        );
        let keys: Vec<mysql_async::Value> = chunk.iter().flat_map(|r| r.key().values()).collect();
        let found: Vec<R::Key> = timed(tx.exec(sql, keys)).await?;
        existing.extend(found);
    }
    let (known, new): (Vec<&R>, Vec<&R>) = rows.iter().partition(|r| existing.contains(&r.key()));
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
