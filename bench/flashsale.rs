//! The flash-sale scenario (README, "Benchmarks"): `users` people race for the `seats` seats of one
//! schedule through a running seatrush. Each joins the queue, polls until admitted, lists
//! the seats, holds 1–4 of them, charges their balance and pays; one in ten lets the hold
//! expire instead. It reports the time to sell out, requests/s and latency per step and
//! errors by code, then waits for the write-behind and verifies, from MySQL and Redis:
//! no seat sold twice, every PAID reservation with exactly one payment and one debit,
//! money conserved, MySQL equal to Redis, and the queue's limits held: never more tokens
//! ACTIVE at once than `maxActiveUsers`, never more admitted within a second than
//! `admissionPerSecond`, whichever instance admitted them.
//!
//! Users behave as a client behind a load balancer should: a request whose answer was lost
//! (connection broken, or 502/503/504) is sent again after a pause, with the same
//! Idempotency-Key (issuance, holds, charges, payments), so an instance
//! killed mid-request (`make bench-scale`) costs retries, not lost or doubled work. When the
//! sale is sold out it pauses the queue, so the checks read a settled one.
//!
//! `cargo run --release --example flashsale -- <base url> <concertId> <scheduleId>
//! <first userId> <users> <admission/s>`, with `SEATRUSH_REDIS_URL` and
//! `SEATRUSH_MYSQL_PRIMARY_URL` naming the server's stores (a Redis Cluster's nodes
//! comma-separated, as seatrush takes them; bench/run.sh and bench/scale.sh do all this).
//! With `FLASHSALE_JSON=<file>` it also writes the figures and the sale's timeline (seats
//! sold and requests per step, second by second) there, for bench/report.py.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use mysql_async::prelude::*;
use seatrush::identity::Identity;
use simd_json::OwnedValue;
use simd_json::prelude::*;
use tokio::sync::mpsc;

/// Keep-alive connections the simulated users share.
const CONNECTIONS: usize = 128;
/// Steps of a user's journey, in order.
const STEPS: [&str; 6] = ["issue", "status", "seats", "hold", "charge", "pay"];
/// How long a request whose answer was lost is retried, and the pause between tries.
const RETRY_FOR: Duration = Duration::from_secs(60);
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// A payment whose first request died mid-saga answers `REQUEST_IN_PROGRESS` until the
/// sweeper settles it (after the saga timeout): asked again this often.
const IN_PROGRESS_PAUSE: Duration = Duration::from_secs(1);

/// A pool of keep-alive HTTP/1 connections to the server.
struct Client {
    addr: String,
    idle_tx: mpsc::UnboundedSender<SendRequest<Full<Bytes>>>,
    idle_rx: tokio::sync::Mutex<mpsc::UnboundedReceiver<SendRequest<Full<Bytes>>>>,
}

impl Client {
    async fn new(addr: &str) -> Self {
        let (idle_tx, idle_rx) = mpsc::unbounded_channel();
        let client = Self {
            addr: addr.to_string(),
            idle_tx,
            idle_rx: tokio::sync::Mutex::new(idle_rx),
        };
        for _ in 0..CONNECTIONS {
            let conn = client.connect().await;
            client.idle_tx.send(conn).unwrap();
        }
        client
    }

    async fn connect(&self) -> SendRequest<Full<Bytes>> {
        let stream = tokio::net::TcpStream::connect(&self.addr)
            .await
            .expect("the server accepts connections");
        stream.set_nodelay(true).unwrap();
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .expect("HTTP/1 handshake");
        tokio::spawn(conn);
        sender
    }

    /// (status, JSON body, latency) of one request, on a pooled connection; the latency is
    /// the request's own, from sending it to its last byte (not the wait for a connection).
    async fn call(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> (u16, OwnedValue, Duration) {
        let mut sender = self.idle_rx.lock().await.recv().await.unwrap();
        if sender.ready().await.is_err() {
            sender = self.connect().await;
        }
        let started = Instant::now();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "bench");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let result = sender.send_request(req).await;
        let out = match result {
            Ok(rsp) => {
                let status = rsp.status().as_u16();
                let mut bytes = rsp
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes().to_vec())
                    .unwrap_or_default();
                let json = simd_json::to_owned_value(&mut bytes).unwrap_or(OwnedValue::null());
                (status, json)
            }
            // No answer: recorded under what broke, in the envelope's place for a code.
            Err(e) => (
                0,
                simd_json::json!({"error": {"code": format!("NO ANSWER ({e})")}}),
            ),
        };
        let took = started.elapsed();
        let _ = self.idle_tx.send(sender);
        (out.0, out.1, took)
    }
}

