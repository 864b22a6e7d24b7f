//! Logs (tracing) and metrics (Prometheus). The metrics recorder is process-global, so it is
//! installed once and every app in the process (tests start many) shares its handle.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Latency buckets from 100 µs to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0];

/// Logs to stdout, filtered by `SEATRUSH_LOG`; one JSON object per line when
/// `SEATRUSH_LOG_FORMAT=json`.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SEATRUSH_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = if std::env::var("SEATRUSH_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The process's Prometheus handle, installing the recorder on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)
                })
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("the metrics recorder is installed once per process");
            describe();
            let upkeep = handle.clone();
            std::thread::spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            });
            handle
        })
        .clone()
}

enum Kind {
    Counter,
    Gauge,
    Histogram,
}
use Kind::*;

/// Every metric seatrush exports, with the help text `/metrics` shows for it. Labels are
/// bounded: routes by template, schedules by id, scripts, pools, reasons and results by name.
const METRICS: &[(&str, Kind, &str)] = &[
    (
        "seatrush_http_requests_total",
        Counter,
        "HTTP requests answered, by route template, method and status",
    ),
    (
        "seatrush_http_request_duration_seconds",
        Histogram,
        "HTTP request latency, by route template and status",
    ),
    (
        "seatrush_redis_script_duration_seconds",
        Histogram,
        "Lua script call latency, by script and result (ok or error)",
    ),
    (
        "seatrush_redis_in_flight",
        Gauge,
        "Redis script calls sent and awaiting their reply",
    ),
    (
        "seatrush_coalesced_batch_size",
        Histogram,
        "Requests per coalesced script call, by operation",
    ),
    (
        "seatrush_mysql_pool_wait_seconds",
        Histogram,
        "Time to get a MySQL connection from a pool, by pool",
    ),
    (
        "seatrush_mysql_pool_connections",
        Gauge,
        "MySQL connections, by pool and state (in_use or idle)",
    ),
    (
        "seatrush_mysql_pool_waiting",
        Gauge,
        "Callers waiting for a MySQL connection, by pool",
    ),
    (
        "seatrush_queue_waiting",
        Gauge,
        "WAITING tokens, by schedule",
    ),
    ("seatrush_queue_active", Gauge, "ACTIVE tokens, by schedule"),
    (
        "seatrush_queue_admitted_total",
        Counter,
        "Tokens admitted from WAITING to ACTIVE, by schedule",
    ),
    (
        "seatrush_queue_expired_total",
        Counter,
        "Tokens expired, by schedule",
    ),
    (
        "seatrush_queue_tokens_forged_total",
        Counter,
        "Queue-Tokens refused at the edge: not signed by seatrush (forged or mangled)",
    ),
    (
        "seatrush_rate_limited_total",
        Counter,
        "Requests refused with 429 RATE_LIMITED (the user's request rate spent), by route",
    ),
    (
        "seatrush_redis_used_memory_bytes",
        Gauge,
        "Redis used_memory (summed over a cluster's masters), as last probed",
    ),
    (
        "seatrush_redis_maxmemory_bytes",
        Gauge,
        "Redis maxmemory (0: none); past it writes are refused and answered 503",
    ),
    (
        "seatrush_redis_records_removed_total",
        Counter,
        "Records of ended tokens and holds removed from Redis (MySQL has them), by record",
    ),
    (
        "seatrush_seats_held_total",
        Counter,
        "Seats held by new reservations",
    ),
    (
        "seatrush_holds_expired_total",
        Counter,
        "Holds expired, by schedule",
    ),
    (
        "seatrush_holds_cancelled_total",
        Counter,
        "Holds cancelled by their owner",
    ),
    (
        "seatrush_payments_total",
        Counter,
        "Payment requests, by result (paid or the error code)",
    ),
    (
        "seatrush_payment_sagas_settled_total",
        Counter,
        "Payment sagas settled by the sweeper after their request did not finish them, by outcome",
    ),
    (
        "seatrush_balance_charged_krw_total",
        Counter,
        "Money charged into balances (KRW)",
    ),
    (
        "seatrush_balance_used_krw_total",
        Counter,
        "Money debited from balances by payments (KRW)",
    ),
    (
        "seatrush_outbox_backlog",
        Gauge,
        "Outbox entries not yet written to MySQL",
    ),
    (
        "seatrush_outbox_oldest_age_seconds",
        Gauge,
        "Age of the oldest outbox entry not yet written to MySQL",
    ),
    (
        "seatrush_outbox_flush_duration_seconds",
        Histogram,
        "Time to write one outbox batch to MySQL",
    ),
    (
        "seatrush_outbox_flush_batch_size",
        Histogram,
        "Outbox entries per batch written to MySQL",
    ),
    (
        "seatrush_outbox_flushed_total",
        Counter,
        "Outbox entries written to MySQL",
    ),
    (
        "seatrush_outbox_claimed_total",
        Counter,
        "Outbox entries claimed from a consumer that stopped",
    ),
    (
        "seatrush_outbox_deferred_passes_total",
        Counter,
        "Flusher passes held back while the server was busy",
    ),
    (
        "seatrush_outbox_flush_failures_total",
        Counter,
        "Failed outbox batch writes, by reason",
    ),
    (
        "seatrush_outbox_dead_letters_total",
        Counter,
        "Outbox entries moved to a dead-letter stream",
    ),
    (
        "seatrush_outbox_conflicts_total",
        Counter,
        "Outbox records whose id MySQL holds with other immutable content, by table \
         (dead-lettered with both versions, never merged)",
    ),
    (
        "seatrush_reconcile_behind_total",
        Counter,
        "Times Redis was found behind MySQL and moved forwards",
    ),
    (
        "seatrush_reconcile_repaired_total",
        Counter,
        "What reconciliation moved forwards in Redis, by kind of record",
    ),
    (
        "seatrush_redis_reconciling",
        Gauge,
        "1 while scripts wait for Redis to be reconciled with MySQL",
    ),
    (
        "seatrush_replica_fallbacks_total",
        Counter,
        "Catalogue reads served by the primary instead of the replica, by reason",
    ),
    (
        "seatrush_mysql_replica_lag_seconds",
        Gauge,
        "Replica lag behind the primary, as last probed",
    ),
    (
        "seatrush_dependency_up",
        Gauge,
        "1 when a dependency answered its last probe, by dependency",
    ),
    (
        "seatrush_stale_reads_total",
        Counter,
        "Reads answered from MySQL (X-Data-Stale: true) because Redis was unreachable",
    ),
    (
        "seatrush_circuit_state",
        Gauge,
        "Circuit breaker state by dependency: 0 closed, 1 half-open, 2 open (calls fail at once)",
    ),
];

fn describe() {
    for (name, kind, help) in METRICS {
        match kind {
            Counter => metrics::describe_counter!(*name, *help),
            Gauge => metrics::describe_gauge!(*name, *help),
            Histogram => metrics::describe_histogram!(*name, *help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_follow_prometheus_conventions() {
        let mut seen = std::collections::HashSet::new();
        for (name, kind, help) in METRICS {
            assert!(seen.insert(name), "{name} is listed twice");
            assert!(name.starts_with("seatrush_"), "{name}");
            assert!(!help.is_empty(), "{name}");
            match kind {
                Counter => assert!(name.ends_with("_total"), "{name}"),
                _ => assert!(!name.ends_with("_total"), "{name}"),
            }
            assert!(
                !name.contains("_ms") && !name.contains("millis"),
                "{name}: base units"
            );
        }
    }
}
