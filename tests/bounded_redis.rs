//! Nothing a client does grows Redis without bound: records of ended holds leave Redis once
//! MySQL has them (reads of them then come from MySQL), and refused requests store nothing.
//! The two 100 000-request loops run on a Redis of their own (`make test` runs them once,
//! with `--ignored`: they take about a minute in a debug build).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::own_redis::OwnRedis;
use common::{Rsp, TestApp, bearer, eventually, spawn_all};
use redis::AsyncCommands;
use seatrush::redis::keys::ScheduleKeys;

/// An app whose ended records leave Redis as soon as MySQL has them.
async fn app_keeping_nothing(config: Option<seatrush::config::Config>) -> TestApp {
    let mut config = config.unwrap_or_else(TestApp::config);
    config.ended_record_keep = Duration::ZERO;
    TestApp::spawn_with(config).await
}

async fn in_redis(app: &TestApp, id: u64) -> bool {
    let k = ScheduleKeys::new(id >> 32);
    app.redis().hexists(&k.res, id).await.unwrap()
}

async fn left_redis(app: &TestApp, id: u64) {
    eventually(
        Duration::from_secs(10),
        "the record leaves Redis",
        || async { (!in_redis(app, id).await).then_some(()) },
    )
    .await;
}

async fn cancel(app: &TestApp, path: &str, token: &str) -> Rsp {
    app.request(hyper::Method::DELETE, path, &[("queue-token", token)], None)
        .await
}

