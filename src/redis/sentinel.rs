//! Redis behind Sentinel (`redis+sentinel://host:port,host:port/<master name>[?db=N]`): the
//! master is found by asking the Sentinels, and followed when they promote another one.
//!
//! A background task asks the Sentinels for the master every [`POLL`], at once when a call
//! meets a sign that the master moved (`READONLY`, a lost connection) and when a Sentinel
//! announces `+switch-master`. A new master gets new connections; the old ones are dropped
//! as their calls finish. The connection's [`Fence`] closes at the switch: the promoted
//! replica may lack the master's last writes, so scripts wait for the reconciler
//! (`crate::reconcile`) as after any change of Redis.
//!
//! Acknowledgement after replication: a script call (a coalesced batch of state changes) is
//! sent on a connection of its own, taken from a pool (deadpool-redis), followed on it by
//! `WAIT 1 <ms>`, so its callers are answered only once a replica has the batch. `WAIT` covers
//! the writes of the connection it is sent on and blocks that connection while it waits, so
//! it never goes on the shared multiplexed connection. A batch no connected replica confirms
//! in time fails with `NOREPLICAS` (a `503`; the callers recover the outcome by repeating
//! with their `Idempotency-Key`). While the master has no connected replica at all, scripts
//! go on the shared connection without `WAIT`: the degraded mode `/ready` reports as
//! `REDIS_UNREPLICATED`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use deadpool_redis::{Pool, Runtime};
use redis::aio::{ConnectionLike, ConnectionManager};
use redis::{Cmd, RedisError, RedisResult, Value};
use tokio::sync::Notify;

use super::fence::Fence;
use super::{TIMEOUT, is_unreachable, shared_connection};

/// How often the Sentinels are asked where the master is (without a reason to ask sooner).
const POLL: Duration = Duration::from_millis(500);
/// Connections a master's pool holds for replicated script calls.
const POOL_SIZE: usize = 32;

/// A `redis+sentinel://` URL, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// `host:port` of each Sentinel.
    pub sentinels: Vec<String>,
    /// The master name the Sentinels watch.
    pub master: String,
    pub db: i64,
}

const SCHEME: &str = "redis+sentinel://";

/// `None` if `url` is not a Sentinel URL; else the URL, or what is wrong with it.
pub fn parse_url(url: &str) -> Option<Result<SentinelUrl, String>> {
    let rest = url.strip_prefix(SCHEME)?;
    Some(parse_rest(rest).ok_or_else(|| {
        format!("expected {SCHEME}host:port[,host:port…]/<master name>[?db=N], got {url}")
    }))
}

fn parse_rest(rest: &str) -> Option<SentinelUrl> {
    let (hosts, path) = rest.split_once('/')?;
    let (master, query) = match path.split_once('?') {
        Some((master, query)) => (master, Some(query)),
        None => (path, None),
    };
    let db = match query {
        None => 0,
        Some(q) => q.strip_prefix("db=")?.parse().ok()?,
    };
    let sentinels: Vec<String> = hosts.split(',').map(|h| h.trim().to_string()).collect();
    let well_formed = |h: &String| {
        h.rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
    };
    if master.is_empty() || !sentinels.iter().all(well_formed) {
        return None;
    }
    Some(SentinelUrl {
        sentinels,
        master: master.to_string(),
        db,
    })
}

/// The master seatrush talks to now.
pub(super) struct Master {
    /// `host:port`, as the Sentinels name it.
    pub addr: String,
    /// Shared by every call that needs no replica's confirmation.
    pub shared: ConnectionManager,
    /// Connections of their own for calls followed by `WAIT`.
    pool: Pool,
}

/// The Sentinels, the master they name, and what is known of its replicas.
pub(super) struct Ha {
    url: SentinelUrl,
    sentinels: Vec<redis::Client>,
    master: RwLock<Arc<Master>>,
    /// Replicas connected to the master at the last look.
    replicas: AtomicU64,
    /// How long a script call waits for a replica's confirmation.
    wait: Duration,
    /// Wakes the follower: the master may have moved.
    moved: Notify,
}

