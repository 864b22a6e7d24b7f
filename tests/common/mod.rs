//! Integration-test harness: a real seatrush (port 0) against the dev stack's Redis and
//! MariaDB, using the test database and Redis db that `make test` empties first. Tests
//! create their own users and schedules, so they can run in parallel.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod load;
pub mod own_redis;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{HeaderMap, Method, Request, StatusCode};
use seatrush::app::App;
use seatrush::config::Config;
use seatrush::identity::{Identity, TokenKey};
use seatrush::model::{Idempotency, PaymentAttempt, PaymentId, QueueToken, ReservationId};
use seatrush::shutdown::{self, ShutdownTrigger};
use simd_json::OwnedValue;
use simd_json::prelude::*;
use tokio::net::TcpStream;
use tokio::sync::OnceCell;

pub const ADMIN_KEY: &str = "dev-admin-key";

/// Defaults for running `cargo test` directly: the test database and Redis db 1.
const TEST_DEFAULTS: &[(&str, &str)] = &[
    ("SEATRUSH_REDIS_URL", "redis://127.0.0.1:6390/1"),
    (
        "SEATRUSH_MYSQL_PRIMARY_URL",
        "mysql://seatrush:seatrush@127.0.0.1:3316/seatrush_test",
    ),
    (
        "SEATRUSH_MYSQL_REPLICA_URL",
        "mysql://seatrush:seatrush@127.0.0.1:3317/seatrush_test",
    ),
];

fn test_config() -> Config {
    let mut config = Config::from_env().expect("test configuration");
    let pick = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            TEST_DEFAULTS
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap()
                .1
                .to_string()
        })
    };
    config.redis_url = pick("SEATRUSH_REDIS_URL");
    config.mysql_primary_url = pick("SEATRUSH_MYSQL_PRIMARY_URL");
    config.mysql_replica_url = pick("SEATRUSH_MYSQL_REPLICA_URL");
    config.admin_key = ADMIN_KEY.into();
    // Tests wait for drains with deadlines; the flusher's holding back under load is
    // covered by its own unit test and would only make those waits longer here.
    config.flush_busy_rps = u64::MAX;
    // A test's runtime ends with its last line, so apps stop mid-flush like a crash; others
    // claim what they left pending within a second instead of thirty.
    config.outbox_claim_idle = Duration::from_secs(1);
    // Saga-settling tests wait this long for the sweeper; requests here take milliseconds.
    config.payment_saga_timeout = Duration::from_secs(3);
    config
}

/// A Redis (or cluster) where no test app runs its background loops (`make test-cluster`
/// names a second cluster).
pub fn quiet_redis_url() -> String {
    std::env::var("SEATRUSH_TEST_REDIS_QUIET_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6390/2".into())
}

/// A Redis (or cluster) a test may empty: no other test uses it while that test runs.
pub fn own_redis_url() -> String {
    std::env::var("SEATRUSH_TEST_REDIS_OWN_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6390/4".into())
}

/// Empties the Redis `redis` is connected to (every master of a cluster), as a Redis that
/// lost its data.
pub async fn flush_redis(redis: &mut seatrush::redis::RedisConn) {
    redis::cmd("FLUSHDB")
        .query_async::<()>(redis)
        .await
        .unwrap();
}

/// Creates the test database if a plain `cargo test` runs before `make test` ever did.
async fn ensure_database(config: &Config) {
    static ONCE: OnceCell<()> = OnceCell::const_new();
    ONCE.get_or_init(|| async {
        let url = &config.mysql_primary_url;
        let (server, db) = url.rsplit_once('/').expect("url has a database");
        let pool = mysql_async::Pool::new(format!("{server}/").as_str());
        let mut conn = pool
            .get_conn()
            .await
            .expect("dev stack MariaDB is up (make stack)");
        use mysql_async::prelude::Queryable;
        conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{db}`"))
            .await
            .unwrap();
        drop(conn);
        pool.disconnect().await.unwrap();
    })
    .await;
}

/// Points `config` at a database of its own, `name`, dropped and created empty: for tests
/// whose Redis numbers ids apart from the shared test Redis (ledger ids are numbered per
/// Redis, so they would collide in a shared database) or that empty their Redis.
pub async fn own_database(config: &mut Config, name: &str) {
    use mysql_async::prelude::Queryable;
    let (server, _) = config.mysql_primary_url.rsplit_once('/').unwrap();
    let admin = mysql_async::Pool::new(format!("{server}/").as_str());
    let mut conn = admin.get_conn().await.unwrap();
    conn.query_drop(format!(
        "DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`"
    ))
    .await
    .unwrap();
    drop(conn);
    admin.disconnect().await.unwrap();
    for url in [&mut config.mysql_primary_url, &mut config.mysql_replica_url] {
        let (server, _) = url.rsplit_once('/').unwrap();
        *url = format!("{server}/{name}");
    }
}