async fn pay(app: &TestApp, token: &str, user: u64, id: u64) -> Rsp {
    app.post(
        "/api/v1/payments",
        &[("queue-token", token)],
        &format!(r#"{{"reservationId": {id}, "paymentMethod": "BALANCE", "userId": {user}}}"#),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_holds_leave_redis_and_are_then_read_from_mysql() {
    let app = app_keeping_nothing(None).await;
    let (schedule, seats) = app.open_schedule(4).await;
    let (user, token) = app.active_user(schedule).await;
    let (other, other_token) = app.active_user(schedule).await;

    let held = app.hold(&token, schedule, user, &seats[..1]).await;
    held.assert_created();
    let id = held.u64("reservationId");
    let path = format!("/api/v1/reservations/{id}");
    let cancelled = cancel(&app, &path, &token).await;
    cancelled.assert_ok();
    left_redis(&app, id).await;

    // Read from MySQL: the same reservation as the cancel answered.
    let read = app.get(&path, &[("queue-token", &token)]).await;
    read.assert_ok();
    assert_eq!(read.data(), cancelled.data());
    cancel(&app, &path, &token)
        .await
        .assert_error(422, "RESERVATION_NOT_CANCELLABLE");
    pay(&app, &token, user, id)
        .await
        .assert_error(422, "RESERVATION_NOT_PAYABLE");
    app.get(&path, &[("queue-token", &other_token)])
        .await
        .assert_error(403, "FORBIDDEN");
    cancel(&app, &path, &other_token)
        .await
        .assert_error(403, "FORBIDDEN");
    let never = format!("/api/v1/reservations/{}", schedule << 32 | 999_999);
    app.get(&never, &[("queue-token", &token)])
        .await
        .assert_error(404, "RESERVATION_NOT_FOUND");

    // An expired hold: paying it after its record left Redis is 409 RESERVATION_EXPIRED.
    app.set_queue(schedule, r#"{"holdTtlSeconds": 1}"#).await;
    let held = app.hold(&other_token, schedule, other, &seats[1..2]).await;
    let expired = held.u64("reservationId");
    left_redis(&app, expired).await;
    pay(&app, &other_token, other, expired)
        .await
        .assert_error(409, "RESERVATION_EXPIRED");
    let read = app
        .get(
            &format!("/api/v1/reservations/{expired}"),
            &[("queue-token", &other_token)],
        )
        .await;
    assert_eq!(read.str("status"), "EXPIRED");
}

/// The rule in the script itself, on the quiet Redis where no loop runs: a record waits
/// while an outbox entry older than its ending is unflushed, and for the keep period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_waits_for_the_outbox_and_the_keep_period() {
    let quiet = TestApp::quiet().await;
    let schedule = 4_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u64;
    let k = ScheduleKeys::new(schedule);
    let mut redis = quiet.hot.conn();
    let unflushed: String = redis
        .xadd(&k.outbox, "*", &[("type", "test")])
        .await
        .unwrap();
    let entry_ms: u64 = unflushed.split('-').next().unwrap().parse().unwrap();
    let id = schedule << 32 | 1;
    let _: () = redis.hset(&k.res, id, "record").await.unwrap();
    let _: () = redis.zadd(&k.rended, id, entry_ms + 1).await.unwrap();
    let tick = |keep: Duration| {
        let quiet = quiet.clone();
        async move {
            quiet
                .hot
                .expire_holds(schedule, Duration::from_secs(60), keep)
                .await
                .unwrap();
        }
    };
    tick(Duration::ZERO).await;
    let here = |redis: &mut seatrush::redis::RedisConn| {
        let (mut redis, res) = (redis.clone(), k.res.clone());
        async move { redis.hexists::<_, _, bool>(res, id).await.unwrap() }
    };
    assert!(here(&mut redis).await, "the outbox is not flushed");
    let _: () = redis.xdel(&k.outbox, &[&unflushed]).await.unwrap();
    tick(Duration::from_secs(3600)).await;
    assert!(here(&mut redis).await, "kept for an hour");
    // Ended a millisecond after the entry: once Redis's clock has passed that, the record
    // is flushed and old enough (the steps above may all run within one millisecond).
    eventually(Duration::from_secs(2), "flushed and old enough", || {
        let mut redis = redis.clone();
        async move {
            tick(Duration::ZERO).await;
            (!here(&mut redis).await).then_some(())
        }
    })
    .await;
    let left: u64 = redis.zcard(&k.rended).await.unwrap();
    assert_eq!(left, 0);
}

async fn used_memory(redis: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(redis)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Runs `total` calls of `step` from `tasks` tasks; `step` gets the task's index.
async fn loop_of<F, Fut>(total: u64, tasks: u64, step: F) -> Duration
where
    F: Fn(u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    spawn_all((0..tasks).map(|task| {
        let (done, step) = (done.clone(), step.clone());
        async move {
            while done.fetch_add(1, Ordering::Relaxed) < total {
                step(task).await;
            }
        }
    }))
    .await;
    started.elapsed()
}

/// The bound stated in the README: what Redis may keep after the loops, once the outbox has
/// drained (allocator and hash-table slack, the schedule's fixed keys).
const GROWTH_BOUND: i64 = 256 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "two loops of 100 000 requests: run once by make test"]
async fn a_hundred_thousand_holds_and_refusals_leave_redis_as_it_was() {
    let own = OwnRedis::start("everysec");
    let mut config = TestApp::config();
    config.redis_url = own.url();
    common::own_database(&mut config, "seatrush_bounded_redis").await;
    let app = app_keeping_nothing(Some(config)).await;
    let (schedule, seats) = app.open_schedule(64).await;
    app.set_queue(
        schedule,
        r#"{"maxSeatsPerUser": 1000, "userRequestsPerSecond": 100000000}"#,
    )
    .await;
    let (user, token) = app.active_user(schedule).await;
    let mut redis = redis::Client::open(own.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let k = ScheduleKeys::new(schedule);
    let hold_and_cancel = {
        let (app, token, seats) = (app.clone(), token.clone(), seats.clone());
        move |task: u64| {
            let (app, token, seat) = (app.clone(), token.clone(), seats[task as usize]);
            async move {
                let held = app.hold(&token, schedule, user, &[seat]).await;
                held.assert_created();
                let path = format!("/api/v1/reservations/{}", held.u64("reservationId"));
                cancel(&app, &path, &token).await.assert_ok();
            }
        }
    };
    // A warm-up, so the hashes and scripts exist before the first measurement.
    loop_of(200, 32, hold_and_cancel.clone()).await;
    let before = settled(&redis, &k, 0).await;
    let took = loop_of(100_000, 32, hold_and_cancel).await;
    let after_holds = settled(&redis, &k, 0).await;
    println!(
        "100 000 holds and cancels by one user in {:.1} s: Redis {before} -> {after_holds} bytes",
        took.as_secs_f64()
    );
    assert!(
        after_holds - before <= GROWTH_BOUND,
        "grew {} bytes",
        after_holds - before
    );

    // Refused requests, each with a fresh Idempotency-Key: another user paying this user's
    // hold (403) and a token that has ended (401). None is kept (nor are 429s: see
    // tests/rate_limits.rs).
    let (intruder, intruder_token) = app.active_user(schedule).await;
    let victims_hold = app.hold(&token, schedule, user, &seats[..1]).await;
    let victims_hold = victims_hold.u64("reservationId");
    let (_, elsewhere) = app.create_schedule(common::OPEN_NOW, 1).await;
    app.set_queue(elsewhere, r#"{"activeTtlSeconds": 1}"#).await;
    let ended = app.active_user(elsewhere).await;
    eventually(
        Duration::from_secs(5),
        "the other token to expire",
        || async { (app.me(&ended.1).await.status == 401).then_some(()) },
    )
    .await;
    let before = settled(&redis, &k, 1).await;
    let key = Arc::new(AtomicU64::new(0));
    let refused = {
        let (app, intruder_token, ended) = (app.clone(), intruder_token.clone(), ended.clone());
        move |task: u64| {
            let (app, intruder_token, ended) = (app.clone(), intruder_token.clone(), ended.clone());
            let n = key.fetch_add(1, Ordering::Relaxed);
            async move {
                let fresh = format!("refused-{n}");
                let rsp = if task.is_multiple_of(2) {
                    let body = format!(
                        r#"{{"reservationId": {victims_hold}, "paymentMethod": "BALANCE", "userId": {intruder}}}"#
                    );
                    app.post(
                        "/api/v1/payments",
                        &[
                            ("queue-token", &intruder_token),
                            ("idempotency-key", &fresh),
                        ],
                        &body,
                    )
                    .await
                } else {
                    let body = format!(
                        r#"{{"scheduleId": {elsewhere}, "seatIds": [1], "userId": {}}}"#,
                        ended.0
                    );
                    let auth = bearer(ended.0);
                    app.post(
                        "/api/v1/reservations",
                        &[
                            ("queue-token", &ended.1),
                            ("idempotency-key", &fresh),
                            ("authorization", &auth),
                        ],
                        &body,
                    )
                    .await
                };
                assert!([401, 403].contains(&rsp.status.as_u16()), "{:?}", rsp.body);
            }
        }
    };
    let took = loop_of(100_000, 32, refused).await;
    let after = settled(&redis, &k, 1).await;
    println!(
        "100 000 refused requests with fresh keys in {:.1} s: Redis {before} -> {after} bytes",
        took.as_secs_f64()
    );
    assert!(
        after - before <= GROWTH_BOUND,
        "grew {} bytes",
        after - before
    );
    let kept: Vec<String> = redis.keys("*:idem:*").await.unwrap();
    assert!(kept.is_empty(), "no refusal was kept: {kept:?}");
}

/// `used_memory` once the outbox has drained, the request rates are gone and `records`
/// reservation records are left (the open holds). A loop of 100 000 requests can leave tens
/// of thousands of outbox entries for the flusher, which takes a minute or more on two
/// cores: the wait fails when nothing has moved for 30 s, not after a fixed time.
async fn settled(redis: &redis::aio::MultiplexedConnection, k: &ScheduleKeys, records: u64) -> i64 {
    let mut redis = redis.clone();
    let mut last = None;
    let mut moved = Instant::now();
    loop {
        let outbox: u64 = redis.xlen(&k.outbox).await.unwrap();
        let left: u64 = redis.hlen(&k.res).await.unwrap();
        let rates: u64 = redis.exists(&k.rates[..]).await.unwrap();
        if outbox == 0 && left == records && rates == 0 {
            return used_memory(&mut redis).await;
        }
        if last != Some((outbox, left, rates)) {
            last = Some((outbox, left, rates));
            moved = Instant::now();
        }
        assert!(
            moved.elapsed() < Duration::from_secs(30),
            "stuck for 30 s: {outbox} outbox entries, {left} records (want {records}), {rates} rate hashes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A day after its close, with nobody queued and everything flushed, a schedule leaves the
/// registry the background loops serve and its records leave Redis; what stays answers a
/// late request (issuance is `422 BOOKING_CLOSED`, the admin view still reads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sale_over_for_a_day_is_retired_from_redis() {
    let app = TestApp::spawn().await;
    let long_closed = common::Window {
        open_in_secs: -3 * 86_400,
        close_in_secs: -2 * 86_400,
    };
    let (_, schedule) = app.create_schedule(long_closed, 5).await;
    let (_, open) = app.create_schedule(common::OPEN_NOW, 5).await;
    let k = ScheduleKeys::new(schedule);
    let mut redis = app.redis();
    eventually(Duration::from_secs(10), "the schedule is retired", || {
        let mut redis = redis.clone();
        async move {
            let served: bool = redis
                .sismember(seatrush::redis::keys::SCHEDULES, schedule)
                .await
                .unwrap();
            (!served).then_some(())
        }
    })
    .await;
    let seats: bool = redis.exists(&k.seat).await.unwrap();
    assert!(!seats, "the seat records left Redis");
    let retired: Option<String> = redis.hget(&k.cfg, "retired").await.unwrap();
    assert_eq!(retired.as_deref(), Some("1"));
    let served: bool = redis
        .sismember(seatrush::redis::keys::SCHEDULES, open)
        .await
        .unwrap();
    assert!(served, "an open schedule is still served");

    let user = app.create_user().await;
    app.issue(user, schedule)
        .await
        .assert_error(422, "BOOKING_CLOSED");
    app.queue_state(schedule).await.assert_ok();
}
