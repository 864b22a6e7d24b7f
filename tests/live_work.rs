//! Background work follows the live sales, not the history: a schedule past its close that
//! nothing can happen to any more is set aside, and no tick or flusher pass touches it.

mod common;

use std::time::Duration;

use common::{TestApp, Window, eventually};
use redis::AsyncCommands;
use seatrush::redis::keys::{LIVE, RETIRING, SCHEDULES, ScheduleKeys};

/// Seconds since a key was last read or written (Redis's LRU clock).
async fn idle_seconds(app: &TestApp, key: &str) -> u64 {
    redis::cmd("OBJECT")
        .arg("IDLETIME")
        .arg(key)
        .query_async(&mut app.redis())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_sale_with_nothing_live_is_set_aside_and_left_alone() {
    let mut config = TestApp::config();
    config.ended_record_keep = Duration::from_secs(1);
    let app = TestApp::spawn_with(config).await;
    let closing = Window {
        open_in_secs: -60,
        close_in_secs: 3,
    };
    let (_, schedule) = app.create_schedule(closing, 5).await;
    let (_, open) = app.create_schedule(common::OPEN_NOW, 5).await;
    let user = app.create_user().await;
    let token = app.issue(user, schedule).await.str("token");
    let mut redis = app.redis();
    let live: bool = redis.sismember(LIVE, schedule).await.unwrap();
    assert!(live, "a new schedule is served");

    // An ACTIVE token keeps it live past the close; once the token has ended (and its
    // record is flushed and removed), nothing can happen to it any more.
    app.leave(&token).await.assert_ok();
    let k = ScheduleKeys::new(schedule);
    let due: i64 = eventually(Duration::from_secs(20), "the schedule set aside", || {
        let mut redis = redis.clone();
        async move {
            let live: bool = redis.sismember(LIVE, schedule).await.unwrap();
            let due: Option<i64> = redis.zscore(RETIRING, schedule).await.unwrap();
            if live { None } else { due }
        }
    })
    .await;
    let close: i64 = redis.hget(&k.cfg, "bookingCloseAt").await.unwrap();
    assert_eq!(due, close + 86_400_000, "retired a day after its close");
    let known: bool = redis.sismember(SCHEDULES, schedule).await.unwrap();
    assert!(known, "still known until it is retired");

    // Neither the admission tick (which reads the settings) nor the flusher (which measures
    // the outbox) touches it any more, while the open schedule is served all along.
    eventually(Duration::from_secs(10), "its keys left alone", || async {
        let cfg = idle_seconds(&app, &k.cfg).await;
        let outbox = idle_seconds(&app, &k.outbox).await;
        (cfg >= 3 && outbox >= 3).then_some(())
    })
    .await;
    let served = idle_seconds(&app, &ScheduleKeys::new(open).cfg).await;
    assert!(
        served <= 1,
        "the open schedule's settings are read every tick"
    );
    // Late requests are still answered.
    app.issue(app.create_user().await, schedule)
        .await
        .assert_error(422, "BOOKING_CLOSED");
    app.queue_state(schedule).await.assert_ok();
}
