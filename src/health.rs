//! `/health` and `/ready`: component states probed in the background, so answering costs no
//! I/O (`/health` is also the benchmark's ceiling). `/health` reports each dependency;
//! `/ready` says whether this instance can take writes now, for load balancers and
//! orchestrators.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use mysql_async::prelude::*;
use serde::Serialize;

use crate::mysql::{Db, PRIMARY, REPLICA, timed};
use crate::redis::RedisConn;
use crate::shutdown::Shutdown;

const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A replica further behind than this is not read from.
const MAX_REPLICA_LAG_SECONDS: u64 = 5;

/// What the last probe found of Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RedisState {
    Up = 0,
    Unreachable = 1,
    /// Answering `LOADING`: reading its data back after a restart.
    Loading = 2,
}

impl RedisState {
    fn of(ping: &redis::RedisResult<String>) -> Self {
        match ping {
            Ok(_) => RedisState::Up,
            Err(e) if e.code() == Some("LOADING") => RedisState::Loading,
            Err(_) => RedisState::Unreachable,
        }
    }

    fn load(cell: &AtomicU8) -> Self {
        match cell.load(Ordering::Relaxed) {
            0 => RedisState::Up,
            2 => RedisState::Loading,
            _ => RedisState::Unreachable,
        }
    }
}

pub struct Health {
    redis: AtomicU8,
    mysql_primary: AtomicBool,
    mysql_replica: AtomicBool,
    /// Replica up and at most [`MAX_REPLICA_LAG_SECONDS`] behind: reads may go there.
    replica_readable: AtomicBool,
    /// The server has stopped taking new connections and is finishing its requests.
    shutting_down: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            redis: AtomicU8::new(RedisState::Unreachable as u8),
            mysql_primary: AtomicBool::default(),
            mysql_replica: AtomicBool::default(),
            replica_readable: AtomicBool::default(),
            shutting_down: AtomicBool::default(),
        }
    }
}

/// `/ready`'s answer: `READY`, or `NOT_READY` with the reasons; a ready instance may name a
/// degraded mode it runs in (`REDIS_UNREPLICATED`).
#[derive(Serialize)]
pub struct Readiness {
    status: &'static str,
    reasons: Vec<&'static str>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.status == "READY"
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    status: &'static str,
    components: Components,
    outbox_backlog: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Components {
    redis: &'static str,
    mysql_primary: &'static str,
    mysql_replica: &'static str,
}

fn word(up: &AtomicBool) -> &'static str {
    if up.load(Ordering::Relaxed) {
        "UP"
    } else {
        "DOWN"
    }
}

/// A MySQL pool's connections (in use and idle) and the callers waiting for one.
fn pool_gauges(pool: &mysql_async::Pool, name: &'static str) {
    let m = pool.metrics();
    let load = |v: &std::sync::atomic::AtomicUsize| v.load(Ordering::Relaxed) as f64;
    metrics::gauge!("seatrush_mysql_pool_connections", "pool" => name, "state" => "in_use")
        .set(load(&m.connections_in_use));
    metrics::gauge!("seatrush_mysql_pool_connections", "pool" => name, "state" => "idle")
        .set(load(&m.connections_in_pool));
    metrics::gauge!("seatrush_mysql_pool_waiting", "pool" => name)
        .set(load(&m.active_wait_requests));
}

fn gauge(name: &'static str, up: bool) {
    metrics::gauge!("seatrush_dependency_up", "dependency" => name).set(if up { 1.0 } else { 0.0 });
}

impl Health {
    /// Whether catalogue reads may go to the replica (else they go to the primary).
    pub fn replica_readable(&self) -> bool {
        self.replica_readable.load(Ordering::Relaxed)
    }

    /// Marks the instance as shutting down: `/ready` answers `503` from now on.
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    /// Whether this instance can take writes now, and if not, why; `reconciled`: whether
    /// its Redis is known to be reconciled with MySQL (`crate::reconcile`); `unreplicated`:
    /// its writes are acknowledged without a replica (a Sentinel-managed master with none
    /// connected), which leaves it ready.
    pub fn readiness(&self, reconciled: bool, unreplicated: bool) -> Readiness {
        let mut reasons = Vec::new();
        match RedisState::load(&self.redis) {
            RedisState::Up if !reconciled => reasons.push("RECONCILING"),
            RedisState::Up => {}
            RedisState::Unreachable => reasons.push("REDIS_UNREACHABLE"),
            RedisState::Loading => reasons.push("REDIS_LOADING"),
        }
        if self.shutting_down.load(Ordering::Relaxed) {
            reasons.push("SHUTTING_DOWN");
        }
        let status = if reasons.is_empty() {
            "READY"
        } else {
            "NOT_READY"
        };
        if unreplicated {
            reasons.push("REDIS_UNREPLICATED");
        }
        Readiness { status, reasons }
    }

