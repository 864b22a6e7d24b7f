//! `/health`: component states probed in the background, so answering costs no I/O (the
//! endpoint is also the benchmark's ceiling and nginx's health check).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::*;
use serde::Serialize;

use crate::mysql::{Db, PRIMARY, REPLICA, timed};
use crate::redis::RedisConn;
use crate::shutdown::Shutdown;

const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A replica further behind than this is not read from.
const MAX_REPLICA_LAG_SECONDS: u64 = 5;

#[derive(Default)]
pub struct Health {
    redis: AtomicBool,
    mysql_primary: AtomicBool,
    mysql_replica: AtomicBool,
    /// Replica up and at most [`MAX_REPLICA_LAG_SECONDS`] behind: reads may go there.
    replica_readable: AtomicBool,
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

    pub fn report(&self, outbox_backlog: u64) -> Report {
        Report {
            status: "UP",
            components: Components {
                redis: word(&self.redis),
                mysql_primary: word(&self.mysql_primary),
                mysql_replica: word(&self.mysql_replica),
            },
            outbox_backlog,
        }
    }

    /// Probes every dependency once and records the result.
    pub async fn probe(&self, redis: &RedisConn, db: &Db) {
        let redis_up = redis::cmd("PING")
            .query_async::<String>(&mut redis.clone())
            .await
            .is_ok();
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
        self.redis.store(redis_up, Ordering::Relaxed);
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
