//! The prepaid wallet: charging and reading a balance. Money lives in the user's wallet
//! bucket; a charge is one script (`charge`) that changes the balance and its running sums,
//! writes the ledger line and appends both to the bucket's outbox. A balance Redis has not
//! seen yet is loaded from MySQL on first use. A charge with an `Idempotency-Key` is done at
//! most once per user and key: the script keeps its first outcome for 24 h and answers
//! repeats from it.

use crate::fallback;
use crate::identity::Caller;
use crate::model::{Balance, Error, Idempotency, MAX_BALANCE, MAX_CHARGE, QueueToken};
use crate::mysql::{Db, records};
use crate::queue;
use crate::redis::HotPath;
use crate::redis::scripts::ChargeOutcome;

/// A completed charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub transaction_id: u64,
    pub balance: u64,
    pub charged_at_ms: i64,
}

/// Proof that the caller owns the wallet and holds a live token: made only by [`owner`].
#[derive(Debug)]
pub struct Owner {
    user_id: u64,
}

/// The wallet of `user_id`, if it is the caller's and the token is one of theirs (any live
/// one).
pub async fn owner(
    hot: &HotPath,
    caller: Caller,
    token: QueueToken,
    user_id: u64,
) -> Result<Owner, Error> {
    caller.owns(user_id)?;
    queue::authenticate(hot, token, caller).await?;
    Ok(Owner { user_id })
}

/// Loads the user's balance from the primary into Redis (unless Redis has one by now).
pub async fn load(hot: &HotPath, db: &Db, user_id: u64) -> Result<Balance, Error> {
    let (stored, floor) = records::balance(db, user_id)
        .await?
        .ok_or(Error::UserNotFound)?;
    let now = hot.load_balance(user_id, &stored, floor).await?;
    Balance::parse(&now).ok_or_else(|| Error::Internal(format!("balance record {now:?}")))
}

/// Adds `amount` (1 to [`MAX_CHARGE`]) to the owner's balance, which may not pass
/// [`MAX_BALANCE`].
pub async fn charge(
    hot: &HotPath,
    db: &Db,
    owner: Owner,
    amount: u64,
    idempotency_key: Option<String>,
) -> Result<Charge, Error> {
    debug_assert!((1..=MAX_CHARGE).contains(&amount));
    let user_id = owner.user_id;
    let idempotency = idempotency_key.map(|key| Idempotency::charge(key, amount));
    let charge = || hot.charge(user_id, amount, MAX_BALANCE, idempotency.as_ref());
    let mut outcome = charge().await?;
    if outcome == ChargeOutcome::NotLoaded {
        load(hot, db, user_id).await?;
        outcome = charge().await?;
    }
    match outcome {
        ChargeOutcome::Charged {
            transaction_id,
            balance,
            charged_at_ms,
        } => {
            metrics::counter!("seatrush_balance_charged_krw_total").increment(amount);
            Ok(Charge {
                transaction_id,
                balance,
                charged_at_ms,
            })
        }
        ChargeOutcome::Refused(refusal) => Err(refusal.into()),
        ChargeOutcome::NotLoaded => Err(Error::Internal(format!(
            "balance of user {user_id} still missing after loading"
        ))),
    }
}

/// The caller's balance (with any live token of theirs), from MySQL while Redis is
/// unreachable (then the flag says it may be stale).
pub async fn balance(
    hot: &HotPath,
    db: &Db,
    caller: Caller,
    token: QueueToken,
    user_id: u64,
) -> Result<(Balance, bool), Error> {
    caller.owns(user_id)?;
    let (_, stale_token) = queue::authenticate_or_stale(hot, db, token, caller).await?;
    let fresh = async {
        match hot
            .balance(user_id)
            .await?
            .as_deref()
            .and_then(Balance::parse)
        {
            Some(balance) => Ok(balance),
            None => load(hot, db, user_id).await,
        }
    };
    let (balance, stale_balance) =
        fallback::or_mysql(fresh, || fallback::balance(db, user_id)).await?;
    Ok((balance, stale_token || stale_balance))
}
