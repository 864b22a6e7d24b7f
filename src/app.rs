//! The application: its connections and shared state ([`App`]), how it is built from a
//! [`Config`], and its background loops.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

use crate::catalogue::reads::Catalogue;
use crate::catalogue::users::UserDirectory;
use crate::config::Config;
use crate::error::ApiError;
use crate::health::{self, Health};
use crate::mysql::{Db, migrate};
use crate::outbox::{Backlog, Deferral, OutboxFlusher};
use crate::queue::admission;
use crate::rebuild;
use crate::redis::coalesce::Coalescer;
use crate::redis::scripts::{
    BeginOutcome, BeginRequest, CommitOutcome, DebitOutcome, DebitRequest, HoldOutcome,
    HoldRequest, IssueOutcome, SeatViewOutcome, StatusOutcome,
};
use crate::redis::{RedisConn, Scripts};
use crate::shutdown::Shutdown;
use crate::telemetry;

/// How often the user directory picks up users created elsewhere.
const USER_REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Longest the flusher keeps draining after a shutdown signal.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

pub struct App {
    pub config: Config,
    /// Shared multiplexed connection; clone it per use (clones share the socket).
    pub redis: RedisConn,
    pub db: Db,
    pub scripts: Arc<Scripts>,
    /// Token issuance, coalesced per schedule into batched script calls.
    pub token_issuer: Coalescer<(uuid::Uuid, u64), IssueOutcome>,
    /// Seat holds, coalesced the same way.
    pub seat_holder: Coalescer<HoldRequest, HoldOutcome>,
    /// Seat listings' token checks and availability reads, coalesced the same way.
    pub seat_viewer: Coalescer<uuid::Uuid, SeatViewOutcome>,
    /// Queue-Token checks (`token_status`), coalesced the same way.
    pub token_checker: Coalescer<uuid::Uuid, StatusOutcome>,
    /// The payment saga's steps: beginnings and commits per schedule, debits per wallet
    /// bucket, each coalesced the same way.
    pub payment_begins: Coalescer<BeginRequest, BeginOutcome>,
    pub debits: Coalescer<DebitRequest, DebitOutcome>,
    pub payment_commits: Coalescer<(u64, u64), CommitOutcome>,
    /// Concerts, schedules and seats from the replica, cached briefly.
    pub catalogue: Catalogue,
    /// Answers "does this user exist?" without a query on the hot path.
    pub users: UserDirectory,
    /// Dependency states for `/health`, refreshed in the background.
    pub health: Health,
    /// Outbox size, kept by the flusher.
    pub backlog: Arc<Backlog>,
    /// HTTP requests answered so far (the flusher holds back while they come fast).
    pub requests: Arc<AtomicU64>,
    pub metrics: PrometheusHandle,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot reach Redis at {url}: {source}")]
    Redis {
        url: String,
        source: redis::RedisError,
    },
    #[error("MySQL configuration: {0}")]
    MysqlConfig(mysql_async::Error),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error("start-up step {step} failed: {source}")]
    Step {
        step: &'static str,
        source: ApiError,
    },
}

fn step<E: Into<ApiError>>(step: &'static str) -> impl FnOnce(E) -> StartError {
    move |e| StartError::Step {
        step,
        source: e.into(),
    }
}

