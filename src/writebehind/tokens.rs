//! Queue tokens as the flusher writes them to `queue_tokens`.

use super::rows::{Row, Table, opt_datetime};
use crate::model::TokenRecord;
use crate::mysql::datetime_ms;

pub const TABLE: Table = Table {
    name: "queue_tokens",
    key_column: "schedule_id, seq",
    columns: "user_id, schedule_id, status, seq, issued_at, activated_at, expires_at, ended_at",
    row: "(?, ?, ?, ?, ?, ?, ?, ?)",
    update: "activated_at = COALESCE(VALUES(activated_at), activated_at),
             expires_at = COALESCE(VALUES(expires_at), expires_at),
             ended_at = COALESCE(VALUES(ended_at), ended_at),
             status = IF(VALUES(status) + 0 > status + 0, VALUES(status), status)",
    identity: "CAST(user_id AS CHAR)",
};

impl Row for TokenRecord {
    type Key = (u64, u64);

    fn key(&self) -> (u64, u64) {
        (self.schedule_id, self.sequence)
    }

    fn params(&self) -> Vec<mysql_async::Value> {
        vec![
            self.user_id.into(),
            self.schedule_id.into(),
            self.status.as_str().into(),
            self.sequence.into(),
            datetime_ms(self.issued_at_ms),
            opt_datetime(self.activated_at_ms),
            opt_datetime(self.expires_at_ms),
            opt_datetime(self.ended_at_ms),
        ]
    }

    fn identity(&self) -> String {
        self.user_id.to_string()
    }
}
