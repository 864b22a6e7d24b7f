//! Payment: the owner pays a RESERVED hold from their balance with an ACTIVE token of its
//! schedule. The work is the saga of [`saga`]; with an `Idempotency-Key`, the saga's first
//! script also decides repeats: a repeat of a completed request gets its answer again, one of
//! a running request `409 REQUEST_IN_PROGRESS`.

pub mod saga;

use crate::holds;
use crate::identity::Caller;
use crate::model::{
    Error, Idempotency, Payment, PaymentAttempt, QueueToken, Refusal, ReservationId,
    ReservationStatus,
};
use crate::mysql::Db;
use crate::queue;
use crate::redis::HotPath;
use crate::redis::scripts::{BeginOutcome, BeginRequest};

/// The only payment method.
pub const METHOD: &str = "BALANCE";

/// Pays the reservation from the user's balance, counting the outcome in
/// `seatrush_payments_total`.
pub async fn pay(
    hot: &HotPath,
    db: &Db,
    caller: Caller,
    token: QueueToken,
    reservation_id: ReservationId,
    idempotency_key: Option<String>,
) -> Result<Payment, Error> {
    let idempotency = idempotency_key.map(|key| Idempotency::payment(key, reservation_id));
    let result = run(hot, db, caller, token, reservation_id, idempotency.as_ref()).await;
    let label = match &result {
        Ok(_) => "paid",
        Err(e) => e.code(),
    };
    metrics::counter!("seatrush_payments_total", "result" => label).increment(1);
    result
}

/// Why a reservation that has ended cannot be paid.
fn not_payable(status: ReservationStatus) -> Error {
    match status {
        ReservationStatus::Paid => Error::ReservationAlreadyPaid,
        ReservationStatus::Expired => Error::ReservationExpired,
        _ => Error::ReservationNotPayable,
    }
}

/// The saga for one request: begin, then debit and commit; a failure after the begin
/// settles the attempt at once (it may have debited) rather than leave it to the sweeper.
async fn run(
    hot: &HotPath,
    db: &Db,
    caller: Caller,
    token: QueueToken,
    reservation_id: ReservationId,
    idempotency: Option<&Idempotency>,
) -> Result<Payment, Error> {
    let token = match queue::for_schedule(token, caller, reservation_id.schedule()) {
        // Another schedule's token is told so only of a reservation that exists.
        Err(Error::QueueTokenWrongSchedule) if !hot.reservation_exists(reservation_id).await? => {
            return Err(Error::ReservationNotFound);
        }
        other => other?,
    };
    let user_id = caller.user_id();
    let request = BeginRequest {
        token: token.sequence,
        user_id,
        reservation_id,
        idempotency: idempotency.cloned(),
    };
    let (payment_id, amount) = match hot.begin_payment(request).await? {
        BeginOutcome::Paying { payment_id, amount } => (payment_id, amount),
        BeginOutcome::Paid(payment) => return Ok(payment),
        BeginOutcome::Refused(Refusal::ReservationNotFound) => {
            return Err(holds::refuse_missing(hot, db, caller, reservation_id, not_payable).await);
        }
        BeginOutcome::Refused(refusal) => return Err(refusal.into()),
    };
    let attempt = PaymentAttempt {
        reservation_id,
        user_id,
        payment_id,
        amount,
    };
    match saga::debit_and_commit(hot, db, &attempt, idempotency).await {
        Ok(payment) => {
            metrics::counter!("seatrush_balance_used_krw_total").increment(amount);
            Ok(payment)
        }
        Err(Error::InsufficientBalance) => Err(Error::InsufficientBalance),
        Err(e) => match saga::settle(hot, &attempt).await {
            Ok(Some(payment)) => {
                metrics::counter!("seatrush_balance_used_krw_total").increment(amount);
                Ok(payment)
            }
            Ok(None) => Err(e),
            Err(settling) => {
                tracing::warn!(reservation = reservation_id.get(), error = %settling,
                    "settling a failed payment attempt failed; the sweeper will");
                Err(e)
            }
        },
    }
}
