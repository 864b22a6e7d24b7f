//! `POST /api/v1/reservations`, `GET` and `DELETE /api/v1/reservations/{reservationId}`.

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::request::{JsonObject, idempotency_key, queue_token};
use super::response::{self, Body};
use crate::app::App;
use crate::holds;
use crate::identity::Caller;
use crate::model::{
    Error, Reservation, ReservationId, ReservationStatus, Seat, SeatChoice, iso_ms,
    reservation_number,
};

/// Most seats one request may name (the per-user limit is usually far lower).
const MAX_SEATS_PER_REQUEST: usize = 100;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReservationView {
    reservation_id: ReservationId,
    reservation_number: String,
    user_id: u64,
    schedule_id: u64,
    seats: Vec<Seat>,
    total_amount: u64,
    status: ReservationStatus,
    reserved_at: String,
    expires_at: String,
}

impl ReservationView {
    fn new(reservation: Reservation) -> Self {
        let r = reservation.record;
        Self {
            reservation_id: r.id,
            reservation_number: reservation_number(r.id, r.reserved_at_ms),
            user_id: r.user_id,
            schedule_id: r.schedule_id,
            seats: reservation.seats,
            total_amount: r.total_amount,
            status: r.status,
            reserved_at: iso_ms(r.reserved_at_ms),
            expires_at: iso_ms(r.expires_at_ms),
        }
    }
}

/// `POST /api/v1/reservations`: for the caller only.
pub async fn hold(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<Response<Body>, Error> {
    let key = idempotency_key(headers)?;
    let body = JsonObject::parse(body)?;
    let schedule_id = body.id("scheduleId")?;
    let seats = seat_choice(&body)?;
    let user_id = body.id("userId")?;
    caller.owns(user_id)?;
    let token = queue_token(headers, &app.tokens)?;
    let hold = holds::hold(&app.hot, caller, token, schedule_id, seats, key).await?;
    Ok(response::ok(
        StatusCode::CREATED,
        &ReservationView {
            reservation_id: hold.reservation_id,
            reservation_number: reservation_number(hold.reservation_id, hold.reserved_at_ms),
            user_id,
            schedule_id,
            seats: hold.seats,
            total_amount: hold.total_amount,
            status: ReservationStatus::Reserved,
            reserved_at: iso_ms(hold.reserved_at_ms),
            expires_at: iso_ms(hold.expires_at_ms),
        },
    ))
}

/// `seatIds` (these seats) or `quantity` (that many, best available), not both.
fn seat_choice(body: &JsonObject) -> Result<SeatChoice, Error> {
    let max = MAX_SEATS_PER_REQUEST as u64;
    if body.names("quantity") && body.names("seatIds") {
        return Err(Error::invalid(
            "quantity",
            "give seatIds or quantity, not both",
        ));
    }
    match body.opt_positive("quantity", max)? {
        Some(n) => Ok(SeatChoice::BestAvailable(n)),
        None => Ok(SeatChoice::Seats(
            body.id_list("seatIds", MAX_SEATS_PER_REQUEST)?,
        )),
    }
}

/// `GET /api/v1/reservations/{reservationId}`: the owner's token (any live one).
pub async fn get(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
    id: ReservationId,
) -> Result<Response<Body>, Error> {
    let token = queue_token(headers, &app.tokens)?;
    let (reservation, stale) =
        holds::get(&app.hot, &app.db, &app.catalogue, caller, token, id).await?;
    Ok(response::ok_maybe_stale(
        &ReservationView::new(reservation),
        stale,
    ))
}

/// `DELETE /api/v1/reservations/{reservationId}`: the owner cancels a RESERVED hold.
pub async fn cancel(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
    id: ReservationId,
) -> Result<Response<Body>, Error> {
    let token = queue_token(headers, &app.tokens)?;
    let reservation = holds::cancel(&app.hot, &app.db, &app.catalogue, caller, token, id).await?;
    Ok(response::ok(
        StatusCode::OK,
        &ReservationView::new(reservation),
    ))
}