impl Ha {
    /// Finds the master through the Sentinels and connects to it; a task then follows it
    /// (it ends when the last handle to this is dropped) and closes `fence` at each switch.
    pub async fn connect(
        url: SentinelUrl,
        wait: Duration,
        fence: Arc<Fence>,
    ) -> RedisResult<Arc<Self>> {
        let sentinels = url
            .sentinels
            .iter()
            .map(|h| redis::Client::open(format!("redis://{h}")))
            .collect::<RedisResult<Vec<_>>>()?;
        let addr = master_addr(&sentinels, &url.master).await?;
        let master = connect_master(&addr, url.db).await?;
        let ha = Arc::new(Ha {
            url,
            sentinels,
            master: RwLock::new(Arc::new(master)),
            replicas: AtomicU64::new(0),
            wait,
            moved: Notify::new(),
        });
        ha.look_at_replicas().await;
        metrics::gauge!("seatrush_redis_master", "addr" => addr.clone()).set(1.0);
        tokio::spawn(follow(Arc::downgrade(&ha), fence));
        tokio::spawn(listen(Arc::downgrade(&ha)));
        tracing::info!(master = %addr, "Redis master found through Sentinel");
        Ok(ha)
    }

    /// The master as last followed (its connections).
    pub fn master(&self) -> Arc<Master> {
        self.master.read().expect("sentinel master lock").clone()
    }

    /// Whether the master had no connected replica at the last look (writes are then
    /// acknowledged without one).
    pub fn unreplicated(&self) -> bool {
        self.replicas.load(Ordering::Relaxed) == 0
    }

    /// Runs `cmd` on the master; a script call (`replicate`) is confirmed by a replica
    /// first, unless none is connected.
    pub async fn call(&self, cmd: &Cmd, replicate: bool) -> RedisResult<Value> {
        let master = self.master();
        let result = if replicate && !self.unreplicated() {
            self.replicated(&master, cmd).await
        } else {
            master.shared.clone().req_packed_command(cmd).await
        };
        if let Err(e) = &result {
            self.noticed(e);
        }
        result
    }

    /// Runs a pipeline on the master; `replicate`: confirmed by a replica first (a `WAIT`
    /// after it on the same connection), unless none is connected.
    pub async fn call_pipeline(
        &self,
        pipeline: &redis::Pipeline,
        offset: usize,
        count: usize,
        replicate: bool,
    ) -> RedisResult<Vec<Value>> {
        let master = self.master();
        let result = if replicate && !self.unreplicated() {
            let call = async {
                let mut conn = pooled(&master).await?;
                let replies = conn.req_packed_commands(pipeline, offset, count).await?;
                let acked: Value = redis::cmd("WAIT")
                    .arg(1)
                    .arg(self.wait.as_millis() as u64)
                    .query_async(&mut conn)
                    .await?;
                self.confirmed(acked)?;
                Ok(replies)
            };
            tokio::time::timeout(2 * TIMEOUT + self.wait, call)
                .await
                .unwrap_or_else(|_| Err(timed_out()))
        } else {
            master
                .shared
                .clone()
                .req_packed_commands(pipeline, offset, count)
                .await
        };
        if let Err(e) = &result {
            self.noticed(e);
        }
        result
    }

    /// Wakes the follower if `e` may mean the master moved.
    pub fn noticed(&self, e: &RedisError) {
        if is_unreachable(e) || e.code() == Some("READONLY") {
            self.moved.notify_one();
        }
    }

    async fn replicated(&self, master: &Master, cmd: &Cmd) -> RedisResult<Value> {
        let mut conn = pooled(master).await?;
        let mut pipe = redis::pipe();
        pipe.add_command(cmd.clone())
            .cmd("WAIT")
            .arg(1)
            .arg(self.wait.as_millis() as u64);
        let mut replies =
            tokio::time::timeout(TIMEOUT + self.wait, conn.req_packed_commands(&pipe, 0, 2))
                .await
                .map_err(|_| timed_out())??;
        let (Some(acked), Some(reply)) = (replies.pop(), replies.pop()) else {
            return Err(RedisError::from((
                redis::ErrorKind::Parse,
                "WAIT: replies missing",
            )));
        };
        let reply = reply.extract_error()?;
        self.confirmed(acked)?;
        Ok(reply)
    }

