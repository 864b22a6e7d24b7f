//! Public catalogue endpoints (SPEC §3 rows 2 and 3): a concert's schedules with their live
//! availability, and a schedule's AVAILABLE seats. Catalogue data comes from
//! [`super::reads`], availability from the schedule's `avail` set in Redis.

use std::sync::Arc;

use chrono::NaiveDate;
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use crate::app::App;
use crate::error::ApiError;
use crate::http::response::{self, Body};
use crate::queue::auth;
use crate::redis::keys::ScheduleKeys;
use crate::stale;
use crate::time::iso_ms;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleItem<'a> {
    schedule_id: u64,
    concert_id: u64,
    concert_title: &'a str,
    venue_id: u64,
    venue_name: &'a str,
    performance_date: &'a str,
    performance_time: &'a str,
    booking_open_at: String,
    booking_close_at: String,
    available_seats: u64,
    status: &'static str,
}

/// `fromDate` / `toDate` from the query string (both optional, inclusive, `YYYY-MM-DD`).
fn date_range(query: Option<&str>) -> Result<(Option<NaiveDate>, Option<NaiveDate>), ApiError> {
    let mut from = None;
    let mut to = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match name {
            "fromDate" => &mut from,
            "toDate" => &mut to,
            _ => continue,
        };
        let date = NaiveDate::parse_from_str(value, "%Y-%m-%d")
            .map_err(|_| ApiError::invalid(name, format!("{name} must be a date YYYY-MM-DD")))?;
        *slot = Some(date);
    }
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::invalid(
            "fromDate",
            "fromDate must not be after toDate",
        ));
    }
    Ok((from, to))
}

/// The status a client sees: CANCELLED, UPCOMING (booking not open), CLOSED, SOLD_OUT or OPEN.
fn schedule_status(
    cancelled: bool,
    open_ms: i64,
    close_ms: i64,
    available: u64,
    now_ms: i64,
) -> &'static str {
    if cancelled {
        "CANCELLED"
    } else if now_ms < open_ms {
        "UPCOMING"
    } else if now_ms >= close_ms {
        "CLOSED"
    } else if available == 0 {
        "SOLD_OUT"
    } else {
        "OPEN"
    }
}

/// `GET /api/v1/concerts/{concertId}/schedules?fromDate&toDate`
pub async fn list_schedules(
    app: &App,
    headers: &HeaderMap,
    concert_id: u64,
    query: Option<&str>,
) -> Result<Response<Body>, ApiError> {
    let (from, to) = date_range(query)?;
    let (_, stale_token) = stale::authenticate(app, headers).await?;
    let concert = app
        .catalogue
        .concert(&app.db, &app.health, concert_id)
        .await?
        .ok_or(ApiError::ConcertNotFound)?;
    let in_range = |date: &str| {
        let date = NaiveDate::parse_from_str(date, "%Y-%m-%d").ok();
        from.is_none_or(|f| date.is_some_and(|d| d >= f))
            && to.is_none_or(|t| date.is_some_and(|d| d <= t))
    };
    let schedules: Vec<_> = concert
        .schedules
        .iter()
        .filter(|s| in_range(&s.performance_date))
        .collect();
    let ids: Vec<u64> = schedules.iter().map(|s| s.schedule_id).collect();
    let fresh = async {
        if ids.is_empty() {
            return Ok(Vec::new()); // an empty pipeline is an error to redis-rs
        }
        let mut pipe = redis::pipe();
        for id in &ids {
            pipe.scard(ScheduleKeys::new(*id).avail);
        }
        Ok(pipe.query_async(&mut app.redis.clone()).await?)
    };
    let (available, stale_counts) =
        stale::or_mysql(fresh, || stale::available_counts(app, &ids)).await?;
    let now = chrono::Utc::now().timestamp_millis();
    let items: Vec<ScheduleItem> = schedules
        .iter()
        .zip(available)
        .map(|(s, available)| ScheduleItem {
            schedule_id: s.schedule_id,
            concert_id: s.concert_id,
            concert_title: &s.concert_title,
            venue_id: s.venue_id,
            venue_name: &s.venue_name,
            performance_date: &s.performance_date,
            performance_time: &s.performance_time,
            booking_open_at: iso_ms(s.booking_open_ms),
            booking_close_at: iso_ms(s.booking_close_ms),
            available_seats: available,
            status: schedule_status(
                s.cancelled,
                s.booking_open_ms,
                s.booking_close_ms,
                available,
                now,
            ),
        })
        .collect();
    let rsp = response::ok(StatusCode::OK, &items);
    Ok(stale::mark(rsp, stale_token || stale_counts))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ScheduleInfo<'a> {
    schedule_id: u64,
    concert_title: &'a str,
    performance_date: &'a str,
    performance_time: &'a str,
    venue_name: &'a str,
}

