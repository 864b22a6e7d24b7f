//! The flash-sale scenario (README, "Benchmarks"): `users` people race for the `seats` seats
//! of one schedule through a running seatrush, on the buyer's path a ticketing site's page
//! takes. Each joins the queue and waits for their turn: most listen on the queue's event
//! stream, the rest poll the status when `pollAfterMs` says. Once admitted, most hold the
//! best available 1–4 seats by `quantity`, the rest list the seats and pick theirs (looking
//! again when someone was faster); then they charge their balance and pay. One in ten walks
//! away and lets the hold expire; a buyer who gives up (no seat for a minute) leaves the
//! queue, so the slot goes to the next in line at once. It reports the time to sell out,
//! requests/s and latency per step, errors by code, status requests per waiting user and the
//! share of holds refused for a seat someone else held; then waits for the write-behind and
//! verifies, from MySQL and Redis: no seat sold twice, every PAID reservation with exactly
//! one payment and one debit, money conserved, MySQL equal to Redis, and the queue's limits
//! held: never more tokens ACTIVE at once than `maxActiveUsers`, never more admitted within
//! a second than `admissionPerSecond`, whichever instance admitted them.
//!
//! Users behave as a client behind a load balancer should: a request whose answer was lost
//! (connection broken, or 502/503/504) is sent again after a pause, with the same
//! Idempotency-Key (issuance, holds, charges, payments), so an instance killed mid-request
//! (`make bench-scale`) costs retries, not lost or doubled work; a stream that breaks is
//! opened again. When the sale is sold out it pauses the queue, so the checks read a
//! settled one, and the users still waiting go home.
//!
//! `cargo run --release --example flashsale -- <base url> <concertId> <scheduleId>
//! <first userId> <users> <admission/s>`, with `SEATRUSH_REDIS_URL` and
//! `SEATRUSH_MYSQL_PRIMARY_URL` naming the server's stores (a Redis Cluster's nodes
//! comma-separated, as seatrush takes them; bench/run.sh and bench/scale.sh do all this).
//! With `FLASHSALE_JSON=<file>` it also writes the figures and the sale's timeline (seats
//! sold and requests per step, second by second) there, for bench/report.py. The streams
//! need an open-files limit above the number of users (`ulimit -n`).
//!
//! A schedule whose booking opens after the start is a sale with a fair opening (its queue
//! order `SHUFFLE_AT_OPEN`): the users arrive in its pre-queue, and the run also measures
//! the opening's shuffle (see [`opening`]) and the time to sell out from the opening.

mod client;
mod opening;
mod verify;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Method;
use mysql_async::prelude::*;
use seatrush::identity::Identity;
use simd_json::OwnedValue;
use simd_json::prelude::*;
use tokio::sync::watch;

use client::{Client, OUT_OF_FILES};
use verify::{charge_lines, verify};

/// Keep-alive connections for joining and waiting, and for the admitted users' steps (see
/// [`Sale::queue`]).
const QUEUE_CONNECTIONS: usize = 128;
const BUYING_CONNECTIONS: usize = 512;
/// Steps of a user's journey, in order.
const STEPS: [&str; 8] = [
    "issue", "events", "status", "seats", "hold", "charge", "pay", "leave",
];
/// Users, in percent, who wait on the event stream (the others poll at `pollAfterMs`).
const STREAMING: u64 = 80;
/// Buyers, in percent, who pick their seats from the listing (the others hold by `quantity`).
const PICKING: u64 = 10;
/// How long a buyer who found no seat free waits before trying again (held seats come back
/// as their holds expire).
const NO_SEAT_PAUSE: Duration = Duration::from_secs(1);
/// How long a buyer keeps trying to hold seats.
const BUYING_FOR: Duration = Duration::from_secs(60);
/// How long a request whose answer was lost is retried, and the pause between tries.
const RETRY_FOR: Duration = Duration::from_secs(60);
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// A payment whose first request died mid-saga answers `REQUEST_IN_PROGRESS` until the
/// sweeper settles it (after the saga timeout): asked again this often.
const IN_PROGRESS_PAUSE: Duration = Duration::from_secs(1);

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
    /// Keep-alive connections for joining and waiting (issuance, status, and the event
    /// streams, each on its own connection), and for the admitted users' steps: each user
    /// has a connection of their own in a browser, so a buyer's requests do not queue behind
    /// the crowd's.
    queue: Client,
    buying: Client,
    /// The server's address (`host:port`).
    addr: String,
    /// Signs each user's identity, with the secret the server verifies
    /// (`SEATRUSH_AUTH_SECRET`).
    identity: Identity,
    stats: Stats,
    schedule: u64,
    concert: u64,
    admission_per_second: f64,
    /// Set once every seat is sold: the users still waiting or buying go home.
    sold_out: watch::Sender<bool>,
    started: Instant,
    /// ms after the start of the last successful payment.
    last_payment_ms: AtomicU64,
    /// (seconds after the start, seats sold), as the watcher saw them.
    sold: Mutex<Vec<(f64, u64)>>,
    /// Seconds after the start when the watcher first saw every seat sold or held: what
    /// is sold after that came back from holds that expired.
    all_taken_s: Mutex<Option<f64>>,
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
    /// Users whose token was issued in the pre-queue of a fair opening.
    pre_queued: AtomicU64,
    /// Users who had to wait (WAITING at issuance), on the stream and polling.
    waited: [AtomicU64; 2],
    /// Status requests those users sent, on the stream (after it broke) and polling.
    status_requests: [AtomicU64; 2],
    /// Event streams opened, and those refused or broken (their users polled instead).
    streams_opened: AtomicU64,
    streams_failed: AtomicU64,
    /// Streams not requested at all: this client was out of open files.
    streams_not_sent: AtomicU64,
}

