//! The flash-sale scenario (SPEC §9): `users` people race for the `seats` seats of one
//! schedule through a running seatrush. Each joins the queue, polls until admitted, lists
//! the seats, holds 1–4 of them, charges their balance and pays; one in ten lets the hold
//! expire instead. It reports the time to sell out, requests/s and latency per step and
//! errors by code, then waits for the write-behind and verifies, from MySQL and Redis:
//! no seat sold twice, every PAID reservation with exactly one payment and one debit,
//! money conserved, and MySQL equal to Redis.
//!
//! `cargo run --release --example flashsale -- <base url> <concertId> <scheduleId>
//! <first userId> <users> <admission/s>`, with `SEATRUSH_REDIS_URL` and
//! `SEATRUSH_MYSQL_PRIMARY_URL` naming the server's stores (bench/run.sh does all this).
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
use simd_json::OwnedValue;
use simd_json::prelude::*;
use tokio::sync::mpsc;

/// Keep-alive connections the simulated users share.
const CONNECTIONS: usize = 128;
/// Steps of a user's journey, in order.
const STEPS: [&str; 6] = ["issue", "status", "seats", "hold", "charge", "pay"];

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
            Err(_) => (0, OwnedValue::null()),
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
            let code = body["error"]["code"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}"), str::to_string);
            *self.errors.lock().unwrap().entry((step, code)).or_default() += 1;
        }
    }
}

struct Sale {
    client: Client,
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
    server_errors: AtomicU64,
}

impl Sale {
    async fn call(
        &self,
        step: &'static str,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> (u16, OwnedValue) {
        let headers: Vec<(&str, &str)> = token.map(|t| ("queue-token", t)).into_iter().collect();
        let (status, json, took) = self.client.call(method, path, &headers, body).await;
        let second = self.started.elapsed().as_secs() as usize;
        self.stats.record(step, second, took, status, &json);
        if status >= 500 || status == 0 {
            self.server_errors.fetch_add(1, Ordering::Relaxed);
        }
        (status, json)
    }
}

/// A small deterministic generator per user, so runs are repeatable.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// One user's journey.
async fn user(sale: Arc<Sale>, user_id: u64) {
    let (status, body) = sale
        .call(
            "issue",
            Method::POST,
            "/api/v1/queue/tokens",
            None,
            Some(format!(
                r#"{{"userId":{user_id},"scheduleId":{}}}"#,
                sale.schedule
            )),
        )
        .await;
    if status != 200 {
        return;
    }
    let token = body["data"]["token"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut state = body["data"]["status"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut position = body["data"]["queuePosition"].as_u64().unwrap_or(0);
    // Waiting: poll about when the admission rate says the turn comes: after 1 to 10 s.
    while state == "WAITING" {
        let wait = (position as f64 / sale.admission_per_second).clamp(1.0, 10.0);
        tokio::time::sleep(Duration::from_secs_f64(wait)).await;
        if sale.sold_out.load(Ordering::Relaxed) {
            return;
        }
        let (status, body) = sale
            .call(
                "status",
                Method::GET,
                "/api/v1/queue/tokens/me",
                Some(&token),
                None,
            )
            .await;
        if status != 200 {
            return;
        }
        state = body["data"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        position = body["data"]["queuePosition"].as_u64().unwrap_or(0);
    }
    let mut rng = user_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let want = 1 + (next(&mut rng) % 4) as usize;
    for _ in 0..60 {
        if sale.sold_out.load(Ordering::Relaxed) {
            return;
        }
        let (status, body) = sale
            .call(
                "seats",
                Method::GET,
                &format!(
                    "/api/v1/concerts/{}/schedules/{}/seats",
                    sale.concert, sale.schedule
                ),
                Some(&token),
                None,
            )
            .await;
        if status != 200 {
            return;
        }
        // Only the ids are kept: a parsed listing of thousands of seats is megabytes.
        let mut free: Vec<u64> = body["data"]["seats"]
            .as_array()
            .map(|a| a.iter().filter_map(|s| s["seatId"].as_u64()).collect())
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
        let (status, body) = sale
            .call(
                "hold",
                Method::POST,
                "/api/v1/reservations",
                Some(&token),
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
        let reservation = body["data"]["reservationId"].as_u64().unwrap_or(0);
        let total = body["data"]["totalAmount"].as_u64().unwrap_or(0);
        let (status, _) = sale
            .call(
                "charge",
                Method::POST,
                &format!("/api/v1/users/{user_id}/balance/charge"),
                Some(&token),
                Some(format!(r#"{{"amount":{total}}}"#)),
            )
            .await;
        if status != 200 {
            return;
        }
        let (status, _) = sale
            .call(
                "pay",
                Method::POST,
                "/api/v1/payments",
                Some(&token),
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
        let sold = body["data"]["soldSeats"].as_u64();
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
}

async fn verify(
    db: &mysql_async::Pool,
    redis: &mut redis::aio::MultiplexedConnection,
    schedule: u64,
    buyers: &[u64],
) -> Result<Verdict, Box<dyn std::error::Error>> {
    let mut conn = db.get_conn().await?;
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
    for &user in buyers {
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
    Ok(Verdict {
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
    let sale = Arc::new(Sale {
        client: Client::new(addr).await,
        stats: Stats::default(),
        schedule: schedule.parse()?,
        concert: concert.parse()?,
        admission_per_second: rate.parse()?,
        sold_out: AtomicBool::new(false),
        started: Instant::now(),
        last_payment_ms: AtomicU64::new(0),
        sold: Mutex::default(),
        server_errors: AtomicU64::new(0),
    });
    let (status, body, _) = sale
        .client
        .call(
            Method::GET,
            &format!("/api/v1/admin/schedules/{}/queue", sale.schedule),
            &[("x-admin-key", "dev-admin-key")],
            None,
        )
        .await;
    if status != 200 {
        return Err(format!("schedule {}: {status} {body:?}", sale.schedule).into());
    }
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

    // The drain, from the moment the last seat was sold: MySQL equal to Redis, timed from the
    // last payment (users still waiting notice the end at their next poll, meanwhile).
    let mut redis = redis::Client::open(std::env::var("SEATRUSH_REDIS_URL")?)?
        .get_multiplexed_async_connection()
        .await?;
    let mut conn = mysql.get_conn().await?;
    let buyers: Vec<u64> = conn
        .exec(
            "SELECT DISTINCT user_id FROM reservations WHERE schedule_id = ?",
            (sale.schedule,),
        )
        .await?;
    drop(conn);
    let last_payment = Duration::from_millis(sale.last_payment_ms.load(Ordering::Relaxed));
    let verdict = loop {
        let v = verify(&mysql, &mut redis, sale.schedule, &buyers).await?;
        // The checks read MySQL one query after another, so a flush may land between them:
        // wait until every one of them holds (a real fault outlasts the two minutes).
        let caught_up = v.reservations_differing == 0
            && v.balances_differing == 0
            && v.sold_seats == seats
            && v.paid_without_one_payment == 0
            && v.paid_without_one_debit == 0
            && v.money_gap == 0;
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
    if let Ok(path) = std::env::var("FLASHSALE_JSON") {
        let summary = Summary {
            users,
            seats,
            admission_per_second: sale.admission_per_second,
            sold_out_s: sold_out_after.map(|t| t.as_secs_f64()),
            elapsed_s: elapsed.as_secs_f64(),
            server_errors: five_xx,
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
        && verdict.balances_differing == 0;
    if !ok {
        return Err("the flash sale failed a check (see above)".into());
    }
    Ok(())
}
