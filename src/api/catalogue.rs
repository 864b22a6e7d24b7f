//! `GET /api/v1/concerts/{concertId}/schedules` and
//! `GET /api/v1/concerts/{concertId}/schedules/{scheduleId}/seats`.

use chrono::NaiveDate;
use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::request::queue_token;
use super::response::{self, Body};
use crate::app::App;
use crate::catalogue;
use crate::identity::Caller;
use crate::model::{Error, iso_ms, schedule_status};

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
fn date_range(query: Option<&str>) -> Result<(Option<NaiveDate>, Option<NaiveDate>), Error> {
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
            .map_err(|_| Error::invalid(name, format!("{name} must be a date YYYY-MM-DD")))?;
        *slot = Some(date);
    }
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(Error::invalid(
            "fromDate",
            "fromDate must not be after toDate",
        ));
    }
    Ok((from, to))
}

/// `GET /api/v1/concerts/{concertId}/schedules?fromDate&toDate`
pub async fn list_schedules(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
    concert_id: u64,
    query: Option<&str>,
) -> Result<Response<Body>, Error> {
    let dates = date_range(query)?;
    let token = queue_token(headers, &app.tokens)?;
    let (schedules, stale) = catalogue::schedules_of(
        &app.hot,
        &app.db,
        &app.catalogue,
        caller,
        token,
        concert_id,
        dates,
    )
    .await?;
    let now = chrono::Utc::now().timestamp_millis();
    let items: Vec<ScheduleItem> = schedules
        .iter()
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
            available_seats: *available,
            status: schedule_status(s, *available, now),
        })
        .collect();
    Ok(response::ok_maybe_stale(&items, stale))
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
    caller: Caller,
    headers: &HeaderMap,
    concert_id: u64,
    schedule_id: u64,
) -> Result<Response<Body>, Error> {
    let token = queue_token(headers, &app.tokens)?;
    let listing = catalogue::seats_of(
        &app.hot,
        &app.db,
        &app.catalogue,
        caller,
        token,
        concert_id,
        schedule_id,
    )
    .await?;
    let schedule = &listing.schedule;
    let info = ScheduleInfo {
        schedule_id,
        concert_title: &schedule.concert_title,
        performance_date: &schedule.performance_date,
        performance_time: &schedule.performance_time,
        venue_name: &schedule.venue_name,
    };
    // The schedule's info, then the AVAILABLE seats' JSON as the catalogue rendered it.
    let render = || {
        let capacity = 256 + listing.seats.len() * 80;
        response::envelope(capacity, |body| {
            body.extend_from_slice(br#"{"scheduleInfo":"#);
            simd_json::to_writer(&mut *body, &info).expect("response types always serialize");
            body.extend_from_slice(br#","seats":["#);
            let mut first = true;
            for seat in listing.seats.iter() {
                if listing.available.binary_search(&seat.seat_id).is_ok() {
                    if !first {
                        body.push(b',');
                    }
                    first = false;
                    body.extend_from_slice(seat.listed_json.as_bytes());
                }
            }
            body.extend_from_slice(b"]}");
        })
    };
    if listing.stale {
        // Read from MySQL while Redis was unreachable: neither kept nor tagged.
        let rsp = response::json(StatusCode::OK, render());
        return Ok(response::mark_stale(rsp, true));
    }
    let rendered = app.listings.body(&listing, render);
    Ok(response::representation(
        headers,
        rendered.tag,
        &rendered.json,
        || rendered.gzip().clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(err: Error) -> String {
        match err {
            Error::InvalidRequest { field, .. } => field,
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
}
