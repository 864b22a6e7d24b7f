//! The write-behind flusher against real Redis and MariaDB: MySQL equals Redis after
//! the drain, replays change nothing, abandoned entries are claimed, poison is dead-lettered.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use common::{OPEN_NOW, TestApp, eventually};
use mysql_async::prelude::*;
use redis::AsyncCommands;
use seatrush::model::{
    LedgerLine, PaymentId, ReservationId, ReservationRecord, ReservationStatus, TokenRecord,
    TokenStatus,
};
use seatrush::mysql::records;
use seatrush::redis::keys::{FLUSH_GROUP, Outbox, SCHEDULES, ScheduleKeys};
use seatrush::redis::streams::ensure_group;
use seatrush::writebehind::events::{self, Event};
use seatrush::writebehind::{Conflict, OutboxFlusher, WriteError, dead_letters};

/// Every token of the schedule in MySQL (live, or ended since 1970), by token.
/// The schedule's tokens in MySQL by sequence (the field of the `tokens` hash in Redis).
async fn mysql_tokens(app: &TestApp, schedule: u64) -> HashMap<String, TokenRecord> {
    let mut conn = app.app.db.primary.get_conn().await.unwrap();
    let rows = records::tokens(&mut conn, schedule, 0).await.unwrap();
    rows.into_iter()
        .map(|r| (r.sequence.to_string(), r))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_tokens_in_mysql_equal_redis_after_the_drain() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    app.set_queue(schedule, r#"{"maxActiveUsers": 3, "activeTtlSeconds": 1}"#)
        .await;
    let users = app.create_users(8).await;
    for &user in &users {
        app.issue(user, schedule).await.assert_ok();
    }
    // Let tokens be admitted and expire, then freeze the queue in a mixed state.
    eventually(Duration::from_secs(10), "six admissions", || async {
        (app.queue_state(schedule).await.u64("admittedTotal") >= 6).then_some(())
    })
    .await;
    app.set_queue(schedule, r#"{"paused": true}"#).await;
    eventually(
        Duration::from_secs(10),
        "the active tokens to expire",
        || async { (app.queue_state(schedule).await.u64("active") == 0).then_some(()) },
    )
    .await;
    let keys = ScheduleKeys::new(schedule);
    let mut redis = app.redis();
    eventually(Duration::from_secs(10), "the outbox to drain", || {
        let mut redis = redis.clone();
        let outbox = keys.outbox.clone();
        async move { (redis.xlen::<_, u64>(&outbox).await.unwrap() == 0).then_some(()) }
    })
    .await;

    let in_redis: HashMap<String, String> = redis.hgetall(&keys.tokens).await.unwrap();
    let in_mysql = mysql_tokens(&app, schedule).await;
    assert_eq!(in_redis.len(), 8);
    assert_eq!(in_mysql.len(), 8);
    let mut statuses = HashMap::new();
    for (token, record) in &in_redis {
        // User, status, seq and every time, as one record.
        let row = &in_mysql[token];
        assert_eq!(&row.record(), record, "{token}");
        *statuses.entry(row.status.as_str()).or_insert(0) += 1;
    }
    assert!(
        statuses["EXPIRED"] >= 6 && statuses["WAITING"] >= 1,
        "{statuses:?}"
    );
}

/// Applies `batch` in one transaction, as the flusher does; a deadlock victim (other tests'
/// flushers write the same tables) is tried again. A conflict is returned, not committed.
async fn try_batch(pool: &mysql_async::Pool, batch: &[Event]) -> Result<(), Conflict> {
    let conflict = seatrush::mysql::retry_lock_conflicts(|| async {
        let mut conn = pool.get_conn().await?;
        let mut tx = conn.start_transaction(Default::default()).await?;
        match events::apply(&mut tx, batch).await {
            Ok(()) => tx.commit().await.map(|()| None),
            Err(WriteError::Mysql(e)) => Err(e),
            Err(WriteError::Conflict(c)) => Ok(Some(c)),
        }
    })
    .await
    .unwrap();
    conflict.map_or(Ok(()), Err)
}

async fn apply_batch(pool: &mysql_async::Pool, batch: &[Event]) {
    try_batch(pool, batch).await.unwrap();
}

fn token_row(user: u64, schedule: u64, sequence: u64, status: &str) -> TokenRecord {
    TokenRecord {
        user_id: user,
        schedule_id: schedule,
        status: TokenStatus::parse(status).unwrap(),
        sequence,
        issued_at_ms: 1_790_000_000_000,
        activated_at_ms: (status != "WAITING").then_some(1_790_000_001_000),
        expires_at_ms: (status != "WAITING").then_some(1_790_000_301_000),
        ended_at_ms: (status == "EXPIRED").then_some(1_790_000_301_000),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_and_reordered_events_change_nothing() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    let user = app.create_user().await;
    let sequence = unused_seq();
    let event = |status| Event::Tokens(vec![token_row(user, schedule, sequence, status)]);
    let (waiting, active, expired) = (event("WAITING"), event("ACTIVE"), event("EXPIRED"));
    for batch in [
        vec![waiting.clone(), active.clone(), expired.clone()],
        vec![waiting.clone()],
        vec![active.clone(), waiting.clone()],
        vec![expired.clone(), expired.clone()],
    ] {
        apply_batch(&app.app.db.primary, &batch).await;
    }
    let rows = mysql_tokens(&app, schedule).await;
    assert_eq!(rows.len(), 1);
    let row = &rows[&sequence.to_string()];
    assert_eq!(row.status, TokenStatus::Expired);
    assert_eq!(
        (row.activated_at_ms, row.ended_at_ms),
        (Some(1_790_000_001_000), Some(1_790_000_301_000))
    );
}

/// An outbox entry for a new WAITING token of a real user and schedule; returns its
/// sequence.
fn token_entry(user: u64) -> (String, Vec<(String, String)>) {
    let token = unused_seq().to_string();
    let record = format!("{user}|WAITING|{token}|1790000000000|||");
    let fields = vec![
        ("type".to_string(), "tokens".to_string()),
        (token.clone(), record),
    ];
    (token, fields)
}

/// A schedule and a user on the served app, and the quiet app (Redis db 2) whose outbox
/// for that schedule the test drives by hand.
struct Setup {
    app: TestApp,
    schedule: u64,
    user: u64,
    quiet: Arc<seatrush::app::App>,
    keys: ScheduleKeys,
    redis: seatrush::redis::RedisConn,
}

async fn setup() -> Setup {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 5).await;
    let user = app.create_user().await;
    let quiet = TestApp::quiet().await;
    let keys = ScheduleKeys::new(schedule);
    let mut redis = quiet.hot.conn();
    ensure_group(&mut redis, &keys.outbox).await.unwrap();
    Setup {
        app,
        schedule,
        user,
        quiet,
        keys,
        redis,
    }
}

/// A sequence number far above any the test schedule's real tokens reach.
fn unused_seq() -> u64 {
    1_000_000 + (uuid::Uuid::new_v4().as_u128() % 1_000_000_000) as u64
}

async fn flusher(quiet: &Arc<seatrush::app::App>, claim_idle: Duration) -> OutboxFlusher {
    OutboxFlusher::new(
        quiet.db.clone(),
        quiet.hot.conn(),
        Arc::default(),
        claim_idle,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_left_by_a_crashed_consumer_are_claimed_and_applied() {
    let Setup {
        app,
        schedule,
        user,
        quiet,
        keys,
        mut redis,
    } = setup().await;

    // A consumer reads the entry and dies before acknowledging it.
    let (token, fields) = token_entry(user);
    let _: String = redis.xadd(&keys.outbox, "*", &fields).await.unwrap();
    let opts = redis::streams::StreamReadOptions::default()
        .group(FLUSH_GROUP, "crashed")
        .count(10);
    let read: redis::streams::StreamReadReply = redis
        .xread_options(&[&keys.outbox], &[">"], &opts)
        .await
        .unwrap();
    assert_eq!(read.keys[0].ids.len(), 1);

    let mut flusher = flusher(&quiet, Duration::from_millis(200)).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !mysql_tokens(&app, schedule).await.contains_key(&token) {
        assert!(
            std::time::Instant::now() < deadline,
            "the claimed entry never reached MySQL"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        flusher
            .flush(&Outbox::of_schedule(schedule), true)
            .await
            .unwrap();
    }
    let pending: redis::streams::StreamPendingReply =
        redis.xpending(&keys.outbox, FLUSH_GROUP).await.unwrap();
    assert_eq!(pending.count(), 0, "nothing is left pending");
    assert_eq!(
        redis.xlen::<_, u64>(&keys.outbox).await.unwrap(),
        0,
        "acknowledged entries are trimmed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_entries_go_to_the_dead_letter_stream_and_the_rest_flow() {
    let Setup {
        app,
        schedule,
        user,
        quiet,
        keys,
        mut redis,
    } = setup().await;

    let _: String = redis
        .xadd(&keys.outbox, "*", &[("type", "no-such-event")])
        .await
        .unwrap();
    // A user id far above any the tests create: MySQL refuses a token of it (1452) until
    // the user exists.
    let mut db = app.app.db.primary.get_conn().await.unwrap();
    let newest: Option<u64> = db.query_first("SELECT MAX(id) FROM users").await.unwrap();
    let unknown = newest.unwrap_or(0) + 1_000_000;
    let (late, refused) = token_entry(unknown);
    let _: String = redis.xadd(&keys.outbox, "*", &refused).await.unwrap();
    let (good, fields) = token_entry(user);
    let _: String = redis.xadd(&keys.outbox, "*", &fields).await.unwrap();

    let mut flusher = flusher(&quiet, Duration::from_secs(30)).await;
    let mut passes = 0;
    while redis.xlen::<_, u64>(&keys.outbox).await.unwrap() > 0 {
        let pass = flusher
            .flush(&Outbox::of_schedule(schedule), false)
            .await
            .unwrap();
        assert!(!pass.mysql_down);
        passes += 1;
        assert!(
            passes <= 10,
            "the outbox should empty within the retry budget"
        );
    }
    assert!(
        passes >= 5,
        "a refused entry is retried before it is dead-lettered ({passes})"
    );
    assert!(mysql_tokens(&app, schedule).await.contains_key(&good));
    let dead: redis::streams::StreamRangeReply =
        redis.xrange_all(&keys.dead_letters).await.unwrap();
    assert_eq!(dead.ids.len(), 2);
    assert!(
        dead.ids
            .iter()
            .all(|e| e.map.contains_key("error") && e.map.contains_key("sourceId"))
    );

    // `seatrush dead-letters list` shows both with MySQL's or the decoder's reason (it finds
    // the outboxes of the schedules Redis knows).
    let _: u64 = redis.sadd(SCHEDULES, schedule).await.unwrap();
    let listed = dead_letters::list(&mut redis).await.unwrap();
    let ours: Vec<_> = listed
        .iter()
        .filter(|d| d.stream == keys.dead_letters)
        .collect();
    assert_eq!(ours.len(), 2, "{listed:?}");
    assert!(ours[0].error.contains("no-such-event"), "{:?}", ours[0]);
    assert!(ours[1].error.contains("1452"), "{:?}", ours[1]);
    assert!(ours[1].fields.contains_key(&late));

    // Once the cause is fixed, `replay` of that one sends it through the flusher into MySQL;
    // the other stays a dead letter.
    db.exec_drop(
        "INSERT INTO users (id, name) VALUES (?, 'late user')",
        (unknown,),
    )
    .await
    .unwrap();
    let replayed = dead_letters::replay(&mut redis, Some((&keys.dead_letters, &ours[1].id)))
        .await
        .unwrap();
    assert_eq!(replayed, 1);
    // This flusher or the app's own (both serve the live schedule) applies it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !mysql_tokens(&app, schedule).await.contains_key(&late) {
        assert!(
            std::time::Instant::now() < deadline,
            "the replayed entry reaches MySQL"
        );
        flusher
            .flush(&Outbox::of_schedule(schedule), false)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = dead_letters::list(&mut redis).await.unwrap();
    let left: Vec<_> = left
        .iter()
        .filter(|d| d.stream == keys.dead_letters)
        .collect();
    assert_eq!(left.len(), 1);
    assert!(left[0].error.contains("no-such-event"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_reservation_events_change_nothing() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 3).await;
    let seats = app.seats_of(schedule).await;
    let user = app.create_user().await;
    let id = ReservationId::new(schedule, 7_000_001);
    let row = |status: &str| ReservationRecord {
        id,
        user_id: user,
        schedule_id: schedule,
        status: ReservationStatus::parse(status).unwrap(),
        total_amount: 100_000,
        reserved_at_ms: 1_790_000_000_000,
        expires_at_ms: 1_790_000_300_000,
        seats: vec![(seats[0], 50_000), (seats[1], 50_000)],
        paid_at_ms: None,
        ended_at_ms: (status != "RESERVED").then_some(1_790_000_300_000),
        payment_id: None,
    };
    let (held, expired) = (
        Event::Reservations(vec![row("RESERVED")]),
        Event::Reservations(vec![row("EXPIRED")]),
    );
    let mut conn = app.app.db.primary.get_conn().await.unwrap();
    for batch in [
        vec![held.clone(), expired.clone()],
        vec![held.clone()],
        vec![expired],
    ] {
        apply_batch(&app.app.db.primary, &batch).await;
    }
    let status: Option<String> = conn
        .exec_first("SELECT status FROM reservations WHERE id = ?", (id.get(),))
        .await
        .unwrap();
    assert_eq!(status.as_deref(), Some("EXPIRED"));
    let seat_rows: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM reservation_seats WHERE reservation_id = ?",
            (id.get(),),
        )
        .await
        .unwrap();
    assert_eq!(seat_rows, Some(2));
    let states: Vec<String> = conn
        .exec(
            "SELECT status FROM seats WHERE id IN (?, ?)",
            (seats[0], seats[1]),
        )
        .await
        .unwrap();
    assert_eq!(states, ["AVAILABLE", "AVAILABLE"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_entry_cannot_move_a_seat_backwards() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 1).await;
    let seat = app.seats_of(schedule).await[0];
    let user = app.create_user().await;
    let row = |n: u64, status: &str| ReservationRecord {
        id: ReservationId::new(schedule, n),
        user_id: user,
        schedule_id: schedule,
        status: ReservationStatus::parse(status).unwrap(),
        total_amount: 50_000,
        reserved_at_ms: 1_790_000_000_000,
        expires_at_ms: 1_790_000_300_000,
        seats: vec![(seat, 50_000)],
        paid_at_ms: (status == "PAID").then_some(1_790_000_100_000),
        ended_at_ms: (status == "CANCELLED").then_some(1_790_000_050_000),
        payment_id: (status == "PAYING" || status == "PAID")
            .then_some(PaymentId::new(schedule, 77)),
    };
    let mut conn = app.app.db.primary.get_conn().await.unwrap();
    // X was cancelled and Y then sold the seat; X's first entry (RESERVED) arrives last,
    // as when it sat pending on a crashed consumer until claimed.
    for (batch, expected) in [
        (
            vec![row(1, "CANCELLED"), row(2, "RESERVED"), row(2, "PAYING")],
            "HELD",
        ),
        (vec![row(2, "PAID")], "SOLD"),
        (vec![row(1, "RESERVED"), row(2, "PAID")], "SOLD"),
    ] {
        apply_batch(&app.app.db.primary, &[Event::Reservations(batch)]).await;
        let status: Option<String> = conn
            .exec_first("SELECT status FROM seats WHERE id = ?", (seat,))
            .await
            .unwrap();
        assert_eq!(status.as_deref(), Some(expected));
    }
    let statuses: Vec<String> = conn
        .exec(
            "SELECT status FROM reservations WHERE id IN (?, ?) ORDER BY id",
            (
                ReservationId::new(schedule, 1).get(),
                ReservationId::new(schedule, 2).get(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(statuses, ["CANCELLED", "PAID"]);
    // The PAID reservation's payment, once however often its event is applied.
    let payments: Vec<(u64, u64, u64)> = conn
        .exec(
            "SELECT id, reservation_id, amount FROM payments WHERE reservation_id = ?",
            (ReservationId::new(schedule, 2).get(),),
        )
        .await
        .unwrap();
    assert_eq!(
        payments,
        [(
            PaymentId::new(schedule, 77).get(),
            ReservationId::new(schedule, 2).get(),
            50_000
        )]
    );
}

/// A ledger line, a token, a reservation and a payment, each written once and then written
/// again under the same id with other immutable content (another user, amount or seats):
/// the second is a conflict naming both versions, and MySQL keeps the first untouched. The
/// same record written again is not a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_stored_with_other_content_is_a_conflict_never_a_merge() {
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 3).await;
    let seats = app.seats_of(schedule).await;
    let (first, second) = (app.create_user().await, app.create_user().await);
    let pool = &app.app.db.primary;
    let line = |user: u64, amount: u64| LedgerLine {
        id: unused_seq() * 1_000,
        user_id: user,
        kind: "CHARGE".to_string(),
        amount,
        balance_after: amount,
        ref_id: None,
        created_at_ms: 1_790_000_000_000,
    };
    let ledger = line(first, 10_000);
    let reused_ledger = LedgerLine {
        amount: 20_000,
        balance_after: 20_000,
        ..ledger.clone()
    };
    let ledger_event = |l: &LedgerLine| Event::Ledger {
        lines: vec![l.clone()],
        balances: vec![],
    };
    let token = token_row(first, schedule, unused_seq(), "WAITING");
    let reused_token = TokenRecord {
        user_id: second,
        ..token.clone()
    };
    let reservation = ReservationRecord {
        id: ReservationId::new(schedule, unused_seq()),
        user_id: first,
        schedule_id: schedule,
        status: ReservationStatus::Paid,
        total_amount: 50_000,
        reserved_at_ms: 1_790_000_000_000,
        expires_at_ms: 1_790_000_300_000,
        seats: vec![(seats[0], 50_000)],
        paid_at_ms: Some(1_790_000_100_000),
        ended_at_ms: None,
        payment_id: Some(PaymentId::new(schedule, unused_seq())),
    };
    let reused_reservation = ReservationRecord {
        user_id: second,
        seats: vec![(seats[1], 50_000)],
        payment_id: Some(PaymentId::new(schedule, unused_seq())),
        ..reservation.clone()
    };
    // Another reservation paid by the first one's payment id.
    let reused_payment = ReservationRecord {
        id: ReservationId::new(schedule, unused_seq()),
        seats: vec![(seats[2], 50_000)],
        ..reservation.clone()
    };
    let cases = [
        (
            ledger_event(&ledger),
            ledger_event(&reused_ledger),
            "balance_transactions",
        ),
        (
            Event::Tokens(vec![token.clone()]),
            Event::Tokens(vec![reused_token]),
            "queue_tokens",
        ),
        (
            Event::Reservations(vec![reservation.clone()]),
            Event::Reservations(vec![reused_reservation]),
            "reservations",
        ),
        (
            Event::Reservations(vec![]),
            Event::Reservations(vec![reused_payment.clone()]),
            "payments",
        ),
    ];
    for (original, reused, table) in cases {
        apply_batch(pool, std::slice::from_ref(&original)).await;
        apply_batch(pool, &[original]).await;
        let conflict = try_batch(pool, &[reused])
            .await
            .expect_err("a reused id with other content is a conflict");
        assert_eq!(conflict.table, table, "{conflict}");
        assert_ne!(conflict.stored, conflict.incoming, "{conflict}");
    }
    let mut conn = pool.get_conn().await.unwrap();
    let kept: Option<(u64, u64)> = conn
        .exec_first(
            "SELECT user_id, amount FROM balance_transactions WHERE id = ?",
            (ledger.id,),
        )
        .await
        .unwrap();
    assert_eq!(kept, Some((first, 10_000)));
    let kept: Option<u64> = conn
        .exec_first(
            "SELECT user_id FROM queue_tokens WHERE schedule_id = ? AND seq = ?",
            (schedule, token.sequence),
        )
        .await
        .unwrap();
    assert_eq!(kept, Some(first));
    let kept: Vec<(u64, u64)> = conn
        .exec(
            "SELECT r.user_id, s.seat_id FROM reservations r
             JOIN reservation_seats s ON s.reservation_id = r.id WHERE r.id = ?",
            (reservation.id.get(),),
        )
        .await
        .unwrap();
    assert_eq!(kept, [(first, seats[0])]);
    let orphan: Option<u64> = conn
        .exec_first(
            "SELECT COUNT(*) FROM reservations WHERE id = ?",
            (reused_payment.id.get(),),
        )
        .await
        .unwrap();
    assert_eq!(
        orphan,
        Some(0),
        "the conflicting batch was rolled back whole"
    );
}

/// Through the flusher: an entry reusing a stored reservation id is dead-lettered on its
/// first try with MySQL's version beside its own; the entries around it flow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflicting_entry_is_dead_lettered_at_once_with_both_versions() {
    let Setup {
        app,
        schedule,
        user,
        quiet,
        keys,
        mut redis,
    } = setup().await;
    let seats = app.seats_of(schedule).await;
    let other = app.create_user().await;
    let id = ReservationId::new(schedule, unused_seq());
    let entry = |user: u64, seat: u64| {
        let record = format!("{user}|RESERVED|50000|1790000000000|1790000300000|{seat}:50000|||");
        [
            ("type".to_string(), "reservations".to_string()),
            ("rows".to_string(), format!("{id}\n{record}")),
        ]
    };
    let _: String = redis
        .xadd(&keys.outbox, "*", &entry(user, seats[0]))
        .await
        .unwrap();
    let _: String = redis
        .xadd(&keys.outbox, "*", &entry(other, seats[1]))
        .await
        .unwrap();
    let (good, fields) = token_entry(user);
    let _: String = redis.xadd(&keys.outbox, "*", &fields).await.unwrap();

    let mut flusher = flusher(&quiet, Duration::from_secs(30)).await;
    let mut passes = 0;
    while redis.xlen::<_, u64>(&keys.outbox).await.unwrap() > 0 {
        flusher
            .flush(&Outbox::of_schedule(schedule), false)
            .await
            .unwrap();
        passes += 1;
        assert!(passes <= 2, "a conflict is not retried ({passes} passes)");
    }
    assert!(mysql_tokens(&app, schedule).await.contains_key(&good));
    let mut conn = app.app.db.primary.get_conn().await.unwrap();
    let owner: Option<u64> = conn
        .exec_first("SELECT user_id FROM reservations WHERE id = ?", (id.get(),))
        .await
        .unwrap();
    assert_eq!(owner, Some(user), "the first version stays");

    let _: u64 = redis.sadd(SCHEDULES, schedule).await.unwrap();
    let listed = dead_letters::list(&mut redis).await.unwrap();
    let ours: Vec<_> = listed
        .iter()
        .filter(|d| d.stream == keys.dead_letters)
        .collect();
    assert_eq!(ours.len(), 1, "{listed:?}");
    assert!(ours[0].error.contains("conflict"), "{:?}", ours[0]);
    let stored = ours[0].stored.as_deref().expect("MySQL's version");
    assert!(
        stored.contains(&format!("{user}|50000|{}", seats[0])),
        "{stored}"
    );
    assert!(
        ours[0].fields["rows"].contains(&format!("{other}|RESERVED")),
        "{:?}",
        ours[0]
    );
}
