//! Catalogue reads on the real server: schedules of a concert with
//! live availability, a schedule's AVAILABLE seats, and every error code of both.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{OPEN_NOW, TestApp, Window, bearer, eventually, spawn_all};
use redis::AsyncCommands;
use seatrush::redis::keys::ScheduleKeys;
use simd_json::prelude::*;

const LATER: Window = Window {
    open_in_secs: 3600,
    close_in_secs: 7200,
};

/// A concert with schedules on 2026-12-24 (open now, 5 seats), 2026-12-25 (opens later,
/// 3 seats) and 2026-12-26 (open now, 4 seats); returns (concert, [schedules]).
async fn concert_with_three_schedules(app: &TestApp) -> (u64, [u64; 3]) {
    let (venue, concert) = (app.create_venue().await, app.create_concert().await);
    let a = app
        .create_schedule_for(concert, venue, "2026-12-24", OPEN_NOW, 5)
        .await;
    let b = app
        .create_schedule_for(concert, venue, "2026-12-25", LATER, 3)
        .await;
    let c = app
        .create_schedule_for(concert, venue, "2026-12-26", OPEN_NOW, 4)
        .await;
    (concert, [a, b, c])
}

/// Takes one of the schedule's AVAILABLE seats in Redis (as a hold would), deleting its
/// seat-state version as every write outside the scripts does; returns its id.
async fn take_a_seat(app: &TestApp, schedule: u64) -> u64 {
    let k = ScheduleKeys::new(schedule);
    let taken: Vec<(u64, f64)> = app.redis().zpopmin(&k.avail, 1).await.unwrap();
    let _: () = app.redis().hdel(&k.stats, "seatVersion").await.unwrap();
    taken[0].0
}

/// The schedule's seat-state version (`lua/lib/holds.lua`), if it has one.
async fn seat_version(app: &TestApp, schedule: u64) -> Option<u64> {
    let k = ScheduleKeys::new(schedule);
    app.redis().hget(&k.stats, "seatVersion").await.unwrap()
}

