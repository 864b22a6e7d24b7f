//! Redis loses its data: `seatrush rebuild-redis` puts back seats, holds,
//! reservations, balances and queue state from MySQL, the API answers as before, and new
//! ids never collide with stored ones.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{TestApp, eventually};
use hyper::Method;
use mysql_async::prelude::Queryable;
use redis::AsyncCommands;
use seatrush::model::Balance;
use seatrush::model::{ReservationId, ReservationRecord};
use seatrush::redis::keys::{ScheduleKeys, WalletKeys};
use seatrush::redis::scripts::DebitOutcome;
use simd_json::OwnedValue;

/// A database no other test uses: this test empties its Redis (`common::own_redis_url`).
const DATABASE: &str = "seatrush_rebuild";

/// Every read a client of the schedule can make, as (request, status, body).
async fn answers(
    app: &TestApp,
    concert: u64,
    schedule: u64,
    users: &[(u64, String)],
    reservations: &[(u64, usize)],
) -> Vec<(String, u16, String)> {
    let mut out = Vec::new();
    let mut record = |what: String, rsp: common::Rsp| {
        out.push((what, rsp.status.as_u16(), rsp.body.to_string()))
    };
    for (user, token) in users {
        let auth = [("queue-token", token.as_str())];
        let mut me = app.me(token).await;
        // The estimates use the measured admission rate, which is not kept in MySQL: after a
        // rebuild it starts again from the configured rate.
        if let OwnedValue::Object(body) = &mut me.body
            && let Some(OwnedValue::Object(data)) = body.get_mut("data")
        {
            data.remove("estimatedWaitTimeMinutes");
            data.remove("pollAfterMs");
        }
        record(format!("token of {user}"), me);
        let balance = format!("/api/v1/users/{user}/balance");
        record(balance.clone(), app.get(&balance, &auth).await);
        let seats = format!("/api/v1/concerts/{concert}/schedules/{schedule}/seats");
        record(format!("{seats} as {user}"), app.get(&seats, &auth).await);
    }
    for (id, owner) in reservations {
        let path = format!("/api/v1/reservations/{id}");
        let auth = [("queue-token", users[*owner].1.as_str())];
        record(path.clone(), app.get(&path, &auth).await);
    }
    record("queue state".into(), app.queue_state(schedule).await);
    out
}

/// Where MySQL and Redis disagree about the schedule's reservations and tokens and the
/// users' balances (empty once the write-behind has drained).
async fn differences(app: &TestApp, schedule: u64, users: &[u64]) -> Vec<String> {
    let mut redis = app.redis();
    let k = ScheduleKeys::new(schedule);
    let mut conn = app.app.db.primary.get_conn().await.unwrap();
    let mut diff = Vec::new();
    let res: BTreeMap<u64, String> = redis.hgetall(&k.res).await.unwrap();
    for (id, record) in res {
        let r = ReservationRecord::parse(ReservationId::from_u64(id), &record).unwrap();
        let status = r.status.as_seen().as_str();
        let stored: Option<String> = conn
            .exec_first("SELECT status FROM reservations WHERE id = ?", (id,))
            .await
            .unwrap();
        if stored.as_deref() != Some(status) {
            diff.push(format!("reservation {id}: {stored:?} vs {status}"));
        }
    }
    let tokens: BTreeMap<String, String> = redis.hgetall(&k.tokens).await.unwrap();
    for (token, record) in tokens {
        let status = record.split('|').nth(1).unwrap().to_string();
        let stored: Option<String> = conn
            .exec_first(
                "SELECT status FROM queue_tokens WHERE schedule_id = ? AND seq = ?",
                (k.schedule_id, &token),
            )
            .await
            .unwrap();
        if stored.as_ref() != Some(&status) {
            diff.push(format!("token {token}: {stored:?} vs {status}"));
        }
    }
    for &user in users {
        let record: Option<String> = redis
            .hget(WalletKeys::of_user(user).balances, user)
            .await
            .unwrap();
        let Some(b) = record.as_deref().and_then(Balance::parse) else {
            continue;
        };
        let stored: Option<(u64, u64, u64)> = conn
            .exec_first(
                "SELECT balance, total_charged, total_used FROM user_balances WHERE user_id = ?",
                (user,),
            )
            .await
            .unwrap();
        if stored != Some((b.balance, b.total_charged, b.total_used)) {
            diff.push(format!("balance of {user}: {stored:?} vs {b:?}"));
        }
    }
    diff
}

async fn drained(app: &TestApp, schedule: u64, users: &[u64]) {
    eventually(Duration::from_secs(20), "MySQL to equal Redis", || async {
        differences(app, schedule, users)
            .await
            .is_empty()
            .then_some(())
    })
    .await;
}

