//! Queue tokens as the flusher writes them to `queue_tokens`.

use mysql_async::prelude::*;

use super::events::{DecodeError, number, opt_datetime, opt_ms, opt_text};
use super::rows::{Row, Table};
use crate::mysql::{datetime_ms, timed};

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

impl TokenRow {
    /// Parses a token record, `userId|status|seq|issuedAt|activatedAt|expiresAt|endedAt`.
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

    /// The record as `lua/lib/queue.lua` stores it: the inverse of [`Self::parse`].
    pub fn record(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.user_id,
            self.status,
            self.seq,
            self.issued_at_ms,
            opt_text(self.activated_at_ms),
            opt_text(self.expires_at_ms),
            opt_text(self.ended_at_ms),
        )
    }
}

/// The schedule's tokens as MySQL has them: the live ones and those ended at or after
/// `ended_since_ms`.
pub async fn load(
    conn: &mut mysql_async::Conn,
    schedule_id: u64,
    ended_since_ms: i64,
) -> Result<Vec<TokenRow>, mysql_async::Error> {
    type Sql = (
        String,
        u64,
        String,
        u64,
        i64,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    );
    timed(conn.exec_map(
        "SELECT token, user_id, status, seq, CAST(UNIX_TIMESTAMP(issued_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(activated_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(expires_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(ended_at) * 1000 AS SIGNED)
         FROM queue_tokens WHERE schedule_id = ?
           AND (status IN ('WAITING', 'ACTIVE') OR ended_at >= ?)",
        (schedule_id, datetime_ms(ended_since_ms)),
        |(token, user_id, status, seq, issued, activated, expires, ended): Sql| TokenRow {
            token,
            user_id,
            schedule_id,
            status,
            seq,
            issued_at_ms: issued,
            activated_at_ms: activated,
            expires_at_ms: expires,
            ended_at_ms: ended,
        },
    ))
    .await
}

pub const TABLE: Table = Table {
    name: "queue_tokens",
    key_column: "token",
    columns: "token, user_id, schedule_id, status, seq, issued_at, activated_at, expires_at, ended_at",
    row: "(?, ?, ?, ?, ?, ?, ?, ?, ?)",
    update: "activated_at = COALESCE(VALUES(activated_at), activated_at),
             expires_at = COALESCE(VALUES(expires_at), expires_at),
             ended_at = COALESCE(VALUES(ended_at), ended_at),
             status = IF(VALUES(status) + 0 > status + 0, VALUES(status), status)",
};

impl Row for TokenRow {
    type Key = String;

    fn key(&self) -> String {
        self.token.clone()
    }

    fn params(&self) -> Vec<mysql_async::Value> {
        vec![
            self.token.as_str().into(),
            self.user_id.into(),
            self.schedule_id.into(),
            self.status.as_str().into(),
            self.seq.into(),
            datetime_ms(self.issued_at_ms),
            opt_datetime(self.activated_at_ms),
            opt_datetime(self.expires_at_ms),
            opt_datetime(self.ended_at_ms),
        ]
    }
}