/// Lists the schedule's seats with `tag` in If-None-Match, asserts that the listing changed
/// and shows exactly the seats Redis has AVAILABLE, and returns its tag.
async fn listing_changed(
    app: &TestApp,
    (path, token): (&str, &str),
    schedule: u64,
    tag: &str,
    what: &str,
) -> String {
    let rsp = app
        .get(path, &[("queue-token", token), ("if-none-match", tag)])
        .await;
    assert_eq!(rsp.status, 200, "{what}: a new listing");
    let listed: HashSet<u64> = rsp.seat_ids().into_iter().collect();
    assert_eq!(listed, app.available_seats(schedule).await, "{what}");
    rsp.etag()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_are_listed_with_live_availability_and_status() {
    let app = TestApp::spawn().await;
    let (concert, [a, b, c]) = concert_with_three_schedules(&app).await;
    // Any live token will do, even one for another concert's schedule.
    let (_, elsewhere) = app.create_schedule(OPEN_NOW, 1).await;
    let token = app.active_token(elsewhere).await;
    // A seat taken in Redis is no longer available.
    let taken: u64 = take_a_seat(&app, c).await;
    assert!(taken > 0);

    let rsp = app
        .get(
            &format!("/api/v1/concerts/{concert}/schedules"),
            &[("queue-token", &token)],
        )
        .await;
    rsp.assert_ok();
    let list = rsp.data().as_array().unwrap();
    let got: Vec<(u64, &str, u64, &str)> = list
        .iter()
        .map(|s| {
            (
                s["scheduleId"].as_u64().unwrap(),
                s["performanceDate"].as_str().unwrap(),
                s["availableSeats"].as_u64().unwrap(),
                s["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (a, "2026-12-24", 5, "OPEN"),
            (b, "2026-12-25", 3, "UPCOMING"),
            (c, "2026-12-26", 3, "OPEN")
        ]
    );
    let first = &list[0];
    assert_eq!(first["concertId"].as_u64(), Some(concert));
    assert_eq!(first["concertTitle"].as_str(), Some("Show"));
    assert_eq!(first["venueName"].as_str(), Some("Hall"));
    assert_eq!(first["performanceTime"].as_str(), Some("19:00:00"));
    assert!(first["bookingOpenAt"].as_str().unwrap().ends_with('Z'));
    assert!(first["venueId"].as_u64().is_some() && first["bookingCloseAt"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_can_be_filtered_by_inclusive_dates() {
    let app = TestApp::spawn().await;
    let (concert, [a, b, c]) = concert_with_three_schedules(&app).await;
    let token = app.active_token(a).await;
    for (query, expected) in [
        ("fromDate=2026-12-25", vec![b, c]),
        ("toDate=2026-12-25", vec![a, b]),
        ("fromDate=2026-12-25&toDate=2026-12-25", vec![b]),
        ("fromDate=2027-01-01", vec![]),
    ] {
        let rsp = app
            .get(
                &format!("/api/v1/concerts/{concert}/schedules?{query}"),
                &[("queue-token", &token)],
            )
            .await;
        let ids: Vec<u64> = rsp
            .data()
            .as_array()
            .unwrap_or_else(|| panic!("{query}: {:?}", rsp.body))
            .iter()
            .map(|s| s["scheduleId"].as_u64().unwrap())
            .collect();
        assert_eq!(ids, expected, "{query}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedule_listing_errors() {
    let app = TestApp::spawn().await;
    let (concert, [a, ..]) = concert_with_three_schedules(&app).await;
    let (user, token) = app.active_user(a).await;
    let me = bearer(user);
    let path = format!("/api/v1/concerts/{concert}/schedules");
    app.get(&path, &[("authorization", &me)])
        .await
        .assert_error(401, "QUEUE_TOKEN_MISSING");
    let unknown = uuid::Uuid::new_v4().to_string();
    app.get(&path, &[("authorization", &me), ("queue-token", &unknown)])
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    app.get(
        "/api/v1/concerts/999999999/schedules",
        &[("queue-token", &token)],
    )
    .await
    .assert_error(404, "CONCERT_NOT_FOUND");
    for (path, field) in [
        ("/api/v1/concerts/abc/schedules".to_string(), "concertId"),
        (
            format!("{path}?fromDate=2026-12-26&toDate=2026-12-24"),
            "fromDate",
        ),
        (format!("{path}?fromDate=24-12-2026"), "fromDate"),
        (format!("{path}?toDate=2026-13-01"), "toDate"),
    ] {
        let rsp = app.get(&path, &[("queue-token", &token)]).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_seats_are_listed_for_an_active_token_of_the_schedule() {
    let app = TestApp::spawn().await;
    let (concert, [a, ..]) = concert_with_three_schedules(&app).await;
    let token = app.active_token(a).await;
    let taken: u64 = take_a_seat(&app, a).await;

    let rsp = app
        .get(
            &format!("/api/v1/concerts/{concert}/schedules/{a}/seats"),
            &[("queue-token", &token)],
        )
        .await;
    rsp.assert_ok();
    let info = &rsp.data()["scheduleInfo"];
    assert_eq!(info["scheduleId"].as_u64(), Some(a));
    assert_eq!(info["concertTitle"].as_str(), Some("Show"));
    assert_eq!(info["performanceDate"].as_str(), Some("2026-12-24"));
    assert_eq!(info["performanceTime"].as_str(), Some("19:00:00"));
    assert_eq!(info["venueName"].as_str(), Some("Hall"));
    let seats = rsp.data()["seats"].as_array().unwrap();
    assert_eq!(seats.len(), 4, "five seats, one taken");
    let numbers: Vec<u64> = seats
        .iter()
        .map(|s| s["seatNumber"].as_u64().unwrap())
        .collect();
    assert!(
        numbers.windows(2).all(|w| w[0] < w[1]),
        "by seat number: {numbers:?}"
    );
    for seat in seats {
        assert_ne!(seat["seatId"].as_u64(), Some(taken));
        assert_eq!(seat["price"].as_u64(), Some(50_000));
        assert_eq!(seat["status"].as_str(), Some("AVAILABLE"));
    }
}

/// `?view=map`: every seat with its status, AVAILABLE, HELD or SOLD; tagged for 304s like the
/// listing, and a seat sold from a hold makes a new map though the AVAILABLE seats are the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seat_map_shows_every_seat_held_sold_or_available() {
    let app = TestApp::spawn().await;
    let (concert, schedule) = app.create_schedule(OPEN_NOW, 4).await;
    let seats = app.seats_of(schedule).await;
    let (holder, holder_token) = app.active_user(schedule).await;
    let (buyer, buyer_token) = app.active_user(schedule).await;
    app.hold(&holder_token, schedule, holder, &seats[..1])
        .await
        .assert_created();
    let bought = app
        .hold(&buyer_token, schedule, buyer, &seats[1..2])
        .await
        .u64("reservationId");
    let path = format!("/api/v1/concerts/{concert}/schedules/{schedule}/seats");
    let map_path = format!("{path}?view=map");
    let map = app.get(&map_path, &[("queue-token", &buyer_token)]).await;
    map.assert_ok();
    let expect = |second: &str| {
        vec![
            (seats[0], "HELD".to_string()),
            (seats[1], second.to_string()),
            (seats[2], "AVAILABLE".to_string()),
            (seats[3], "AVAILABLE".to_string()),
        ]
    };
    assert_eq!(map.seat_statuses(), expect("HELD"));
    assert_eq!(map.data()["seats"][0]["price"].as_u64(), Some(50_000));
    let map_tag = map.etag();
    let listing = app.get(&path, &[("queue-token", &buyer_token)]).await;
    assert_eq!(
        listing.seat_statuses().len(),
        2,
        "the listing keeps the AVAILABLE seats only"
    );
    let listing_tag = listing.etag();
    assert_ne!(listing_tag, map_tag);
    let unchanged = app
        .get(
            &map_path,
            &[("queue-token", &buyer_token), ("if-none-match", &map_tag)],
        )
        .await;
    assert_eq!(unchanged.status, 304);
    // Listings read in one batch with maps keep the listing's tag: it shows no held seat.
    let mixed = spawn_all((0..30).map(|i| {
        let (app, token) = (app.clone(), holder_token.clone());
        let path = if i % 2 == 0 {
            path.clone()
        } else {
            map_path.clone()
        };
        async move { (i % 2 == 0, app.get(&path, &[("queue-token", &token)]).await) }
    }))
    .await;
    for (is_listing, rsp) in mixed {
        let expected = if is_listing { &listing_tag } else { &map_tag };
        assert_eq!(rsp.etag(), expected.as_str());
    }

    app.charge(&buyer_token, buyer, 50_000).await.assert_ok();
    app.pay(&buyer_token, buyer, bought).await.assert_created();
    // The holder's token still reads: the buyer's ended with the payment.
    let sold = app
        .get(
            &map_path,
            &[("queue-token", &holder_token), ("if-none-match", &map_tag)],
        )
        .await;
    assert_eq!(sold.status, 200, "the map changed");
    assert_eq!(sold.seat_statuses(), expect("SOLD"));
    let same_listing = app
        .get(
            &path,
            &[
                ("queue-token", &holder_token),
                ("if-none-match", &listing_tag),
            ],
        )
        .await;
    assert_eq!(
        same_listing.status, 304,
        "the AVAILABLE seats did not change"
    );

    let bad = app
        .get(
            &format!("{path}?view=grid"),
            &[("queue-token", &holder_token)],
        )
        .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.body["error"]["details"]["field"].as_str(), Some("view"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_is_gzipped_when_asked_and_tagged_for_304s() {
    use std::io::Read;
    let app = TestApp::spawn().await;
    let (concert, schedule) = app.create_schedule(OPEN_NOW, 200).await;
    let seats = app.seats_of(schedule).await;
    let (user, token) = app.active_user(schedule).await;
    let path = format!("/api/v1/concerts/{concert}/schedules/{schedule}/seats");
    let get = |extra: Vec<(&'static str, String)>| {
        let (app, path, token) = (&app, path.clone(), token.clone());
        async move {
            let mut headers = vec![("queue-token", token)];
            headers.extend(extra);
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.get(&path, &headers).await
        }
    };
    let plain = get(vec![]).await;
    plain.assert_ok();
    let plain_tag = plain.etag();
    assert_eq!(plain.headers["vary"], "Accept-Encoding");
    assert!(!plain.headers.contains_key("content-encoding"));

    let zipped = get(vec![("accept-encoding", "gzip, br".into())]).await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.headers["content-encoding"], "gzip");
    let zipped_tag = zipped.etag();
    assert_ne!(zipped_tag, plain_tag, "one tag per content coding");
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(&zipped.raw[..])
        .read_to_end(&mut inflated)
        .unwrap();
    assert_eq!(inflated, plain.raw, "the same body");
    assert!(
        zipped.raw.len() * 4 < plain.raw.len(),
        "{} vs {}",
        zipped.raw.len(),
        plain.raw.len()
    );

    // Unchanged: 304 with no body, for either coding's tag.
    let again = get(vec![("if-none-match", plain_tag.clone())]).await;
    assert_eq!(again.status, 304);
    assert!(again.raw.is_empty());
    assert_eq!(again.etag(), plain_tag);
    let again = get(vec![
        ("accept-encoding", "gzip".into()),
        ("if-none-match", format!("\"other\", {zipped_tag}")),
    ])
    .await;
    assert_eq!(again.status, 304);
    // A seat held: a new tag, and the old one gets the whole listing.
    app.hold(&token, schedule, user, &seats[..1])
        .await
        .assert_created();
    let changed = get(vec![("if-none-match", plain_tag.clone())]).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.etag(), plain_tag);
    assert_eq!(changed.data()["seats"].as_array().unwrap().len(), 199);
}

/// A listing read right after any change of the seats shows it: holds by seat and by
/// quantity, a cancel, a user leaving the queue with a hold, an expiry. (Payments, which
/// change the seat map only, are in the map's test above.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listing_follows_every_change_of_the_seats() {
    let app = TestApp::spawn().await;
    let (concert, schedule) = app.create_schedule(OPEN_NOW, 8).await;
    let seats = app.seats_of(schedule).await;
    let (user, token) = app.active_user(schedule).await;
    let (leaver, leaver_token) = app.active_user(schedule).await;
    let path = format!("/api/v1/concerts/{concert}/schedules/{schedule}/seats");
    let reader = (path.as_str(), token.as_str());
    let first = app.get(&path, &[("queue-token", &token)]).await;
    assert_eq!(first.seat_ids().len(), 8);
    let tag = first.etag();

    let by_seat = app.hold(&token, schedule, user, &seats[..1]).await;
    let tag = listing_changed(&app, reader, schedule, &tag, "a hold by seat").await;
    let body = format!(r#"{{"scheduleId":{schedule},"quantity":2,"userId":{user}}}"#);
    app.post("/api/v1/reservations", &[("queue-token", &token)], &body)
        .await
        .assert_created();
    let tag = listing_changed(&app, reader, schedule, &tag, "a hold by quantity").await;
    let cancel = format!("/api/v1/reservations/{}", by_seat.u64("reservationId"));
    app.request(
        hyper::Method::DELETE,
        &cancel,
        &[("queue-token", &token)],
        None,
    )
    .await
    .assert_ok();
    let tag = listing_changed(&app, reader, schedule, &tag, "a cancel").await;
    app.hold(&leaver_token, schedule, leaver, &seats[6..7])
        .await
        .assert_created();
    let tag = listing_changed(&app, reader, schedule, &tag, "the leaver's hold").await;
    app.leave(&leaver_token).await.assert_ok();
    let tag = listing_changed(&app, reader, schedule, &tag, "leaving the queue").await;

    app.set_queue(schedule, r#"{"holdTtlSeconds": 1}"#).await;
    app.hold(&token, schedule, user, &seats[7..])
        .await
        .assert_created();
    let tag = listing_changed(&app, reader, schedule, &tag, "a hold of 1 s").await;
    eventually(Duration::from_secs(5), "the hold to expire", || async {
        app.is_available(schedule, seats[7]).await.then_some(())
    })
    .await;
    listing_changed(&app, reader, schedule, &tag, "an expiry").await;
}

/// A listing answers from the seats it last read while the schedule's seat-state version
/// stands (Redis then checks the token only), and reads them again once it moves: so a
/// change made outside the scripts, which do not move it, shows only once the version is
/// deleted, as every such writer does. Seats loaded outside the scripts get a version at
/// their first listing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_seats_answer_until_the_seat_state_version_moves() {
    let app = TestApp::spawn().await;
    let (concert, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    assert_eq!(
        seat_version(&app, schedule).await,
        None,
        "loaded outside a script"
    );
    let token = app.active_token(schedule).await;
    let path = format!("/api/v1/concerts/{concert}/schedules/{schedule}/seats");
    let kept = app.get(&path, &[("queue-token", &token)]).await;
    assert_eq!(kept.seat_ids().len(), 5);
    assert!(
        seat_version(&app, schedule).await.is_some(),
        "named by the listing"
    );
    let tag = kept.etag();

    let k = ScheduleKeys::new(schedule);
    let _: Vec<(u64, f64)> = app.redis().zpopmin(&k.avail, 1).await.unwrap();
    let headers = [
        ("queue-token", token.as_str()),
        ("if-none-match", tag.as_str()),
    ];
    let unread = app.get(&path, &headers).await;
    assert_eq!(unread.status, 304, "the kept seats answered");
    let _: () = app.redis().hdel(&k.stats, "seatVersion").await.unwrap();
    let read = app.get(&path, &headers).await;
    assert_eq!(read.status, 200, "read again");
    assert_eq!(read.seat_ids().len(), 4);
}

/// The seat-state version never repeats: a Redis that comes back older (its seats and version
/// as they were before a hold) is listed as it is, not as the instance last read it; and a
/// version ahead of Redis's clock still moves forwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_back_older_is_listed_as_it_is() {
    let app = TestApp::spawn().await;
    let (concert, schedule) = app.create_schedule(OPEN_NOW, 4).await;
    let seats = app.seats_of(schedule).await;
    let (user, token) = app.active_user(schedule).await;
    let path = format!("/api/v1/concerts/{concert}/schedules/{schedule}/seats");
    let reader = (path.as_str(), token.as_str());
    app.hold(&token, schedule, user, &seats[..1])
        .await
        .assert_created();
    let before = app.get(&path, &[("queue-token", &token)]).await;
    let before_tag = before.etag();
    let k = ScheduleKeys::new(schedule);
    let keys = [
        &k.avail,
        &k.stats,
        &k.res,
        &k.holds,
        &k.userseats,
        &k.userholds,
    ];
    let mut snapshot = Vec::new();
    for key in keys {
        let dump: Option<Vec<u8>> = redis::cmd("DUMP")
            .arg(key)
            .query_async(&mut app.redis())
            .await
            .unwrap();
        snapshot.push(dump.expect("every key exists after a hold"));
    }
    let version_before = seat_version(&app, schedule).await.unwrap();

    app.hold(&token, schedule, user, &seats[1..2])
        .await
        .assert_created();
    let tag = listing_changed(&app, reader, schedule, &before_tag, "a second hold").await;
    assert!(seat_version(&app, schedule).await.unwrap() > version_before);
    for (key, dump) in keys.iter().zip(&snapshot) {
        let _: () = redis::cmd("RESTORE")
            .arg(key)
            .arg(0)
            .arg(dump)
            .arg("REPLACE")
            .query_async(&mut app.redis())
            .await
            .unwrap();
    }
    let older = listing_changed(&app, reader, schedule, &tag, "Redis back older").await;
    assert_eq!(
        older, before_tag,
        "the seats as they were before the second hold"
    );

    let ahead = 4_000_000_000_000_000u64; // µs since the epoch: in 2096
    let _: () = app
        .redis()
        .hset(&k.stats, "seatVersion", ahead)
        .await
        .unwrap();
    app.hold(&token, schedule, user, &seats[2..3])
        .await
        .assert_created();
    assert_eq!(seat_version(&app, schedule).await, Some(ahead + 1));
    listing_changed(&app, reader, schedule, &older, "a hold after the clock").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seat_listing_errors() {
    let app = TestApp::spawn().await;
    let (concert, [a, _, c]) = concert_with_three_schedules(&app).await;
    let (owner, active) = app.active_user(a).await;
    let me = bearer(owner);
    let seats = |concert: u64, schedule: u64| {
        format!("/api/v1/concerts/{concert}/schedules/{schedule}/seats")
    };

    app.get(&seats(concert, a), &[("authorization", &me)])
        .await
        .assert_error(401, "QUEUE_TOKEN_MISSING");
    app.get(
        &seats(concert, a),
        &[("authorization", &me), ("queue-token", "not-a-token")],
    )
    .await
    .assert_error(401, "QUEUE_TOKEN_INVALID");
    app.get(&seats(concert, c), &[("queue-token", &active)])
        .await
        .assert_error(401, "QUEUE_TOKEN_WRONG_SCHEDULE");

    app.set_queue(c, r#"{"paused": true}"#).await;
    let user = app.create_user().await;
    let waiting = app.issue(user, c).await;
    assert_eq!(waiting.str("status"), "WAITING");
    app.get(
        &seats(concert, c),
        &[("queue-token", &waiting.str("token"))],
    )
    .await
    .assert_error(401, "QUEUE_TOKEN_NOT_ACTIVE");

    app.get(&seats(999_999_999, a), &[("queue-token", &active)])
        .await
        .assert_error(404, "CONCERT_NOT_FOUND");
    let other_concert = app.create_concert().await;
    app.get(&seats(other_concert, a), &[("queue-token", &active)])
        .await
        .assert_error(404, "SCHEDULE_NOT_FOUND");
    for (path, field) in [
        (
            format!("/api/v1/concerts/x/schedules/{a}/seats"),
            "concertId",
        ),
        (
            format!("/api/v1/concerts/{concert}/schedules/0/seats"),
            "scheduleId",
        ),
    ] {
        let rsp = app.get(&path, &[("queue-token", &active)]).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_listings_each_get_their_own_token_checked() {
    let app = TestApp::spawn().await;
    let (concert, [a, ..]) = concert_with_three_schedules(&app).await;
    let active = app.active_token(a).await;
    let (_, other) = app.create_schedule(OPEN_NOW, 1).await;
    let elsewhere = app.active_token(other).await;
    app.set_queue(a, r#"{"paused": true}"#).await;
    let user = app.create_user().await;
    let waiting = app.issue(user, a).await.str("token");
    // Listings of one schedule share script calls; each must still be judged on its own.
    let cases = [
        (active, 200, ""),
        (waiting, 401, "QUEUE_TOKEN_NOT_ACTIVE"),
        (elsewhere, 401, "QUEUE_TOKEN_WRONG_SCHEDULE"),
    ];
    let path = format!("/api/v1/concerts/{concert}/schedules/{a}/seats");
    let results = spawn_all((0..60).map(|i| {
        let (app, path) = (app.clone(), path.clone());
        let (token, status, code) = cases[i % 3].clone();
        async move {
            let rsp = app.get(&path, &[("queue-token", &token)]).await;
            (
                rsp.status.as_u16(),
                rsp.code().to_string(),
                status,
                code,
                rsp,
            )
        }
    }))
    .await;
    for (got, code, status, expected, rsp) in results {
        assert_eq!((got, code.as_str()), (status, expected), "{:?}", rsp.body);
        if got == 200 {
            assert_eq!(rsp.data()["seats"].as_array().map(|s| s.len()), Some(5));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catalogue_reads_go_to_the_primary_when_the_replica_is_unreadable() {
    use seatrush::catalogue::Catalogue;
    use seatrush::health::Health;
    let app = TestApp::spawn().await;
    let (concert, [a, ..]) = concert_with_three_schedules(&app).await;
    let fallbacks = || {
        let text = app.app.metrics.render();
        text.lines()
            .find(|l| {
                l.starts_with(r#"seatrush_replica_fallbacks_total{reason="replica_unreadable"}"#)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = fallbacks();
    // A health state that has not seen the replica answer: reads must not go there.
    let unprobed = std::sync::Arc::new(Health::default());
    let catalogue = Catalogue::new(app.app.db.clone(), unprobed);
    let found = catalogue.concert(concert).await.unwrap().unwrap();
    assert_eq!(found.schedules.len(), 3);
    let seats = catalogue.seats(a).await.unwrap().unwrap();
    assert_eq!(seats.len(), 5);
    assert!(fallbacks() >= before + 2, "each primary read is counted");
}

/// A crowd reading a schedule's seats while they are not in memory makes one MySQL read: one
/// request reads them, the others wait for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crowd_reading_a_cold_schedule_makes_one_query() {
    use seatrush::catalogue::Catalogue;
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 2000).await;
    let catalogue = std::sync::Arc::new(Catalogue::new(app.app.db.clone(), app.app.health.clone()));
    let counts = spawn_all((0..32).map(|_| {
        let catalogue = catalogue.clone();
        async move { catalogue.seats(schedule).await.unwrap().unwrap().len() }
    }))
    .await;
    assert!(counts.iter().all(|&n| n == 2000), "{counts:?}");
    assert_eq!(catalogue.reads(), 1);
}

/// The user directory asks the primary about users it has not seen; while the primary
/// cannot answer, a user the replica has still exists (users are never deleted), and one it
/// lacks is an error, not a "no".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_directory_finds_users_on_the_replica_while_the_primary_is_down() {
    use seatrush::mysql::Db;
    use seatrush::users::UserDirectory;
    let app = TestApp::spawn().await;
    let user = app.create_user().await;
    let config = TestApp::config();
    let primary_down = Db::new(
        "mysql://seatrush:seatrush@127.0.0.1:1/seatrush_test",
        &config.mysql_replica_url,
    )
    .unwrap();
    let directory = UserDirectory::default();
    eventually(
        Duration::from_secs(10),
        "the replica to have the user",
        || {
            let (directory, db) = (&directory, &primary_down);
            async move { directory.exists(db, user).await.ok().filter(|&found| found) }
        },
    )
    .await;
    assert!(
        directory
            .exists(&primary_down, u64::MAX >> 20)
            .await
            .is_err(),
        "a user the replica lacks may be too new for it: that is an error, not a no"
    );
}

/// A replica that cannot answer at start-up (down, or behind a database migrated a moment
/// ago) does not stop an instance from starting: users are found through the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_starts_while_its_replica_cannot_answer() {
    let mut config = TestApp::config();
    let (server, _) = config.mysql_replica_url.rsplit_once('/').unwrap();
    config.mysql_replica_url = format!("{server}/seatrush_never_replicated");
    let app = TestApp::spawn_with(config).await;
    let user = app.create_user().await;
    let directory = seatrush::users::UserDirectory::default();
    assert!(directory.exists(&app.app.db, user).await.unwrap());
}