async fn max_id(app: &TestApp, sql: &str) -> u64 {
    let mut conn = app.app.db.primary.get_conn().await.unwrap();
    let max: Option<u64> = conn.query_first(sql).await.unwrap();
    max.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_data_lost_is_rebuilt_from_mysql_and_the_api_answers_as_before() {
    let mut config = TestApp::config();
    config.redis_url = common::own_redis_url();
    common::own_database(&mut config, DATABASE).await;
    // The resumed payment is left to the rebuild, not to a sweeper that finds it first.
    config.payment_saga_timeout = Duration::from_secs(60);
    let mut flush = seatrush::redis::connect(&config.redis_url).await.unwrap();
    common::flush_redis(&mut flush).await;
    let app = TestApp::spawn_with(config.clone()).await;

    // Ten seats, five active users at most: eight users, three of them waiting.
    let (concert, schedule) = app.create_schedule(common::OPEN_NOW, 10).await;
    app.set_queue(
        schedule,
        r#"{"maxActiveUsers": 5, "admissionPerSecond": 1000}"#,
    )
    .await;
    let seats = app.seats_of(schedule).await;
    let mut users = Vec::new();
    for _ in 0..8 {
        let user = app.create_user().await;
        let rsp = app.issue(user, schedule).await;
        rsp.assert_ok();
        users.push((user, rsp.str("token")));
    }
    for (user, token) in &users[..5] {
        let rsp = app.charge(token, *user, 200_000).await;
        rsp.assert_ok();
    }
    let hold = |i: usize, taken: &[u64]| {
        let (app, (user, token), taken) = (app.clone(), users[i].clone(), taken.to_vec());
        async move {
            let rsp = app.hold(&token, schedule, user, &taken).await;
            rsp.assert_created();
            rsp.u64("reservationId")
        }
    };
    // User 0 pays two seats and keeps another hold open (so their token stays); user 1 keeps
    // a hold open; user 2 cancels theirs; user 3's payment dies after its debit; user 4 pays
    // (their token is then used, and user 5 admitted).
    let paid = hold(0, &seats[0..2]).await;
    let second = hold(0, &seats[6..7]).await;
    let rsp = app.pay(&users[0].1, users[0].0, paid).await;
    rsp.assert_created();
    let bought = hold(4, &seats[7..8]).await;
    let rsp = app.pay(&users[4].1, users[4].0, bought).await;
    rsp.assert_created();
    let open = hold(1, &seats[2..3]).await;
    let cancelled = hold(2, &seats[3..4]).await;
    let rsp = app
        .request(
            Method::DELETE,
            &format!("/api/v1/reservations/{cancelled}"),
            &[("queue-token", &users[2].1)],
            None,
        )
        .await;
    rsp.assert_ok();
    let dying = hold(3, &seats[4..5]).await;
    let user3 = users[3].0;
    let (attempt, amount) = app.begin_payment(&users[3].1, user3, dying, None).await;
    let debited = app.debit(user3, dying, attempt, amount).await;
    assert!(
        matches!(debited, DebitOutcome::Debited { .. }),
        "{debited:?}"
    );
    let reservations = [
        (paid, 0),
        (second, 0),
        (open, 1),
        (cancelled, 2),
        (dying, 3),
    ];
    let ids: Vec<u64> = users.iter().map(|u| u.0).collect();
    eventually(Duration::from_secs(5), "user 5 to be admitted", || async {
        (app.me(&users[5].1).await.str("status") == "ACTIVE").then_some(())
    })
    .await;
    drained(&app, schedule, &ids).await;
    let before = answers(&app, concert, schedule, &users, &reservations).await;
    let ledger_before = max_id(&app, "SELECT MAX(id) FROM balance_transactions").await;
    let reservation_before = max_id(&app, "SELECT MAX(id) FROM reservations").await;
    let payment_before = max_id(&app, "SELECT MAX(id) FROM payments").await;
    assert!(ledger_before > 0 && reservation_before >= dying && payment_before > 0);

    // Redis loses everything; the API no longer knows the tokens.
    common::flush_redis(&mut flush).await;
    let lost = answers(&app, concert, schedule, &users, &reservations).await;
    assert_ne!(lost, before, "the loss shows");

    let report = common::rebuild_redis(&config).await;
    println!("{report}");
    assert!(
        report.contains("1 rebuilt, 0 already in Redis")
            && report.contains("1 payments resumed")
            && report.contains("balances loaded: 8"),
        "{report}"
    );

    let after = answers(&app, concert, schedule, &users, &reservations).await;
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "answers as before");
    }
    assert_eq!(before.len(), after.len());
    let served = before.iter().filter(|a| a.1 == 200).count();
    println!(
        "{} answers compared ({served} of them 200), all as before",
        before.len()
    );
    assert!(
        served >= 20,
        "the comparison covers real answers: {before:?}"
    );

    // The payment that died after its debit came back PAYING, begun at the rebuild; an
    // instance whose saga timeout has passed since commits it: debited once.
    let mut quick = config.clone();
    quick.payment_saga_timeout = Duration::from_secs(1);
    let _sweeper = TestApp::spawn_with(quick).await;
    let mut redis = app.redis();
    eventually(
        Duration::from_secs(10),
        "the resumed payment to be PAID",
        || {
            let mut redis = redis.clone();
            async move {
                let record: String = redis
                    .hget(ScheduleKeys::new(schedule).res, dying)
                    .await
                    .unwrap();
                let r = ReservationRecord::parse(ReservationId::from_u64(dying), &record).unwrap();
                (r.status.as_str() == "PAID").then_some(())
            }
        },
    )
    .await;
    let record: String = redis
        .hget(WalletKeys::of_user(user3).balances, user3)
        .await
        .unwrap();
    let b = Balance::parse(&record).unwrap();
    assert_eq!(
        (b.balance, b.total_used),
        (200_000 - amount, amount),
        "debited once"
    );

    // New writes get ids above every stored one.
    let (user1, token1) = &users[1];
    let charged = app.charge(token1, *user1, 1_000).await;
    charged.assert_ok();
    assert!(
        charged.u64("transactionId") > ledger_before,
        "{:?}",
        charged.body
    );
    let fresh = hold(5, &seats[5..6]).await;
    assert!(fresh > reservation_before);
    let rsp = app.pay(token1, *user1, open).await;
    rsp.assert_created();
    assert!(rsp.u64("paymentId") > payment_before, "{:?}", rsp.body);
    let newcomer = app.create_user().await;
    let rsp = app.issue(newcomer, schedule).await;
    rsp.assert_ok();

    // Everything reaches MySQL as before, and no seat is sold twice.
    let mut everyone = ids.clone();
    everyone.push(newcomer);
    drained(&app, schedule, &everyone).await;
    let mut conn = app.app.db.primary.get_conn().await.unwrap();
    let (sold, distinct): (u64, u64) = conn
        .exec_first(
            "SELECT COUNT(*), COUNT(DISTINCT rs.seat_id) FROM reservation_seats rs
             JOIN reservations r ON r.id = rs.reservation_id
             WHERE r.schedule_id = ? AND r.status IN ('RESERVED', 'PAID')",
            (schedule,),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!((sold, distinct), (7, 7));
    let payments: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM payments p JOIN reservations r ON r.id = p.reservation_id
             WHERE r.schedule_id = ?",
            (schedule,),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        payments, 4,
        "users 0, 4 and 1 and the resumed one, once each"
    );
}

