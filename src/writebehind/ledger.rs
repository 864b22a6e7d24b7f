//! The wallet's entries as the flusher writes them: ledger lines to `balance_transactions`
//! (immutable) and balances to `user_balances` (only ever moved forwards: a state is newer
//! when its running sums are larger, as they only grow).

use super::rows::{Row, Table};
use crate::model::{BalanceUpdate, LedgerLine};
use crate::mysql::datetime_ms;

pub const LEDGER: Table = Table {
    name: "balance_transactions",
    key_column: "id",
    columns: "id, user_id, type, amount, balance_after, ref_id, created_at",
    row: "(?, ?, ?, ?, ?, ?, ?)",
    update: "id = id",
    identity: "CONCAT_WS('|', user_id, type, amount, balance_after, COALESCE(ref_id, ''))",
};

impl Row for LedgerLine {
    type Key = u64;

    fn key(&self) -> u64 {
        self.id
    }

    fn params(&self) -> Vec<mysql_async::Value> {
        vec![
            self.id.into(),
            self.user_id.into(),
            self.kind.as_str().into(),
            self.amount.into(),
            self.balance_after.into(),
            self.ref_id.into(),
            datetime_ms(self.created_at_ms),
        ]
    }

    fn identity(&self) -> String {
        let ref_id = self.ref_id.map(|r| r.to_string()).unwrap_or_default();
        format!(
            "{}|{}|{}|{}|{ref_id}",
            self.user_id, self.kind, self.amount, self.balance_after
        )
    }
}

/// Newer states have larger running sums; the sums are assigned last, total_charged after
/// total_used, so each comparison still sees the row's old sums where it matters.
pub const BALANCES: Table = Table {
    name: "user_balances",
    key_column: "user_id",
    columns: "user_id, balance, total_charged, total_used, updated_at",
    row: "(?, ?, ?, ?, ?)",
    update: "balance = IF(VALUES(total_charged) + VALUES(total_used) >= total_charged + total_used,
                          VALUES(balance), balance),
             updated_at = IF(VALUES(total_charged) + VALUES(total_used) >= total_charged + total_used,
                             VALUES(updated_at), updated_at),
             total_used = IF(VALUES(total_charged) + VALUES(total_used) >= total_charged + total_used,
                             VALUES(total_used), total_used),
             total_charged = IF(VALUES(total_charged) >= total_charged, VALUES(total_charged),
                                total_charged)",
    identity: "''",
};

impl Row for BalanceUpdate {
    type Key = u64;

    fn key(&self) -> u64 {
        self.user_id
    }

    fn params(&self) -> Vec<mysql_async::Value> {
        vec![
            self.user_id.into(),
            self.balance.balance.into(),
            self.balance.total_charged.into(),
            self.balance.total_used.into(),
            datetime_ms(self.balance.updated_at_ms),
        ]
    }

    /// A balance is state: every version of it belongs to its user.
    fn identity(&self) -> String {
        String::new()
    }
}
