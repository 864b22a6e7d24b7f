//! The payment saga (SPEC §6). A reservation lives in its schedule's slot and money in the
//! user's wallet bucket, so no one script can do both:
//!
//! 1. `pay_begin` (schedule slot) marks the RESERVED reservation PAYING under a new attempt
//!    id; nothing else can end it while it is.
//! 2. `debit` (wallet bucket) takes the amount once per reservation, recording which attempt
//!    did; too little money fences the attempt off instead.
//! 3. `pay_commit` (schedule slot) makes it PAID, or `pay_rollback` RESERVED again.
//!
//! An attempt whose request died or failed is settled by [`settle`]: `void_debit` tells
//! whether the reservation was debited and, if not, fences the attempt off, so that its
//! debit can no longer land; then it is committed or rolled back accordingly. The admission
//! tick settles every saga older than `payment_saga_timeout` the same way. Every
//! reservation thus ends paid and debited once, or unpaid and not debited.

use crate::app::App;
use crate::error::ApiError;
use crate::redis::keys::WalletKeys;
use crate::redis::scripts::{
    CommitOutcome, DebitOutcome, DebitRequest, Idempotency, Payment, PaymentAttempt,
};

/// Steps 2 and 3 for an attempt step 1 began. The request's Idempotency-Key keeps a refusal
/// for insufficient balance as its answer.
pub async fn debit_and_commit(
    app: &App,
    attempt: &PaymentAttempt,
    idempotency: Option<&Idempotency>,
) -> Result<Payment, ApiError> {
    match debit(app, attempt).await? {
        DebitOutcome::Debited { payment_id, .. } => commit(app, attempt, payment_id).await,
        DebitOutcome::Insufficient { .. } => {
            app.scripts
                .pay_rollback(
                    &mut app.redis.clone(),
                    attempt.schedule_id,
                    attempt.reservation_id,
                    attempt.payment_id,
                    idempotency.map(|idem| (attempt.user_id, idem, "INSUFFICIENT_BALANCE")),
                )
                .await?;
            Err(ApiError::InsufficientBalance)
        }
        DebitOutcome::Voided => Err(ApiError::Unavailable(format!(
            "payment attempt {} was given up before its debit",
            attempt.payment_id
        ))),
        DebitOutcome::NotLoaded => Err(ApiError::Internal(format!(
            "balance of user {} still missing after loading",
            attempt.user_id
        ))),
    }
}

/// Debits the attempt, loading the user's balance into Redis first if it is not there.
async fn debit(app: &App, a: &PaymentAttempt) -> Result<DebitOutcome, ApiError> {
    let call = || {
        app.debits.call(
            WalletKeys::bucket_of(a.user_id),
            DebitRequest {
                user_id: a.user_id,
                reservation_id: a.reservation_id,
                payment_id: a.payment_id,
                amount: a.amount,
            },
        )
    };
    let outcome = call().await?;
    if outcome != DebitOutcome::NotLoaded {
        return Ok(outcome);
    }
    crate::wallet::load(app, a.user_id).await?;
    Ok(call().await?)
}

/// Step 3 for the attempt that debited (`payment_id`).
async fn commit(app: &App, a: &PaymentAttempt, payment_id: u64) -> Result<Payment, ApiError> {
    match app
        .payment_commits
        .call(a.schedule_id, (a.reservation_id, payment_id))
        .await?
    {
        CommitOutcome::Paid(payment) => Ok(payment),
        CommitOutcome::NotPaying(status) => Err(ApiError::Internal(format!(
            "reservation {} was debited by attempt {payment_id} but is {status:?}",
            a.reservation_id
        ))),
    }
}

/// Ends an attempt whose request died or failed: `Some(payment)` if it had debited (it is
/// now PAID), `None` if it had not (the reservation is RESERVED again and the attempt can
/// never debit). Safe to run any number of times, from anywhere, alongside the request.
pub async fn settle(app: &App, a: &PaymentAttempt) -> Result<Option<Payment>, ApiError> {
    let mut redis = app.redis.clone();
    match app
        .scripts
        .void_debit(&mut redis, a.user_id, a.reservation_id, a.payment_id)
        .await?
    {
        DebitOutcome::Debited { payment_id, .. } => commit(app, a, payment_id).await.map(Some),
        DebitOutcome::Voided => {
            app.scripts
                .pay_rollback(
                    &mut redis,
                    a.schedule_id,
                    a.reservation_id,
                    a.payment_id,
                    None,
                )
                .await?;
            Ok(None)
        }
        other => Err(ApiError::Internal(format!("void_debit returned {other:?}"))),
    }
}

/// Settles the sagas the admission tick found running too long.
pub async fn sweep(app: &App, stale: Vec<PaymentAttempt>) {
    for attempt in stale {
        let outcome = match settle(app, &attempt).await {
            Ok(Some(_)) => {
                metrics::counter!("seatrush_balance_used_krw_total").increment(attempt.amount);
                "committed"
            }
            Ok(None) => "rolled_back",
            Err(e) => {
                tracing::warn!(reservation = attempt.reservation_id, error = %e,
                    "settling a payment saga failed; the next tick retries");
                "failed"
            }
        };
        tracing::info!(
            reservation = attempt.reservation_id,
            payment = attempt.payment_id,
            outcome,
            "settled a payment saga whose request did not finish it"
        );
        metrics::counter!("seatrush_payment_sagas_settled_total", "outcome" => outcome)
            .increment(1);
    }
}
