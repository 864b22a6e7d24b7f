//! Redis: one multiplexed, self-reconnecting connection shared by every request (commands from
//! concurrent requests are pipelined on it) behind a circuit breaker, the key layout, and the
//! Lua scripts. The connection is to one Redis, or to a Redis Cluster when the URL names
//! several nodes (comma-separated), or to the master a set of Sentinels names
//! (`redis+sentinel://…`, see [`sentinel`]), whose script calls are confirmed by a replica
//! before they return. Scripts also pass a [`Fence`] that holds them while Redis may be
//! older than MySQL.

mod breaker;
mod cluster;
pub mod coalesce;
pub mod fence;
mod hot_path;
pub mod keys;
pub mod schedules;
pub mod scripts;
mod seat_reads;
pub mod sentinel;
pub mod streams;

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisError, RedisFuture, Value};

use breaker::Breaker;
pub use fence::Fence;
pub use hot_path::{HotPath, Stored};
pub use scripts::Scripts;

use crate::model::Error;

/// Every Redis call gives up after one second (README, "Failure behaviour").
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// The shared connection: cheap to clone (clones share the socket, the breaker and the
/// fence), and every call on it goes through the circuit breaker.
#[derive(Clone)]
pub struct RedisConn {
    inner: Inner,
    breaker: Arc<Breaker>,
    fence: Arc<Fence>,
    /// Script calls on this handle wait for the fence (all but the reconciler's).
    fenced: bool,
    /// Behind Sentinel, which calls on this handle wait for a replica's confirmation.
    replicate: Replicate,
}

/// Which calls wait for a replica's confirmation behind Sentinel (elsewhere: none).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Replicate {
    /// Script calls (every state change of the hot path is one).
    Scripts,
    /// Every call (the few plain writes: a schedule's registration, its settings).
    All,
    /// None (scripts whose changes no client is told of).
    Nothing,
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Arc<sentinel::Ha>),
}

/// How long a script call behind Sentinel waits for a replica to confirm it (`WAIT`).
pub const REPLICA_WAIT: Duration = Duration::from_millis(250);

/// Connects to the Redis at `url`, to the cluster whose nodes `url` lists comma-separated
/// (any of its nodes will do; the client learns the rest), or to the master the Sentinels of
/// a `redis+sentinel://` URL name.
pub async fn connect(url: &str) -> redis::RedisResult<RedisConn> {
    let fence: Arc<Fence> = Arc::default();
    sentinel::register_metrics();
    let inner = if let Some(parsed) = sentinel::parse_url(url) {
        let parsed = parsed.map_err(|e| {
            RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "SEATRUSH_REDIS_URL",
                e,
            ))
        })?;
        Inner::Sentinel(sentinel::Ha::connect(parsed, REPLICA_WAIT, fence.clone()).await?)
    } else if url.contains(',') {
        let client = ClusterClient::builder(url.split(',').map(str::trim))
            .connection_timeout(TIMEOUT)
            .response_timeout(TIMEOUT)
            // A script whose reply was lost may have run: resending it could apply it twice
            // (charge twice, hold twice). A lost reply is a 503; the client repeats the
            // request with its Idempotency-Key, which the scripts answer once.
            .retries(0)
            .build()?;
        Inner::Cluster(client.get_async_connection().await?)
    } else {
        let client = redis::Client::open(url)?;
        let addr = client.get_connection_info().addr().to_string();
        metrics::gauge!("seatrush_redis_master", "addr" => addr).set(1.0);
        Inner::Single(shared_connection(&client).await?)
    };
    Ok(RedisConn {
        inner,
        breaker: Arc::new(Breaker::new("redis")),
        fence,
        fenced: true,
        replicate: Replicate::Scripts,
    })
}