    /// `WAIT`'s answer (replicas that confirmed), as an error if none did.
    fn confirmed(&self, acked: Value) -> RedisResult<()> {
        if redis::from_redis_value::<u64>(acked)? > 0 {
            return Ok(());
        }
        metrics::counter!("seatrush_redis_unconfirmed_writes_total").increment(1);
        // The replica may be gone: look now, so writes go on without it at once.
        self.moved.notify_one();
        Err(redis::make_extension_error(
            "NOREPLICAS".into(),
            Some(format!(
                "no replica confirmed the write within {:?}",
                self.wait
            )),
        ))
    }

    /// Looks at the master's connected replicas (`INFO replication`).
    async fn look_at_replicas(&self) {
        let mut shared = self.master().shared.clone();
        let info = redis::cmd("INFO")
            .arg("replication")
            .query_async::<String>(&mut shared)
            .await;
        let Ok(text) = info else { return };
        let replicas = text
            .lines()
            .find_map(|l| l.strip_prefix("connected_slaves:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let before = self.replicas.swap(replicas, Ordering::Relaxed);
        if (before == 0) != (replicas == 0) {
            if replicas == 0 {
                tracing::warn!(
                    "the Redis master has no connected replica: writes are acknowledged without one"
                );
            } else {
                tracing::info!(
                    replicas,
                    "the Redis master has a replica again: writes wait for it"
                );
            }
        }
        metrics::gauge!("seatrush_redis_replicas").set(replicas as f64);
        metrics::gauge!("seatrush_redis_unreplicated").set(if replicas == 0 { 1.0 } else { 0.0 });
    }

    /// Asks the Sentinels where the master is and moves there if it moved.
    async fn follow_once(&self, fence: &Fence) {
        let Ok(addr) = master_addr(&self.sentinels, &self.url.master).await else {
            return;
        };
        if addr != self.master().addr {
            match connect_master(&addr, self.url.db).await {
                Ok(master) => {
                    let old = std::mem::replace(
                        &mut *self.master.write().expect("sentinel master lock"),
                        Arc::new(master),
                    );
                    fence.close(&format!(
                        "the Redis master moved from {} to {addr}",
                        old.addr
                    ));
                    metrics::counter!("seatrush_redis_failovers_total").increment(1);
                    metrics::gauge!("seatrush_redis_master", "addr" => old.addr.clone()).set(0.0);
                    metrics::gauge!("seatrush_redis_master", "addr" => addr.clone()).set(1.0);
                    tracing::warn!(from = %old.addr, to = %addr, "followed a Redis failover");
                }
                // Not promoted yet, or not reachable: the next look tries again.
                Err(e) => tracing::debug!(%addr, error = %e, "the named master is not ready"),
            }
        }
        self.look_at_replicas().await;
    }
}

/// Registers the replication metrics at their resting values, whatever Redis is behind the
/// connection (a plain Redis or a cluster never fails over and is never waited for).
pub(super) fn register_metrics() {
    metrics::counter!("seatrush_redis_failovers_total").increment(0);
    metrics::counter!("seatrush_redis_unconfirmed_writes_total").increment(0);
    metrics::gauge!("seatrush_redis_unreplicated").set(0.0);
}

/// A call that took longer than its bound (an error the breaker counts as unreachable).
fn timed_out() -> RedisError {
    RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut))
}

/// A connection of the master's pool (its own, for a call followed by `WAIT`).
async fn pooled(master: &Master) -> RedisResult<deadpool_redis::Connection> {
    master
        .pool
        .get()
        .await
        .map_err(|e| RedisError::from((redis::ErrorKind::Io, "no Redis connection", e.to_string())))
}

/// Follows the master until the connection is dropped.
async fn follow(ha: Weak<Ha>, fence: Arc<Fence>) {
    loop {
        let Some(strong) = ha.upgrade() else { return };
        strong.follow_once(&fence).await;
        let wake = async { strong.moved.notified().await };
        let _ = tokio::time::timeout(POLL, wake).await;
    }
}

