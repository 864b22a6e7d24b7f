//! Money: a user's balance record and the ledger lines the wallet scripts write. A balance
//! lives in its wallet bucket's `bal` hash as `balance|totalCharged|totalUsed|updatedAt`; a
//! ledger line goes to the bucket's outbox as `userId|type|amount|balanceAfter|refId|createdAt`.

use super::record::{DecodeError, fields, number, opt_number};

/// One charge is at most 10 000 000 KRW…
pub const MAX_CHARGE: u64 = 10_000_000;
/// …and a balance never exceeds 100 000 000 KRW.
pub const MAX_BALANCE: u64 = 100_000_000;

/// A user's balance and its running sums (`balance = totalCharged − totalUsed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balance {
    pub balance: u64,
    pub total_charged: u64,
    pub total_used: u64,
    pub updated_at_ms: i64,
}

impl Balance {
    pub fn parse(record: &str) -> Option<Self> {
        let mut f = record.split('|');
        let balance = Self {
            balance: f.next()?.parse().ok()?,
            total_charged: f.next()?.parse().ok()?,
            total_used: f.next()?.parse().ok()?,
            updated_at_ms: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(balance)
    }

    pub fn record(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.balance, self.total_charged, self.total_used, self.updated_at_ms
        )
    }
}

/// A user's balance after a change, as a wallet outbox entry carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceUpdate {
    pub user_id: u64,
    pub balance: Balance,
}

impl BalanceUpdate {
    pub fn parse(user: &str, record: &str) -> Result<Self, DecodeError> {
        Ok(Self {
            user_id: number(user, "userId")?,
            balance: Balance::parse(record)
                .ok_or_else(|| DecodeError(format!("balance record {record:?}")))?,
        })
    }
}

/// One ledger line (immutable once written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerLine {
    pub id: u64,
    pub user_id: u64,
    /// CHARGE or PAYMENT
    pub kind: String,
    pub amount: u64,
    pub balance_after: u64,
    /// The reservation a PAYMENT paid.
    pub ref_id: Option<u64>,
    pub created_at_ms: i64,
}

impl LedgerLine {
    pub fn parse(id: &str, record: &str) -> Result<Self, DecodeError> {
        let [user, kind, amount, after, ref_id, at] = fields("ledger", record)?;
        Ok(Self {
            id: number(id, "transactionId")?,
            user_id: number(user, "userId")?,
            kind: kind.to_string(),
            amount: number(amount, "amount")?,
            balance_after: number(after, "balanceAfter")?,
            ref_id: opt_number(ref_id, "refId")?,
            created_at_ms: number(at, "createdAt")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_records_round_trip_and_refuse_garbage() {
        let b = Balance {
            balance: 7,
            total_charged: 10,
            total_used: 3,
            updated_at_ms: 1_790_000_000_000,
        };
        assert_eq!(Balance::parse(&b.record()), Some(b));
        assert_eq!(Balance::parse("7|10|3"), None);
        assert_eq!(Balance::parse("x|10|3|1"), None);
    }

    #[test]
    fn ledger_lines_decode_with_an_empty_ref_as_none() {
        let line = LedgerLine::parse("129", "9|CHARGE|1000|1000||1700000000000").unwrap();
        assert_eq!((line.id, line.amount, line.ref_id), (129, 1000, None));
        assert!(LedgerLine::parse("129", "9|CHARGE|1000").is_err());
    }
}
