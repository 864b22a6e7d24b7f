//! Fair opening (queue order `SHUFFLE_AT_OPEN`) on the real server and the dev stack: the
//! pre-queue, its shuffle when booking opens, and the order's audit from its seed.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{TestApp, Window, eventually, spawn_all};
use redis::AsyncCommands;
use seatrush::model::Shuffle;
use simd_json::prelude::*;

/// The million-place shuffle of `a_long_shuffle_holds_back_no_other_schedule` keeps Redis
/// and both cores busy for seconds: it runs alone (write), the others beside each other
/// (read), so none of them sees its 1 s Redis timeout for that test's load.
static ALONE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Issues a token to each user, all at once; returns (arrival sequence, token) in arrival
/// order, checking each answer is a pre-queue one.
async fn pre_queue(app: &TestApp, schedule: u64, users: &[u64]) -> Vec<(u64, String)> {
    let answers = spawn_all(users.iter().map(|&user| {
        let app = app.clone();
        async move { app.issue(user, schedule).await }
    }))
    .await;
    let mut tokens: Vec<(u64, String)> = answers
        .iter()
        .map(|rsp| {
            rsp.assert_ok();
            assert_eq!(rsp.str("status"), "WAITING");
            assert!(
                rsp.data()["preQueue"].as_bool() == Some(true),
                "issued before the opening (a slow setup would show here): {:?}",
                rsp.data()
            );
            assert!(rsp.data()["queuePosition"].is_null());
            let token = rsp.str("token");
            (common::opened(&token).sequence, token)
        })
        .collect();
    tokens.sort_unstable();
    tokens
}

/// Each token's place in the queue, asked for all at once.
async fn positions(app: &TestApp, tokens: &[(u64, String)]) -> Vec<u64> {
    spawn_all(tokens.iter().map(|(_, token)| {
        let (app, token) = (app.clone(), token.clone());
        async move {
            let me = app.me(&token).await;
            me.assert_ok();
            assert!(me.data()["preQueue"].as_bool() == Some(false), "shuffled");
            me.u64("queuePosition")
        }
    }))
    .await
}

