//! Seat holds (reservations): one script (`hold_seats`) checks the ACTIVE token, the booking
//! window, the user's seat limit and every seat named (or chooses the best available ones
//! for a `quantity`), then holds all of them or none and appends the reservation to the
//! schedule's outbox; concurrent holds for one schedule share a script call. The owner reads
//! a reservation, or cancels it while RESERVED (`cancel_hold`); the housekeeping loop
//! expires holds that are due (`expire_holds`).

use crate::catalogue::Catalogue;
use crate::fallback;
use crate::identity::Caller;
use crate::model::{
    Error, Hold, Idempotency, QueueSettings, QueueToken, Refusal, Reservation, ReservationId,
    ReservationRecord, ReservationStatus, Seat, SeatChoice,
};
use crate::mysql::records::{self, Scope};
use crate::mysql::{Db, conn, read_replica_first};
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

/// A page of a user's reservations, newest first.
#[derive(Debug)]
pub struct Page {
    pub reservations: Vec<Reservation>,
    /// The cursor of the next page (its `before`), when there is one.
    pub next_before: Option<ReservationId>,
}

/// The caller's reservations, newest first: at most `limit`, made before their reservation
/// `before`, whatever became of their tokens. The list is MySQL's (replica first); each
/// reservation whose record Redis still has shows Redis's, which may be newer (paid or
/// ended since it was written behind), all read in one round trip. A hold made a moment
/// ago shows once the write-behind has it. The flag: Redis could not be asked, so a status
/// may be behind.
pub async fn of_user(
    hot: &HotPath,
    db: &Db,
    catalogue: &Catalogue,
    replica_readable: bool,
    caller: Caller,
    before: Option<ReservationId>,
    limit: u32,
) -> Result<(Page, bool), Error> {
    // Counted against the caller's rate (no schedule's: the default one) before MySQL is
    // asked. With Redis unreachable the list is still read, uncounted.
    let rate = QueueSettings::default().user_requests_per_second;
    match hot.count_request(caller.user_id(), rate).await {
        Ok(Ok(())) => {}
        Ok(Err(refusal)) => return Err(refusal.into()),
        Err(e) => {
            let e = Error::from(e);
            if !e.is_redis_down() {
                return Err(e);
            }
        }
    }
    let scope = Scope::User {
        user_id: caller.user_id(),
        before,
        limit: limit + 1,
    };
    let page = read_replica_first(db, replica_readable, |pool, name| async move {
        let mut conn = conn(&pool, name).await?;
        let page = records::reservations(&mut conn, scope).await?;
        Ok((!page.is_empty()).then_some(page))
    })
    .await?;
    let mut listed = page.unwrap_or_default();
    let next_before = if listed.len() > limit as usize {
        listed.truncate(limit as usize);
        listed.last().map(|r| r.id)
    } else {
        None
    };
    let ids: Vec<ReservationId> = listed.iter().map(|r| r.id).collect();
    let (newer, stale) = fallback::or_mysql(
        async { Ok(hot.reservation_records(&ids).await?) },
        || async { Ok(Vec::new()) },
    )
    .await?;
    let mut reservations = Vec::with_capacity(listed.len());
    for (i, stored) in listed.into_iter().enumerate() {
        let record = match newer.get(i).cloned().flatten() {
            Some(raw) => ReservationRecord::parse(stored.id, &raw)
                .map_err(|e| Error::Internal(format!("reservation {}: {e}", stored.id)))?,
            None => stored,
        };
        reservations.push(with_seats(catalogue, record).await?);
    }
    let page = Page {
        reservations,
        next_before,
    };
    Ok((page, stale))
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