/// Latencies (µs), requests per second of the sale and errors by code, per step.
#[derive(Default)]
struct Stats {
    latencies: Mutex<HashMap<&'static str, Vec<u32>>>,
    per_second: Mutex<HashMap<&'static str, Vec<u64>>>,
    errors: Mutex<BTreeMap<(&'static str, String), u64>>,
}

impl Stats {
    fn record(
        &self,
        step: &'static str,
        second: usize,
        took: Duration,
        status: u16,
        body: &OwnedValue,
    ) {
        let micros = took.as_micros().min(u32::MAX as u128) as u32;
        self.latencies
            .lock()
            .unwrap()
            .entry(step)
            .or_default()
            .push(micros);
        let mut per_second = self.per_second.lock().unwrap();
        let counts = per_second.entry(step).or_default();
        if counts.len() <= second {
            counts.resize(second + 1, 0);
        }
        counts[second] += 1;
        if !(200..300).contains(&status) {
            let code = error_code(body).map_or_else(|| format!("HTTP {status}"), str::to_string);
            *self.errors.lock().unwrap().entry((step, code)).or_default() += 1;
        }
    }
}

struct Sale {
    client: Client,
    /// Signs each user's identity, with the secret the server verifies
    /// (`SEATRUSH_AUTH_SECRET`).
    identity: Identity,
    stats: Stats,
    schedule: u64,
    concert: u64,
    admission_per_second: f64,
    sold_out: AtomicBool,
    started: Instant,
    /// ms after the start of the last successful payment.
    last_payment_ms: AtomicU64,
    /// (seconds after the start, seats sold), as the watcher saw them.
    sold: Mutex<Vec<(f64, u64)>>,
    /// Requests that still had no answer, or a 5xx, after their retries.
    server_errors: AtomicU64,
    /// Tries after a lost answer.
    retries: AtomicU64,
    /// Charges answered 200: each must be one CHARGE line in the ledger, however many
    /// times its request was sent.
    charges: AtomicU64,
    /// Issuances retried after a lost answer that then met `TOKEN_ALREADY_ISSUED`: the first
    /// try had issued a token its user never learnt (the Idempotency-Key should prevent it).
    tokens_lost: AtomicU64,
}

/// An answer that may not come from an instance that handled the request: the connection
/// broke (0) or nginx found no instance to answer (502/503/504; seatrush's own 503, while
/// Redis is unreachable, asks for a retry too).
fn lost(status: u16) -> bool {
    matches!(status, 0 | 502 | 503 | 504)
}

/// The `error.code` of an answer, if it has one.
fn error_code(body: &OwnedValue) -> Option<&str> {
    body.get("error")?.get("code")?.as_str()
}

/// `data.<key>` of an answer, if it has it (indexing would panic on any other body).
fn data<'a>(body: &'a OwnedValue, key: &str) -> Option<&'a OwnedValue> {
    body.get("data")?.get(key)
}

impl Sale {
    /// One request of a user's, retried while its answer is lost (see [`lost`]) for up to
    /// [`RETRY_FOR`], with the same `idempotency_key`. Every try is recorded in the stats.
    /// Returns the last answer and whether it came from a retry.
    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        step: &'static str,
        auth: &str,
        method: Method,
        path: &str,
        token: Option<&str>,
        idempotency_key: Option<&str>,
        body: Option<String>,
    ) -> (u16, OwnedValue, bool) {
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(3);
        headers.push(("authorization", auth));
        headers.extend(token.map(|t| ("queue-token", t)));
        headers.extend(idempotency_key.map(|k| ("idempotency-key", k)));
        let deadline = Instant::now() + RETRY_FOR;
        let mut retried = false;
        loop {
            let (status, json, took) = self
                .client
                .call(method.clone(), path, &headers, body.clone())
                .await;
            let second = self.started.elapsed().as_secs() as usize;
            self.stats.record(step, second, took, status, &json);
            // Only a repeat can find its first try still running (a payment whose request
            // died after it began: the sweeper settles it after the saga timeout).
            let in_progress = retried && error_code(&json) == Some("REQUEST_IN_PROGRESS");
            if !(lost(status) || in_progress) || Instant::now() >= deadline {
                if status >= 500 || status == 0 {
                    self.server_errors.fetch_add(1, Ordering::Relaxed);
                }
                return (status, json, retried);
            }
            retried = true;
            self.retries.fetch_add(1, Ordering::Relaxed);
            let pause = if in_progress {
                IN_PROGRESS_PAUSE
            } else {
                RETRY_PAUSE
            };
            tokio::time::sleep(pause).await;
        }
    }
}

