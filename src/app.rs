//! Start-up: the application's connections and shared state ([`App`]), how it is built from
//! a [`Config`], and its background loops. Only start-up and the edge (`api`) see the whole
//! of it; the services get the handles they need.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;

use crate::catalogue::{Catalogue, ListingCache};
use crate::config::Config;
use crate::health::{self, Health};
use crate::housekeeping::{Housekeeping, Timing};
use crate::identity::{self, Identity, TokenKey};
use crate::model::Error;
use crate::mysql::{Db, migrate};
use crate::queue::events::TokenEvents;
use crate::redis::{HotPath, RedisConn, Scripts};
use crate::shutdown::Shutdown;
use crate::telemetry;
use crate::users::UserDirectory;
use crate::writebehind::{Backlog, Deferral, OutboxFlusher};
use crate::{rebuild, reconcile};

/// How often the user directory picks up users created elsewhere.
const USER_REFRESH_EVERY: Duration = Duration::from_secs(1);
/// Longest the flusher keeps draining after a shutdown signal.
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(10);

pub struct App {
    pub config: Config,
    /// Verifies the caller's identity on every public request.
    pub identity: Identity,
    /// Signs and opens Queue-Tokens.
    pub tokens: TokenKey,
    /// Every Redis operation of the services, by name.
    pub hot: Arc<HotPath>,
    /// The queue's event streams open on this instance.
    pub events: Arc<TokenEvents>,
    pub db: Db,
    /// Concerts, schedules and seats from the replica, cached briefly.
    pub catalogue: Catalogue,
    /// The last rendering of each schedule's seat listing, with its gzip form.
    pub listings: ListingCache,
    /// Answers "does this user exist?" without a query on the hot path.
    pub users: UserDirectory,
    /// Dependency states for `/health`, refreshed in the background.
    pub health: Arc<Health>,
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
    #[error("identity keys: {0}")]
    Identity(#[from] identity::KeyError),
    #[error("MySQL configuration: {0}")]
    MysqlConfig(mysql_async::Error),
    #[error(transparent)]
    Migrate(#[from] migrate::MigrateError),
    #[error("start-up step {step} failed: {source}")]
    Step { step: &'static str, source: Error },
}

fn step<E: Into<Error>>(step: &'static str) -> impl FnOnce(E) -> StartError {
    move |e| StartError::Step {
        step,
        source: e.into(),
    }
}

impl App {
    /// Connects, migrates, loads the scripts, rebuilds whatever Redis lacks from MySQL (see
    /// [`crate::rebuild`]) and makes sure Redis is not behind MySQL (see
    /// [`crate::reconcile`]) before any script runs.
    pub async fn build(config: Config) -> Result<Arc<Self>, StartError> {
        let metrics = telemetry::metrics_handle();
        let identity = Identity::from_config(&config)?;
        let tokens = TokenKey::from_config(&config)?;
        let (redis, db, scripts) = open_stores(&config).await?;
        let mut unfenced = redis.unfenced();
        let options = rebuild::Options {
            ended_record_keep: config.ended_record_keep,
            balances: false,
        };
        let report = rebuild::restore(&db, &mut unfenced, &scripts, &options)
            .await
            .map_err(step("rebuilding Redis from MySQL"))?;
        if !report.rebuilt.is_empty() {
            tracing::info!("Redis rebuilt from MySQL:\n{report}");
        }
        crate::redis::schedules::track_live(&mut unfenced)
            .await
            .map_err(step("tracking the live schedules"))?;
        // Opens the fence; while another instance reconciles this Redis, waits for it.
        while reconcile::check(&db, &mut unfenced, &scripts, config.ended_record_keep)
            .await
            .map_err(step("reconciling Redis with MySQL"))?
            == reconcile::Checked::Waiting
        {
            tokio::time::sleep(reconcile::RETRY).await;
        }
        // The replica may lag behind (a database migrated a moment ago) or be down; users it
        // has not copied yet are found through the primary, and the next refresh loads them.
        let users = UserDirectory::default();
        if let Err(e) = users.refresh(&db).await {
            tracing::warn!(error = %e, "user directory not loaded from the replica; will retry");
        }
        let health = Arc::new(Health::default());
        health.probe(&redis, &db).await;
        let events = Arc::new(TokenEvents::new(
            redis.without_replica_wait(),
            scripts.clone(),
            config.max_event_streams,
        ));
        Ok(Arc::new(Self {
            config,
            identity,
            tokens,
            hot: Arc::new(HotPath::new(redis, scripts)),
            events,
            catalogue: Catalogue::new(db.clone(), health.clone()),
            listings: ListingCache::default(),
            db,
            users,
            health,
            backlog: Arc::default(),
            requests: Arc::default(),
            metrics,
        }))
    }

    /// Starts the housekeeping loop, the flusher, the health probe, the directory refresh
    /// and the reconciler. The handles finish after `shutdown` fires (the flusher after draining).
    pub fn spawn_background(self: &Arc<Self>, shutdown: &Shutdown) -> Vec<JoinHandle<()>> {
        let flusher = OutboxFlusher::new(
            self.db.clone(),
            self.hot.conn(),
            self.backlog.clone(),
            self.config.outbox_claim_idle,
        );
        vec![
            tokio::spawn(
                self.housekeeping()
                    .run(self.config.admission_interval, shutdown.clone()),
            ),
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
            tokio::spawn(health::probe_loop(
                self.health.clone(),
                self.hot.conn(),
                self.db.clone(),
                shutdown.clone(),
            )),
            tokio::spawn(refresh_users(self.clone(), shutdown.clone())),
            tokio::spawn(reconcile::run(
                self.db.clone(),
                self.hot.conn(),
                self.hot.scripts().clone(),
                self.config.ended_record_keep,
                shutdown.clone(),
            )),
        ]
    }

    /// The housekeeping (admission tick, expiry, openings' shuffles) on this instance's
    /// Redis, timed by the configuration.
    pub fn housekeeping(&self) -> Housekeeping {
        Housekeeping::new(
            self.hot.clone(),
            Timing {
                keep_ended_records: self.config.ended_record_keep,
                payment_saga_timeout: self.config.payment_saga_timeout,
            },
        )
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
