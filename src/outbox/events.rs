//! Outbox events as the scripts write them, and how a batch of them is applied to MySQL with
//! idempotent statements: every event carries the full state of its row, so replaying one, or
//! applying an older one after a newer, changes nothing.

use std::collections::{HashMap, HashSet};

use mysql_async::prelude::*;
use redis::Value;

use crate::mysql::{datetime_ms, placeholders, shaped_chunks, timed};

/// One decoded outbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The new state of each token a script run changed.
    Tokens(Vec<TokenRow>),
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

fn number<T: std::str::FromStr>(text: &str, name: &str) -> Result<T, DecodeError> {
    text.parse()
        .map_err(|_| DecodeError(format!("{name} is not a number: {text:?}")))
}

fn opt_ms(text: &str, name: &str) -> Result<Option<i64>, DecodeError> {
    match text {
        "" => Ok(None),
        _ => number(text, name).map(Some),
    }
}

impl TokenRow {
    /// Parses a token record, `userId|status|seq|issuedAt|activatedAt|expiresAt|endedAt`
    /// (see `lua/lib/queue.lua`).
    pub fn parse(token: &str, schedule_id: u64, record: &str) -> Result<Self, DecodeError> {
        let f: Vec<&str> = record.split('|').collect();
        let [user, status, seq, iat, aat, exp, fin] = f[..] else {
            return Err(DecodeError(format!(
                "token record {record:?} has {} fields",
                f.len()
            )));
        };
        Ok(TokenRow {
            token: token.to_string(),
            user_id: number(user, "userId")?,
            schedule_id,
            status: status.to_string(),
            seq: number(seq, "seq")?,
            issued_at_ms: number(iat, "issuedAt")?,
            activated_at_ms: opt_ms(aat, "activatedAt")?,
            expires_at_ms: opt_ms(exp, "expiresAt")?,
            ended_at_ms: opt_ms(fin, "endedAt")?,
        })
    }
}

impl Event {
    /// Decodes an entry of schedule `schedule_id`'s outbox.
    pub fn decode(map: &HashMap<String, Value>, schedule_id: u64) -> Result<Self, DecodeError> {
        match field(map, "type")? {
            // Every field but `type` is a token and its record.
            "tokens" => map
                .keys()
                .filter(|name| *name != "type")
                .map(|token| TokenRow::parse(token, schedule_id, field(map, token)?))
                .collect::<Result<Vec<_>, _>>()
                .map(Event::Tokens),
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
    for Event::Tokens(rows) in events {
        for row in rows {
            if latest.insert(&row.token, row).is_none() {
                order.push(&row.token);
            }
        }
    }
    if order.is_empty() {
        return Ok(());
    }
    // Rows MySQL has are updated, the others inserted with a plain INSERT: an upsert would
    // also fire on the other unique keys and could fold one token into another silently.
    let mut existing = HashSet::new();
    for chunk in shaped_chunks(&order) {
        let found: Vec<String> = timed(tx.exec(
            format!(
                "SELECT token FROM queue_tokens WHERE token IN ({}) FOR UPDATE",
                placeholders(chunk.len(), "?")
            ),
            chunk.to_vec(),
        ))
        .await?;
        existing.extend(found);
    }
    let (known, new): (Vec<&TokenRow>, Vec<&TokenRow>) = order
        .iter()
        .map(|t| latest[t])
        .partition(|row| existing.contains(&row.token));
    // Updates first: they end old tokens before a user's next token is inserted.
    for chunk in shaped_chunks(&known) {
        let sql = format!(
            "INSERT INTO queue_tokens ({TOKEN_COLUMNS}) VALUES {}
             ON DUPLICATE KEY UPDATE
               activated_at = COALESCE(VALUES(activated_at), activated_at),
               expires_at = COALESCE(VALUES(expires_at), expires_at),
               ended_at = COALESCE(VALUES(ended_at), ended_at),
               status = IF(VALUES(status) + 0 > status + 0, VALUES(status), status)",
            placeholders(chunk.len(), TOKEN_ROW)
        );
        timed(tx.exec_drop(sql, token_params(chunk))).await?;
    }
    for chunk in shaped_chunks(&new) {
        let sql = format!(
            "INSERT INTO queue_tokens ({TOKEN_COLUMNS}) VALUES {}",
            placeholders(chunk.len(), TOKEN_ROW)
        );
        timed(tx.exec_drop(sql, token_params(chunk))).await?;
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
            ("type", "tokens"),
            ("t-1", "9|WAITING|12|1700000000123|||"),
            (
                "t-2",
                "8|ACTIVE|13|1700000000124|1700000000124|1700000300124|",
            ),
        ]);
        let Event::Tokens(mut rows) = Event::decode(&map, 3).unwrap();
        rows.sort_by(|a, b| a.token.cmp(&b.token));
        let row = &rows[0];
        assert_eq!((row.user_id, row.schedule_id, row.seq), (9, 3, 12));
        assert_eq!(row.issued_at_ms, 1_700_000_000_123);
        assert_eq!(row.activated_at_ms, None);
        assert_eq!(rows[1].expires_at_ms, Some(1_700_000_300_124));
    }

    #[test]
    fn unknown_or_broken_events_are_refused() {
        assert!(Event::decode(&entry(&[("type", "bogus")]), 1).is_err());
        assert!(Event::decode(&entry(&[("token", "x")]), 1).is_err());
        assert!(Event::decode(&entry(&[("type", "tokens"), ("x", "9|WAITING|1")]), 1).is_err());
        let bad = entry(&[("type", "tokens"), ("x", "nine|WAITING|1|2|||")]);
        assert!(Event::decode(&bad, 1).is_err());
    }
}