/// `GET /api/v1/concerts/{concertId}/schedules/{scheduleId}/seats`
pub async fn list_seats(
    app: &App,
    headers: &HeaderMap,
    concert_id: u64,
    schedule_id: u64,
) -> Result<Response<Body>, ApiError> {
    // One script call checks the token and reads the availability (shared with concurrent
    // listings of the schedule).
    let token = auth::parse_token(headers)?;
    let fresh = async {
        match app.seat_viewer.call(schedule_id, token).await? {
            Ok(ids) => Ok(ids),
            Err(code) if code == "TOKEN_NOT_HERE" => {
                Err(auth::not_here(app, &token, schedule_id).await)
            }
            Err(code) if code == "QUEUE_TOKEN_NOT_ACTIVE" => Err(ApiError::QueueTokenNotActive),
            Err(_) => Err(ApiError::QueueTokenInvalid),
        }
    };
    let from_mysql = || async {
        let holder = stale::holder(app, headers).await?;
        if holder.schedule_id != schedule_id {
            return Err(ApiError::QueueTokenWrongSchedule);
        }
        if holder.state.status != "ACTIVE" {
            return Err(ApiError::QueueTokenNotActive);
        }
        Ok(Arc::new(stale::available_seats(app, schedule_id).await?))
    };
    let (available, stale) = stale::or_mysql(fresh, from_mysql).await?;
    let concert = app
        .catalogue
        .concert(&app.db, &app.health, concert_id)
        .await?
        .ok_or(ApiError::ConcertNotFound)?;
    let schedule = concert
        .schedules
        .iter()
        .find(|s| s.schedule_id == schedule_id)
        .ok_or(ApiError::ScheduleNotFound)?;
    let seats = app
        .catalogue
        .seats(&app.db, &app.health, schedule_id)
        .await?
        .unwrap_or_default();
    // The schedule's info, then the AVAILABLE seats' JSON as the catalogue rendered it.
    let info = ScheduleInfo {
        schedule_id,
        concert_title: &schedule.concert_title,
        performance_date: &schedule.performance_date,
        performance_time: &schedule.performance_time,
        venue_name: &schedule.venue_name,
    };
    let rsp = response::ok_rendered(StatusCode::OK, 256 + seats.len() * 80, |body| {
        body.extend_from_slice(br#"{"scheduleInfo":"#);
        simd_json::to_writer(&mut *body, &info).expect("response types always serialize");
        body.extend_from_slice(br#","seats":["#);
        let mut first = true;
        for seat in seats.iter() {
            if available.binary_search(&seat.seat_id).is_ok() {
                if !first {
                    body.push(b',');
                }
                first = false;
                body.extend_from_slice(seat.listed_json.as_bytes());
            }
        }
        body.extend_from_slice(b"]}");
    });
    Ok(stale::mark(rsp, stale))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: ApiError) -> String {
        match err {
            ApiError::InvalidRequest { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn date_ranges_are_optional_inclusive_and_ordered() {
        assert_eq!(date_range(None).unwrap(), (None, None));
        let (f, t) = date_range(Some("fromDate=2026-12-01&toDate=2026-12-01&x=1")).unwrap();
        assert_eq!(
            (f, t),
            (
                NaiveDate::from_ymd_opt(2026, 12, 1),
                NaiveDate::from_ymd_opt(2026, 12, 1)
            )
        );
        assert_eq!(
            field_of(date_range(Some("fromDate=2026-12-02&toDate=2026-12-01")).unwrap_err()),
            "fromDate"
        );
        assert_eq!(
            field_of(date_range(Some("toDate=tomorrow")).unwrap_err()),
            "toDate"
        );
        assert_eq!(
            field_of(date_range(Some("fromDate=")).unwrap_err()),
            "fromDate"
        );
    }

    #[test]
    fn status_follows_cancellation_window_and_availability() {
        assert_eq!(schedule_status(true, 0, 10, 5, 5), "CANCELLED");
        assert_eq!(schedule_status(false, 10, 20, 5, 5), "UPCOMING");
        assert_eq!(schedule_status(false, 0, 10, 5, 10), "CLOSED");
        assert_eq!(schedule_status(false, 0, 10, 0, 5), "SOLD_OUT");
        assert_eq!(schedule_status(false, 0, 10, 5, 5), "OPEN");
    }
}
