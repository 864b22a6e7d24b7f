//! The outbox entries MySQL refused for their content (README, "Failure behaviour"), as an
//! operator sees and replays them: `seatrush dead-letters list` prints each one,
//! `seatrush dead-letters replay` puts them back at the end of their outbox once the cause is
//! fixed (a migration, a constraint, a bad row removed), where the flusher tries them again.
//! An entry refused again goes back to the dead letters.
//!
//! A replayed entry is added to its outbox before it is deleted from the dead letters, so a
//! replay cut off between the two leaves it in both, never in neither; applying an entry twice
//! changes nothing (`events.rs`).

use std::collections::BTreeMap;

use redis::streams::{StreamId, StreamRangeReply};
use redis::{AsyncCommands, Value};
use serde::Serialize;

use super::all_outboxes;
use crate::redis::RedisConn;
use crate::redis::keys::Outbox;

/// Fields the flusher adds to an entry when it dead-letters it.
pub(super) const SOURCE_ID: &str = "sourceId";
pub(super) const ERROR: &str = "error";
/// For a conflict: MySQL's version of the record the entry names.
pub(super) const STORED: &str = "stored";

/// Whether a dead letter's field is one the flusher added (not the outbox entry's own).
fn added(name: &str) -> bool {
    [SOURCE_ID, ERROR, STORED].contains(&name)
}

/// One dead letter, as `list` prints it (one JSON object per line).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The dead-letter stream, and the entry's id there.
    pub stream: String,
    pub id: String,
    /// The entry's id in its outbox when it was refused.
    pub source_id: String,
    /// MySQL's answer.
    pub error: String,
    /// For a conflict: MySQL's version of the record the entry names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stored: Option<String>,
    /// The outbox entry's own fields.
    pub fields: BTreeMap<String, String>,
}

/// Every dead letter of every outbox, oldest first within each.
pub async fn list(redis: &mut RedisConn) -> redis::RedisResult<Vec<DeadLetter>> {
    let mut all = Vec::new();
    for outbox in all_outboxes(redis).await? {
        for entry in entries(redis, &outbox).await? {
            all.push(dead_letter(&outbox, &entry));
        }
    }
    Ok(all)
}

/// Puts dead letters back into their outboxes: all of them, or the one `only` names
/// (dead-letter stream, id). Returns how many were replayed.
pub async fn replay(
    redis: &mut RedisConn,
    only: Option<(&str, &str)>,
) -> redis::RedisResult<usize> {
    let mut replayed = 0;
    for outbox in all_outboxes(redis).await? {
        if only.is_some_and(|(stream, _)| stream != outbox.dead_letters) {
            continue;
        }
        for entry in entries(redis, &outbox).await? {
            if only.is_some_and(|(_, id)| id != entry.id) {
                continue;
            }
            let fields: Vec<(&str, Vec<u8>)> = entry
                .map
                .iter()
                .filter(|(name, _)| !added(name))
                .filter_map(|(name, value)| match value {
                    Value::BulkString(b) => Some((name.as_str(), b.clone())),
                    _ => None,
                })
                .collect();
            let _: String = redis.xadd(&outbox.stream, "*", &fields).await?;
            let _: u64 = redis.xdel(&outbox.dead_letters, &[&entry.id]).await?;
            tracing::info!(stream = %outbox.dead_letters, id = %entry.id, "dead letter replayed");
            replayed += 1;
        }
    }
    Ok(replayed)
}

async fn entries(redis: &mut RedisConn, outbox: &Outbox) -> redis::RedisResult<Vec<StreamId>> {
    let reply: StreamRangeReply = redis.xrange_all(&outbox.dead_letters).await?;
    Ok(reply.ids)
}

fn dead_letter(outbox: &Outbox, entry: &StreamId) -> DeadLetter {
    let text = |value: &Value| match value {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        other => format!("{other:?}"),
    };
    let named = |name: &str| entry.map.get(name).map(text).unwrap_or_default();
    let fields = entry
        .map
        .iter()
        .filter(|(name, _)| !added(name))
        .map(|(name, value)| (name.clone(), text(value)))
        .collect();
    DeadLetter {
        stream: outbox.dead_letters.clone(),
        id: entry.id.clone(),
        source_id: named(SOURCE_ID),
        error: named(ERROR),
        stored: entry.map.get(STORED).map(text),
        fields,
    }
}