/// How a user waits: index into [`Sale::waited`] and [`Sale::status_requests`].
const ON_STREAM: usize = 0;
const POLLING: usize = 1;

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
    /// Whole seconds since the sale began.
    fn second(&self) -> usize {
        self.started.elapsed().as_secs() as usize
    }

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
            let client = match step {
                "issue" | "status" => &self.queue,
                _ => &self.buying,
            };
            let (status, json, took) = client
                .call(method.clone(), path, &headers, body.clone())
                .await;
            self.stats.record(step, self.second(), took, status, &json);
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

/// How one user behaves, drawn from their id (so runs are repeatable).
struct Habits {
    /// Waits on the event stream (else polls at `pollAfterMs`).
    streams: bool,
    /// Picks seats from the listing (else holds the best available by `quantity`).
    picks: bool,
    /// Lets the hold expire instead of paying.
    walks_away: bool,
    /// Seats wanted, 1–4.
    want: usize,
}

impl Habits {
    fn of(user_id: u64, rng: &mut u64) -> Self {
        Self {
            streams: next(rng) % 100 < STREAMING,
            picks: next(rng) % 100 < PICKING,
            walks_away: user_id.is_multiple_of(10),
            want: 1 + (next(rng) % 4) as usize,
        }
    }
}

/// One user's journey, as the user: every request carries their signed identity.
async fn user(sale: Arc<Sale>, user_id: u64) {
    let mut rng = user_id.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let habits = Habits::of(user_id, &mut rng);
    let auth = format!(
        "Bearer {}",
        sale.identity
            .sign(user_id, 3600)
            .expect("the configured secret signs")
    );
    // A retried issuance gets the token its first try was issued.
    let join_key = format!("join-{user_id}");
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
    if data(&body, "preQueue").as_bool() == Some(true) {
        sale.pre_queued.fetch_add(1, Ordering::Relaxed);
    }
    if data(&body, "status").as_str() == Some("WAITING") {
        let poll_after = data(&body, "pollAfterMs").as_u64().unwrap_or(1000);
        drop(body);
        if !wait_turn(&sale, &auth, &token, &habits, poll_after).await {
            return;
        }
    }
    // A buyer whose hold expired before the payment went through tries again.
    for round in 0.. {
        let Some((reservation, total)) =
            hold(&sale, &auth, &token, user_id, &habits, round, &mut rng).await
        else {
            if !*sale.sold_out.borrow() {
                leave(&sale, &auth, &token).await;
            }
            return;
        };
        if habits.walks_away {
            return; // this one lets the hold expire
        }
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
        let (status, body, _) = sale
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
        if error_code(&body) != Some("RESERVATION_EXPIRED") {
            return;
        }
    }
}

