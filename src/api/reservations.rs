//! `POST /api/v1/reservations`, `GET` and `DELETE /api/v1/reservations/{reservationId}`,
//! and `GET /api/v1/users/{userId}/reservations`.

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::request::{JsonObject, idempotency_key, path_id, queue_token};
use super::response::{self, Body};
use crate::app::App;
use crate::holds;
use crate::identity::Caller;
use crate::model::{
    Error, PaymentId, Reservation, ReservationId, ReservationStatus, Seat, SeatChoice, iso_ms,
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

/// The page size of a user's reservations when the request names none, and the largest.
const PAGE: (u32, u32) = (20, 100);

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PaymentView {
    payment_id: PaymentId,
    amount: u64,
    paid_at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ListedReservation {
    #[serde(flatten)]
    reservation: ReservationView,
    /// The payment of a PAID reservation.
    payment: Option<PaymentView>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReservationPage {
    reservations: Vec<ListedReservation>,
    next_before: Option<ReservationId>,
}

/// `limit` (1 to 100, default 20) and `before` (a reservation id) of the query.
fn page_query(query: Option<&str>) -> Result<(u32, Option<ReservationId>), Error> {
    let (mut limit, mut before) = (PAGE.0, None);
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=PAGE.1).contains(n))
                    .ok_or_else(|| {
                        Error::invalid("limit", format!("limit must be 1 to {}", PAGE.1))
                    })?;
            }
            "before" => before = Some(ReservationId::from_u64(path_id(value, "before")?)),
            _ => {}
        }
    }
    Ok((limit, before))
}

/// `GET /api/v1/users/{userId}/reservations?limit&before`: the caller's own, newest first,
/// with the caller's identity alone (no Queue-Token: also after every token ended).
pub async fn of_user(
    app: &App,
    caller: Caller,
    user_id: u64,
    query: Option<&str>,
) -> Result<Response<Body>, Error> {
    let (limit, before) = page_query(query)?;
    caller.owns(user_id)?;
    let replica_readable = app.health.replica_readable();
    let (page, stale) = holds::of_user(
        &app.hot,
        &app.db,
        &app.catalogue,
        replica_readable,
        caller,
        before,
        limit,
    )
    .await?;
    let reservations = page
        .reservations
        .into_iter()
        .map(|reservation| {
            let r = &reservation.record;
            let payment = match (r.status, r.payment_id, r.paid_at_ms) {
                (ReservationStatus::Paid, Some(payment_id), Some(paid_at)) => Some(PaymentView {
                    payment_id,
                    amount: r.total_amount,
                    paid_at: iso_ms(paid_at),
                }),
                _ => None,
            };
            ListedReservation {
                reservation: ReservationView::new(reservation),
                payment,
            }
        })
        .collect();
    let body = ReservationPage {
        reservations,
        next_before: page.next_before,
    };
    Ok(response::ok_maybe_stale(&body, stale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_is_20_by_default_and_1_to_100() {
        assert_eq!(page_query(None).unwrap(), (20, None));
        let (limit, before) = page_query(Some("limit=100&before=4294967297&x=1")).unwrap();
        assert_eq!(
            (limit, before.map(ReservationId::get)),
            (100, Some(4_294_967_297))
        );
        for (query, field) in [
            ("limit=0", "limit"),
            ("limit=101", "limit"),
            ("limit=", "limit"),
            ("limit=-1", "limit"),
            ("before=0", "before"),
            ("before=abc", "before"),
        ] {
            match page_query(Some(query)) {
                Err(Error::InvalidRequest { field: f, .. }) => assert_eq!(f, field, "{query}"),
                other => panic!("{query}: {other:?}"),
            }
        }
    }
}