/// The connection every request shares to one Redis: it reconnects by itself, and each call
/// on it gives up after [`TIMEOUT`].
async fn shared_connection(client: &redis::Client) -> redis::RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(TIMEOUT))
        .set_connection_timeout(Some(TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    client.get_connection_manager_with_config(config).await
}

impl RedisConn {
    /// Whether this is a connection to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner, Inner::Cluster(_))
    }

    /// Whether writes are acknowledged without a replica now: behind Sentinel, the master
    /// has no connected replica (the degraded mode `/ready` reports).
    pub fn unreplicated(&self) -> bool {
        matches!(&self.inner, Inner::Sentinel(ha) if ha.unreplicated())
    }

    /// The same connection, its script calls answered without waiting for a replica: for
    /// scripts whose changes no client is told of (a status check's request count).
    pub fn without_replica_wait(&self) -> RedisConn {
        RedisConn {
            replicate: Replicate::Nothing,
            ..self.clone()
        }
    }

    /// The same connection, every call on it (plain commands and pipelines too) confirmed
    /// by a replica behind Sentinel: for the writes that are not scripts.
    pub fn with_replica_wait(&self) -> RedisConn {
        RedisConn {
            replicate: Replicate::All,
            ..self.clone()
        }
    }

    /// The fence its script calls pass (closed until the reconciler opens it).
    pub fn fence(&self) -> &Arc<Fence> {
        &self.fence
    }

    /// The same connection, its script calls not held by the fence: for the reconciler
    /// and the rebuild, which bring Redis up to MySQL before the fence opens.
    pub fn unfenced(&self) -> RedisConn {
        RedisConn {
            fenced: false,
            ..self.clone()
        }
    }

    /// `PING`, not through the circuit breaker (for the health probe, which must see Redis
    /// as it is even while the circuit is open), within the connection timeout.
    pub async fn ping(&self) -> redis::RedisResult<String> {
        let ping = redis::cmd("PING");
        let call = async {
            match self.inner.clone() {
                Inner::Single(mut c) => ping.query_async(&mut c).await,
                Inner::Cluster(mut c) => ping.query_async(&mut c).await,
                Inner::Sentinel(ha) => {
                    let result = ping.query_async(&mut ha.master().shared.clone()).await;
                    if let Err(e) = &result {
                        ha.noticed(e);
                    }
                    result
                }
            }
        };
        let result = tokio::time::timeout(TIMEOUT, call)
            .await
            .unwrap_or_else(|_| Err(RedisError::from((redis::ErrorKind::Io, "PING timed out"))));
        // The probe may be the call that finds a restarted Redis (and reconnects).
        if let Err(e) = &result
            && fence::may_be_another_redis(e)
        {
            self.fence.close(&e.to_string());
        }
        result
    }
}

impl From<RedisError> for Error {
    fn from(e: RedisError) -> Self {
        if is_unreachable(&e) || is_unavailable_reply(&e) || fence::is_refusal(&e) {
            Error::RedisUnavailable(format!("redis: {e}"))
        } else {
            Error::Internal(format!("redis: {e}"))
        }
    }
}

/// Error replies by which a reachable Redis says it cannot take the command now: still
/// loading its data, out of memory (`maxmemory` under `noeviction`), busy running a script,
/// a replica or a master without its replicas, a cluster slot moving or down (`MOVED` and
/// `ASK` too: the cluster client does not follow redirects, see [`connect`]). The request is
/// a `503` with `Retry-After`, as for an unreachable Redis, never a `500`.
const UNAVAILABLE_REPLIES: [&str; 10] = [
    "LOADING",
    "OOM",
    "BUSY",
    "READONLY",
    "MASTERDOWN",
    "NOREPLICAS",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "MOVED",
    "ASK",
];

/// Whether `e` is one of the [`UNAVAILABLE_REPLIES`] (also when a script's call got it).
pub fn is_unavailable_reply(e: &RedisError) -> bool {
    e.code()
        .is_some_and(|code| UNAVAILABLE_REPLIES.contains(&code))
}

/// Whether `e` counts against Redis for the circuit breaker: unreachable, or "not now". A
/// write no replica confirmed in time (`NOREPLICAS`) does not: the master answered, and
/// writes go on without the replica as soon as it is seen gone (`sentinel`).
fn feeds_breaker(e: &RedisError) -> bool {
    is_unreachable(e) || (is_unavailable_reply(e) && e.code() != Some("NOREPLICAS"))
}

