//! The prepaid wallet: charging and reading a balance on the real
//! server, every error code, parallel charges, and MySQL equal to Redis after the drain.

mod common;

use std::time::Duration;

use common::{OPEN_NOW, TestApp, eventually, spawn_all};
use redis::AsyncCommands;
use seatrush::redis::keys::WalletKeys;

/// A user with a live token (for any schedule: the wallet needs only the user's own token).
async fn user_with_token(app: &TestApp) -> (u64, String) {
    let (_, schedule) = app.create_schedule(OPEN_NOW, 1).await;
    app.active_user(schedule).await
}

async fn charge(app: &TestApp, user: u64, token: &str, body: &str) -> common::Rsp {
    app.post(
        &format!("/api/v1/users/{user}/balance/charge"),
        &[("queue-token", token)],
        body,
    )
    .await
}

async fn balance(app: &TestApp, user: u64, token: &str) -> common::Rsp {
    app.get(
        &format!("/api/v1/users/{user}/balance"),
        &[("queue-token", token)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_add_up_and_the_balance_says_so() {
    let app = TestApp::spawn().await;
    let (user, token) = user_with_token(&app).await;
    let fresh = balance(&app, user, &token).await;
    fresh.assert_ok();
    assert_eq!(
        (fresh.u64("currentBalance"), fresh.u64("totalCharged")),
        (0, 0)
    );

    let first = charge(&app, user, &token, r#"{"amount": 5000}"#).await;
    first.assert_ok();
    assert_eq!(first.u64("userId"), user);
    assert_eq!(
        (first.u64("chargedAmount"), first.u64("currentBalance")),
        (5000, 5000)
    );
    assert!(first.str("chargedAt").ends_with('Z'));
    let second = charge(&app, user, &token, r#"{"amount": 3000}"#).await;
    assert_eq!(second.u64("currentBalance"), 8000);
    assert_ne!(second.u64("transactionId"), first.u64("transactionId"));

    let now = balance(&app, user, &token).await;
    assert_eq!(now.u64("currentBalance"), 8000);
    assert_eq!(now.u64("totalCharged"), 8000);
    assert_eq!(now.u64("totalUsed"), 0);
    assert_eq!(now.str("lastUpdated"), second.str("chargedAt"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wallet_errors() {
    let app = TestApp::spawn().await;
    let (user, token) = user_with_token(&app).await;
    let (_, stranger) = user_with_token(&app).await;
    let path = format!("/api/v1/users/{user}/balance/charge");
    app.post(&path, &[], r#"{"amount": 1}"#)
        .await
        .assert_error(401, "QUEUE_TOKEN_MISSING");
    charge(&app, user, "nonsense", r#"{"amount": 1}"#)
        .await
        .assert_error(401, "QUEUE_TOKEN_INVALID");
    charge(&app, user, &stranger, r#"{"amount": 1}"#)
        .await
        .assert_error(403, "FORBIDDEN");
    balance(&app, user, &stranger)
        .await
        .assert_error(403, "FORBIDDEN");
    for body in [
        r#"{"amount": 0}"#,
        r#"{"amount": -5}"#,
        r#"{"amount": "5"}"#,
        r#"{"amount": 1.5}"#,
        r#"{"amount": 10000001}"#,
        r#"{}"#,
    ] {
        let rsp = charge(&app, user, &token, body).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), "amount", "{body}");
    }
    let rsp = app
        .get("/api/v1/users/abc/balance", &[("queue-token", &token)])
        .await;
    rsp.assert_error(400, "INVALID_REQUEST");
    assert_eq!(rsp.field(), "userId");

    // The balance cap: ten full charges reach 100 000 000, one more won would exceed it.
    for _ in 0..10 {
        assert_eq!(
            charge(&app, user, &token, r#"{"amount": 10000000}"#)
                .await
                .status
                .as_u16(),
            200
        );
    }
    let rsp = charge(&app, user, &token, r#"{"amount": 1}"#).await;
    rsp.assert_error(400, "INVALID_REQUEST");
    assert_eq!(rsp.field(), "amount");
    assert_eq!(
        balance(&app, user, &token).await.u64("currentBalance"),
        100_000_000
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_parallel_charges_add_up_exactly_and_reach_mysql() {
    use mysql_async::prelude::Queryable;
    let app = TestApp::spawn().await;
    let (_, schedule) = app.create_schedule(OPEN_NOW, 1).await;
    // One user's stampede: their request rate is not what this test is about.
    app.set_queue(schedule, r#"{"userRequestsPerSecond": 1000}"#)
        .await;
    let (user, token) = app.active_user(schedule).await;
    let results = spawn_all((0..100).map(|_| {
        let app = app.clone();
        let token = token.clone();
        async move {
            charge(&app, user, &token, r#"{"amount": 1000}"#)
                .await
                .status
                .as_u16()
        }
    }))
    .await;
    assert!(results.iter().all(|&s| s == 200), "{results:?}");
    assert_eq!(
        balance(&app, user, &token).await.u64("currentBalance"),
        100_000
    );

    // Wallet buckets are shared by every user in them, so wait for this user's rows; two
    // flushers may commit their batches in either order, so wait for the ledger too.
    let (balance_row, ledger) = eventually(
        Duration::from_secs(10),
        "balance and ledger in MySQL",
        || {
            let pool = app.app.db.primary.clone();
            async move {
                let mut conn = pool.get_conn().await.unwrap();
                let row: Option<(u64, u64, u64)> = conn
                    .exec_first(
                        "SELECT balance, total_charged, total_used FROM user_balances
                         WHERE user_id = ?",
                        (user,),
                    )
                    .await
                    .unwrap();
                let ledger: Option<(u64, u64)> = conn
                    .exec_first(
                        "SELECT COUNT(*), CAST(COALESCE(SUM(amount), 0) AS UNSIGNED)
                         FROM balance_transactions WHERE user_id = ? AND type = 'CHARGE'",
                        (user,),
                    )
                    .await
                    .unwrap();
                let (row, ledger) = (row?, ledger?);
                (row.1 == 100_000 && ledger.0 == 100).then_some((row, ledger))
            }
        },
    )
    .await;
    let in_redis: String = app
        .redis()
        .hget(WalletKeys::of_user(user).balances, user)
        .await
        .unwrap();
    let (b, c, u) = balance_row;
    assert!(
        in_redis.starts_with(&format!("{b}|{c}|{u}|")),
        "{in_redis} vs {b}|{c}|{u}"
    );
    assert_eq!((b, c, u), (100_000, 100_000, 0));
    assert_eq!(ledger, (100, 100_000), "the ledger sums to the balance");
}

async fn charge_with_key(
    app: &TestApp,
    user: u64,
    token: &str,
    key: &str,
    body: &str,
) -> common::Rsp {
    app.post(
        &format!("/api/v1/users/{user}/balance/charge"),
        &[("queue-token", token), ("idempotency-key", key)],
        body,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_twenty_times_at_once_charges_once() {
    let app = TestApp::spawn().await;
    let (user, token) = user_with_token(&app).await;
    let responses =
        spawn_all(
            (0..20).map(|_| {
                let app = app.clone();
                let token = token.clone();
                async move {
                    charge_with_key(&app, user, &token, "topup-1", r#"{"amount": 7000}"#).await
                }
            }),
        )
        .await;
    let first = &responses[0];
    first.assert_ok();
    for rsp in &responses {
        rsp.assert_ok();
        assert_eq!(
            rsp.u64("transactionId"),
            first.u64("transactionId"),
            "one charge, replayed"
        );
        assert_eq!(rsp.u64("currentBalance"), 7000);
        assert_eq!(rsp.str("chargedAt"), first.str("chargedAt"));
    }
    assert_eq!(
        balance(&app, user, &token).await.u64("currentBalance"),
        7000
    );

    // The same key for another request is refused; a new key charges again.
    charge_with_key(&app, user, &token, "topup-1", r#"{"amount": 8000}"#)
        .await
        .assert_error(422, "IDEMPOTENCY_KEY_REUSED");
    let again = charge_with_key(&app, user, &token, "topup-2", r#"{"amount": 7000}"#).await;
    assert_eq!(again.u64("currentBalance"), 14_000);
    // Keys are per user: another user's "topup-1" is theirs.
    let (other, other_token) = user_with_token(&app).await;
    let theirs = charge_with_key(&app, other, &other_token, "topup-1", r#"{"amount": 8000}"#).await;
    theirs.assert_ok();
    assert_eq!(theirs.u64("currentBalance"), 8000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_charge_is_replayed_as_refused_and_bad_keys_are_400() {
    let app = TestApp::spawn().await;
    let (user, token) = user_with_token(&app).await;
    for _ in 0..10 {
        charge(&app, user, &token, r#"{"amount": 10000000}"#).await;
    }
    for _ in 0..2 {
        let rsp = charge_with_key(&app, user, &token, "over", r#"{"amount": 5}"#).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), "amount");
    }
    for bad in ["has space", &"k".repeat(65)] {
        let rsp = charge_with_key(&app, user, &token, bad, r#"{"amount": 5}"#).await;
        rsp.assert_error(400, "INVALID_REQUEST");
        assert_eq!(rsp.field(), "Idempotency-Key");
    }
}