impl App {
    /// Connects, migrates, loads the scripts and rebuilds whatever Redis lacks from MySQL
    /// (see [`crate::rebuild`]).
    pub async fn build(config: Config) -> Result<Arc<Self>, StartError> {
        let metrics = telemetry::metrics_handle();
        let (mut redis, db, scripts) = open_stores(&config).await?;
        let options = rebuild::Options {
            ended_token_keep: config.ended_token_keep,
            balances: false,
        };
        let report = rebuild::restore(&db, &mut redis, &scripts, &options)
            .await
            .map_err(step("rebuilding Redis from MySQL"))?;
        if !report.rebuilt.is_empty() || report.sequences_raised > 0 {
            tracing::info!("Redis rebuilt from MySQL:\n{report}");
        }
        let users = UserDirectory::default();
        users
            .refresh(&db)
            .await
            .map_err(step("loading the user directory"))?;
        let token_issuer = coalescer(
            &scripts,
            &redis,
            "issue_tokens",
            |s, mut r, id, batch| async move { s.issue_tokens(&mut r, id, &batch).await },
        );
        let seat_holder = coalescer(
            &scripts,
            &redis,
            "hold_seats",
            |s, mut r, id, batch| async move { s.hold_seats(&mut r, id, &batch).await },
        );
        let seat_viewer = coalescer(
            &scripts,
            &redis,
            "seat_view",
            |s, mut r, id, batch| async move { s.seat_view(&mut r, id, &batch).await },
        );
        let token_checker = coalescer(
            &scripts,
            &redis,
            "token_status",
            |s, mut r, id, batch| async move { s.token_status(&mut r, id, &batch).await },
        );
        let payment_begins = coalescer(
            &scripts,
            &redis,
            "pay_begin",
            |s, mut r, id, batch| async move { s.pay_begin(&mut r, id, &batch).await },
        );
        let debits = coalescer(
            &scripts,
            &redis,
            "debit",
            |s, mut r, bucket, batch| async move { s.debit(&mut r, bucket, &batch).await },
        );
        let payment_commits = coalescer(
            &scripts,
            &redis,
            "pay_commit",
            |s, mut r, id, batch| async move { s.pay_commit(&mut r, id, &batch).await },
        );
        let app = Arc::new(Self {
            config,
            redis,
            db,
            scripts,
            token_issuer,
            seat_holder,
            seat_viewer,
            token_checker,
            payment_begins,
            debits,
            payment_commits,
            catalogue: Catalogue::default(),
            users,
            health: Health::default(),
            backlog: Arc::default(),
            requests: Arc::default(),
            metrics,
        });
        app.health.probe(&app).await;
        Ok(app)
    }

    /// Starts the admission loop, the flusher, the health probe and the directory refresh.
    /// The handles finish after `shutdown` fires (the flusher after draining).
    pub fn spawn_background(self: &Arc<Self>, shutdown: &Shutdown) -> Vec<JoinHandle<()>> {
        let flusher = OutboxFlusher::new(
            self.db.clone(),
            self.redis.clone(),
            self.backlog.clone(),
            self.config.outbox_claim_idle,
        );
        vec![
            tokio::spawn(admission::run(
                self.clone(),
                self.config.admission_interval,
                shutdown.clone(),
            )),
            tokio::spawn(flusher.run(
                self.config.flush_interval,
                Deferral::new(
                    self.requests.clone(),
                    self.config.flush_busy_rps,
                    self.config.flush_max_lag,
                ),
                shutdown.clone(),
                SHUTDOWN_DRAIN,
            )),
            tokio::spawn(health::probe_loop(self.clone(), shutdown.clone())),
            tokio::spawn(refresh_users(self.clone(), shutdown.clone())),
        ]
    }
}

/// Connects to Redis and MySQL, migrates the database and loads the scripts into Redis.
pub async fn open_stores(config: &Config) -> Result<(RedisConn, Db, Arc<Scripts>), StartError> {
    let mut redis = crate::redis::connect(&config.redis_url)
        .await
        .map_err(|source| StartError::Redis {
            url: config.redis_url.clone(),
            source,
        })?;
    let db = Db::new(&config.mysql_primary_url, &config.mysql_replica_url)
        .map_err(StartError::MysqlConfig)?;
    migrate::run(&db.primary).await?;
    let scripts = Arc::new(Scripts::new());
    scripts
        .load_all(&mut redis)
        .await
        .map_err(step("loading scripts"))?;
    Ok((redis, db, scripts))
}

/// A coalescer whose batches are `run(scripts, connection, slot, batch)` (the slot is a
/// scheduleId, or a wallet bucket for debits), recording
/// each batch's size under `operation`.
fn coalescer<I, O, F, Fut>(
    scripts: &Arc<Scripts>,
    redis: &RedisConn,
    operation: &'static str,
    run: F,
) -> Coalescer<I, O>
where
    I: Send + 'static,
    O: Send + 'static,
    F: Fn(Arc<Scripts>, RedisConn, u64, Vec<I>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = redis::RedisResult<Vec<O>>> + Send + 'static,
{
    let (scripts, redis) = (scripts.clone(), redis.clone());
    Coalescer::new(Arc::new(move |schedule, batch: Vec<I>| {
        metrics::histogram!("seatrush_coalesced_batch_size", "operation" => operation)
            .record(batch.len() as f64);
        Box::pin(run(scripts.clone(), redis.clone(), schedule, batch))
    }))
}

async fn refresh_users(app: Arc<App>, shutdown: Shutdown) {
    while !shutdown.is_triggered() {
        tokio::select! {
            _ = tokio::time::sleep(USER_REFRESH_EVERY) => {}
            _ = shutdown.triggered() => break,
        }
        if let Err(e) = app.users.refresh(&app.db).await {
            tracing::debug!(error = %e, "user directory refresh failed");
        }
    }
}