    pub fn report(&self, outbox_backlog: u64) -> Report {
        let redis_up = RedisState::load(&self.redis) == RedisState::Up;
        Report {
            status: "UP",
            components: Components {
                redis: if redis_up { "UP" } else { "DOWN" },
                mysql_primary: word(&self.mysql_primary),
                mysql_replica: word(&self.mysql_replica),
            },
            outbox_backlog,
        }
    }

    /// Probes every dependency once and records the result.
    pub async fn probe(&self, redis: &RedisConn, db: &Db) {
        // Past the circuit breaker: the probe is there to see Redis as it is.
        let redis_state = RedisState::of(&redis.ping().await);
        let redis_up = redis_state == RedisState::Up;
        if let Some(memory) = crate::redis::memory(redis).await {
            metrics::gauge!("seatrush_redis_used_memory_bytes").set(memory.used as f64);
            metrics::gauge!("seatrush_redis_maxmemory_bytes").set(memory.max as f64);
        }
        let primary_up = ping_mysql(&db.primary).await;
        let replica_lag = replica_lag_seconds(&db.replica).await;
        let replica_up = replica_lag.is_some();
        if let Some(lag) = replica_lag.flatten() {
            metrics::gauge!("seatrush_mysql_replica_lag_seconds").set(lag as f64);
        }
        let readable = matches!(replica_lag, Some(Some(lag)) if lag <= MAX_REPLICA_LAG_SECONDS);
        self.redis.store(redis_state as u8, Ordering::Relaxed);
        self.mysql_primary.store(primary_up, Ordering::Relaxed);
        self.mysql_replica.store(replica_up, Ordering::Relaxed);
        self.replica_readable.store(readable, Ordering::Relaxed);
        pool_gauges(&db.primary, PRIMARY);
        pool_gauges(&db.replica, REPLICA);
        gauge("redis", redis_up);
        gauge("mysql_primary", primary_up);
        gauge("mysql_replica", replica_up);
    }
}

async fn ping_mysql(pool: &mysql_async::Pool) -> bool {
    async {
        let mut conn = timed(pool.get_conn()).await?;
        timed(conn.query_drop("SELECT 1")).await
    }
    .await
    .is_ok()
}

/// `None`: the replica does not answer; `Some(None)`: it answers but does not replicate
/// (or the lag is unknown); `Some(Some(s))`: `s` seconds behind the primary.
async fn replica_lag_seconds(pool: &mysql_async::Pool) -> Option<Option<u64>> {
    let status: Result<Option<mysql_async::Row>, mysql_async::Error> = async {
        let mut conn = timed(pool.get_conn()).await?;
        timed(conn.query_first("SHOW SLAVE STATUS")).await
    }
    .await;
    let row = status.ok()?;
    Some(row.and_then(|row| {
        row.get_opt::<Option<u64>, _>("Seconds_Behind_Master")?
            .ok()?
    }))
}

/// Probes every second until `shutdown` fires.
pub async fn probe_loop(health: Arc<Health>, redis: RedisConn, db: Db, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        health.probe(&redis, &db).await;
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = shutdown.triggered() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(health: &Health) -> (bool, Vec<&'static str>) {
        let readiness = health.readiness(true, false);
        (readiness.is_ready(), readiness.reasons)
    }

    #[test]
    fn ready_only_with_redis_answering_and_not_shutting_down() {
        let health = Health::default();
        assert_eq!(
            reasons(&health),
            (false, vec!["REDIS_UNREACHABLE"]),
            "not ready before the first probe"
        );
        health
            .redis
            .store(RedisState::of(&Ok("PONG".into())) as u8, Ordering::Relaxed);
        assert_eq!(reasons(&health), (true, vec![]));
        let unreplicated = health.readiness(true, true);
        assert_eq!(
            (unreplicated.is_ready(), unreplicated.reasons),
            (true, vec!["REDIS_UNREPLICATED"]),
            "writes go on without a replica, and /ready says so"
        );
        assert_eq!(
            health.readiness(false, false).reasons,
            ["RECONCILING"],
            "Redis answers, but may be older than MySQL"
        );
        let refused = redis::RedisError::from((redis::ErrorKind::Io, "connection refused"));
        health
            .redis
            .store(RedisState::of(&Err(refused)) as u8, Ordering::Relaxed);
        assert_eq!(reasons(&health), (false, vec!["REDIS_UNREACHABLE"]));
        health
            .redis
            .store(RedisState::Loading as u8, Ordering::Relaxed);
        health.begin_shutdown();
        assert_eq!(
            reasons(&health),
            (false, vec!["REDIS_LOADING", "SHUTTING_DOWN"])
        );
        assert_eq!(health.report(0).components.redis, "DOWN");
    }
}