/// Signs identities as the ticketing site's login would, with the test configuration's secret.
static IDENTITY: LazyLock<Identity> =
    LazyLock::new(|| Identity::from_config(&test_config()).expect("test identity keys"));

/// Opens Queue-Tokens as the servers under test do (the test configuration's secret).
static TOKEN_KEY: LazyLock<TokenKey> =
    LazyLock::new(|| TokenKey::from_config(&test_config()).expect("test token key"));

/// What a Queue-Token the server issued names: its schedule, sequence and user.
pub fn opened(token: &str) -> QueueToken {
    TOKEN_KEY.open(token).expect("a token the server issued")
}

/// `Authorization` header value naming `user` (valid for an hour).
pub fn bearer(user: u64) -> String {
    format!("Bearer {}", IDENTITY.sign(user, 3600).unwrap())
}

/// Who each Queue-Token the harness saw issued belongs to.
static TOKEN_OWNERS: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Mutex::default);

/// The user a request speaks for, when it does not say who is asking: the owner of its
/// Queue-Token, else the user in its path (`/api/v1/users/{id}/…`), else the `userId` of its
/// body. Tests of other callers and of missing identities say so with their own
/// `authorization` header (or use [`TestApp::request_as_is`]).
fn implied_user(path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Option<u64> {
    let token = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("queue-token"))
        .and_then(|(_, v)| TOKEN_OWNERS.lock().unwrap().get(*v).copied());
    let in_path = || {
        let rest = path.strip_prefix("/api/v1/users/")?;
        rest.split('/').next()?.parse().ok()
    };
    let in_body = || {
        let mut bytes = body?.to_vec();
        let value = simd_json::to_owned_value(&mut bytes).ok()?;
        value.get("userId")?.as_u64()
    };
    token.or_else(in_path).or_else(in_body)
}

/// Cheap to clone, so tests can hand a copy to each of many parallel tasks.
#[derive(Clone)]
pub struct TestApp {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    stop: Arc<ShutdownTrigger>,
}

pub struct Rsp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The body's bytes as sent (before any JSON parsing).
    pub raw: Vec<u8>,
    pub body: OwnedValue,
}

static NULL: OwnedValue = OwnedValue::Static(simd_json::StaticNode::Null);

/// `value` at the `/`-separated `path`, or null (indexing an OwnedValue panics on a miss).
fn at<'a>(value: &'a OwnedValue, path: &str) -> &'a OwnedValue {
    path.split('/')
        .try_fold(value, |v, key| v.get(key))
        .unwrap_or(&NULL)
}

impl Rsp {
    pub fn data(&self) -> &OwnedValue {
        at(&self.body, "data")
    }
    pub fn code(&self) -> &str {
        at(&self.body, "error/code").as_str().unwrap_or("")
    }
    pub fn field(&self) -> &str {
        at(&self.body, "error/details/field").as_str().unwrap_or("")
    }
    /// The ids of a reservation's seats, in the order it lists them.
    pub fn seat_ids(&self) -> Vec<u64> {
        self.data()["seats"]
            .as_array()
            .unwrap_or_else(|| panic!("no seats in {:?}", self.body))
            .iter()
            .map(|s| s["seatId"].as_u64().unwrap())
            .collect()
    }
    /// A seat listing's seats with their status (the seat map's), in the order it lists them.
    pub fn seat_statuses(&self) -> Vec<(u64, String)> {
        self.data()["seats"]
            .as_array()
            .unwrap_or_else(|| panic!("no seats in {:?}", self.body))
            .iter()
            .map(|s| {
                (
                    s["seatId"].as_u64().unwrap(),
                    s["status"].as_str().unwrap().into(),
                )
            })
            .collect()
    }
    /// The response's `ETag`.
    pub fn etag(&self) -> String {
        self.headers["etag"].to_str().unwrap().to_string()
    }
    /// Asserts an error response's status, code and the envelope around it.
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(
            at(&self.body, "success").as_bool(),
            Some(false),
            "{:?}",
            self.body
        );
        assert_eq!(self.code(), code, "{:?}", self.body);
        let message = at(&self.body, "error/message").as_str();
        assert!(message.is_some_and(|m| !m.is_empty()), "{:?}", self.body);
    }
    /// Asserts a `200` success in the envelope.
    pub fn assert_ok(&self) -> &Self {
        self.assert_success(200)
    }
    /// Asserts a `201` success in the envelope.
    pub fn assert_created(&self) -> &Self {
        self.assert_success(201)
    }
    fn assert_success(&self, status: u16) -> &Self {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        assert_eq!(
            at(&self.body, "success").as_bool(),
            Some(true),
            "{:?}",
            self.body
        );
        self
    }
    pub fn u64(&self, key: &str) -> u64 {
        at(self.data(), key)
            .as_u64()
            .unwrap_or_else(|| panic!("{key} in {:?}", self.body))
    }
    pub fn str(&self, key: &str) -> String {
        at(self.data(), key)
            .as_str()
            .unwrap_or_else(|| panic!("{key} in {:?}", self.body))
            .to_string()
    }
}

