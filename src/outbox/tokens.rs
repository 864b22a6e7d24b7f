//! Queue tokens as the flusher writes them to `queue_tokens`.

use super::events::{DecodeError, number, opt_datetime, opt_ms};
use super::rows::{Row, Table};
use crate::mysql::datetime_ms;

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
