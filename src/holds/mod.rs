//! Seat holds (reservations): one script (`hold_seats`) checks the ACTIVE token, the booking
//! window, the user's seat limit and every seat named (or chooses the best available ones
//! for a `quantity`), then holds all of them or none and appends the reservation to the
//! schedule's outbox; concurrent holds for one schedule share a script call. The owner reads a reservation, or cancels it while RESERVED (`cancel_hold`); the
//! housekeeping loop expires holds that are due (`expire_holds`).

use crate::catalogue::Catalogue;
use crate::fallback;
use crate::identity::Caller;
use crate::model::{
    Error, Hold, Idempotency, QueueToken, Refusal, Reservation, ReservationId, ReservationRecord,
    ReservationStatus, Seat, SeatChoice,
};
use crate::mysql::Db;
use crate::queue;
use crate::redis::scripts::{HoldOutcome, HoldRequest};
use crate::redis::{HotPath, Stored};

/// Holds the chosen seats of the schedule for the caller, all or none, with their ACTIVE
/// token of that schedule.
pub async fn hold(
    hot: &HotPath,
    caller: Caller,
    token: QueueToken,
    schedule_id: u64,
    seats: SeatChoice,
    idempotency_key: Option<String>,
) -> Result<Hold, Error> {
    let token = match queue::for_schedule(token, caller, schedule_id) {
        // Another schedule's token is told so only of a schedule that exists.
        Err(Error::QueueTokenWrongSchedule) if !hot.schedule_exists(schedule_id).await? => {
            return Err(Error::ScheduleNotFound);
        }
        other => other?,
    };
    let idempotency = idempotency_key.map(|key| Idempotency::hold(key, schedule_id, &seats));
    let request = HoldRequest {
        token: token.sequence,
        user_id: caller.user_id(),
        seats,
        idempotency,
    };
    match hot.hold(schedule_id, request).await? {
        HoldOutcome::Held(hold) => {
            metrics::counter!("seatrush_seats_held_total").increment(hold.seats.len() as u64);
            Ok(hold)
        }
        HoldOutcome::Refused(refusal, named) => Err(refusal.into_error(named)),
    }
}

/// The caller's reservation (with any live token of theirs), from MySQL while Redis is
/// unreachable (then the flag says it may be stale) or once its record has left Redis.
pub async fn get(
    hot: &HotPath,
    db: &Db,
    catalogue: &Catalogue,
    caller: Caller,
    token: QueueToken,
    id: ReservationId,
) -> Result<(Reservation, bool), Error> {
    let (_, stale_token) = queue::authenticate_or_stale(hot, db, token, caller).await?;
    let (record, stale_record) =
        fallback::or_mysql(record(hot, db, id), || fallback::reservation(db, id)).await?;
    let record = record.ok_or(Error::ReservationNotFound)?;
    caller.owns(record.user_id)?;
    let reservation = with_seats(catalogue, record).await?;
    Ok((reservation, stale_token || stale_record))
}

/// The reservation's record: Redis's, or MySQL's once it has left Redis (a hold that ended
/// longer ago than the keep period; see `lua/lib/holds.lua`).
pub async fn record(
    hot: &HotPath,
    db: &Db,
    id: ReservationId,
) -> Result<Option<ReservationRecord>, Error> {
    match hot.reservation(id).await? {
        Stored::Here(raw) => ReservationRecord::parse(id, &raw)
            .map(Some)
            .map_err(|e| Error::Internal(format!("reservation {id}: {e}"))),
        Stored::LeftRedis => fallback::reservation(db, id).await,
        Stored::Never => Ok(None),
    }
}

/// The refusal for a reservation a script did not find: `404` if it was never made; if its
/// record has left Redis (it ended), `403` for another user's, else `ended` of its status.
pub async fn refuse_missing(
    hot: &HotPath,
    db: &Db,
    caller: Caller,
    id: ReservationId,
    ended: impl FnOnce(ReservationStatus) -> Error,
) -> Error {
    match record(hot, db, id).await {
        Ok(Some(record)) => match caller.owns(record.user_id) {
            Ok(()) => ended(record.status),
            Err(e) => e,
        },
        Ok(None) => Error::ReservationNotFound,
        Err(e) => e,
    }
}

/// The owner cancels a RESERVED hold (with any live token of theirs); its seats are
/// AVAILABLE again.
pub async fn cancel(
    hot: &HotPath,
    db: &Db,
    catalogue: &Catalogue,
    caller: Caller,
    token: QueueToken,
    id: ReservationId,
) -> Result<Reservation, Error> {
    queue::authenticate(hot, token, caller).await?;
    let record = match hot.cancel_hold(id, caller.user_id()).await? {
        Ok(record) => record,
        Err(Refusal::ReservationNotFound) => {
            let not_cancellable = |_| Error::ReservationNotCancellable;
            return Err(refuse_missing(hot, db, caller, id, not_cancellable).await);
        }
        Err(refusal) => return Err(refusal.into()),
    };
    metrics::counter!("seatrush_holds_cancelled_total").increment(1);
    with_seats(catalogue, record).await
}

/// The record with its seats' numbers from the catalogue.
async fn with_seats(
    catalogue: &Catalogue,
    record: ReservationRecord,
) -> Result<Reservation, Error> {
    let listed = catalogue
        .seats(record.schedule_id)
        .await?
        .unwrap_or_default();
    let number_of = |seat: u64| {
        listed
            .iter()
            .find(|s| s.seat_id == seat)
            .map_or(0, |s| s.seat_number)
    };
    let seats = record
        .seats
        .iter()
        .map(|&(seat_id, price)| Seat {
            seat_id,
            seat_number: number_of(seat_id),
            price,
        })
        .collect();
    Ok(Reservation { record, seats })
}