/// A new schedule's booking window relative to now.
pub struct Window {
    pub open_in_secs: i64,
    pub close_in_secs: i64,
}

pub const OPEN_NOW: Window = Window {
    open_in_secs: -60,
    close_in_secs: 3600,
};

impl TestApp {
    /// Starts an app with its background loops (admission, flusher, health).
    pub async fn spawn() -> Self {
        Self::spawn_with(test_config()).await
    }

    pub async fn spawn_with(config: Config) -> Self {
        ensure_database(&config).await;
        let app = App::build(config)
            .await
            .expect("app builds against the dev stack");
        let listener = seatrush::api::bind(([127, 0, 0, 1], 0).into()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (trigger, stop) = shutdown::channel();
        app.spawn_background(&stop);
        tokio::spawn(seatrush::api::serve(listener, app.clone(), stop));
        Self {
            addr,
            app,
            stop: Arc::new(trigger),
        }
    }

    pub fn config() -> Config {
        test_config()
    }

    /// An app with no server and no background loops, on the quiet Redis where no other
    /// test's loops run: for driving the flusher or the admission tick step by step.
    pub async fn quiet() -> Arc<App> {
        Self::quiet_with(test_config()).await
    }

    pub async fn quiet_with(mut config: Config) -> Arc<App> {
        config.redis_url = quiet_redis_url();
        ensure_database(&config).await;
        App::build(config)
            .await
            .expect("app builds against the dev stack")
    }

    /// A harness for a seatrush running elsewhere (a spawned binary) at `addr`, on the Redis
    /// at `redis_url`: requests go there, and `app` (no server, no loops) reads state.
    pub async fn remote(addr: SocketAddr, redis_url: &str) -> Self {
        let mut config = test_config();
        config.redis_url = redis_url.to_string();
        ensure_database(&config).await;
        let (trigger, _) = shutdown::channel();
        Self {
            addr,
            app: App::build(config)
                .await
                .expect("app builds against the dev stack"),
            stop: Arc::new(trigger),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Rsp {
        self.try_request(method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A request on a new connection, sent by the user it speaks for (see [`implied_user`])
    /// unless it names its own `authorization`; `Err` when the connection or the exchange
    /// fails.
    pub async fn try_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Rsp, String> {
        let says_who = headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("authorization"));
        let implied = (!says_who)
            .then(|| implied_user(path, headers, body.as_deref()))
            .flatten();
        let authorization = implied.map(bearer);
        let mut with_identity = headers.to_vec();
        if let Some(value) = &authorization {
            with_identity.push(("authorization", value));
        }
        let issuing = method == Method::POST && path == "/api/v1/queue/tokens";
        let rsp = self
            .request_as_is(method, path, &with_identity, body)
            .await?;
        if issuing
            && rsp.status == StatusCode::OK
            && let Some(user) = implied
        {
            TOKEN_OWNERS.lock().unwrap().insert(rsp.str("token"), user);
        }
        Ok(rsp)
    }

    /// A request with exactly these headers, on a new connection.
    pub async fn request_as_is(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> Result<Rsp, String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "test");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .unwrap();
        let rsp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("request: {e}"))?;
        let status = rsp.status();
        let headers = rsp.headers().clone();
        let mut bytes = rsp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes()
            .to_vec();
        let raw = bytes.clone();
        let body = if bytes.is_empty() {
            OwnedValue::null()
        } else {
            simd_json::to_owned_value(&mut bytes).unwrap_or_else(|_| OwnedValue::null())
        };
        Ok(Rsp {
            status,
            headers,
            raw,
            body,
        })
    }

    pub async fn get(&self, path: &str, headers: &[(&str, &str)]) -> Rsp {
        self.request(Method::GET, path, headers, None).await
    }

    pub async fn post(&self, path: &str, headers: &[(&str, &str)], json: &str) -> Rsp {
        self.request(Method::POST, path, headers, Some(json.as_bytes().to_vec()))
            .await
    }

    pub async fn admin(&self, method: Method, path: &str, json: Option<&str>) -> Rsp {
        self.request(
            method,
            path,
            &[("x-admin-key", ADMIN_KEY)],
            json.map(|j| j.as_bytes().to_vec()),
        )
        .await
    }

    pub async fn create_user(&self) -> u64 {
        let rsp = self
            .admin(
                Method::POST,
                "/api/v1/admin/users",
                Some(r#"{"name":"Test User"}"#),
            )
            .await;
        rsp.assert_created();
        rsp.u64("userId")
    }

    pub async fn create_users(&self, n: usize) -> Vec<u64> {
        spawn_all((0..n).map(|_| {
            let app = self.clone();
            async move { app.create_user().await }
        }))
        .await
    }

    pub async fn create_venue(&self) -> u64 {
        self.admin(
            Method::POST,
            "/api/v1/admin/venues",
            Some(r#"{"name":"Hall"}"#),
        )
        .await
        .u64("venueId")
    }

    pub async fn create_concert(&self) -> u64 {
        self.admin(
            Method::POST,
            "/api/v1/admin/concerts",
            Some(r#"{"title":"Show"}"#),
        )
        .await
        .u64("concertId")
    }

    /// A schedule with `seats` seats at 50 000 KRW; returns (concertId, scheduleId).
    pub async fn create_schedule(&self, window: Window, seats: u64) -> (u64, u64) {
        let venue = self.create_venue().await;
        let concert = self.create_concert().await;
        let schedule = self
            .create_schedule_for(concert, venue, "2026-12-24", window, seats)
            .await;
        (concert, schedule)
    }

    /// A schedule of `concert` at `venue` on `date` with `seats` seats at 50 000 KRW.
    pub async fn create_schedule_for(
        &self,
        concert: u64,
        venue: u64,
        date: &str,
        window: Window,
        seats: u64,
    ) -> u64 {
        let now = chrono::Utc::now();
        let at = |secs: i64| {
            (now + chrono::Duration::seconds(secs))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        };
        let body = format!(
            r#"{{"venueId":{venue},"performanceDate":"{date}","performanceTime":"19:00:00",
                "bookingOpenAt":"{}","bookingCloseAt":"{}","seatCount":{seats},"price":50000}}"#,
            at(window.open_in_secs),
            at(window.close_in_secs)
        );
        let rsp = self
            .admin(
                Method::POST,
                &format!("/api/v1/admin/concerts/{concert}/schedules"),
                Some(&body),
            )
            .await;
        rsp.assert_created();
        rsp.u64("scheduleId")
    }

    /// A schedule open now with `seats` seats where anyone may be admitted at once; returns
    /// (scheduleId, its seat ids by seat number).
    pub async fn open_schedule(&self, seats: u64) -> (u64, Vec<u64>) {
        let (_, schedule) = self.create_schedule(OPEN_NOW, seats).await;
        self.set_queue(
            schedule,
            r#"{"admissionPerSecond": 100000, "maxActiveUsers": 100000}"#,
        )
        .await;
        (schedule, self.seats_of(schedule).await)
    }

    /// A token for a new user on `schedule`, which must come out ACTIVE.
    pub async fn active_token(&self, schedule: u64) -> String {
        self.active_user(schedule).await.1
    }

    /// A new user and their ACTIVE token on `schedule`.
    pub async fn active_user(&self, schedule: u64) -> (u64, String) {
        let user = self.create_user().await;
        let rsp = self.issue(user, schedule).await;
        assert_eq!(rsp.str("status"), "ACTIVE", "{:?}", rsp.body);
        (user, rsp.str("token"))
    }

    /// The schedule's seat ids by seat number.
    pub async fn seats_of(&self, schedule: u64) -> Vec<u64> {
        use mysql_async::prelude::Queryable;
        let mut conn = self.app.db.primary.get_conn().await.unwrap();
        conn.exec(
            "SELECT id FROM seats WHERE schedule_id = ? ORDER BY seat_number",
            (schedule,),
        )
        .await
        .unwrap()
    }

    /// `POST /api/v1/reservations`
    pub async fn hold(&self, token: &str, schedule: u64, user: u64, seats: &[u64]) -> Rsp {
        let body = format!(r#"{{"scheduleId":{schedule},"seatIds":{seats:?},"userId":{user}}}"#);
        self.post("/api/v1/reservations", &[("queue-token", token)], &body)
            .await
    }

    /// `POST /api/v1/users/{user}/balance/charge`
    pub async fn charge(&self, token: &str, user: u64, amount: u64) -> Rsp {
        self.post(
            &format!("/api/v1/users/{user}/balance/charge"),
            &[("queue-token", token)],
            &format!(r#"{{"amount": {amount}}}"#),
        )
        .await
    }

    /// `POST /api/v1/payments` from the balance.
    pub async fn pay(&self, token: &str, user: u64, reservation: u64) -> Rsp {
        let body = format!(
            r#"{{"reservationId": {reservation}, "paymentMethod": "BALANCE", "userId": {user}}}"#
        );
        self.post("/api/v1/payments", &[("queue-token", token)], &body)
            .await
    }

    /// `PUT …/queue`, whatever it answers.
    pub async fn put_queue(&self, schedule: u64, json: &str) -> Rsp {
        self.admin(
            Method::PUT,
            &format!("/api/v1/admin/schedules/{schedule}/queue"),
            Some(json),
        )
        .await
    }

    /// `PUT …/queue`, which must succeed.
    pub async fn set_queue(&self, schedule: u64, json: &str) -> Rsp {
        let rsp = self.put_queue(schedule, json).await;
        rsp.assert_ok();
        rsp
    }

    pub async fn queue_state(&self, schedule: u64) -> Rsp {
        self.admin(
            Method::GET,
            &format!("/api/v1/admin/schedules/{schedule}/queue"),
            None,
        )
        .await
    }

    pub async fn issue(&self, user: u64, schedule: u64) -> Rsp {
        self.post(
            "/api/v1/queue/tokens",
            &[],
            &format!(r#"{{"userId":{user},"scheduleId":{schedule}}}"#),
        )
        .await
    }

    pub async fn me(&self, token: &str) -> Rsp {
        self.get("/api/v1/queue/tokens/me", &[("queue-token", token)])
            .await
    }

    /// Begins the server's shutdown (as SIGTERM does).
    pub fn shut_down(&self) {
        self.stop.trigger();
    }

    /// `GET /api/v1/queue/tokens/me/events` for the token's user: the stream, or the
    /// answer that refused it.
    pub async fn events(&self, token: &str) -> Result<Events, Rsp> {
        let user = TOKEN_OWNERS.lock().unwrap()[token];
        let stream = TcpStream::connect(self.addr).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .uri("/api/v1/queue/tokens/me/events")
            .header("host", "test")
            .header("queue-token", token)
            .header("authorization", bearer(user))
            .body(Full::new(Bytes::new()))
            .unwrap();
        let rsp = sender.send_request(req).await.unwrap();
        let (status, headers) = (rsp.status(), rsp.headers().clone());
        if status != StatusCode::OK {
            let mut bytes = rsp.into_body().collect().await.unwrap().to_bytes().to_vec();
            let raw = bytes.clone();
            let body = simd_json::to_owned_value(&mut bytes).unwrap_or_else(|_| OwnedValue::null());
            return Err(Rsp {
                status,
                headers,
                raw,
                body,
            });
        }
        Ok(Events {
            headers,
            body: rsp.into_body(),
            buffer: String::new(),
        })
    }

    /// `DELETE /api/v1/queue/tokens/me`: the token's user leaves the queue.
    pub async fn leave(&self, token: &str) -> Rsp {
        self.request(
            Method::DELETE,
            "/api/v1/queue/tokens/me",
            &[("queue-token", token)],
            None,
        )
        .await
    }

    /// The schedule's AVAILABLE seats as Redis has them.
    pub async fn available_seats(&self, schedule: u64) -> HashSet<u64> {
        let key = seatrush::redis::keys::ScheduleKeys::new(schedule).avail;
        redis::AsyncCommands::zrange(&mut self.redis(), key, 0, -1)
            .await
            .unwrap()
    }

    /// Whether Redis has the seat AVAILABLE.
    pub async fn is_available(&self, schedule: u64, seat: u64) -> bool {
        let key = seatrush::redis::keys::ScheduleKeys::new(schedule).avail;
        let score: Option<f64> = redis::AsyncCommands::zscore(&mut self.redis(), key, seat)
            .await
            .unwrap();
        score.is_some()
    }

    pub fn redis(&self) -> seatrush::redis::RedisConn {
        self.app.hot.conn()
    }

    /// The payment saga's first step alone, as a request that then dies leaves it: the
    /// reservation PAYING under a new attempt. Returns (attempt id, amount).
    pub async fn begin_payment(
        &self,
        token: &str,
        user: u64,
        reservation: u64,
        idempotency: Option<Idempotency>,
    ) -> (u64, u64) {
        use seatrush::redis::scripts::{BeginOutcome, BeginRequest};
        let request = BeginRequest {
            token: opened(token).sequence,
            user_id: user,
            reservation_id: ReservationId::from_u64(reservation),
            idempotency,
        };
        match self.app.hot.begin_payment(request).await.unwrap() {
            BeginOutcome::Paying { payment_id, amount } => (payment_id.get(), amount),
            other => panic!("the payment did not begin: {other:?}"),
        }
    }

    /// The saga's second step for an attempt: debits `amount` from the user's balance.
    pub async fn debit(
        &self,
        user: u64,
        reservation: u64,
        attempt: u64,
        amount: u64,
    ) -> seatrush::redis::scripts::DebitOutcome {
        let attempt = PaymentAttempt {
            reservation_id: ReservationId::from_u64(reservation),
            user_id: user,
            payment_id: PaymentId::from_u64(attempt),
            amount,
        };
        self.app.hot.debit(&attempt).await.unwrap()
    }
}

/// An open event stream, read event by event.
pub struct Events {
    pub headers: HeaderMap,
    body: hyper::body::Incoming,
    buffer: String,
}

/// One server-sent event: its name (`comment` for a comment line) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> OwnedValue {
        let mut bytes = self.data.clone().into_bytes();
        simd_json::to_owned_value(&mut bytes).unwrap()
    }
}

impl Events {
    /// The next event, or `None` once the server ended the stream; fails the test if
    /// nothing comes within `deadline`.
    pub async fn next(&mut self, deadline: Duration) -> Option<Event> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Event {
                    name: String::new(),
                    data: String::new(),
                };
                for line in block.lines() {
                    if let Some(name) = line.strip_prefix("event: ") {
                        event.name = name.to_string();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = data.to_string();
                    } else if let Some(comment) = line.strip_prefix(':') {
                        event.name = "comment".into();
                        event.data = comment.trim().to_string();
                    }
                }
                return Some(event);
            }
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.body.frame()).await {
                Ok(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        self.buffer.push_str(std::str::from_utf8(data).unwrap());
                    }
                }
                Ok(_) => return None,
                Err(_) => panic!("no event within {deadline:?}"),
            }
        }
    }

    /// The next event, which must be named `name`; returns its data as JSON.
    pub async fn expect(&mut self, name: &str, deadline: Duration) -> OwnedValue {
        let event = self
            .next(deadline)
            .await
            .unwrap_or_else(|| panic!("the stream ended before a {name} event"));
        assert_eq!(event.name, name, "{event:?}");
        event.json()
    }
}

/// Runs `scripts/stack.sh <args>` (the failure tests stop and start the dev stack's servers
/// with it), which must succeed.
pub fn stack(args: &[&str]) {
    let status =
        std::process::Command::new(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/stack.sh"))
            .args(args)
            .status()
            .expect("scripts/stack.sh runs");
    assert!(status.success(), "stack.sh {args:?}");
}

/// Runs each future as its own task (in parallel) and collects the outputs in order.
pub async fn spawn_all<F>(futs: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Runs `seatrush rebuild-redis` against `config`'s Redis and MySQL; fails the test if it
/// fails, and returns its report.
pub async fn rebuild_redis(config: &Config) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_seatrush"))
        .arg("rebuild-redis")
        .env("SEATRUSH_REDIS_URL", &config.redis_url)
        .env("SEATRUSH_MYSQL_PRIMARY_URL", &config.mysql_primary_url)
        .env("SEATRUSH_MYSQL_REPLICA_URL", &config.mysql_replica_url)
        .output()
        .await
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Polls `check` until it returns `Some`, failing the test after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
