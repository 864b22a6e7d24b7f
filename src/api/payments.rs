//! `POST /api/v1/payments`.

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::request::{JsonObject, idempotency_key, queue_token};
use super::response::{self, Body};
use crate::app::App;
use crate::identity::Caller;
use crate::model::{Error, Payment, PaymentId, ReservationId, Seat, iso_ms, reservation_number};
use crate::payment::{self, METHOD};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaidReservation {
    reservation_number: String,
    seats: Vec<Seat>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentView {
    payment_id: PaymentId,
    reservation_id: ReservationId,
    user_id: u64,
    amount: u64,
    payment_method: &'static str,
    status: &'static str,
    paid_at: String,
    reservation: PaidReservation,
}

impl PaymentView {
    fn new(reservation_id: ReservationId, p: Payment) -> Self {
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
                seats: p.seats,
            },
        }
    }
}

/// `POST /api/v1/payments`: for the caller only.
pub async fn pay(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<Response<Body>, Error> {
    let key = idempotency_key(headers)?;
    let body = JsonObject::parse(body)?;
    let reservation_id = ReservationId::from_u64(body.id("reservationId")?);
    if body.text("paymentMethod", 32)? != METHOD {
        return Err(Error::invalid(
            "paymentMethod",
            format!("paymentMethod must be {METHOD}"),
        ));
    }
    let user_id = body.id("userId")?;
    caller.owns(user_id)?;
    let token = queue_token(headers, &app.tokens)?;
    let payment = payment::pay(&app.hot, &app.db, caller, token, reservation_id, key).await?;
    Ok(response::ok(
        StatusCode::CREATED,
        &PaymentView::new(reservation_id, payment),
    ))
}
