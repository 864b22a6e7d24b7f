//! `/health`: component states probed in the background, so answering costs no I/O (the
//! endpoint is also the benchmark's ceiling and nginx's health check).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use mysql_async::prelude::*;
use serde::Serialize;

use crate::app::App;
use crate::mysql::timed;
use crate::shutdown::Shutdown;

const PROBE_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
pub struct Health {
    redis: AtomicBool,
    mysql_primary: AtomicBool,
    mysql_replica: AtomicBool,
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

fn gauge(name: &'static str, up: bool) {
    metrics::gauge!("seatrush_dependency_up", "dependency" => name).set(if up { 1.0 } else { 0.0 });
}

impl Health {
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
    pub async fn probe(&self, app: &App) {
        let mut redis = app.redis.clone();
        let redis_up = redis::cmd("PING")
            .query_async::<String>(&mut redis)
            .await
            .is_ok();
        let primary_up = ping_mysql(&app.db.primary).await;
        let replica_up = ping_mysql(&app.db.replica).await;
        self.redis.store(redis_up, Ordering::Relaxed);
        self.mysql_primary.store(primary_up, Ordering::Relaxed);
        self.mysql_replica.store(replica_up, Ordering::Relaxed);
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

pub async fn probe_loop(app: Arc<App>, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        app.health.probe(&app).await;
        tokio::select! {
            _ = tokio::time::sleep(PROBE_EVERY) => {}
            _ = shutdown.triggered() => {}
        }
    }
}
