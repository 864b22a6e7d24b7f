//! The admin API: users, venues, concerts, schedules with their seats, and per-schedule
//! queue settings. Every call needs `X-Admin-Key`, checked before anything else.

use std::collections::{BTreeMap, HashSet};

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::request::JsonObject;
use super::response::{self, Body};
use crate::admin::{self, QueueCounts};
use crate::app::App;
use crate::catalogue::schedules::NewSchedule;
use crate::model::{Error, MAX_PRE_QUEUE_MINUTES, MAX_SETTING, QueueOrder, QueueSettings, iso_ms};

const HEADER: &str = "x-admin-key";
/// Most seats one schedule may have.
const MAX_SEATS: u64 = 100_000;
/// Highest seat price accepted, in KRW.
const MAX_PRICE: u64 = 10_000_000;
const MAX_NAME_CHARS: usize = 200;

/// Compares in time independent of where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, &x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

pub fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Error> {
    let given = headers
        .get(HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if constant_time_eq(given, app.config.admin_key.as_bytes()) {
        Ok(())
    } else {
        Err(Error::AdminKeyInvalid)
    }
}

/// `201 {"<name>": id}` for a created row.
fn created(name: &'static str, id: u64) -> Response<Body> {
    response::ok(StatusCode::CREATED, &BTreeMap::from([(name, id)]))
}

/// `POST /api/v1/admin/users`
pub async fn create_user(app: &App, body: Vec<u8>) -> Result<Response<Body>, Error> {
    let name = JsonObject::parse(body)?.text("name", 100)?;
    let id = admin::add_user(&app.db, &app.users, &name).await?;
    Ok(created("userId", id))
}

/// `POST /api/v1/admin/venues`
pub async fn create_venue(app: &App, body: Vec<u8>) -> Result<Response<Body>, Error> {
    let name = JsonObject::parse(body)?.text("name", MAX_NAME_CHARS)?;
    Ok(created("venueId", admin::add_venue(&app.db, &name).await?))
}

/// `POST /api/v1/admin/concerts`
pub async fn create_concert(app: &App, body: Vec<u8>) -> Result<Response<Body>, Error> {
    let title = JsonObject::parse(body)?.text("title", MAX_NAME_CHARS)?;
    Ok(created(
        "concertId",
        admin::add_concert(&app.db, &title).await?,
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedSchedule {
    schedule_id: u64,
    seat_ids: Vec<u64>,
}

/// Seats from `seats: [{seatNumber, price}]`, or numbered 1..=seatCount at one `price`.
fn parse_seats(body: &JsonObject) -> Result<Vec<(u64, u64)>, Error> {
    if let Some(items) = body.opt_array("seats")? {
        if items.is_empty() || items.len() as u64 > MAX_SEATS {
            return Err(Error::invalid(
                "seats",
                format!("seats must list 1 to {MAX_SEATS} seats"),
            ));
        }
        let mut seen = HashSet::new();
        return items
            .iter()
            .enumerate()
            .map(|(i, item)| {
                let at = |f: &str| format!("seats[{i}].{f}");
                let seat = JsonObject::element(item, &format!("seats[{i}]"))?;
                let number = seat
                    .opt_positive("seatNumber", u64::from(u32::MAX))
                    .map_err(|_| {
                        Error::invalid(at("seatNumber"), "seatNumber must be a positive integer")
                    })?
                    .ok_or_else(|| Error::invalid(at("seatNumber"), "seatNumber is required"))?;
                let price = seat
                    .opt_positive("price", MAX_PRICE)
                    .map_err(|_| {
                        Error::invalid(at("price"), format!("price must be 1 to {MAX_PRICE}"))
                    })?
                    .ok_or_else(|| Error::invalid(at("price"), "price is required"))?;
                if !seen.insert(number) {
                    return Err(Error::invalid(
                        at("seatNumber"),
                        "seat numbers must be distinct",
                    ));
                }
                Ok((number, price))
            })
            .collect();
    }
    let count = body.opt_positive("seatCount", MAX_SEATS)?.ok_or_else(|| {
        Error::invalid("seatCount", "seatCount (with price) or seats is required")
    })?;
    let price = body
        .opt_positive("price", MAX_PRICE)?
        .ok_or_else(|| Error::invalid("price", "price is required with seatCount"))?;
    Ok((1..=count).map(|n| (n, price)).collect())
}

/// `POST /api/v1/admin/concerts/{concertId}/schedules`
pub async fn create_schedule(
    app: &App,
    concert_id: u64,
    body: Vec<u8>,
) -> Result<Response<Body>, Error> {
    let body = JsonObject::parse(body)?;
    let new = NewSchedule {
        concert_id,
        venue_id: body.id("venueId")?,
        performance_date: body.date("performanceDate")?,
        performance_time: body.time_of_day("performanceTime")?,
        booking_open_at: body.instant("bookingOpenAt")?,
        booking_close_at: body.instant("bookingCloseAt")?,
        seats: parse_seats(&body)?,
    };
    if new.booking_close_at <= new.booking_open_at {
        return Err(Error::invalid(
            "bookingCloseAt",
            "bookingCloseAt must be after bookingOpenAt",
        ));
    }
    let (schedule_id, seat_ids) = admin::add_schedule(&app.hot, &app.db, &new).await?;
    Ok(response::ok(
        StatusCode::CREATED,
        &CreatedSchedule {
            schedule_id,
            seat_ids,
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct QueueView {
    schedule_id: u64,
    #[serde(flatten)]
    settings: QueueSettings,
    waiting: u64,
    active: u64,
    admitted_total: u64,
    held_seats: u64,
    sold_seats: u64,
    /// Once the opening's shuffle of the pre-queue ran: when, and its seed.
    #[serde(skip_serializing_if = "Option::is_none")]
    shuffled_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    shuffle_seed: Option<String>,
}

/// `GET /api/v1/admin/schedules/{scheduleId}/queue`
pub async fn queue_state(app: &App, schedule_id: u64) -> Result<Response<Body>, Error> {
    let (settings, counts, opening) = admin::queue_state(&app.hot, schedule_id).await?;
    let QueueCounts {
        waiting,
        active,
        admitted_total,
        held_seats,
        sold_seats,
    } = counts;
    Ok(response::ok(
        StatusCode::OK,
        &QueueView {
            schedule_id,
            settings,
            waiting,
            active,
            admitted_total,
            held_seats,
            sold_seats,
            shuffled_at: opening.as_ref().map(|o| iso_ms(o.shuffled_at_ms)),
            shuffle_seed: opening.map(|o| o.seed),
        },
    ))
}

/// Applies the fields present in an update body; fails on the first bad one.
fn apply_update(settings: &mut QueueSettings, body: &JsonObject) -> Result<(), Error> {
    let mut any = false;
    for (name, slot) in settings.numeric_mut() {
        let max = match name {
            "preQueueMinutes" => MAX_PRE_QUEUE_MINUTES,
            _ => MAX_SETTING,
        };
        if let Some(v) = body.opt_positive(name, max)? {
            *slot = v;
            any = true;
        }
    }
    if let Some(paused) = body.opt_bool("paused")? {
        settings.paused = paused;
        any = true;
    }
    if let Some(order) = body.opt_string("queueOrder")? {
        settings.queue_order = QueueOrder::parse(order).ok_or_else(|| {
            Error::invalid("queueOrder", "queueOrder must be FIFO or SHUFFLE_AT_OPEN")
        })?;
        any = true;
    }
    if !any {
        return Err(Error::invalid("body", "no queue setting to change"));
    }
    Ok(())
}

/// `PUT /api/v1/admin/schedules/{scheduleId}/queue`
pub async fn update_queue(
    app: &App,
    schedule_id: u64,
    body: Vec<u8>,
) -> Result<Response<Body>, Error> {
    let body = JsonObject::parse(body)?;
    let settings = admin::update_settings(&app.hot, &app.db, schedule_id, |settings| {
        apply_update(settings, &body)
    })
    .await?;
    Ok(response::ok(StatusCode::OK, &settings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_keys_compare_by_content_only() {
        assert!(constant_time_eq(b"dev-admin-key", b"dev-admin-key"));
        assert!(!constant_time_eq(b"dev-admin-kex", b"dev-admin-key"));
        assert!(!constant_time_eq(b"dev-admin-key-longer", b"dev-admin-key"));
        assert!(!constant_time_eq(b"", b"dev-admin-key"));
    }

    fn seats(json: &str) -> Result<Vec<(u64, u64)>, Error> {
        parse_seats(&JsonObject::parse(json.as_bytes().to_vec()).unwrap())
    }

    #[test]
    fn seats_come_from_a_count_or_a_list_and_errors_name_the_element() {
        assert_eq!(
            seats(r#"{"seatCount": 3, "price": 5}"#).unwrap(),
            vec![(1, 5), (2, 5), (3, 5)]
        );
        assert_eq!(
            seats(r#"{"seats": [{"seatNumber": 9, "price": 7}]}"#).unwrap(),
            vec![(9, 7)]
        );
        for (json, field) in [
            (
                r#"{"seats": [{"seatNumber": 1, "price": 5}, {"seatNumber": 1, "price": 5}]}"#,
                "seats[1].seatNumber",
            ),
            (
                r#"{"seats": [{"seatNumber": 1, "price": "5"}]}"#,
                "seats[0].price",
            ),
            (r#"{"seats": []}"#, "seats"),
            (r#"{"seatCount": 3}"#, "price"),
            (r#"{"price": 3}"#, "seatCount"),
        ] {
            match seats(json) {
                Err(Error::InvalidRequest { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    fn update(json: &str) -> Result<QueueSettings, Error> {
        let mut settings = QueueSettings::default();
        apply_update(
            &mut settings,
            &JsonObject::parse(json.as_bytes().to_vec()).unwrap(),
        )?;
        Ok(settings)
    }

    #[test]
    fn updates_change_only_the_fields_given() {
        let s = update(r#"{"maxActiveUsers": 5, "paused": true}"#).unwrap();
        assert_eq!(s.max_active_users, 5);
        assert!(s.paused);
        assert_eq!(s.hold_ttl_seconds, 300);
        let s = update(r#"{"queueOrder": "SHUFFLE_AT_OPEN", "preQueueMinutes": 10}"#).unwrap();
        assert_eq!(
            (s.queue_order, s.pre_queue_minutes),
            (QueueOrder::ShuffleAtOpen, 10)
        );
    }

    #[test]
    fn bad_or_empty_updates_are_refused() {
        for (json, field) in [
            (r#"{"holdTtlSeconds": 0}"#, "holdTtlSeconds"),
            (r#"{"admissionPerSecond": 1.5}"#, "admissionPerSecond"),
            (r#"{"paused": "yes"}"#, "paused"),
            (r#"{"queueOrder": "RANDOM"}"#, "queueOrder"),
            (r#"{"queueOrder": 1}"#, "queueOrder"),
            (r#"{"preQueueMinutes": 0}"#, "preQueueMinutes"),
            (r#"{"preQueueMinutes": 1441}"#, "preQueueMinutes"),
            (r#"{"unknown": 1}"#, "body"),
        ] {
            match update(json) {
                Err(Error::InvalidRequest { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }
}
