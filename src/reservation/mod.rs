//! Seat holds (SPEC §3 rows 4, 4b, 4c; §4 "Seat holds"): one script (`lua/hold_seats.lua`)
//! checks the ACTIVE token, the booking window, the user's seat limit and every seat, then
//! holds all of them or none and appends the reservation to the schedule's outbox; concurrent
//! holds for one schedule share a script call (`redis::coalesce`). The
//! owner reads a reservation, or cancels it while RESERVED (`lua/cancel_hold.lua`); the
//! admission loop expires holds that are due (`lua/expire_holds.lua`).

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::app::App;
use crate::error::ApiError;
use crate::http::request::{JsonObject, idempotency_key};
use crate::http::response::{self, Body};
use crate::outbox::reservations::ReservationRow;
use crate::queue::auth;
use crate::redis::keys::ScheduleKeys;
use crate::redis::scripts::{Hold, HoldOutcome, HoldRequest, Idempotency};
use crate::stale;
use crate::time::iso_ms;

/// Most seats one request may name (the per-user limit is usually far lower).
const MAX_SEATS_PER_REQUEST: usize = 100;

/// Crockford's base-32 alphabet: no I, L, O or U to misread.
const BASE32: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The human-friendly reservation number, `R<yyyymmdd>-<11 characters>`: the reservation
/// date, then the id scrambled by an odd multiplier modulo 2^55 (a bijection, so numbers are
/// unique like ids without showing their sequence) in base 32.
pub fn reservation_number(id: u64, reserved_at_ms: i64) -> String {
    const BITS: u32 = 55;
    let scrambled = id.wrapping_mul(0x2545_F491_4F6C_DD1D) & ((1 << BITS) - 1);
    let code: String = (0..BITS.div_ceil(5))
        .rev()
        .map(|i| BASE32[((scrambled >> (i * 5)) & 31) as usize] as char)
        .collect();
    let date = chrono::DateTime::from_timestamp_millis(reserved_at_ms)
        .unwrap_or_default()
        .format("%Y%m%d");
    format!("R{date}-{code}")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SeatView {
    seat_id: u64,
    seat_number: u64,
    price: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReservationView {
    reservation_id: u64,
    reservation_number: String,
    user_id: u64,
    schedule_id: u64,
    seats: Vec<SeatView>,
    total_amount: u64,
    status: String,
    reserved_at: String,
    expires_at: String,
}

fn refusal(code: &str, seat_ids: Vec<u64>) -> ApiError {
    match code {
        "SCHEDULE_NOT_FOUND" => ApiError::ScheduleNotFound,
        "QUEUE_TOKEN_INVALID" => ApiError::QueueTokenInvalid,
        "QUEUE_TOKEN_NOT_ACTIVE" => ApiError::QueueTokenNotActive,
        "FORBIDDEN" => ApiError::Forbidden,
        "BOOKING_NOT_OPEN" => ApiError::BookingNotOpen,
        "BOOKING_CLOSED" => ApiError::BookingClosed,
        "SEAT_NOT_FOUND" => ApiError::SeatNotFound { seat_ids },
        "SEAT_LIMIT_EXCEEDED" => ApiError::SeatLimitExceeded,
        "SEAT_ALREADY_RESERVED" => ApiError::SeatAlreadyReserved { seat_ids },
        "IDEMPOTENCY_KEY_REUSED" => ApiError::IdempotencyKeyReused,
        other => ApiError::Internal(format!("hold_seats returned {other}")),
    }
}

/// `POST /api/v1/reservations`
pub async fn hold_seats(
    app: &App,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<Response<Body>, ApiError> {
    let token = auth::parse_token(headers)?;
    let key = idempotency_key(headers)?;
    let body = JsonObject::parse(body)?;
    let schedule_id = body.id("scheduleId")?;
    let seat_ids = body.id_list("seatIds", MAX_SEATS_PER_REQUEST)?;
    let user_id = body.id("userId")?;
    // Requests are compared by what they ask, not by their bytes.
    let idempotency = key.map(|key| Idempotency {
        key,
        fingerprint: format!("hold:{schedule_id}:{seat_ids:?}"),
    });
    let request = HoldRequest {
        token,
        user_id,
        seat_ids,
        idempotency,
    };
    let outcome = app.seat_holder.call(schedule_id, request).await?;
    let hold: Hold = match outcome {
        HoldOutcome::Held(hold) => hold,
        HoldOutcome::Refused(code, _) if code == "TOKEN_NOT_HERE" => {
            return Err(auth::not_here(app, &token, schedule_id).await);
        }
        HoldOutcome::Refused(code, seats) => return Err(refusal(&code, seats)),
    };
    metrics::counter!("seatrush_seats_held_total").increment(hold.seats.len() as u64);
    Ok(response::ok(
        StatusCode::CREATED,
        &ReservationView {
            reservation_id: hold.reservation_id,
            reservation_number: reservation_number(hold.reservation_id, hold.reserved_at_ms),
            user_id,
            schedule_id,
            seats: hold
                .seats
                .iter()
                .map(|&(seat_id, seat_number, price)| SeatView {
                    seat_id,
                    seat_number,
                    price,
                })
                .collect(),
            total_amount: hold.total_amount,
            status: "RESERVED".into(),
            reserved_at: iso_ms(hold.reserved_at_ms),
            expires_at: iso_ms(hold.expires_at_ms),
        },
    ))
}

/// The schedule a reservation id belongs to (ids are scheduleId * 2^32 + a sequence).
pub fn schedule_of(reservation_id: u64) -> u64 {
    reservation_id >> 32
}

fn parse_record(id: u64, schedule_id: u64, record: &str) -> Result<ReservationRow, ApiError> {
    ReservationRow::parse(&id.to_string(), schedule_id, record)
        .map_err(|e| ApiError::Internal(format!("reservation {id}: {e}")))
}

/// The client-facing view of a stored reservation; a hold being paid is still RESERVED.
async fn view(app: &App, row: &ReservationRow) -> Result<ReservationView, ApiError> {
    let catalogue = app
        .catalogue
        .seats(&app.db, &app.health, row.schedule_id)
        .await?
        .unwrap_or_default();
    let number_of = |seat: u64| {
        catalogue
            .iter()
            .find(|s| s.seat_id == seat)
            .map_or(0, |s| s.seat_number)
    };
    Ok(ReservationView {
        reservation_id: row.id,
        reservation_number: reservation_number(row.id, row.reserved_at_ms),
        user_id: row.user_id,
        schedule_id: row.schedule_id,
        seats: row
            .seats
            .iter()
            .map(|&(seat_id, price)| SeatView {
                seat_id,
                seat_number: number_of(seat_id),
                price,
            })
            .collect(),
        total_amount: row.total_amount,
        status: match row.status.as_str() {
            "PAYING" => "RESERVED".into(),
            other => other.into(),
        },
        reserved_at: iso_ms(row.reserved_at_ms),
        expires_at: iso_ms(row.expires_at_ms),
    })
}

/// `GET /api/v1/reservations/{reservationId}`: the owner's token (any live one).
pub async fn get(
    app: &App,
    headers: &HeaderMap,
    reservation_id: u64,
) -> Result<Response<Body>, ApiError> {
    let (holder, stale_token) = stale::authenticate(app, headers).await?;
    let schedule_id = schedule_of(reservation_id);
    let fresh = async {
        let record: Option<String> = redis::cmd("HGET")
            .arg(ScheduleKeys::new(schedule_id).res)
            .arg(reservation_id)
            .query_async(&mut app.redis.clone())
            .await?;
        record
            .map(|r| parse_record(reservation_id, schedule_id, &r))
            .transpose()
    };
    let (row, stale_row) =
        stale::or_mysql(fresh, || stale::reservation(app, reservation_id)).await?;
    let row = row.ok_or(ApiError::ReservationNotFound)?;
    if row.user_id != holder.user_id {
        return Err(ApiError::Forbidden);
    }
    let rsp = response::ok(StatusCode::OK, &view(app, &row).await?);
    Ok(stale::mark(rsp, stale_token || stale_row))
}

/// `DELETE /api/v1/reservations/{reservationId}`: the owner cancels a RESERVED hold.
pub async fn cancel(
    app: &App,
    headers: &HeaderMap,
    reservation_id: u64,
) -> Result<Response<Body>, ApiError> {
    let holder = auth::authenticate(app, headers).await?;
    let schedule_id = schedule_of(reservation_id);
    let record = app
        .scripts
        .cancel_hold(
            &mut app.redis.clone(),
            schedule_id,
            reservation_id,
            holder.user_id,
        )
        .await?
        .map_err(|code| match code.as_str() {
            "RESERVATION_NOT_FOUND" => ApiError::ReservationNotFound,
            "FORBIDDEN" => ApiError::Forbidden,
            "PAYMENT_IN_PROGRESS" => ApiError::PaymentInProgress,
            "RESERVATION_NOT_CANCELLABLE" => ApiError::ReservationNotCancellable,
            other => ApiError::Internal(format!("cancel_hold returned {other}")),
        })?;
    let row = parse_record(reservation_id, schedule_id, &record)?;
    metrics::counter!("seatrush_holds_cancelled_total").increment(1);
    Ok(response::ok(StatusCode::OK, &view(app, &row).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_numbers_are_dated_distinct_and_readable() {
        let at = 1_798_138_800_000; // 2026-12-24T19:00:00Z
        let a = reservation_number(12 << 32 | 1, at);
        let b = reservation_number(12 << 32 | 2, at);
        assert!(
            a.starts_with("R20261224-") && a.len() == "R20261224-".len() + 11,
            "{a}"
        );
        assert_ne!(a, b);
        assert!(a[10..].chars().all(|c| BASE32.contains(&(c as u8))));
        let many: std::collections::HashSet<String> = (1..5000u64)
            .map(|n| reservation_number(7 << 32 | n, at))
            .collect();
        assert_eq!(many.len(), 4999);
    }
}