/// Waits until the user's token is ACTIVE: on the event stream, or polling the status when
/// `pollAfterMs` says (also after a stream was refused or broke). False when the token
/// ended or the sale sold out first.
async fn wait_turn(
    sale: &Sale,
    auth: &str,
    token: &str,
    habits: &Habits,
    mut poll_after: u64,
) -> bool {
    let how = if habits.streams { ON_STREAM } else { POLLING };
    sale.waited[how].fetch_add(1, Ordering::Relaxed);
    let mut sold_out = sale.sold_out.subscribe();
    if habits.streams {
        let headers = [("authorization", auth), ("queue-token", token)];
        let (opened, took) = sale
            .queue
            .events("/api/v1/queue/tokens/me/events", &headers)
            .await;
        let (status, body) = match &opened {
            Ok(_) => (200, OwnedValue::null()),
            Err((status, body)) => (*status, body.clone()),
        };
        // A stream this client had no file for was never requested: counted apart.
        if error_code(&body) == Some(OUT_OF_FILES) {
            sale.streams_not_sent.fetch_add(1, Ordering::Relaxed);
        } else {
            sale.stats
                .record("events", sale.second(), took, status, &body);
        }
        if let Ok(mut stream) = opened {
            sale.streams_opened.fetch_add(1, Ordering::Relaxed);
            loop {
                tokio::select! {
                    event = stream.next() => match event.as_deref() {
                        Some("active") => return true,
                        Some("ended") => return false,
                        Some(_) => continue,
                        None => break, // broken: poll instead
                    },
                    _ = sold_out.wait_for(|&sold| sold) => return false,
                }
            }
        }
        sale.streams_failed.fetch_add(1, Ordering::Relaxed);
        poll_after = 0;
    }
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(poll_after)) => {}
            _ = sold_out.wait_for(|&sold| sold) => return false,
        }
        sale.status_requests[how].fetch_add(1, Ordering::Relaxed);
        let (status, body, _) = sale
            .call(
                "status",
                auth,
                Method::GET,
                "/api/v1/queue/tokens/me",
                Some(token),
                None,
                None,
            )
            .await;
        if status != 200 {
            return false;
        }
        if data(&body, "status").as_str() == Some("ACTIVE") {
            return true;
        }
        poll_after = data(&body, "pollAfterMs").as_u64().unwrap_or(1000);
    }
}

