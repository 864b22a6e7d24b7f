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
use crate::model::{Error, SeatView, iso_ms, schedule_status};

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

/// `?view=map` (every seat with its status), or the AVAILABLE seats without it.
fn seat_view(query: Option<&str>) -> Result<SeatView, Error> {
    let mut view = SeatView::Available;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("view", "map") => view = SeatView::Map,
            ("view", _) => return Err(Error::invalid("view", "view must be map")),
            _ => {}
        }
    }
    Ok(view)
}

/// `GET /api/v1/concerts/{concertId}/schedules/{scheduleId}/seats?view`
pub async fn list_seats(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
    (concert_id, schedule_id): (u64, u64),
    query: Option<&str>,
) -> Result<Response<Body>, Error> {
    let view = seat_view(query)?;
    let token = queue_token(headers, &app.tokens)?;
    let listing = catalogue::seats_of(
        &app.hot,
        &app.db,
        &app.catalogue,
        caller,
        token,
        (concert_id, schedule_id),
        view,
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
    // The schedule's info, then the seats' JSON as the catalogue rendered it: the AVAILABLE
    // ones, or every seat with its status for the map.
    let render = || {
        let capacity = 256 + listing.seats.len() * 80;
        response::envelope(capacity, |body| {
            body.extend_from_slice(br#"{"scheduleInfo":"#);
            simd_json::to_writer(&mut *body, &info).expect("response types always serialize");
            body.extend_from_slice(br#","seats":["#);
            let mut first = true;
            for seat in listing.seats.iter() {
                let available = listing.available.binary_search(&seat.seat_id).is_ok();
                if !available && listing.view == SeatView::Available {
                    continue;
                }
                if !first {
                    body.push(b',');
                }
                first = false;
                if available {
                    body.extend_from_slice(seat.listed_json.as_bytes());
                } else if listing.held.binary_search(&seat.seat_id).is_ok() {
                    seat.write_with_status("HELD", body);
                } else {
                    seat.write_with_status("SOLD", body);
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
        response::JSON,
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
    fn the_view_is_the_listing_unless_the_map_is_asked_for() {
        assert_eq!(seat_view(None).unwrap(), SeatView::Available);
        assert_eq!(seat_view(Some("x=1&view=map")).unwrap(), SeatView::Map);
        for bad in ["view=", "view=MAP", "view=list", "view"] {
            assert_eq!(field_of(seat_view(Some(bad)).unwrap_err()), "view", "{bad}");
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
