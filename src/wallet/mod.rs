//! The prepaid wallet (SPEC §3 rows 5 and 6, §4 "Balance and payment"): charging and reading
//! a balance. Money lives in the user's wallet bucket (`{w:<userId % 64>}`); a charge is one
//! script (`lua/charge.lua`) that changes the balance and its running sums, writes the ledger
//! entry and appends both to the bucket's outbox. A balance Redis has not seen yet is loaded
//! from MySQL on first use. A charge with an `Idempotency-Key` is done at most once per user
//! and key: the script stores its first outcome with it for 24 h and answers repeats from it.

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use mysql_async::prelude::Queryable;
use serde::Serialize;

use crate::app::App;
use crate::error::ApiError;
use crate::http::request::{JsonObject, idempotency_key};
use crate::http::response::{self, Body};
use crate::mysql::{Db, timed};
use crate::queue::auth;
use crate::redis::keys::{WALLET_BUCKETS, WalletKeys};
use crate::redis::scripts::{ChargeOutcome, Idempotency, ledger_floor};
use crate::stale;
use crate::time::iso_ms;

/// SPEC §4: one charge is at most 10 000 000 KRW…
pub const MAX_CHARGE: u64 = 10_000_000;
/// …and a balance never exceeds 100 000 000 KRW.
pub const MAX_BALANCE: u64 = 100_000_000;

/// A balance as stored: `balance|totalCharged|totalUsed|updatedAt`.
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
        Some(Self {
            balance: f.next()?.parse().ok()?,
            total_charged: f.next()?.parse().ok()?,
            total_used: f.next()?.parse().ok()?,
            updated_at_ms: f.next()?.parse().ok()?,
        })
    }

    pub fn record(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.balance, self.total_charged, self.total_used, self.updated_at_ms
        )
    }
}

/// Creates the flusher's consumer group on every wallet bucket's outbox (at start-up).
pub async fn prepare_outboxes(redis: &mut crate::redis::RedisConn) -> redis::RedisResult<()> {
    for bucket in 0..WALLET_BUCKETS {
        crate::outbox::ensure_group(redis, &WalletKeys::bucket(bucket).outbox).await?;
    }
    Ok(())
}

/// The token must be the path user's own (any live token of theirs).
async fn owner(app: &App, headers: &HeaderMap, user_id: u64) -> Result<(), ApiError> {
    let holder = auth::authenticate(app, headers).await?;
    if holder.user_id != user_id {
        return Err(ApiError::Forbidden);
    }
    Ok(())
}

/// The user's balance as the primary has it (`None`: no such user), with the ledger
/// sequence floor of [`ledger_floor`] for the ledger the primary holds.
pub async fn stored(db: &Db, user_id: u64) -> Result<Option<(Balance, u64)>, ApiError> {
    let mut conn = db.primary_conn().await?;
    let row: Option<(u64, u64, u64, i64, u64)> = timed(conn.exec_first(
        "SELECT balance, total_charged, total_used,
           CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED),
           (SELECT COALESCE(MAX(id), 0) FROM balance_transactions)
         FROM user_balances WHERE user_id = ?",
        (user_id,),
    ))
    .await?;
    Ok(row.map(
        |(balance, total_charged, total_used, updated_at_ms, max_ledger_id)| {
            let balance = Balance {
                balance,
                total_charged,
                total_used,
                updated_at_ms,
            };
            (balance, ledger_floor(max_ledger_id))
        },
    ))
}

/// Loads the user's balance from the primary into Redis (unless Redis has one by now).
pub(crate) async fn load(app: &App, user_id: u64) -> Result<Balance, ApiError> {
    let (stored, floor) = stored(&app.db, user_id)
        .await?
        .ok_or(ApiError::UserNotFound)?;
    let now = app
        .scripts
        .load_balance(&mut app.redis.clone(), user_id, &stored.record(), floor)
        .await?;
    Balance::parse(&now).ok_or_else(|| ApiError::Internal(format!("balance record {now:?}")))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Charged {
    user_id: u64,
    charged_amount: u64,
    current_balance: u64,
    transaction_id: u64,
    charged_at: String,
}

/// `POST /api/v1/users/{userId}/balance/charge`
pub async fn charge(
    app: &App,
    headers: &HeaderMap,
    user_id: u64,
    body: Vec<u8>,
) -> Result<Response<Body>, ApiError> {
    owner(app, headers, user_id).await?;
    let key = idempotency_key(headers)?;
    let amount = JsonObject::parse(body)?
        .opt_positive("amount", MAX_CHARGE)?
        .ok_or_else(|| ApiError::invalid("amount", "amount is required"))?;
    // Requests are compared by what they ask, not by their bytes.
    let idempotency = key.map(|key| Idempotency {
        key,
        fingerprint: format!("charge:{amount}"),
    });
    let charge = || async {
        app.scripts
            .charge(
                &mut app.redis.clone(),
                user_id,
                amount,
                MAX_BALANCE,
                idempotency.as_ref(),
            )
            .await
    };
    let mut outcome = charge().await?;
    if outcome == ChargeOutcome::NotLoaded {
        load(app, user_id).await?;
        outcome = charge().await?;
    }
    match outcome {
        ChargeOutcome::Charged {
            transaction_id,
            balance,
            charged_at_ms,
        } => {
            metrics::counter!("seatrush_balance_charged_krw_total").increment(amount);
            Ok(response::ok(
                StatusCode::OK,
                &Charged {
                    user_id,
                    charged_amount: amount,
                    current_balance: balance,
                    transaction_id,
                    charged_at: iso_ms(charged_at_ms),
                },
            ))
        }
        ChargeOutcome::KeyReused => Err(ApiError::IdempotencyKeyReused),
        ChargeOutcome::OverLimit => Err(ApiError::invalid(
            "amount",
            format!("the balance may not exceed {MAX_BALANCE}"),
        )),
        ChargeOutcome::NotLoaded => Err(ApiError::Internal(format!(
            "balance of user {user_id} still missing after loading"
        ))),
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct BalanceView {
    user_id: u64,
    current_balance: u64,
    total_charged: u64,
    total_used: u64,
    last_updated: String,
}

/// `GET /api/v1/users/{userId}/balance`
pub async fn balance(
    app: &App,
    headers: &HeaderMap,
    user_id: u64,
) -> Result<Response<Body>, ApiError> {
    let (holder, stale_token) = stale::authenticate(app, headers).await?;
    if holder.user_id != user_id {
        return Err(ApiError::Forbidden);
    }
    let fresh = async {
        let record: Option<String> = redis::cmd("HGET")
            .arg(WalletKeys::of_user(user_id).balances)
            .arg(user_id)
            .query_async(&mut app.redis.clone())
            .await?;
        match record.as_deref().and_then(Balance::parse) {
            Some(balance) => Ok(balance),
            None => load(app, user_id).await,
        }
    };
    let (balance, stale_balance) = stale::or_mysql(fresh, || async {
        stale::balance(app, user_id)
            .await?
            .ok_or(ApiError::UserNotFound)
    })
    .await?;
    let rsp = response::ok(
        StatusCode::OK,
        &BalanceView {
            user_id,
            current_balance: balance.balance,
            total_charged: balance.total_charged,
            total_used: balance.total_used,
            last_updated: iso_ms(balance.updated_at_ms),
        },
    );
    Ok(stale::mark(rsp, stale_token || stale_balance))
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
}