/// A schedule whose shuffled queue opens in `open_in_secs` (its pre-queue open now), paused
/// so that nobody is admitted and places hold still, with the `extra` settings (JSON
/// members) too. Its booking closes 40 s after it opens, so that once its tokens are gone the
/// admission ticks of later tests no longer serve it.
async fn shuffled_schedule(app: &TestApp, open_in_secs: i64, extra: &str) -> u64 {
    let window = Window {
        open_in_secs,
        close_in_secs: open_in_secs + 40,
    };
    let (_, schedule) = app.create_schedule(window, 5).await;
    app.set_queue(
        schedule,
        &format!(r#"{{"queueOrder": "SHUFFLE_AT_OPEN", "paused": true{extra}}}"#),
    )
    .await;
    schedule
}

/// Waits until the schedule's pre-queue has been shuffled; returns the admin view.
async fn shuffled(app: &TestApp, schedule: u64, within: Duration) -> common::Rsp {
    eventually(within, "the opening's shuffle", || async {
        let state = app.queue_state(schedule).await;
        state.data().get("shuffledAt").is_some().then_some(state)
    })
    .await
}

/// Spearman's rank correlation of two rankings of 1..=n.
fn spearman(a: &[u64], b: &[u64]) -> f64 {
    let n = a.len() as f64;
    let d2: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    1.0 - 6.0 * d2 / (n * (n * n - 1.0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_pre_queued_users_are_shuffled_at_the_opening_and_later_arrivals_queue_behind() {
    let _beside = ALONE.read().await;
    let app = TestApp::spawn().await;
    let users = app.create_users(1_050).await;
    // (The opening leaves room for a slow machine to queue everyone before it. Paused: the
    // shuffle runs at the opening, but nobody is admitted until the end.)
    let schedule = shuffled_schedule(&app, 10, r#", "preQueueMinutes": 5"#).await;
    let early = pre_queue(&app, schedule, &users[..1_000]).await;

    // In the pre-queue: no place yet, the opening named, and told to ask just after it.
    let me = app.me(&early[0].1).await;
    me.assert_ok();
    assert!(me.data()["queuePosition"].is_null());
    assert!(me.data()["preQueue"].as_bool() == Some(true));
    let opens = chrono::DateTime::parse_from_rfc3339(&me.str("bookingOpenAt")).unwrap();
    let until_open = opens.timestamp_millis() - chrono::Utc::now().timestamp_millis();
    assert!(
        me.u64("pollAfterMs") as i64 >= until_open,
        "asks again after the opening: {} ms, opening in {until_open} ms",
        me.u64("pollAfterMs")
    );
    assert!(me.u64("estimatedWaitTimeMinutes") >= 1);
    // Settings that decide the order are locked while anyone queues.
    app.put_queue(schedule, r#"{"queueOrder": "FIFO"}"#)
        .await
        .assert_error(409, "SETTINGS_LOCKED");

    let state = shuffled(&app, schedule, Duration::from_secs(25)).await;
    let late = {
        let mut late = Vec::new();
        for &user in &users[1_000..] {
            let rsp = app.issue(user, schedule).await;
            rsp.assert_ok();
            assert!(rsp.data()["preQueue"].as_bool() == Some(false));
            let token = rsp.str("token");
            late.push((common::opened(&token).sequence, token));
        }
        late
    };

    // Positions are a permutation of 1..=1000, uncorrelated with arrival order.
    let places = positions(&app, &early).await;
    let mut sorted = places.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=1_000).collect::<Vec<_>>());
    let arrival: Vec<u64> = (1..=1_000).collect();
    // Under a uniform shuffle Spearman's rho has mean 0 and standard deviation
    // 1/sqrt(n - 1) = 0.032 for n = 1000; 0.15 is 4.7 of them (a false alarm about once in
    // 400 000 runs). Arrival order itself would be 1.0.
    let rho = spearman(&arrival, &places);
    assert!(rho.abs() < 0.15, "rank correlation {rho:.3}");
    // Later arrivals queue behind the whole pre-queue, in arrival order.
    assert_eq!(
        positions(&app, &late).await,
        (1_001..=1_050).collect::<Vec<_>>()
    );

    // The audit: the order follows from the seed the admin view shows, as documented.
    let seed = Shuffle::parse_seed(&state.str("shuffleSeed")).expect("a 256-bit seed");
    let first = early[0].0;
    let shuffle = Shuffle {
        seed,
        first,
        last: early[early.len() - 1].0,
    };
    let derived = shuffle.places();
    for ((sequence, _), position) in early.iter().zip(&places) {
        assert_eq!(
            Shuffle::place_of(&derived, first, *sequence) - first + 1,
            *position,
            "token {sequence}"
        );
    }

    // Admission follows the shuffled order.
    app.set_queue(schedule, r#"{"paused": false, "maxActiveUsers": 10}"#)
        .await;
    eventually(Duration::from_secs(5), "ten admissions", || async {
        (app.queue_state(schedule).await.u64("active") == 10).then_some(())
    })
    .await;
    let by_position: HashMap<u64, &str> = places
        .iter()
        .zip(&early)
        .map(|(&p, (_, token))| (p, token.as_str()))
        .collect();
    for position in 1..=10 {
        assert_eq!(
            app.me(by_position[&position]).await.str("status"),
            "ACTIVE",
            "place {position}"
        );
    }
}

/// 160 pre-queues of 8 users, all opening at once: over the trials each arrival (1st to
/// 8th) must land in the front half about half the time. The statistic sums, over the 8
/// arrivals, (front-half count − 80)² / 40 (binomial variance 160 × ¼); with the front half
/// always 4 of 8 it has 7 degrees of freedom, and 24.3 is its 0.1 % critical value. Arrival
/// order scores 1 280, and a shuffle that only swaps neighbours scores in the hundreds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_arrival_is_equally_likely_to_land_in_either_half() {
    let _beside = ALONE.read().await;
    const TRIALS: usize = 160;
    const SIZE: usize = 8;
    let app = TestApp::spawn().await;
    let users = app.create_users(SIZE).await;
    let schedules = spawn_all((0..TRIALS).map(|_| {
        let app = app.clone();
        async move { shuffled_schedule(&app, 20, "").await }
    }))
    .await;
    // Each schedule's users arrive one after another, in the same order everywhere.
    let queues = spawn_all(schedules.iter().map(|&schedule| {
        let (app, users) = (app.clone(), users.clone());
        async move {
            let mut tokens = Vec::new();
            for user in users {
                tokens.extend(pre_queue(&app, schedule, &[user]).await);
            }
            (schedule, tokens)
        }
    }))
    .await;
    let mut front = [0u32; SIZE];
    for (schedule, tokens) in &queues {
        shuffled(&app, *schedule, Duration::from_secs(30)).await;
        for (arrival, position) in positions(&app, tokens).await.into_iter().enumerate() {
            if position as usize <= SIZE / 2 {
                front[arrival] += 1;
            }
        }
    }
    let expected = TRIALS as f64 / 2.0;
    let variance = TRIALS as f64 / 4.0;
    let statistic: f64 = front
        .iter()
        .map(|&c| (c as f64 - expected).powi(2) / variance)
        .sum();
    // Everyone leaves: the schedules have nothing live left to serve.
    spawn_all(
        queues
            .iter()
            .flat_map(|(_, tokens)| tokens.clone())
            .map(|(_, token)| {
                let app = app.clone();
                async move {
                    app.leave(&token).await.assert_ok();
                }
            }),
    )
    .await;
    assert!(
        statistic < 24.3,
        "front-half counts by arrival {front:?}: statistic {statistic:.1}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_queue_opens_its_window_before_the_opening_and_not_earlier() {
    let _beside = ALONE.read().await;
    let app = TestApp::spawn().await;
    let later = Window {
        open_in_secs: 3_600,
        close_in_secs: 7_200,
    };
    let (_, schedule) = app.create_schedule(later, 5).await;
    let user = app.create_user().await;
    app.set_queue(schedule, r#"{"queueOrder": "SHUFFLE_AT_OPEN"}"#)
        .await;
    // Opening in an hour, the pre-queue takes the last 30 minutes: too early.
    app.issue(user, schedule)
        .await
        .assert_error(422, "BOOKING_NOT_OPEN");
    app.set_queue(schedule, r#"{"preQueueMinutes": 61}"#).await;
    let rsp = app.issue(user, schedule).await;
    rsp.assert_ok();
    assert!(rsp.data()["preQueue"].as_bool() == Some(true));
    assert!(
        rsp.u64("estimatedWaitTimeMinutes") >= 59,
        "the wait runs to the opening"
    );
    let token = rsp.str("token");
    // While Redis is unreachable the status comes from MySQL: a pre-queue token there too.
    let fallback = eventually(Duration::from_secs(20), "the token in MySQL", || async {
        seatrush::fallback::token_holder(&app.app.db, common::opened(&token))
            .await
            .ok()
    })
    .await;
    assert_eq!(fallback.state.opens_at_ms.map(|at| at > 0), Some(true));
    assert_eq!(fallback.state.position, 0);
    // Bad settings are refused by name; the order is locked now someone queues.
    for (json, field) in [
        (r#"{"queueOrder": "RANDOM"}"#, "queueOrder"),
        (r#"{"preQueueMinutes": 0}"#, "preQueueMinutes"),
    ] {
        let rsp = app.put_queue(schedule, json).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), field);
    }
    app.put_queue(schedule, r#"{"preQueueMinutes": 90}"#)
        .await
        .assert_error(409, "SETTINGS_LOCKED");
    // Other settings still change; the locked ones are as they were.
    let state = app.set_queue(schedule, r#"{"maxActiveUsers": 7}"#).await;
    assert_eq!(
        (
            state.str("queueOrder").as_str(),
            state.u64("preQueueMinutes")
        ),
        ("SHUFFLE_AT_OPEN", 61)
    );
    // Once the pre-queue is empty the order may change again.
    app.leave(&token).await.assert_ok();
    app.set_queue(schedule, r#"{"queueOrder": "FIFO"}"#).await;
    let rsp = app.issue(user, schedule).await;
    rsp.assert_ok();
    assert_eq!(
        (rsp.u64("queuePosition"), rsp.data()["preQueue"].as_bool()),
        (1, Some(false))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pre_queue_stream_is_told_its_place_when_the_queue_is_shuffled() {
    let _beside = ALONE.read().await;
    let app = TestApp::spawn().await;
    let users = app.create_users(3).await;
    let schedule = shuffled_schedule(&app, 8, "").await;
    let tokens = pre_queue(&app, schedule, &users).await;
    let Ok(mut events) = app.events(&tokens[0].1).await else {
        panic!("the stream was refused");
    };
    let first = events.next(Duration::from_secs(2)).await.expect("an event");
    assert_eq!(first.name, "position");
    let data = first.json();
    assert!(data["queuePosition"].is_null(), "{}", first.data);
    assert!(data["preQueue"].as_bool() == Some(true));
    assert!(data["bookingOpenAt"].as_str().is_some());

    // The opening shuffles the pre-queue: the stream learns the place.
    let placed = events
        .next(Duration::from_secs(20))
        .await
        .expect("an event");
    assert_eq!(placed.name, "position", "{}", placed.data);
    let position = placed.json()["queuePosition"].as_u64().expect("a place");
    assert!((1..=3).contains(&position));
    assert_eq!(app.me(&tokens[0].1).await.u64("queuePosition"), position);

    app.set_queue(schedule, r#"{"paused": false}"#).await;
    let admitted = loop {
        let event = events
            .next(Duration::from_secs(10))
            .await
            .expect("an event");
        if event.name != "position" {
            break event;
        }
    };
    assert_eq!(admitted.name, "active", "{}", admitted.data);
}

/// Redis loses everything after one schedule's opening and before another's: the rebuild
/// puts the first back in its shuffled order (from the shuffle MySQL keeps), and the second
/// opens with its whole pre-queue shuffled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_keeps_the_shuffled_order_and_the_pre_queue_still_to_shuffle() {
    let _beside = ALONE.read().await;
    let mut config = TestApp::config();
    config.redis_url = common::own_redis_url();
    common::own_database(&mut config, "seatrush_fair_opening").await;
    let mut flush = seatrush::redis::connect(&config.redis_url).await.unwrap();
    common::flush_redis(&mut flush).await;
    let app = TestApp::spawn_with(config.clone()).await;
    let users = app.create_users(40).await;
    let mut queues = Vec::new();
    for open_in_secs in [6, 25] {
        let schedule = shuffled_schedule(&app, open_in_secs, "").await;
        queues.push((schedule, pre_queue(&app, schedule, &users[..30]).await));
    }
    let (opened, early) = &queues[0];
    let seed = shuffled(&app, *opened, Duration::from_secs(15))
        .await
        .str("shuffleSeed");
    let mut late = Vec::new();
    for &user in &users[30..] {
        let rsp = app.issue(user, *opened).await;
        rsp.assert_ok();
        late.push((0, rsp.str("token")));
    }
    let before = positions(&app, early).await;
    // MySQL has the shuffle and every token.
    let pool = app.app.db.primary.clone();
    eventually(Duration::from_secs(20), "the write-behind", || {
        let (pool, seed) = (pool.clone(), seed.clone());
        async move {
            let mut db = pool.get_conn().await.unwrap();
            // The seed is NULL until the flusher has written the shuffle.
            let stored: Option<(Option<String>, u64)> =
                mysql_async::prelude::Queryable::exec_first(
                    &mut db,
                    "SELECT (SELECT seed FROM queue_shuffles WHERE schedule_id = ?),
                   (SELECT COUNT(*) FROM queue_tokens WHERE schedule_id = ?)",
                    (opened, opened),
                )
                .await
                .unwrap();
            (stored == Some((Some(seed.clone()), 40))).then_some(())
        }
    })
    .await;

    common::flush_redis(&mut flush).await;
    common::rebuild_redis(&config).await;

    assert_eq!(positions(&app, early).await, before, "the shuffled order");
    assert_eq!(
        positions(&app, &late).await,
        (31..=40).collect::<Vec<_>>(),
        "later arrivals behind it"
    );
    assert_eq!(app.queue_state(*opened).await.str("shuffleSeed"), seed);

    // Redis comes back older than MySQL: another order in force (here: another seed, the
    // pre-queue back in arrival order). Reconciliation puts MySQL's shuffle back, and the
    // tick applies its places again; MySQL keeps when the shuffle first ran.
    let shuffled_at = || async {
        let mut db = pool.get_conn().await.unwrap();
        let at: Option<i64> = mysql_async::prelude::Queryable::exec_first(
            &mut db,
            "SELECT CAST(UNIX_TIMESTAMP(shuffled_at) * 1000 AS SIGNED) FROM queue_shuffles
             WHERE schedule_id = ?",
            (opened,),
        )
        .await
        .unwrap();
        at.expect("MySQL has the shuffle")
    };
    let first_ran = shuffled_at().await;
    let k = seatrush::redis::keys::ScheduleKeys::new(*opened);
    let mut older = redis::pipe();
    older.hset(&k.cfg, "shuffleSeed", "00".repeat(32)).ignore();
    for (sequence, _) in early {
        older.zadd(&k.waiting, sequence, sequence).ignore();
    }
    older.query_async::<()>(&mut flush).await.unwrap();
    let repaired = seatrush::reconcile::repair(
        &app.app.db,
        &mut app.app.hot.conn(),
        app.app.hot.scripts(),
        Duration::from_secs(600),
    )
    .await
    .unwrap();
    assert_eq!(repaired.shuffles_restored, 1, "{repaired}");
    shuffled(&app, *opened, Duration::from_secs(10)).await;
    assert_eq!(positions(&app, early).await, before, "MySQL's order again");
    assert_eq!(app.queue_state(*opened).await.str("shuffleSeed"), seed);
    eventually(
        Duration::from_secs(20),
        "the re-applied shuffle flushed",
        || {
            let mut redis = flush.clone();
            let outbox = k.outbox.clone();
            async move { (redis.xlen::<_, u64>(&outbox).await.unwrap() == 0).then_some(()) }
        },
    )
    .await;
    assert_eq!(shuffled_at().await, first_ran, "when the shuffle first ran");

    // The second pre-queue is still one, and is shuffled whole when its booking opens.
    let (waiting, pre_queued) = &queues[1];
    let me = app.me(&pre_queued[0].1).await;
    assert!(
        me.data()["preQueue"].as_bool() == Some(true),
        "{:?}",
        me.data()
    );
    let state = shuffled(&app, *waiting, Duration::from_secs(30)).await;
    let places = positions(&app, pre_queued).await;
    let shuffle = Shuffle {
        seed: Shuffle::parse_seed(&state.str("shuffleSeed")).unwrap(),
        first: pre_queued[0].0,
        last: pre_queued[pre_queued.len() - 1].0,
    };
    let derived = shuffle.places();
    for ((sequence, _), position) in pre_queued.iter().zip(&places) {
        assert_eq!(
            Shuffle::place_of(&derived, shuffle.first, *sequence) - shuffle.first + 1,
            *position,
            "token {sequence}"
        );
    }
}

/// A large pre-queue's shuffle takes seconds; it runs beside the admission ticks, so another
/// schedule's queue is admitted while it runs (before, every tick waited for it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_shuffle_holds_back_no_other_schedule() {
    let _alone = ALONE.write().await;
    let app = TestApp::spawn().await;
    let users = app.create_users(2).await;
    let big = shuffled_schedule(&app, 3, "").await;
    pre_queue(&app, big, &users[..1]).await;
    // The pre-queue's range as a million arrivals would leave it (all but the first left
    // since): each place is still drawn and applied, in 2 000 script calls.
    let cfg = seatrush::redis::keys::ScheduleKeys::new(big).cfg;
    redis::cmd("HSET")
        .arg(&cfg)
        .arg("preQueueLast")
        .arg(1_000_000)
        .query_async::<()>(&mut app.app.hot.conn())
        .await
        .unwrap();
    // Created after it, so a tick reaches it after the big one.
    let (_, other) = app.create_schedule(common::OPEN_NOW, 5).await;
    app.set_queue(other, r#"{"paused": true}"#).await;
    let waiting = app.issue(users[1], other).await;
    assert_eq!(waiting.str("status"), "WAITING");
    let token = waiting.str("token");

    // It has begun once its seed is stored (the admin view shows the seed once it is done).
    eventually(
        Duration::from_secs(20),
        "the opening's shuffle to begin",
        || async {
            let seed: Option<String> = redis::cmd("HGET")
                .arg(&cfg)
                .arg("shuffleSeed")
                .query_async(&mut app.app.hot.conn())
                .await
                .unwrap();
            seed.map(|_| ())
        },
    )
    .await;
    app.set_queue(other, r#"{"paused": false}"#).await;
    eventually(
        Duration::from_secs(5),
        "the other queue's admission",
        || async { (app.me(&token).await.str("status") == "ACTIVE").then_some(()) },
    )
    .await;
    let state = app.queue_state(big).await;
    assert!(
        state.data().get("shuffledAt").is_none(),
        "the other queue was admitted only once the shuffle was done: {:?}",
        state.data()
    );
    shuffled(&app, big, Duration::from_secs(120)).await;
}
