//! The payment saga. A reservation lives in its schedule's slot and money in the user's
//! wallet bucket, so no one script can do both:
//!
//! 1. `pay_begin` (schedule slot) marks the RESERVED reservation PAYING under a new attempt
//!    id; nothing else can end it while it is.
//! 2. `debit` (wallet bucket) takes the amount once per reservation, recording which attempt
//!    did; too little money fences the attempt off instead.
//! 3. `pay_commit` (schedule slot) makes it PAID, or `pay_rollback` RESERVED again.
//!
//! An attempt whose request died or failed is settled by [`settle`]: `void_debit` tells
//! whether the reservation was debited and, if not, fences the attempt off, so that its
//! debit can no longer land; then it is committed or rolled back accordingly. The
//! housekeeping tick settles every saga older than `payment_saga_timeout` the same way.
//! Every reservation thus ends paid and debited once, or unpaid and not debited.

use crate::model::{Error, Idempotency, Payment, PaymentAttempt, PaymentId, Refusal};
use crate::mysql::Db;
use crate::redis::HotPath;
use crate::redis::scripts::{CommitOutcome, DebitOutcome};
use crate::wallet;

/// Steps 2 and 3 for an attempt step 1 began. The request's Idempotency-Key keeps a refusal
/// for insufficient balance as its answer.
pub async fn debit_and_commit(
    hot: &HotPath,
    db: &Db,
    attempt: &PaymentAttempt,
    idempotency: Option<&Idempotency>,
) -> Result<Payment, Error> {
    match debit(hot, db, attempt).await? {
        DebitOutcome::Debited { payment_id, .. } => commit(hot, attempt, payment_id).await,
        DebitOutcome::Insufficient { .. } => {
            let kept = idempotency.map(|idem| (idem, Refusal::InsufficientBalance));
            hot.roll_back_payment(attempt, kept).await?;
            Err(Error::InsufficientBalance)
        }
        DebitOutcome::Voided => Err(Error::Unavailable(format!(
            "payment attempt {} was given up before its debit",
            attempt.payment_id
        ))),
        DebitOutcome::NotLoaded => Err(Error::Internal(format!(
            "balance of user {} still missing after loading",
            attempt.user_id
        ))),
    }
}

/// Debits the attempt, loading the user's balance into Redis first if it is not there.
async fn debit(hot: &HotPath, db: &Db, attempt: &PaymentAttempt) -> Result<DebitOutcome, Error> {
    let outcome = hot.debit(attempt).await?;
    if outcome != DebitOutcome::NotLoaded {
        return Ok(outcome);
    }
    wallet::load(hot, db, attempt.user_id).await?;
    Ok(hot.debit(attempt).await?)
}

/// Step 3 for the attempt that debited (`payment_id`).
async fn commit(
    hot: &HotPath,
    attempt: &PaymentAttempt,
    payment_id: PaymentId,
) -> Result<Payment, Error> {
    match hot
        .commit_payment(attempt.reservation_id, payment_id)
        .await?
    {
        CommitOutcome::Paid(payment) => Ok(payment),
        CommitOutcome::NotPaying(status) => Err(Error::Internal(format!(
            "reservation {} was debited by attempt {payment_id} but is {status:?}",
            attempt.reservation_id
        ))),
    }
}

/// Ends an attempt whose request died or failed: `Some(payment)` if it had debited (it is
/// now PAID), `None` if it had not (the reservation is RESERVED again and the attempt can
/// never debit). Safe to run any number of times, from anywhere, alongside the request.
pub async fn settle(hot: &HotPath, attempt: &PaymentAttempt) -> Result<Option<Payment>, Error> {
    match hot.void_debit(attempt).await? {
        DebitOutcome::Debited { payment_id, .. } => {
            commit(hot, attempt, payment_id).await.map(Some)
        }
        DebitOutcome::Voided => {
            hot.roll_back_payment(attempt, None).await?;
            Ok(None)
        }
        other => Err(Error::Internal(format!("void_debit returned {other:?}"))),
    }
}

/// Settles the sagas the hold expiry found running too long.
pub async fn sweep(hot: &HotPath, stale: Vec<PaymentAttempt>) {
    for attempt in stale {
        let outcome = match settle(hot, &attempt).await {
            Ok(Some(_)) => {
                metrics::counter!("seatrush_balance_used_krw_total").increment(attempt.amount);
                "committed"
            }
            Ok(None) => "rolled_back",
            Err(e) => {
                tracing::warn!(reservation = attempt.reservation_id.get(), error = %e,
                    "settling a payment saga failed; the next tick retries");
                "failed"
            }
        };
        tracing::info!(
            reservation = attempt.reservation_id.get(),
            payment = attempt.payment_id.get(),
            outcome,
            "settled a payment saga whose request did not finish it"
        );
        metrics::counter!("seatrush_payment_sagas_settled_total", "outcome" => outcome)
            .increment(1);
    }
}
