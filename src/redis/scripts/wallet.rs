//! Wallet scripts: charging and loading a balance.

use redis::RedisResult;

use super::{Observe, Reply, Scripts, bad_reply, refusal};
use crate::model::{Idempotency, Refusal, WALLET_BUCKETS};
use crate::redis::RedisConn;
use crate::redis::keys::WalletKeys;

/// A charge as `charge.lua` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Charged {
        transaction_id: u64,
        balance: u64,
        charged_at_ms: i64,
    },
    /// Redis does not have the user's balance yet: load it, then charge again.
    NotLoaded,
    /// The balance would exceed the cap (`BALANCE_LIMIT`), or the Idempotency-Key was first
    /// used for a different request.
    Refused(Refusal),
    /// Asked only for the Idempotency-Key's first outcome: there is none yet.
    NothingKept,
}

/// What a `charge` call may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeMode {
    /// Only answer with the Idempotency-Key's first outcome, if there is one.
    Replay,
    Charge,
}

impl Scripts {
    /// Counts a request of no schedule against the user's rate of `per_second`.
    pub async fn count_request(
        &self,
        conn: &mut RedisConn,
        user_id: u64,
        per_second: u64,
    ) -> RedisResult<Result<(), Refusal>> {
        let k = WalletKeys::of_user(user_id);
        let mut call = self.count_request.prepare_invoke();
        call.key(&k.rates[0])
            .key(&k.rates[1])
            .arg(user_id)
            .arg(per_second);
        let reply = Reply::new(call.invoke_observed("count_request", conn).await?)?;
        match reply.code()?.as_str() {
            "OK" => Ok(Ok(())),
            _ => Ok(Err(reply.refusal()?)),
        }
    }

    /// Charges `amount`; with an Idempotency-Key, a repeat gets the first outcome back
    /// (with [`ChargeMode::Replay`], only that).
    pub async fn charge(
        &self,
        conn: &mut RedisConn,
        user_id: u64,
        amount: u64,
        balance_cap: u64,
        idempotency: Option<&Idempotency>,
        mode: ChargeMode,
    ) -> RedisResult<ChargeOutcome> {
        let k = WalletKeys::of_user(user_id);
        let mut call = self.charge.prepare_invoke();
        call.key(&k.balances)
            .key(&k.txseq)
            .key(&k.outbox)
            .arg(user_id)
            .arg(amount)
            .arg(balance_cap)
            .arg(k.bucket)
            .arg(WALLET_BUCKETS);
        match idempotency {
            Some(idem) => call
                .key(k.idempotency(user_id, &idem.key))
                .arg(&idem.fingerprint),
            None => call.arg(""),
        };
        call.arg(match mode {
            ChargeMode::Replay => "replay",
            ChargeMode::Charge => "charge",
        });
        let reply = Reply::new(call.invoke_observed("charge", conn).await?)?;
        let code = reply.code()?;
        if code == "REPLAY" {
            let outcome = reply.string(1)?;
            let mut f = outcome.split('|');
            return match (f.next(), f.next(), f.next(), f.next()) {
                (Some("OK"), Some(tx), Some(balance), Some(at)) => Ok(ChargeOutcome::Charged {
                    transaction_id: tx.parse().map_err(|_| bad_reply(&outcome))?,
                    balance: balance.parse().map_err(|_| bad_reply(&outcome))?,
                    charged_at_ms: at.parse().map_err(|_| bad_reply(&outcome))?,
                }),
                (Some(code), None, ..) => Ok(ChargeOutcome::Refused(refusal(code)?)),
                _ => Err(bad_reply(&outcome)),
            };
        }
        Ok(match code.as_str() {
            "OK" => ChargeOutcome::Charged {
                transaction_id: reply.uint(1)?,
                balance: reply.uint(2)?,
                charged_at_ms: reply.opt_int(3)?.unwrap_or_default(),
            },
            "NOT_LOADED" => ChargeOutcome::NotLoaded,
            "NOTHING_KEPT" => ChargeOutcome::NothingKept,
            _ => ChargeOutcome::Refused(reply.refusal()?),
        })
    }

    /// Puts `record` in as the user's balance unless Redis has one, and raises the bucket's
    /// ledger sequence to at least `ledger_floor`; returns the balance Redis has.
    pub async fn load_balance(
        &self,
        conn: &mut RedisConn,
        user_id: u64,
        record: &str,
        ledger_floor: u64,
    ) -> RedisResult<String> {
        let k = WalletKeys::of_user(user_id);
        self.load_balance
            .key(k.balances)
            .key(k.txseq)
            .arg(user_id)
            .arg(record)
            .arg(ledger_floor)
            .invoke_observed("load_balance", conn)
            .await
    }

    /// Raises each sequence (all keys in one slot) to at least its floor; returns how many
    /// were raised.
    pub async fn raise_sequences(
        &self,
        conn: &mut RedisConn,
        floors: &[(String, u64)],
    ) -> RedisResult<u64> {
        let mut call = self.raise_sequences.prepare_invoke();
        for (key, floor) in floors {
            call.key(key).arg(floor);
        }
        call.invoke_observed("raise_sequences", conn).await
    }
}
