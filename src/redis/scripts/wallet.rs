//! Wallet scripts: charging and loading a balance.

use redis::RedisResult;

use super::{Idempotency, Observe, Reply, Scripts, bad_reply};
use crate::redis::RedisConn;
use crate::redis::keys::{WALLET_BUCKETS, WalletKeys};

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
    /// The balance would exceed the cap.
    OverLimit,
    /// The Idempotency-Key was first used for a different request.
    KeyReused,
}

impl Scripts {
    /// Charges `amount`; with an Idempotency-Key, a repeat gets the first outcome back.
    pub async fn charge(
        &self,
        conn: &mut RedisConn,
        user_id: u64,
        amount: u64,
        balance_cap: u64,
        idempotency: Option<&Idempotency>,
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
        if let Some(idem) = idempotency {
            call.key(k.idempotency(user_id, &idem.key))
                .arg(&idem.fingerprint);
        }
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
                (Some("BALANCE_LIMIT"), None, ..) => Ok(ChargeOutcome::OverLimit),
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
            "BALANCE_LIMIT" => ChargeOutcome::OverLimit,
            "IDEMPOTENCY_KEY_REUSED" => ChargeOutcome::KeyReused,
            other => return Err(bad_reply(other)),
        })
    }

    /// Puts `record` in as the user's balance unless Redis has one; returns the one it has.
    pub async fn load_balance(
        &self,
        conn: &mut RedisConn,
        user_id: u64,
        record: &str,
    ) -> RedisResult<String> {
        self.load_balance
            .key(WalletKeys::of_user(user_id).balances)
            .arg(user_id)
            .arg(record)
            .invoke_observed("load_balance", conn)
            .await
    }
}
