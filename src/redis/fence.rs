//! The fence in front of the scripts: after anything that may mean Redis restarted or was
//! replaced (a lost connection, a timeout, `LOADING`, `READONLY`, `MASTERDOWN`), and at
//! start-up, Redis may be older than MySQL, and a script could hand out an id MySQL already
//! holds or sell a seat MySQL has sold. Until a check has shown that this Redis (by its run
//! id) is reconciled with MySQL (`crate::reconcile`), every script call fails at once with a
//! `RECONCILING` error, which the edge answers `503` with `Retry-After`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use redis::{Cmd, ErrorKind, Pipeline, RedisError};
use tokio::sync::Notify;

/// The error code of a call the fence refused.
pub const RECONCILING: &str = "RECONCILING";

#[derive(Debug, Default)]
pub struct Fence {
    /// Scripts may run: this Redis is known to be reconciled with MySQL.
    open: AtomicBool,
    /// How often the fence was closed: a check that began before a close must not open it.
    closes: AtomicU64,
    /// Woken when the fence closes, for the reconciler.
    closed: Notify,
}

impl Fence {
    pub fn is_open(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// The number of closes so far: what a check takes before it looks at Redis, and gives
    /// to [`Fence::open`].
    pub fn closes(&self) -> u64 {
        self.closes.load(Ordering::SeqCst)
    }

    /// Lets scripts run (the reconciler, once this Redis is known to be reconciled), unless
    /// the fence was closed since the check that found it so began (`closes_before`):
    /// then that close's cause is checked first. Returns whether it opened.
    pub fn open(&self, closes_before: u64) -> bool {
        if self.closes() != closes_before {
            return false;
        }
        let was_open = self.open.swap(true, Ordering::SeqCst);
        if self.closes() != closes_before {
            // Closed meanwhile: that close stands.
            self.open.store(false, Ordering::SeqCst);
            return false;
        }
        if !was_open {
            tracing::info!("Redis is reconciled with MySQL: scripts run again");
        }
        metrics::gauge!("seatrush_redis_reconciling").set(0.0);
        true
    }

    /// Stops scripts until the reconciler opens the fence again.
    pub fn close(&self, why: &str) {
        self.closes.fetch_add(1, Ordering::SeqCst);
        if self.open.swap(false, Ordering::SeqCst) {
            tracing::warn!(
                why,
                "Redis may have restarted: scripts wait for reconciliation"
            );
        }
        metrics::gauge!("seatrush_redis_reconciling").set(1.0);
        self.closed.notify_one();
    }

    /// Returns once the fence is closed (at once if it is).
    pub async fn closed(&self) {
        if !self.is_open() {
            return;
        }
        self.closed.notified().await;
    }
}

/// Whether an error may mean that the Redis answering now is another one than before (a
/// restart, a failover), which may be older than MySQL. `NOSCRIPT` is one: a Redis that
/// started since the scripts were loaded has none cached (the client then loads the script
/// and calls it again, which the fence refuses).
pub fn may_be_another_redis(e: &RedisError) -> bool {
    super::is_unreachable(e)
        || e.code()
            .is_some_and(|code| ["LOADING", "READONLY", "MASTERDOWN", "NOSCRIPT"].contains(&code))
}

/// The error of a script call the fence refused.
pub fn refused() -> RedisError {
    RedisError::from((
        ErrorKind::Client,
        RECONCILING,
        "Redis is being reconciled with MySQL; scripts run again once it is".to_string(),
    ))
}

/// Whether `e` is the fence's refusal.
pub fn is_refusal(e: &RedisError) -> bool {
    e.kind() == ErrorKind::Client && e.to_string().starts_with(RECONCILING)
}

/// Whether a command runs a script (`EVALSHA`, `EVAL`, `FCALL`).
pub fn runs_script(cmd: &Cmd) -> bool {
    matches!(
        cmd.args_iter().next(),
        Some(redis::Arg::Simple(name)) if [&b"EVALSHA"[..], b"EVAL", b"FCALL"]
            .iter()
            .any(|s| name.eq_ignore_ascii_case(s))
    )
}

/// Whether any command of a pipeline runs a script.
pub fn pipeline_runs_script(pipeline: &Pipeline) -> bool {
    pipeline.cmd_iter().any(runs_script)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_calls_are_told_from_other_commands() {
        assert!(runs_script(redis::cmd("EVALSHA").arg("abc").arg(0)));
        assert!(runs_script(redis::cmd("evalsha").arg("abc").arg(0)));
        assert!(!runs_script(redis::cmd("GET").arg("EVALSHA")));
        let mut pipe = redis::pipe();
        pipe.get("a").cmd("EVAL").arg("return 1").arg(0);
        assert!(pipeline_runs_script(&pipe));
        assert!(!pipeline_runs_script(redis::pipe().get("a").set("b", 1)));
    }

    #[test]
    fn a_check_that_began_before_a_close_does_not_open_the_fence() {
        let fence = Fence::default();
        assert!(!fence.is_open(), "closed until a first check");
        let before = fence.closes();
        assert!(fence.open(before));
        let stale = fence.closes();
        fence.close("a connection dropped");
        assert!(!fence.open(stale), "the close came after that check began");
        assert!(!fence.is_open());
        assert!(fence.open(fence.closes()));
    }

    #[test]
    fn a_lost_connection_may_mean_another_redis_and_the_fence_refusal_does_not() {
        assert!(may_be_another_redis(&RedisError::from((
            ErrorKind::Io,
            "reset"
        ))));
        assert!(!may_be_another_redis(&refused()));
        assert!(is_refusal(&refused()));
        assert!(!is_refusal(&RedisError::from((ErrorKind::Client, "other"))));
    }
}
