//! Payment (SPEC §3 row 7, §4 "Balance and payment"): the owner pays a RESERVED hold from
//! their balance with an ACTIVE token of its schedule. The work is the saga of [`saga`];
//! with an `Idempotency-Key`, the first script of it also decides repeats (SPEC §2): a
//! repeat of a completed request gets its answer again, one of a running request
//! `409 REQUEST_IN_PROGRESS`.

pub mod saga;

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use redis::AsyncCommands;
use serde::Serialize;
use uuid::Uuid;

use crate::app::App;
use crate::error::ApiError;
use crate::http::request::{JsonObject, idempotency_key};
use crate::http::response::{self, Body};
use crate::queue::auth;
use crate::redis::keys::ScheduleKeys;
use crate::redis::scripts::{BeginOutcome, BeginRequest, Idempotency, Payment, PaymentAttempt};
use crate::reservation::{reservation_number, schedule_of};
use crate::time::iso_ms;

/// The only payment method (SPEC §3 row 7).
const METHOD: &str = "BALANCE";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaidSeat {
    seat_id: u64,
    seat_number: u64,
    price: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaidReservation {
    reservation_number: String,
    seats: Vec<PaidSeat>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentView {
    payment_id: u64,
    reservation_id: u64,
    user_id: u64,
    amount: u64,
    payment_method: &'static str,
    status: &'static str,
    paid_at: String,
    reservation: PaidReservation,
}

impl PaymentView {
    fn new(reservation_id: u64, p: Payment) -> Self {
        Self {
            payment_id: p.payment_id,
            reservation_id,
            user_id: p.user_id,
            amount: p.total_amount,
            payment_method: METHOD,
            status: "COMPLETED",
            paid_at: iso_ms(p.paid_at_ms),
            reservation: PaidReservation {
                reservation_number: reservation_number(reservation_id, p.reserved_at_ms),
                seats: p
                    .seats
                    .into_iter()
                    .map(|(seat_id, seat_number, price)| PaidSeat {
                        seat_id,
                        seat_number,
                        price,
                    })
                    .collect(),
            },
        }
    }
}

/// What an Idempotency-Key remembers of a payment request: what it asks, not its bytes.
pub fn fingerprint(reservation_id: u64) -> String {
    format!("pay:{reservation_id}:{METHOD}")
}

/// `POST /api/v1/payments`
pub async fn pay(
    app: &App,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<Response<Body>, ApiError> {
    let token = auth::parse_token(headers)?;
    let key = idempotency_key(headers)?;
    let body = JsonObject::parse(body)?;
    let reservation_id = body.id("reservationId")?;
    if body.text("paymentMethod", 32)? != METHOD {
        return Err(ApiError::invalid(
            "paymentMethod",
            format!("paymentMethod must be {METHOD}"),
        ));
    }
    let user_id = body.id("userId")?;
    let idempotency = key.map(|key| Idempotency {
        key,
        fingerprint: fingerprint(reservation_id),
    });
    let result = run(app, &token, user_id, reservation_id, idempotency.as_ref()).await;
    let label = match &result {
        Ok(_) => "paid",
        Err(e) => e.status_and_code().1,
    };
    metrics::counter!("seatrush_payments_total", "result" => label).increment(1);
    let payment = result?;
    Ok(response::ok(
        StatusCode::CREATED,
        &PaymentView::new(reservation_id, payment),
    ))
}

/// The saga for one request: begin, then debit and commit; a failure after the begin
/// settles the attempt at once (it may have debited) rather than leave it to the sweeper.
async fn run(
    app: &App,
    token: &Uuid,
    user_id: u64,
    reservation_id: u64,
    idempotency: Option<&Idempotency>,
) -> Result<Payment, ApiError> {
    let schedule_id = schedule_of(reservation_id);
    let request = BeginRequest {
        token: *token,
        user_id,
        reservation_id,
        idempotency: idempotency.cloned(),
    };
    let begun = app.payment_begins.call(schedule_id, request).await?;
    let (payment_id, amount) = match begun {
        BeginOutcome::Paying { payment_id, amount } => (payment_id, amount),
        BeginOutcome::Paid(payment) => return Ok(payment),
        BeginOutcome::Refused(code) => {
            return Err(refusal(app, &code, token, schedule_id, reservation_id).await);
        }
    };
    let attempt = PaymentAttempt {
        schedule_id,
        reservation_id,
        user_id,
        payment_id,
        amount,
    };
    match saga::debit_and_commit(app, &attempt, idempotency).await {
        Ok(payment) => {
            metrics::counter!("seatrush_balance_used_krw_total").increment(amount);
            Ok(payment)
        }
        Err(ApiError::InsufficientBalance) => Err(ApiError::InsufficientBalance),
        Err(e) => match saga::settle(app, &attempt).await {
            Ok(Some(payment)) => {
                metrics::counter!("seatrush_balance_used_krw_total").increment(amount);
                Ok(payment)
            }
            Ok(None) => Err(e),
            Err(settling) => {
                tracing::warn!(reservation = reservation_id, error = %settling,
                    "settling a failed payment attempt failed; the sweeper will");
                Err(e)
            }
        },
    }
}

async fn refusal(
    app: &App,
    code: &str,
    token: &Uuid,
    schedule_id: u64,
    reservation_id: u64,
) -> ApiError {
    match code {
        "TOKEN_NOT_HERE" => match auth::not_here(app, token, schedule_id).await {
            // The token is good, for another schedule: say so only of a reservation that is.
            ApiError::QueueTokenWrongSchedule => {
                let exists: Result<bool, _> = app
                    .redis
                    .clone()
                    .hexists(ScheduleKeys::new(schedule_id).res, reservation_id)
                    .await;
                match exists {
                    Ok(true) => ApiError::QueueTokenWrongSchedule,
                    Ok(false) => ApiError::ReservationNotFound,
                    Err(e) => e.into(),
                }
            }
            other => other,
        },
        "QUEUE_TOKEN_INVALID" => ApiError::QueueTokenInvalid,
        "QUEUE_TOKEN_NOT_ACTIVE" => ApiError::QueueTokenNotActive,
        "FORBIDDEN" => ApiError::Forbidden,
        "RESERVATION_NOT_FOUND" => ApiError::ReservationNotFound,
        "RESERVATION_ALREADY_PAID" => ApiError::ReservationAlreadyPaid,
        "PAYMENT_IN_PROGRESS" => ApiError::PaymentInProgress,
        "RESERVATION_EXPIRED" => ApiError::ReservationExpired,
        "RESERVATION_NOT_PAYABLE" => ApiError::ReservationNotPayable,
        "INSUFFICIENT_BALANCE" => ApiError::InsufficientBalance,
        "REQUEST_IN_PROGRESS" => ApiError::RequestInProgress,
        "IDEMPOTENCY_KEY_REUSED" => ApiError::IdempotencyKeyReused,
        other => ApiError::Internal(format!("pay_begin returned {other}")),
    }
}