/// Whether an error says Redis could not be reached (as opposed to an error reply).
pub fn is_unreachable(e: &RedisError) -> bool {
    e.is_timeout() || e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

fn circuit_open() -> RedisError {
    RedisError::from((
        redis::ErrorKind::Io,
        "circuit open",
        "Redis was unreachable; calls fail at once until a probe gets through".to_string(),
    ))
}

/// Runs a call on `inner` if the fence (for a call that runs a script, `$script`) and the
/// breaker admit it, and tells the breaker, and the fence, how it went.
macro_rules! guarded {
    ($self:ident, $script:expr, $call:expr) => {
        Box::pin(async move {
            if $self.fenced && !$self.fence.is_open() && $script {
                return Err(fence::refused());
            }
            let Some(admission) = $self.breaker.admit() else {
                return Err(circuit_open());
            };
            let result = $call.await;
            if let Err(e) = &result
                && fence::may_be_another_redis(e)
            {
                $self.fence.close(&e.to_string());
            }
            admission.record(!matches!(&result, Err(e) if feeds_breaker(e)));
            result
        })
    };
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        let script = fence::runs_script(cmd);
        guarded!(self, script, async {
            match &mut self.inner {
                Inner::Single(c) => c.req_packed_command(cmd).await,
                Inner::Cluster(c) => c.req_packed_command(cmd).await,
                Inner::Sentinel(ha) => {
                    let wait = match self.replicate {
                        Replicate::Scripts => script,
                        Replicate::All => true,
                        Replicate::Nothing => false,
                    };
                    ha.call(cmd, wait).await
                }
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        guarded!(self, fence::pipeline_runs_script(pipeline), async {
            match &mut self.inner {
                Inner::Single(c) => c.req_packed_commands(pipeline, offset, count).await,
                // Pipelines spanning slots are split per slot; transactions (offset > 0) are
                // never sent across slots by seatrush.
                Inner::Cluster(c) if offset == 0 && count == pipeline.len() => {
                    cluster::send(c, pipeline).await
                }
                Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count).await,
                Inner::Sentinel(ha) => {
                    ha.call_pipeline(pipeline, offset, count, self.replicate == Replicate::All)
                        .await
                }
            }
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
            Inner::Sentinel(ha) => ha.master().shared.get_db(),
        }
    }
}

/// Redis's memory as `INFO memory` reports it, summed over the masters of a cluster.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `used_memory`: bytes allocated for data and overhead.
    pub used: u64,
    /// `maxmemory` (0: no limit); past it, writes are refused with `OOM`.
    pub max: u64,
}

/// [`Memory`], or `None` when Redis does not answer.
pub async fn memory(conn: &RedisConn) -> Option<Memory> {
    let sections = info(conn, "memory").await.ok()?;
    let mut total = Memory::default();
    for text in &sections {
        total.used += info_field(text, "used_memory")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        total.max += info_field(text, "maxmemory")
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// Who this Redis is: its `run_id`, which changes with every start of the server (a restart,
/// a failover to another one); for a cluster, every master's, sorted and comma-separated.
pub async fn run_id(conn: &RedisConn) -> redis::RedisResult<String> {
    let mut ids: Vec<String> = info(conn, "server")
        .await?
        .iter()
        .filter_map(|text| info_field(text, "run_id").map(str::to_string))
        .collect();
    if ids.is_empty() {
        return Err(RedisError::from((
            redis::ErrorKind::Parse,
            "INFO server without a run_id",
        )));
    }
    ids.sort_unstable();
    Ok(ids.join(","))
}

/// `INFO <section>`: the text of each server (one for a single Redis, one per master of a
/// cluster).
async fn info(conn: &RedisConn, section: &str) -> redis::RedisResult<Vec<String>> {
    let reply: redis::Value = redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn.clone())
        .await?;
    let text = |v: redis::Value| match v {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::VerbatimString { text, .. } => Some(text),
        _ => None,
    };
    Ok(match reply {
        // A cluster answers per node.
        redis::Value::Map(nodes) => nodes.into_iter().filter_map(|(_, v)| text(v)).collect(),
        other => text(other).into_iter().collect(),
    })
}

/// A field of an `INFO` text (`name:value` lines).
fn info_field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}
