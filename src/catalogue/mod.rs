//! The catalogue: venues, concerts, schedules and seats, whose record is MySQL, and
//! the public reads over them: a concert's schedules with their live availability, and a
//! schedule's AVAILABLE seats or its seat map (catalogue data from [`Catalogue`], the seats'
//! state from Redis).

mod listing;
mod reads;
pub mod schedules;

use std::sync::Arc;

use chrono::NaiveDate;

pub use listing::{ListingCache, RenderedListing};
pub use reads::Catalogue;

use crate::fallback;
use crate::identity::Caller;
use crate::model::{Error, ListedSeat, QueueToken, Schedule, SeatView, TokenStatus};
use crate::mysql::Db;
use crate::queue;
use crate::redis::HotPath;

/// The concert's schedules performed within the (inclusive) dates, each with its number of
/// AVAILABLE seats, for any live token; from MySQL while Redis is unreachable (then the flag
/// says the counts may be stale).
pub async fn schedules_of(
    hot: &HotPath,
    db: &Db,
    catalogue: &Catalogue,
    caller: Caller,
    token: QueueToken,
    concert_id: u64,
    (from, to): (Option<NaiveDate>, Option<NaiveDate>),
) -> Result<(Vec<(Schedule, u64)>, bool), Error> {
    let (_, stale_token) = queue::authenticate_or_stale(hot, db, token, caller).await?;
    let concert = catalogue
        .concert(concert_id)
        .await?
        .ok_or(Error::ConcertNotFound)?;
    let in_range = |date: &str| {
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok();
        from.is_none_or(|f| date.is_some_and(|d| d >= f))
            && to.is_none_or(|t| date.is_some_and(|d| d <= t))
    };
    let schedules: Vec<Schedule> = concert
        .schedules
        .iter()
        .filter(|s| in_range(&s.performance_date))
        .cloned()
        .collect();
    let ids: Vec<u64> = schedules.iter().map(|s| s.schedule_id).collect();
    let fresh = async { Ok(hot.available_counts(&ids).await?) };
    let (available, stale_counts) =
        fallback::or_mysql(fresh, || fallback::available_seat_counts(db, &ids)).await?;
    Ok((
        schedules.into_iter().zip(available).collect(),
        stale_token || stale_counts,
    ))
}

/// What a seat listing shows.
pub struct SeatListing {
    pub schedule: Schedule,
    /// Every seat of the schedule by seat number.
    pub seats: Arc<Vec<ListedSeat>>,
    /// The AVAILABLE seat ids, sorted.
    pub available: Arc<Vec<u64>>,
    /// The seat ids in open holds, sorted: read for the seat map only (else empty). A seat
    /// in neither list is SOLD.
    pub held: Arc<Vec<u64>>,
    /// What the listing shows.
    pub view: SeatView,
    /// Read from MySQL while Redis was unreachable.
    pub stale: bool,
}

/// The schedule's AVAILABLE seats, or for [`SeatView::Map`] also which seats are held, for
/// the caller's ACTIVE token of that schedule. One script call checks the token and reads
/// the seats (shared with concurrent listings).
pub async fn seats_of(
    hot: &HotPath,
    db: &Db,
    catalogue: &Catalogue,
    caller: Caller,
    token: QueueToken,
    (concert_id, schedule_id): (u64, u64),
    view: SeatView,
) -> Result<SeatListing, Error> {
    let token = queue::for_schedule(token, caller, schedule_id)?;
    let fresh = async {
        match hot.seat_view(token, caller.user_id(), view).await? {
            // Another request of the batch may have asked for the map: the listing does
            // not show the held seats, so its content (and tag) must not follow them.
            Ok(state) => Ok(match view {
                SeatView::Map => (state.available, state.held.unwrap_or_default()),
                SeatView::Available => (state.available, Arc::default()),
            }),
            Err(refusal) => Err(refusal.into()),
        }
    };
    let from_mysql = || async {
        let holder = fallback::token_holder(db, token).await?;
        if holder.state.status != TokenStatus::Active {
            return Err(Error::QueueTokenNotActive);
        }
        let available = fallback::seat_ids(db, schedule_id, "AVAILABLE").await?;
        let held = match view {
            SeatView::Map => fallback::seat_ids(db, schedule_id, "HELD").await?,
            SeatView::Available => Vec::new(),
        };
        Ok((Arc::new(available), Arc::new(held)))
    };
    let ((available, held), stale) = fallback::or_mysql(fresh, from_mysql).await?;
    let concert = catalogue
        .concert(concert_id)
        .await?
        .ok_or(Error::ConcertNotFound)?;
    let schedule = concert
        .schedules
        .iter()
        .find(|s| s.schedule_id == schedule_id)
        .ok_or(Error::ScheduleNotFound)?
        .clone();
    let seats = catalogue.seats(schedule_id).await?.unwrap_or_default();
    Ok(SeatListing {
        schedule,
        seats,
        available,
        held,
        view,
        stale,
    })
}