/// A small deterministic generator per user, so runs are repeatable.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One user's journey, as the user: every request carries their signed identity.
async fn user(sale: Arc<Sale>, user_id: u64) {
    // A retried issuance gets the token its first try was issued.
    let join_key = format!("join-{user_id}");
    let auth = format!(
        "Bearer {}",
        sale.identity
            .sign(user_id, 3600)
            .expect("the configured secret signs")
    );
    let (status, body, retried) = sale
        .call(
            "issue",
            &auth,
            Method::POST,
            "/api/v1/queue/tokens",
            None,
            Some(&join_key),
            Some(format!(
                r#"{{"userId":{user_id},"scheduleId":{}}}"#,
                sale.schedule
            )),
        )
        .await;
    if status != 200 {
        if retried && error_code(&body) == Some("TOKEN_ALREADY_ISSUED") {
            sale.tokens_lost.fetch_add(1, Ordering::Relaxed);
        }
        return;
    }
    let token = data(&body, "token")
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut state = data(&body, "status")
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut position = data(&body, "queuePosition").as_u64().unwrap_or(0);
    // Waiting: poll about when the admission rate says the turn comes: after 1 to 10 s.
    while state == "WAITING" {
        let wait = (position as f64 / sale.admission_per_second).clamp(1.0, 10.0);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        if sale.sold_out.load(Ordering::Relaxed) {
            return;
        }
        let (status, body, _) = sale
            .call(
                "status",
                &auth,
                Method::GET,
                "/api/v1/queue/tokens/me",
                Some(&token),
                None,
                None,
            )
            .await;
        if status != 200 {
            return;
        }
        state = data(&body, "status")
            .as_str()
            .unwrap_or_default()
            .to_string();
        position = data(&body, "queuePosition").as_u64().unwrap_or(0);
    }
    let mut rng = user_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let want = 1 + (next(&mut rng) % 4) as usize;
    for attempt in 0..60 {
        if sale.sold_out.load(Ordering::Relaxed) {
            return;
        }
        let (status, body, _) = sale
            .call(
                "seats",
                &auth,
                Method::GET,
                &format!(
                    "/api/v1/concerts/{}/schedules/{}/seats",
                    sale.concert, sale.schedule
                ),
                Some(&token),
                None,
                None,
            )
            .await;
        if status != 200 {
            return;
        }
        // Only the ids are kept: a parsed listing of thousands of seats is megabytes.
        let mut free: Vec<u64> = data(&body, "seats")
            .and_then(|seats| seats.as_array())
            .map(|a| a.iter().filter_map(|s| s.get("seatId")?.as_u64()).collect())
            .unwrap_or_default();
        drop(body);
        if free.is_empty() {
            // Held seats may still come back when their holds expire.
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        let mut pick = Vec::with_capacity(want);
        while pick.len() < want && !free.is_empty() {
            let i = (next(&mut rng) % free.len() as u64) as usize;
            pick.push(free.swap_remove(i));
        }
        let (status, body, _) = sale
            .call(
                "hold",
                &auth,
                Method::POST,
                "/api/v1/reservations",
                Some(&token),
                Some(&format!("hold-{attempt}")),
                Some(format!(
                    r#"{{"scheduleId":{},"seatIds":{pick:?},"userId":{user_id}}}"#,
                    sale.schedule
                )),
            )
            .await;
        if status == 409 {
            continue; // someone was faster: look again
        }
        if status != 201 {
            return;
        }
        if user_id.is_multiple_of(10) {
            return; // this one walks away and lets the hold expire
        }
        let reservation = data(&body, "reservationId").as_u64().unwrap_or(0);
        let total = data(&body, "totalAmount").as_u64().unwrap_or(0);
        let (status, _, _) = sale
            .call(
                "charge",
                &auth,
                Method::POST,
                &format!("/api/v1/users/{user_id}/balance/charge"),
                Some(&token),
                Some(&format!("charge-{reservation}")),
                Some(format!(r#"{{"amount":{total}}}"#)),
            )
            .await;
        if status != 200 {
            return;
        }
        sale.charges.fetch_add(1, Ordering::Relaxed);
        let (status, _, _) = sale
            .call(
                "pay",
                &auth,
                Method::POST,
                "/api/v1/payments",
                Some(&token),
                Some(&format!("pay-{reservation}")),
                Some(format!(
                    r#"{{"reservationId":{reservation},"paymentMethod":"BALANCE","userId":{user_id}}}"#
                )),
            )
            .await;
        if status == 201 {
            let at = sale.started.elapsed().as_millis() as u64;
            sale.last_payment_ms.fetch_max(at, Ordering::Relaxed);
        }
        return;
    }
}

/// Watches the schedule's sold seats until all are sold (or `limit` passes).
async fn watch(sale: Arc<Sale>, seats: u64, limit: Duration) -> Option<Duration> {
    let path = format!("/api/v1/admin/schedules/{}/queue", sale.schedule);
    while sale.started.elapsed() < limit {
        let (status, body, _) = sale
            .client
            .call(
                Method::GET,
                &path,
                &[("x-admin-key", "dev-admin-key")],
                None,
            )
            .await;
        let sold = data(&body, "soldSeats").as_u64();
        if let Some(n) = sold {
            let at = sale.started.elapsed().as_secs_f64();
            sale.sold.lock().unwrap().push((at, n));
        }
        if status == 200 && sold == Some(seats) {
            sale.sold_out.store(true, Ordering::Relaxed);
            return Some(sale.started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sale.sold_out.store(true, Ordering::Relaxed);
    None
}

/// One step's figures over the whole sale.
#[derive(serde::Serialize)]
struct StepFigures {
    step: &'static str,
    requests: usize,
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
}

/// What `FLASHSALE_JSON` receives.
#[derive(serde::Serialize)]
struct Summary {
    users: u64,
    seats: u64,
    admission_per_second: f64,
    sold_out_s: Option<f64>,
    elapsed_s: f64,
    server_errors: u64,
    retries: u64,
    tokens_lost: u64,
    most_admitted_in_a_second: u64,
    most_active_at_once: u64,
    seats_sold_twice: u64,
    consistent_after_last_payment_s: f64,
    steps: Vec<StepFigures>,
    errors: Vec<String>,
    sold_timeline: Vec<(f64, u64)>,
    requests_per_second: BTreeMap<String, Vec<u64>>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// What MySQL and Redis say after the drain; every field must hold for the run to pass.
struct Verdict {
    seats_sold_twice: u64,
    sold_seats: u64,
    paid_without_one_payment: u64,
    paid_without_one_debit: u64,
    money_gap: i64,
    reservations_differing: u64,
    balances_differing: u64,
    /// Tokens WAITING, ACTIVE, ended and ever admitted: MySQL's counts against Redis's.
    tokens_differing: u64,
    /// The queue's limits, from MySQL's admission and end times.
    most_admitted_in_a_second: u64,
    most_active_at_once: u64,
}

/// The most admissions within one second (as the admission scripts count them: per whole
/// second of Redis's clock) and the most tokens ACTIVE at once (a token leaves at the instant
/// it ends; ends before admissions at the same instant, as the scripts run them), from each
/// admitted token's (activated, ended) times in ms.
fn queue_limits(tokens: &[(i64, Option<i64>)]) -> (u64, u64) {
    let mut per_second: HashMap<i64, u64> = HashMap::new();
    let mut changes: Vec<(i64, i64)> = Vec::with_capacity(tokens.len() * 2);
    for &(activated, ended) in tokens {
        *per_second.entry(activated.div_euclid(1000)).or_default() += 1;
        changes.push((activated, 1));
        changes.extend(ended.map(|at| (at, -1)));
    }
    changes.sort_unstable();
    let (mut active, mut most_active) = (0i64, 0i64);
    for (_, change) in changes {
        active += change;
        most_active = most_active.max(active);
    }
    let most_admitted = per_second.into_values().max().unwrap_or(0);
    (most_admitted, most_active as u64)
}

/// CHARGE lines in the ledger of the schedule's buyers (who charge only within the sale,
/// after a hold).
/// Charges of this sale's buyers since `since_ms` (a buyer may have charged in an earlier sale
/// of the same bench run).
async fn charge_lines(
    db: &mysql_async::Pool,
    schedule: u64,
    since_ms: i64,
) -> mysql_async::Result<u64> {
    let n: Option<u64> = db
        .get_conn()
        .await?
        .exec_first(
            "SELECT COUNT(*) FROM balance_transactions WHERE type = 'CHARGE' AND created_at >= ?
               AND user_id IN (SELECT user_id FROM reservations WHERE schedule_id = ?)",
            (seatrush::mysql::datetime_ms(since_ms), schedule),
        )
        .await?;
    Ok(n.unwrap_or(0))
}

async fn verify(
    db: &mysql_async::Pool,
    redis: &mut seatrush::redis::RedisConn,
    schedule: u64,
) -> Result<Verdict, Box<dyn std::error::Error>> {
    let mut conn = db.get_conn().await?;
    // Read each time: a killed instance's last holds reach MySQL only once another instance
    // claims its outbox entries.
    let buyers: Vec<u64> = conn
        .exec(
            "SELECT DISTINCT user_id FROM reservations WHERE schedule_id = ?",
            (schedule,),
        )
        .await?;
    let seats_sold_twice: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM (SELECT rs.seat_id FROM reservation_seats rs
               JOIN reservations r ON r.id = rs.reservation_id
               WHERE r.schedule_id = ? AND r.status = 'PAID'
               GROUP BY rs.seat_id HAVING COUNT(*) > 1) twice",
            (schedule,),
        )
        .await?
        .unwrap_or(0);
    let sold_seats: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM seats WHERE schedule_id = ? AND status = 'SOLD'",
            (schedule,),
        )
        .await?
        .unwrap_or(0);
    let paid_without_one_payment: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM reservations r
             WHERE r.schedule_id = ? AND r.status = 'PAID'
               AND (SELECT COUNT(*) FROM payments p WHERE p.reservation_id = r.id
                      AND p.amount = r.total_amount) <> 1",
            (schedule,),
        )
        .await?
        .unwrap_or(0);
    let paid_without_one_debit: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM reservations r
             WHERE r.schedule_id = ? AND r.status = 'PAID'
               AND (SELECT COUNT(*) FROM balance_transactions t WHERE t.type = 'PAYMENT'
                      AND t.ref_id = r.id AND t.amount = r.total_amount) <> 1",
            (schedule,),
        )
        .await?
        .unwrap_or(0);
    // The buyers' ledger (charges in, payments out) against their balances.
    let money_gap: i64 = conn
        .exec_first(
            "SELECT CAST(
               COALESCE((SELECT SUM(IF(type = 'CHARGE', amount, -amount))
                         FROM balance_transactions WHERE user_id IN
                           (SELECT user_id FROM reservations WHERE schedule_id = ?)), 0)
               - COALESCE((SELECT SUM(balance) FROM user_balances WHERE user_id IN
                           (SELECT user_id FROM reservations WHERE schedule_id = ?)), 0)
               AS SIGNED)",
            (schedule, schedule),
        )
        .await?
        .unwrap_or(0);
    // Reservations: Redis's statuses (PAYING is RESERVED to MySQL) against MySQL's.
    let res_key = seatrush::redis::keys::ScheduleKeys::new(schedule).res;
    let in_redis: HashMap<u64, String> = redis::cmd("HGETALL")
        .arg(&res_key)
        .query_async::<HashMap<u64, String>>(redis)
        .await?;
    let in_mysql: HashMap<u64, String> = conn
        .exec::<(u64, String), _, _>(
            "SELECT id, status FROM reservations WHERE schedule_id = ?",
            (schedule,),
        )
        .await?
        .into_iter()
        .collect();
    let mut reservations_differing = (in_redis.len() as i64 - in_mysql.len() as i64).unsigned_abs();
    for (id, record) in &in_redis {
        let status = record.split('|').nth(1).unwrap_or_default();
        let status = if status == "PAYING" {
            "RESERVED"
        } else {
            status
        };
        if in_mysql.get(id).map(String::as_str) != Some(status) {
            reservations_differing += 1;
        }
    }
    // Balances: one pipelined read from Redis, one query to MySQL.
    let mut pipe = redis::pipe();
    for &user in &buyers {
        pipe.hget(
            seatrush::redis::keys::WalletKeys::of_user(user).balances,
            user,
        );
    }
    let records: Vec<Option<String>> = pipe.query_async(redis).await?;
    let rows: HashMap<u64, (u64, u64, u64)> = conn
        .exec::<(u64, u64, u64, u64), _, _>(
            "SELECT user_id, balance, total_charged, total_used FROM user_balances
             WHERE user_id IN (SELECT user_id FROM reservations WHERE schedule_id = ?)",
            (schedule,),
        )
        .await?
        .into_iter()
        .map(|(user, b, c, u)| (user, (b, c, u)))
        .collect();
    let mut balances_differing = 0;
    for (user, record) in buyers.iter().zip(records) {
        // No record in Redis: the balance was never used there, so MySQL's stands.
        let Some(record) = record else { continue };
        let f: Vec<u64> = record
            .split('|')
            .take(3)
            .filter_map(|v| v.parse().ok())
            .collect();
        if f.len() != 3 || rows.get(user) != Some(&(f[0], f[1], f[2])) {
            balances_differing += 1;
        }
    }
    // Tokens: the paused queue's counts in both stores, then the limits from MySQL.
    let k = seatrush::redis::keys::ScheduleKeys::new(schedule);
    let (waiting, active, ended, admitted): (u64, u64, u64, Option<u64>) = redis::pipe()
        .zcard(&k.waiting)
        .zcard(&k.active)
        .zcard(&k.ended)
        .hget(&k.stats, "admitted")
        .query_async(redis)
        .await?;
    let (mysql_waiting, mysql_active, mysql_ended, mysql_admitted): (u64, u64, u64, u64) = conn
        .exec_first(
            "SELECT CAST(COALESCE(SUM(status = 'WAITING'), 0) AS UNSIGNED),
                    CAST(COALESCE(SUM(status = 'ACTIVE'), 0) AS UNSIGNED),
                    CAST(COALESCE(SUM(status IN ('EXPIRED', 'USED')), 0) AS UNSIGNED),
                    COUNT(activated_at)
             FROM queue_tokens WHERE schedule_id = ?",
            (schedule,),
        )
        .await?
        .unwrap_or_default();
    let tokens_differing = [
        (waiting, mysql_waiting),
        (active, mysql_active),
        (ended, mysql_ended),
        (admitted.unwrap_or(0), mysql_admitted),
    ]
    .iter()
    .map(|&(a, b)| a.abs_diff(b))
    .sum();
    let admitted_tokens: Vec<(i64, Option<i64>)> = conn
        .exec(
            "SELECT TIMESTAMPDIFF(MICROSECOND, '1970-01-01', activated_at) DIV 1000,
                    TIMESTAMPDIFF(MICROSECOND, '1970-01-01', ended_at) DIV 1000
             FROM queue_tokens WHERE schedule_id = ? AND activated_at IS NOT NULL",
            (schedule,),
        )
        .await?;
    let (most_admitted_in_a_second, most_active_at_once) = queue_limits(&admitted_tokens);
    Ok(Verdict {
        tokens_differing,
        most_admitted_in_a_second,
        most_active_at_once,
        seats_sold_twice,
        sold_seats,
        paid_without_one_payment,
        paid_without_one_debit,
        money_gap,
        reservations_differing,
        balances_differing,
    })
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [base, concert, schedule, first_user, users, rate] = &args[..] else {
        return Err(
            "usage: flashsale <base url> <concertId> <scheduleId> <first userId> \
                    <users> <admission/s>"
                .into(),
        );
    };
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let (first_user, users): (u64, u64) = (first_user.parse()?, users.parse()?);
    let config = seatrush::config::Config::from_env()?;
    let sale = Arc::new(Sale {
        client: Client::new(addr).await,
        identity: Identity::from_config(&config)?,
        stats: Stats::default(),
        schedule: schedule.parse()?,
        concert: concert.parse()?,
        admission_per_second: rate.parse()?,
        sold_out: AtomicBool::new(false),
        started: Instant::now(),
        last_payment_ms: AtomicU64::new(0),
        sold: Mutex::default(),
        server_errors: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        tokens_lost: AtomicU64::new(0),
        charges: AtomicU64::new(0),
    });
    let queue_path = format!("/api/v1/admin/schedules/{}/queue", sale.schedule);
    let admin = [
        ("x-admin-key", "dev-admin-key"),
        ("content-type", "application/json"),
    ];
    let (status, body, _) = sale
        .client
        .call(Method::GET, &queue_path, &admin, None)
        .await;
    if status != 200 {
        return Err(format!("schedule {}: {status} {body:?}", sale.schedule).into());
    }
    let max_active = data(&body, "maxActiveUsers").as_u64().unwrap_or(0);
    let rate_limit = data(&body, "admissionPerSecond").as_u64().unwrap_or(0);
    let mysql = mysql_async::Pool::new(std::env::var("SEATRUSH_MYSQL_PRIMARY_URL")?.as_str());
    let mut conn = mysql.get_conn().await?;
    let seats: u64 = conn
        .exec_first(
            "SELECT COUNT(*) FROM seats WHERE schedule_id = ?",
            (sale.schedule,),
        )
        .await?
        .unwrap_or(0);
    drop(conn);

    let watcher = tokio::spawn(watch(sale.clone(), seats, Duration::from_secs(600)));
    let tasks: Vec<_> = (first_user..first_user + users)
        .map(|u| tokio::spawn(user(sale.clone(), u)))
        .collect();
    let sold_out_after = watcher.await?;
    let elapsed = sale.started.elapsed();
    // Nothing is left to sell: the queue admits no one more, so its tokens settle.
    let (status, body, _) = sale
        .client
        .call(
            Method::PUT,
            &queue_path,
            &admin,
            Some(r#"{"paused":true}"#.to_string()),
        )
        .await;
    if status != 200 {
        return Err(format!("pausing the queue: {status} {body:?}").into());
    }

    // The drain, from the moment the last seat was sold: MySQL equal to Redis, timed from the
    // last payment (users still waiting notice the end at their next poll, meanwhile).
    let mut redis = seatrush::redis::connect(&std::env::var("SEATRUSH_REDIS_URL")?).await?;
    let last_payment = Duration::from_millis(sale.last_payment_ms.load(Ordering::Relaxed));
    let verdict = loop {
        let v = verify(&mysql, &mut redis, sale.schedule).await?;
        // The checks read MySQL one query after another, so a flush may land between them:
        // wait until every one of them holds (a real fault outlasts the two minutes).
        let caught_up = v.reservations_differing == 0
            && v.balances_differing == 0
            && v.sold_seats == seats
            && v.paid_without_one_payment == 0
            && v.paid_without_one_debit == 0
            && v.money_gap == 0
            && v.tokens_differing == 0;
        if caught_up || sale.started.elapsed() > elapsed + Duration::from_secs(120) {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let consistent_after = sale.started.elapsed().saturating_sub(last_payment);
    for task in tasks {
        task.await?;
    }
    // Requests/s are over the whole run, until the last user gave up.
    let elapsed = sale.started.elapsed();
    // Each charge answered 200 is one ledger line, however often its request was sent: read
    // once the last user is done (one whose hold expired may have been charging until then).
    let charged = sale.charges.load(Ordering::Relaxed);
    let started_ms = chrono::Utc::now().timestamp_millis() - elapsed.as_millis() as i64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let charges_in_ledger = loop {
        let n = charge_lines(&mysql, sale.schedule, started_ms).await?;
        if n == charged || Instant::now() > deadline {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let latencies = sale.stats.latencies.lock().unwrap();
    println!(
        "flash sale: {users} users, {seats} seats, admission {rate}/s, {CONNECTIONS} connections"
    );
    match sold_out_after {
        Some(t) => println!("sold out after {:.1} s", t.as_secs_f64()),
        None => println!("NOT sold out ({} s)", elapsed.as_secs()),
    }
    println!(
        "{:<8}{:>10}{:>10}{:>9}{:>9}{:>10}",
        "step", "requests", "req/s", "p50 ms", "p99 ms", "p99.9 ms"
    );
    let mut steps = Vec::new();
    for step in STEPS {
        let mut l = latencies.get(step).cloned().unwrap_or_default();
        l.sort_unstable();
        let rps = l.len() as f64 / elapsed.as_secs_f64();
        println!(
            "{step:<8}{:>10}{rps:>10.0}{:>9.2}{:>9.2}{:>10.2}",
            l.len(),
            percentile(&l, 0.5),
            percentile(&l, 0.99),
            percentile(&l, 0.999)
        );
        steps.push(StepFigures {
            step,
            requests: l.len(),
            per_second: rps,
            p50_ms: percentile(&l, 0.5),
            p99_ms: percentile(&l, 0.99),
            p999_ms: percentile(&l, 0.999),
        });
    }
    let errors = sale.stats.errors.lock().unwrap();
    let listed: Vec<String> = errors
        .iter()
        .map(|((step, code), n)| format!("{step} {code} ×{n}"))
        .collect();
    println!(
        "errors by code: {}",
        if listed.is_empty() {
            "none".to_string()
        } else {
            listed.join(", ")
        }
    );
    let five_xx = sale.server_errors.load(Ordering::Relaxed);
    println!(
        "verified after the drain: {} seats SOLD, {} sold twice, {} PAID without exactly one \
         payment, {} without exactly one debit, money gap {} KRW, {} reservations and {} \
         balances differing between MySQL and Redis; consistent {:.1} s after the last payment",
        verdict.sold_seats,
        verdict.seats_sold_twice,
        verdict.paid_without_one_payment,
        verdict.paid_without_one_debit,
        verdict.money_gap,
        verdict.reservations_differing,
        verdict.balances_differing,
        consistent_after.as_secs_f64()
    );
    let retries = sale.retries.load(Ordering::Relaxed);
    let tokens_lost = sale.tokens_lost.load(Ordering::Relaxed);
    println!(
        "queue limits: at most {} admitted within a second (admissionPerSecond {rate_limit}), \
         at most {} ACTIVE at once (maxActiveUsers {max_active}); {} tokens differing between \
         MySQL and Redis",
        verdict.most_admitted_in_a_second, verdict.most_active_at_once, verdict.tokens_differing
    );
    println!(
        "lost answers: {retries} retries, {five_xx} requests still failing after them, \
         {tokens_lost} tokens issued to users who never learnt them; {charged} charges \
         answered, {charges_in_ledger} in the ledger"
    );
    if let Ok(path) = std::env::var("FLASHSALE_JSON") {
        let summary = Summary {
            users,
            seats,
            admission_per_second: sale.admission_per_second,
            sold_out_s: sold_out_after.map(|t| t.as_secs_f64()),
            elapsed_s: elapsed.as_secs_f64(),
            server_errors: five_xx,
            retries,
            tokens_lost,
            most_admitted_in_a_second: verdict.most_admitted_in_a_second,
            most_active_at_once: verdict.most_active_at_once,
            seats_sold_twice: verdict.seats_sold_twice,
            consistent_after_last_payment_s: consistent_after.as_secs_f64(),
            steps,
            errors: listed,
            sold_timeline: sale.sold.lock().unwrap().clone(),
            requests_per_second: sale
                .stats
                .per_second
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        std::fs::write(path, simd_json::to_string(&summary)?)?;
    }
    let ok = sold_out_after.is_some()
        && five_xx == 0
        && verdict.seats_sold_twice == 0
        && verdict.sold_seats == seats
        && verdict.paid_without_one_payment == 0
        && verdict.paid_without_one_debit == 0
        && verdict.money_gap == 0
        && verdict.reservations_differing == 0
        && verdict.balances_differing == 0
        && verdict.tokens_differing == 0
        && verdict.most_admitted_in_a_second <= rate_limit
        && verdict.most_active_at_once <= max_active
        && charges_in_ledger == charged;
    if !ok {
        return Err("the flash sale failed a check (see above)".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::queue_limits;

    #[test]
    fn queue_limits_count_per_second_and_at_once() {
        // Two admitted in second 1 and three in second 2; at 2 000 ms the first ends as the
        // fourth is admitted (ends count first), so at most three are ACTIVE at once.
        let tokens = [
            (1_000, Some(2_000)),
            (1_999, None),
            (2_000, Some(2_500)),
            (2_100, None),
            (2_999, Some(3_000)),
        ];
        assert_eq!(queue_limits(&tokens), (3, 3));
        assert_eq!(queue_limits(&[]), (0, 0));
        // Back to back: one ends exactly when the next starts.
        assert_eq!(queue_limits(&[(0, Some(10)), (10, Some(20))]), (2, 1));
    }
}
