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
use crate::redis::scripts::{ChargeMode, ChargeOutcome};

/// A completed charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub transaction_id: u64,
    pub balance: u64,
    pub charged_at_ms: i64,
}

/// Loads the user's balance from the primary into Redis (unless Redis has one by now).
pub async fn load(hot: &HotPath, db: &Db, user_id: u64) -> Result<Balance, Error> {
    let (stored, floor) = records::balance(db, user_id)
        .await?
        .ok_or(Error::UserNotFound)?;
    let now = hot.load_balance(user_id, &stored, floor).await?;
    Balance::parse(&now).ok_or_else(|| Error::Internal(format!("balance record {now:?}")))
}

/// Adds `amount` (1 to [`MAX_CHARGE`]) to the caller's balance (`user_id` must be the
/// caller), which may not pass [`MAX_BALANCE`]. With an `Idempotency-Key` used before, its
/// first outcome, replayed before the Queue-Token is looked at (as for every kept outcome);
/// otherwise the caller's live token (any schedule's) is checked and counted against their
/// request rate first.
pub async fn charge(
    hot: &HotPath,
    db: &Db,
    caller: Caller,
    token: QueueToken,
    user_id: u64,
    amount: u64,
    idempotency_key: Option<String>,
) -> Result<Charge, Error> {
    debug_assert!((1..=MAX_CHARGE).contains(&amount));
    caller.owns(user_id)?;
    let idempotency = idempotency_key.map(|key| Idempotency::charge(key, amount));
    let charge = |mode| hot.charge(user_id, amount, MAX_BALANCE, idempotency.as_ref(), mode);
    let mut outcome = ChargeOutcome::NothingKept;
    if idempotency.is_some() {
        outcome = charge(ChargeMode::Replay).await?;
    }
    if outcome == ChargeOutcome::NothingKept {
        queue::authenticate(hot, token, caller).await?;
        outcome = charge(ChargeMode::Charge).await?;
    }
    if outcome == ChargeOutcome::NotLoaded {
        load(hot, db, user_id).await?;
        outcome = charge(ChargeMode::Charge).await?;
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
        ChargeOutcome::NotLoaded | ChargeOutcome::NothingKept => Err(Error::Internal(format!(
            "charge of user {user_id} ended without an outcome ({outcome:?})"
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