/// Holds the user's seats: the best available by `quantity`, or seats picked from the
/// listing. A buyer who wants more seats than are left takes what is left; one who finds
/// none free tries again a moment later (held seats come back as their holds expire).
/// Returns the reservation and its total, or `None` once sold out or refused otherwise.
async fn hold(
    sale: &Sale,
    auth: &str,
    token: &str,
    user_id: u64,
    habits: &Habits,
    round: u32,
    rng: &mut u64,
) -> Option<(u64, u64)> {
    let mut want = habits.want;
    let started = Instant::now();
    for attempt in 0.. {
        if *sale.sold_out.borrow() || started.elapsed() > BUYING_FOR {
            return None;
        }
        let seats = if habits.picks {
            let free = listed_free(sale, auth, token).await?;
            if free.is_empty() {
                tokio::time::sleep(NO_SEAT_PAUSE).await;
                continue;
            }
            format!(r#""seatIds":{:?}"#, pick(free, want, rng))
        } else {
            format!(r#""quantity":{want}"#)
        };
        let (status, body, _) = sale
            .call(
                "hold",
                auth,
                Method::POST,
                "/api/v1/reservations",
                Some(token),
                Some(&format!("hold-{round}-{attempt}")),
                Some(format!(
                    r#"{{"scheduleId":{},{seats},"userId":{user_id}}}"#,
                    sale.schedule
                )),
            )
            .await;
        match (status, error_code(&body)) {
            (201, _) => {
                let reservation = data(&body, "reservationId").as_u64()?;
                return Some((reservation, data(&body, "totalAmount").as_u64()?));
            }
            // Someone was faster: look again.
            (409, Some("SEAT_ALREADY_RESERVED")) => continue,
            (409, Some("NOT_ENOUGH_SEATS")) => {
                let available = body
                    .get("error")
                    .and_then(|e| e.get("details"))
                    .and_then(|d| d.get("available"))
                    .and_then(|a| a.as_u64())
                    .unwrap_or(0) as usize;
                if available > 0 {
                    want = want.min(available);
                } else {
                    tokio::time::sleep(NO_SEAT_PAUSE).await;
                }
            }
            _ => return None,
        }
    }
    None
}

/// A buyer who gives up leaves the queue: their token ends and their ACTIVE slot is free at
/// once, not when the token would have expired.
async fn leave(sale: &Sale, auth: &str, token: &str) {
    sale.call(
        "leave",
        auth,
        Method::DELETE,
        "/api/v1/queue/tokens/me",
        Some(token),
        None,
        None,
    )
    .await;
}

/// The AVAILABLE seats' ids from the listing (`None` when it is refused).
async fn listed_free(sale: &Sale, auth: &str, token: &str) -> Option<Vec<u64>> {
    let (status, body, _) = sale
        .call(
            "seats",
            auth,
            Method::GET,
            &format!(
                "/api/v1/concerts/{}/schedules/{}/seats",
                sale.concert, sale.schedule
            ),
            Some(token),
            None,
            None,
        )
        .await;
    if status != 200 {
        return None;
    }
    // Only the ids are kept: a parsed listing of thousands of seats is megabytes.
    Some(
        data(&body, "seats")
            .and_then(|seats| seats.as_array())
            .map(|a| a.iter().filter_map(|s| s.get("seatId")?.as_u64()).collect())
            .unwrap_or_default(),
    )
}

/// `want` seats drawn at random from `free`.
fn pick(mut free: Vec<u64>, want: usize, rng: &mut u64) -> Vec<u64> {
    let mut picked = Vec::with_capacity(want);
    while picked.len() < want && !free.is_empty() {
        let i = (next(rng) % free.len() as u64) as usize;
        picked.push(free.swap_remove(i));
    }
    picked
}

/// Watches the schedule's sold seats until all are sold (or `limit` passes).
async fn watch(sale: Arc<Sale>, seats: u64, limit: Duration) -> Option<Duration> {
    let path = format!("/api/v1/admin/schedules/{}/queue", sale.schedule);
    // A connection of its own: the crowd's requests queue on the pools.
    let client = Client::new(&sale.addr, 1).await;
    while sale.started.elapsed() < limit {
        let (status, body, _) = client
            .call(
                Method::GET,
                &path,
                &[("x-admin-key", "dev-admin-key")],
                None,
            )
            .await;
        let sold = data(&body, "soldSeats").as_u64();
        let held = data(&body, "heldSeats").as_u64().unwrap_or(0);
        if let Some(n) = sold {
            let at = sale.started.elapsed().as_secs_f64();
            sale.sold.lock().unwrap().push((at, n));
            if n + held >= seats {
                let mut taken = sale.all_taken_s.lock().unwrap();
                taken.get_or_insert(at);
            }
        }
        if status == 200 && sold == Some(seats) {
            sale.sold_out.send_replace(true);
            return Some(sale.started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    sale.sold_out.send_replace(true);
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
    all_taken_s: Option<f64>,
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
    /// Users who waited on the event stream and polling, and the status requests each of
    /// them sent on average.
    waited: [u64; 2],
    status_per_waiting_user: [f64; 2],
    streams_opened: u64,
    streams_failed: u64,
    streams_not_sent: u64,
    holds: u64,
    /// Holds refused because someone else held one of the seats first.
    hold_conflicts: u64,
    /// A fair opening's figures, and the time to sell out from the opening.
    opening: Option<opening::Figures>,
    sold_out_after_opening_s: Option<f64>,
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
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
        queue: Client::new(addr, QUEUE_CONNECTIONS).await,
        buying: Client::new(addr, BUYING_CONNECTIONS).await,
        addr: addr.to_string(),
        identity: Identity::from_config(&config)?,
        stats: Stats::default(),
        schedule: schedule.parse()?,
        concert: concert.parse()?,
        admission_per_second: rate.parse()?,
        sold_out: watch::Sender::new(false),
        started: Instant::now(),
        last_payment_ms: AtomicU64::new(0),
        sold: Mutex::default(),
        all_taken_s: Mutex::default(),
        server_errors: AtomicU64::new(0),
        retries: AtomicU64::new(0),
        tokens_lost: AtomicU64::new(0),
        charges: AtomicU64::new(0),
        pre_queued: AtomicU64::new(0),
        waited: Default::default(),
        status_requests: Default::default(),
        streams_opened: AtomicU64::new(0),
        streams_failed: AtomicU64::new(0),
        streams_not_sent: AtomicU64::new(0),
    });
    let queue_path = format!("/api/v1/admin/schedules/{}/queue", sale.schedule);
    let admin = [
        ("x-admin-key", "dev-admin-key"),
        ("content-type", "application/json"),
    ];
    let (status, body, _) = sale
        .queue
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
    let open_at_ms: i64 = conn
        .exec_first(
            "SELECT CAST(UNIX_TIMESTAMP(booking_open_at) * 1000 AS SIGNED)
             FROM concert_schedules WHERE id = ?",
            (sale.schedule,),
        )
        .await?
        .unwrap_or(0);
    drop(conn);
    // Booking opens after the start: a fair opening, watched on a connection of its own.
    let fair_opening = (open_at_ms > chrono::Utc::now().timestamp_millis()).then(|| {
        let (sale, queue_path) = (sale.clone(), queue_path.clone());
        tokio::spawn(async move {
            let client = Client::new(&sale.addr, 1).await;
            let redis_url = std::env::var("SEATRUSH_REDIS_URL")?;
            opening::watch(&client, &queue_path, &redis_url, sale.started, open_at_ms).await
        })
    });

    let watcher = tokio::spawn(watch(sale.clone(), seats, Duration::from_secs(600)));
    let tasks: Vec<_> = (first_user..first_user + users)
        .map(|u| tokio::spawn(user(sale.clone(), u)))
        .collect();
    let sold_out_after = watcher.await?;
    let elapsed = sale.started.elapsed();
    let opening = match fair_opening {
        Some(task) => {
            let mut figures = task.await?.map_err(|e| e.to_string())?;
            figures.pre_queued = sale.pre_queued.load(Ordering::Relaxed);
            Some(figures)
        }
        None => None,
    };
    // Nothing is left to sell: the queue admits no one more, so its tokens settle.
    let (status, body, _) = sale
        .queue
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
        "flash sale: {users} users, {seats} seats, admission {rate}/s, {QUEUE_CONNECTIONS} + \
         {BUYING_CONNECTIONS} connections and the event streams"
    );
    let all_taken_s = *sale.all_taken_s.lock().unwrap();
    let taken = all_taken_s.map_or(String::new(), |s| {
        format!(" (every seat sold or held after {s:.1} s)")
    });
    match sold_out_after {
        Some(t) => println!("sold out after {:.1} s{taken}", t.as_secs_f64()),
        None => println!("NOT sold out ({} s){taken}", elapsed.as_secs()),
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
    let waited = sale.waited.each_ref().map(|n| n.load(Ordering::Relaxed));
    let status_requests = sale
        .status_requests
        .each_ref()
        .map(|n| n.load(Ordering::Relaxed));
    let status_per_waiting_user =
        [ON_STREAM, POLLING].map(|how| status_requests[how] as f64 / waited[how].max(1) as f64);
    let (streams_opened, streams_failed, streams_not_sent) = (
        sale.streams_opened.load(Ordering::Relaxed),
        sale.streams_failed.load(Ordering::Relaxed),
        sale.streams_not_sent.load(Ordering::Relaxed),
    );
    let holds = latencies.get("hold").map_or(0, Vec::len) as u64;
    let hold_conflicts = errors
        .get(&("hold", "SEAT_ALREADY_RESERVED".to_string()))
        .copied()
        .unwrap_or(0);
    println!(
        "waiting: {} users on the event stream ({streams_opened} streams opened, {streams_failed} \
         refused or broken, {streams_not_sent} of them never sent: this client was out of open \
         files), {:.2} status requests each; {} polling, {:.2} status requests each; \
         {hold_conflicts} of {holds} holds ({:.2} %) refused for a seat someone else held",
        waited[ON_STREAM],
        status_per_waiting_user[ON_STREAM],
        waited[POLLING],
        status_per_waiting_user[POLLING],
        100.0 * hold_conflicts as f64 / holds.max(1) as f64
    );
    let sold_out_after_opening_s = opening
        .as_ref()
        .and_then(|o| sold_out_after.map(|t| t.as_secs_f64() - o.opens_after_s));
    if let (Some(o), Some(after)) = (&opening, sold_out_after_opening_s) {
        println!(
            "fair opening: {} users pre-queued, booking opened {:.1} s into the run; the \
             pre-queue was shuffled {:.3} s after the opening; {} Redis commands of {} µs or \
             more meanwhile, the longest {} µs ({}); {} shuffle chunks among them, median {} µs, \
             longest {} µs; sold out {after:.1} s after the opening",
            o.pre_queued,
            o.opens_after_s,
            o.shuffled_after_opening_s,
            o.slow_commands,
            opening::THRESHOLD_US,
            o.longest_command_us,
            o.longest_command,
            o.shuffle_chunks,
            o.median_shuffle_chunk_us,
            o.longest_shuffle_chunk_us
        );
    }
    if let Ok(path) = std::env::var("FLASHSALE_JSON") {
        let summary = Summary {
            users,
            seats,
            admission_per_second: sale.admission_per_second,
            sold_out_s: sold_out_after.map(|t| t.as_secs_f64()),
            all_taken_s,
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
            waited,
            status_per_waiting_user,
            streams_opened,
            streams_failed,
            streams_not_sent,
            holds,
            hold_conflicts,
            opening,
            sold_out_after_opening_s,
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
