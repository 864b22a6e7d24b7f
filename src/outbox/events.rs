//! Outbox events as the scripts write them, and how a batch of them is applied to MySQL with
//! idempotent statements: every event carries the full state of its row, so replaying one, or
//! applying an older one after a newer, changes nothing.

use std::collections::HashMap;

use mysql_async::prelude::*;
use redis::Value;

use crate::mysql::{datetime_ms, placeholders, timed};

/// One decoded outbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Token(TokenRow),
}

/// A queue token's full state (see `lua/lib/queue.lua`, `save_token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub token: String,
    pub user_id: u64,
    pub schedule_id: u64,
    pub status: String,
    pub seq: u64,
    pub issued_at_ms: i64,
    pub activated_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
#[error("undecodable outbox entry: {0}")]
pub struct DecodeError(pub String);

fn field<'a>(map: &'a HashMap<String, Value>, name: &str) -> Result<&'a str, DecodeError> {
    match map.get(name) {
        Some(Value::BulkString(b)) => {
            std::str::from_utf8(b).map_err(|_| DecodeError(format!("{name} is not UTF-8")))
        }
        Some(Value::SimpleString(s)) => Ok(s),
        _ => Err(DecodeError(format!("{name} is missing"))),
    }
}

fn number<T: std::str::FromStr>(
    map: &HashMap<String, Value>,
    name: &str,
) -> Result<T, DecodeError> {
    field(map, name)?
        .parse()
        .map_err(|_| DecodeError(format!("{name} is not a number")))
}

fn opt_ms(map: &HashMap<String, Value>, name: &str) -> Result<Option<i64>, DecodeError> {
    match field(map, name)? {
        "" => Ok(None),
        _ => number(map, name).map(Some),
    }
}

impl Event {
    pub fn decode(map: &HashMap<String, Value>) -> Result<Self, DecodeError> {
        match field(map, "type")? {
            "token" => Ok(Event::Token(TokenRow {
                token: field(map, "token")?.to_string(),
                user_id: number(map, "user")?,
                schedule_id: number(map, "schedule")?,
                status: field(map, "status")?.to_string(),
                seq: number(map, "seq")?,
                issued_at_ms: number(map, "issuedAt")?,
                activated_at_ms: opt_ms(map, "activatedAt")?,
                expires_at_ms: opt_ms(map, "expiresAt")?,
                ended_at_ms: opt_ms(map, "endedAt")?,
            })),
            other => Err(DecodeError(format!("unknown event type {other:?}"))),
        }
    }
}

fn opt_datetime(ms: Option<i64>) -> mysql_async::Value {
    ms.map_or(mysql_async::Value::NULL, datetime_ms)
}

const TOKEN_COLUMNS: &str =
    "token, user_id, schedule_id, status, seq, issued_at, activated_at, expires_at, ended_at";

/// Applies events inside the caller's transaction.
pub async fn apply(
    tx: &mut mysql_async::Transaction<'_>,
    events: &[Event],
) -> Result<(), mysql_async::Error> {
    // The latest state of each token, in order of first appearance.
    let mut order: Vec<&str> = Vec::new();
    let mut latest: HashMap<&str, &TokenRow> = HashMap::new();
    for Event::Token(row) in events {
        if latest.insert(&row.token, row).is_none() {
            order.push(&row.token);
        }
    }
    if order.is_empty() {
        return Ok(());
    }
    // Rows MySQL has are updated, the others inserted with a plain INSERT: an upsert would
    // also fire on the other unique keys and could fold one token into another silently.
    let existing: Vec<String> = timed(tx.exec(
        format!(
            "SELECT token FROM queue_tokens WHERE token IN ({}) FOR UPDATE",
            placeholders(order.len(), "?")
        ),
        order.clone(),
    ))
    .await?;
    let (known, new): (Vec<&TokenRow>, Vec<&TokenRow>) = order
        .iter()
        .map(|t| latest[t])
        .partition(|row| existing.contains(&row.token));
    // Updates first: they end old tokens before a user's next token is inserted.
    if !known.is_empty() {
        let sql = format!(
            "INSERT INTO queue_tokens ({TOKEN_COLUMNS}) VALUES {}
             ON DUPLICATE KEY UPDATE
               activated_at = COALESCE(VALUES(activated_at), activated_at),
               expires_at = COALESCE(VALUES(expires_at), expires_at),
               ended_at = COALESCE(VALUES(ended_at), ended_at),
               status = IF(VALUES(status) + 0 > status + 0, VALUES(status), status)",
            placeholders(known.len(), TOKEN_ROW)
        );
        timed(tx.exec_drop(sql, token_params(&known))).await?;
    }
    if !new.is_empty() {
        let sql = format!(
            "INSERT INTO queue_tokens ({TOKEN_COLUMNS}) VALUES {}",
            placeholders(new.len(), TOKEN_ROW)
        );
        timed(tx.exec_drop(sql, token_params(&new))).await?;
    }
    Ok(())
}

const TOKEN_ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?, ?)";

fn token_params(rows: &[&TokenRow]) -> Vec<mysql_async::Value> {
    let mut params = Vec::with_capacity(rows.len() * 9);
    for row in rows {
        params.extend([
            row.token.as_str().into(),
            row.user_id.into(),
            row.schedule_id.into(),
            row.status.as_str().into(),
            row.seq.into(),
            datetime_ms(row.issued_at_ms),
            opt_datetime(row.activated_at_ms),
            opt_datetime(row.expires_at_ms),
            opt_datetime(row.ended_at_ms),
        ]);
    }
    params
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn token_events_decode_with_empty_times_as_none() {
        let map = entry(&[
            ("type", "token"),
            ("kind", "issued"),
            ("token", "t-1"),
            ("schedule", "3"),
            ("user", "9"),
            ("status", "WAITING"),
            ("seq", "12"),
            ("issuedAt", "1700000000123"),
            ("activatedAt", ""),
            ("expiresAt", ""),
            ("endedAt", ""),
        ]);
        let Event::Token(row) = Event::decode(&map).unwrap();
        assert_eq!((row.user_id, row.schedule_id, row.seq), (9, 3, 12));
        assert_eq!(row.issued_at_ms, 1_700_000_000_123);
        assert_eq!(row.activated_at_ms, None);
    }

    #[test]
    fn unknown_or_broken_events_are_refused() {
        assert!(Event::decode(&entry(&[("type", "bogus")])).is_err());
        assert!(Event::decode(&entry(&[("type", "token"), ("token", "x")])).is_err());
    }
}