/// Seats kept AVAILABLE in the unordered set of earlier versions are ordered by seat number
/// at start-up, in one step, with the held seat still held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn available_seats_kept_unordered_are_ordered_by_number_at_start_up() {
    let app = TestApp::spawn().await;
    let (schedule, seats) = app.open_schedule(6).await;
    let (user, token) = app.active_user(schedule).await;
    app.hold(&token, schedule, user, &seats[1..2])
        .await
        .assert_created();
    let k = ScheduleKeys::new(schedule);
    let mut redis = app.redis();
    let free: Vec<u64> = redis.zrange(&k.avail, 0, -1).await.unwrap();
    assert_eq!(free.len(), 5);
    let () = redis::pipe()
        .del(&k.avail)
        .sadd(k.unordered_available(), &free)
        .query_async(&mut redis)
        .await
        .unwrap();

    let restarted = TestApp::spawn().await;
    let ordered: Vec<(u64, u64)> = redis.zrange_withscores(&k.avail, 0, -1).await.unwrap();
    let numbers: Vec<u64> = ordered.iter().map(|&(_, number)| number).collect();
    assert_eq!(
        numbers,
        [1, 3, 4, 5, 6],
        "by seat number, the held seat 2 still held"
    );
    let ids: Vec<u64> = ordered.iter().map(|&(id, _)| id).collect();
    assert_eq!(ids, [seats[0], seats[2], seats[3], seats[4], seats[5]]);
    let old: bool = redis.exists(k.unordered_available()).await.unwrap();
    assert!(!old, "the unordered set is gone");
    restarted
        .hold(&token, schedule, user, &seats[2..3])
        .await
        .assert_created();
    restarted
        .hold(&token, schedule, user, &seats[1..2])
        .await
        .assert_error(409, "SEAT_ALREADY_RESERVED");
}