/// Listens for `+switch-master` on one Sentinel after another, waking the follower, until
/// the connection is dropped.
async fn listen(ha: Weak<Ha>) {
    use futures_util::StreamExt;
    let mut next = 0usize;
    loop {
        let Some(client) = ha
            .upgrade()
            .map(|h| h.sentinels[next % h.sentinels.len()].clone())
        else {
            return;
        };
        next += 1;
        if let Ok(Ok(mut pubsub)) = tokio::time::timeout(TIMEOUT, client.get_async_pubsub()).await
            && pubsub.subscribe("+switch-master").await.is_ok()
        {
            let mut messages = pubsub.on_message();
            loop {
                // (a quiet Sentinel: every POLL, whether anyone still listens)
                match tokio::time::timeout(POLL, messages.next()).await {
                    Ok(Some(_switch)) => match ha.upgrade() {
                        Some(strong) => strong.moved.notify_one(),
                        None => return,
                    },
                    Ok(None) => break, // the Sentinel went away: the next one
                    Err(_) if ha.strong_count() == 0 => return,
                    Err(_) => {}
                }
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The master's `host:port` as the first Sentinel that answers names it.
async fn master_addr(sentinels: &[redis::Client], name: &str) -> RedisResult<String> {
    let mut last = RedisError::from((redis::ErrorKind::Io, "no Sentinel answered"));
    for client in sentinels {
        let ask = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("SENTINEL")
                .arg("get-master-addr-by-name")
                .arg(name)
                .query_async::<Option<(String, u16)>>(&mut conn)
                .await
        };
        match tokio::time::timeout(TIMEOUT, ask).await {
            Ok(Ok(Some((host, port)))) => return Ok(format!("{host}:{port}")),
            Ok(Ok(None)) => {
                last = RedisError::from((
                    redis::ErrorKind::Io,
                    "the Sentinel does not know the master name",
                    name.to_string(),
                ))
            }
            Ok(Err(e)) => last = e,
            Err(_) => last = RedisError::from((redis::ErrorKind::Io, "Sentinel timed out")),
        }
    }
    Err(last)
}

/// Connections to the Redis at `addr`, once it says it is a master (a replica being promoted
/// still answers as a replica for a moment).
async fn connect_master(addr: &str, db: i64) -> RedisResult<Master> {
    let url = format!("redis://{addr}/{db}");
    let client = redis::Client::open(url.as_str())?;
    let mut shared = shared_connection(&client).await?;
    let role: Vec<Value> = redis::cmd("ROLE").query_async(&mut shared).await?;
    let is_master = matches!(role.first(), Some(Value::BulkString(r)) if r == b"master");
    if !is_master {
        return Err(RedisError::from((
            redis::ErrorKind::Io,
            "not a master (yet)",
            addr.to_string(),
        )));
    }
    let pool = deadpool_redis::Config::from_url(url)
        .builder()
        .map_err(|e| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "pool", e.to_string()))
        })?
        .max_size(POOL_SIZE)
        .wait_timeout(Some(TIMEOUT))
        .create_timeout(Some(TIMEOUT))
        .runtime(Runtime::Tokio1)
        .build()
        .map_err(|e| {
            RedisError::from((redis::ErrorKind::InvalidClientConfig, "pool", e.to_string()))
        })?;
    Ok(Master {
        addr: addr.to_string(),
        shared,
        pool,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls_name_their_sentinels_master_and_db() {
        assert_eq!(parse_url("redis://127.0.0.1:6390/1"), None);
        assert_eq!(
            parse_url("redis+sentinel://127.0.0.1:26390,127.0.0.1:26391/seatrush?db=2"),
            Some(Ok(SentinelUrl {
                sentinels: vec!["127.0.0.1:26390".into(), "127.0.0.1:26391".into()],
                master: "seatrush".into(),
                db: 2,
            }))
        );
        assert_eq!(
            parse_url("redis+sentinel://127.0.0.1:26390/seatrush").map(|u| u.map(|u| u.db)),
            Some(Ok(0))
        );
        for bad in [
            "redis+sentinel://127.0.0.1:26390",
            "redis+sentinel://127.0.0.1:26390/",
            "redis+sentinel://127.0.0.1/seatrush",
            "redis+sentinel://127.0.0.1:x/seatrush",
            "redis+sentinel://127.0.0.1:26390/seatrush?db=x",
            "redis+sentinel://127.0.0.1:26390/seatrush?name=y",
        ] {
            assert!(matches!(parse_url(bad), Some(Err(_))), "{bad}");
        }
    }
}
