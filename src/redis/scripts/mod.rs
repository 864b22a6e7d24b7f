//! The Lua scripts of `lua/`, compiled into the binary, loaded at start-up and called by SHA
//! (redis-rs reloads on NOSCRIPT). Each has a typed call returning a typed reply, so handlers
//! never see raw Redis values.

use std::future::Future;
use std::time::Instant;

use redis::{FromRedisValue, RedisResult, Script, ScriptInvocation, Value};

use super::RedisConn;
use super::keys::ScheduleKeys;
use crate::model::{Idempotency, Refusal, Seat};

mod holds;
mod payment;
mod queue;
mod restore;
mod wallet;

pub use holds::{HoldOutcome, HoldRequest, SeatState, SeatViewOutcome, SeatViewReply};
pub use payment::{
    BeginOutcome, BeginRequest, CommitOutcome, DEBIT_KEEP, DebitOutcome, DebitRequest,
};
pub use queue::{
    AdmitOutcome, Counted, EventRound, IssueOutcome, IssueRequest, Observed, Probe, QueueOrdering,
    Retirement, ShuffleStart, ShuffleStep, StatusOutcome,
};
pub use wallet::{ChargeMode, ChargeOutcome};

/// Runs one script call (or a pipeline around one), recording its latency and whether it
/// failed under the script's name, and counting it in flight while it waits for Redis.
pub(crate) async fn observed<T>(
    script: &'static str,
    call: impl Future<Output = RedisResult<T>>,
) -> RedisResult<T> {
    let in_flight = metrics::gauge!("seatrush_redis_in_flight");
    in_flight.increment(1.0);
    let started = Instant::now();
    let result = call.await;
    in_flight.decrement(1.0);
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("seatrush_redis_script_duration_seconds", "script" => script,
        "result" => outcome)
    .record(started.elapsed().as_secs_f64());
    result
}

/// [`observed`] for a script invocation.
trait Observe {
    fn invoke_observed<T: FromRedisValue>(
        &self,
        script: &'static str,
        conn: &mut RedisConn,
    ) -> impl Future<Output = RedisResult<T>>;
}

impl Observe for ScriptInvocation<'_> {
    fn invoke_observed<T: FromRedisValue>(
        &self,
        script: &'static str,
        conn: &mut RedisConn,
    ) -> impl Future<Output = RedisResult<T>> {
        observed(script, self.invoke_async(conn))
    }
}

/// Helper files scripts may name on their first line, `-- uses: lib/a.lua lib/b.lua`.
const LIBS: &[(&str, &str)] = &[
    ("lib/clock.lua", include_str!("../../../lua/lib/clock.lua")),
    ("lib/queue.lua", include_str!("../../../lua/lib/queue.lua")),
    ("lib/holds.lua", include_str!("../../../lua/lib/holds.lua")),
    ("lib/rate.lua", include_str!("../../../lua/lib/rate.lua")),
];

/// The script with the helpers it names prepended, so it stays one atomic unit in Redis.
fn with_libs(source: &'static str) -> Script {
    let mut full = String::new();
    let uses = source
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("-- uses: "));
    for name in uses.into_iter().flat_map(str::split_whitespace) {
        let (_, lib) = LIBS
            .iter()
            .find(|(n, _)| *n == name)
            .unwrap_or_else(|| panic!("a script uses {name}, which is not in LIBS"));
        full.push_str(lib);
        full.push('\n');
    }
    full.push_str(source);
    Script::new(&full)
}

/// Declares [`Scripts`], one field per script of `lua/` (the field is the file's name), with
/// the constructor and the loader: a script is added by naming it here once.
macro_rules! scripts {
    ($($name:ident),* $(,)?) => {
        pub struct Scripts {
            $($name: Script,)*
        }

        impl Scripts {
            pub fn new() -> Self {
                Self {
                    $($name: with_libs(include_str!(concat!(
                        "../../../lua/", stringify!($name), ".lua"
                    ))),)*
                }
            }

            /// The `lua/` file names of the scripts, in the order they are declared.
            #[cfg(test)]
            const NAMES: &[&str] = &[$(stringify!($name)),*];

            fn all(&self) -> impl Iterator<Item = &Script> {
                [$(&self.$name),*].into_iter()
            }
        }
    };
}

scripts!(
    admit_batch,
    cancel_hold,
    charge,
    count_request,
    debit,
    expire_holds,
    hold_seats,
    issue_tokens,
    leave_queue,
    load_balance,
    pay_begin,
    pay_commit,
    pay_rollback,
    raise_sequences,
    restore_balances,
    restore_reservations,
    restore_shuffle,
    restore_tokens,
    retire_schedule,
    seat_view,
    shuffle_apply,
    shuffle_begin,
    store_settings,
    token_events,
    token_status,
    upgrade_free_seats,
    void_debit,
);

/// Most records one background call expires, drops or ends (the rest wait for the next).
const PER_TICK: u64 = 1000;

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}

impl Scripts {
    /// Loads every script so the first request already finds it cached (a `NOSCRIPT` reply
    /// is taken for another Redis, which closes the fence: see `crate::redis::fence`).
    pub async fn load_all(&self, conn: &mut RedisConn) -> RedisResult<()> {
        for script in self.all() {
            script.prepare_invoke().load_async(conn).await?;
        }
        Ok(())
    }
}

/// The Idempotency-Keys of a batched call of a script whose batch items name theirs by KEYS
/// index: each key goes after the script's fixed keys, in order.
struct BatchKeys<'k> {
    schedule: &'k ScheduleKeys,
    /// The KEYS index (1-based) the next key gets.
    next: usize,
}

impl<'k> BatchKeys<'k> {
    /// For a script with `fixed` keys of its own.
    fn after(schedule: &'k ScheduleKeys, fixed: usize) -> Self {
        Self {
            schedule,
            next: fixed + 1,
        }
    }

    /// Adds one request's Idempotency-Key: the key (at the next index) and its fingerprint,
    /// or `0, ""` for a request without one.
    fn add(&mut self, call: &mut ScriptInvocation<'_>, user_id: u64, idem: Option<&Idempotency>) {
        match idem {
            Some(idem) => {
                call.key(self.schedule.idempotency(user_id, &idem.key))
                    .arg(self.next)
                    .arg(&idem.fingerprint);
                self.next += 1;
            }
            None => {
                call.arg(0).arg("");
            }
        }
    }
}

/// A refusal code of a script; any other text is a reply seatrush does not understand.
fn refusal(code: &str) -> RedisResult<Refusal> {
    Refusal::parse(code).ok_or_else(|| bad_reply(code))
}

/// A script's array reply: element 0 is the code, the rest positional values.
struct Reply(Vec<Value>);

fn bad_reply(what: &str) -> redis::RedisError {
    redis::RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected script reply",
        what.to_string(),
    ))
}

impl Reply {
    fn new(value: Value) -> RedisResult<Self> {
        match value {
            Value::Array(items) => Ok(Self(items)),
            other => Err(bad_reply(&format!("{other:?}"))),
        }
    }

    fn string(&self, i: usize) -> RedisResult<String> {
        match self.0.get(i) {
            Some(Value::BulkString(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
            Some(Value::SimpleString(s)) => Ok(s.clone()),
            Some(Value::Int(n)) => Ok(n.to_string()),
            other => Err(bad_reply(&format!("element {i}: {other:?}"))),
        }
    }

    fn code(&self) -> RedisResult<String> {
        self.string(0)
    }

    /// Element 0 as a refusal code.
    fn refusal(&self) -> RedisResult<Refusal> {
        refusal(&self.code()?)
    }

    /// The seats (`seatId|seatNumber|price`) from element `from` on.
    fn seats(&self, from: usize) -> RedisResult<Vec<Seat>> {
        (from..self.0.len())
            .map(|i| {
                let s = self.string(i)?;
                Seat::decode(&s).ok_or_else(|| bad_reply(&s))
            })
            .collect()
    }

    /// An integer given as a Lua number or a numeric string; empty string is `None`.
    fn opt_int(&self, i: usize) -> RedisResult<Option<i64>> {
        if let Some(Value::Int(n)) = self.0.get(i) {
            return Ok(Some(*n));
        }
        let s = self.string(i)?;
        if s.is_empty() {
            return Ok(None);
        }
        s.parse()
            .map(Some)
            .map_err(|_| bad_reply(&format!("element {i}: {s}")))
    }

    fn uint(&self, i: usize) -> RedisResult<u64> {
        match self.opt_int(i)? {
            Some(n) if n >= 0 => Ok(n as u64),
            other => Err(bad_reply(&format!("element {i}: {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    /// lib/rate.lua keeps a run's request counts until `rate_commit()`: a script that counts
    /// requests must end with it, or its counts are lost.
    #[test]
    fn every_script_that_counts_requests_stores_the_counts_before_it_returns() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/lua");
        let mut counting = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "lua") {
                continue;
            }
            let source = std::fs::read_to_string(&path).unwrap();
            if !source.contains("rate_refusal(") {
                continue;
            }
            counting += 1;
            let lines: Vec<&str> = source.lines().filter(|l| !l.trim().is_empty()).collect();
            let tail = &lines[lines.len() - 2..];
            assert!(
                tail[0] == "rate_commit()" && tail[1].starts_with("return "),
                "{} must end with rate_commit() and its return",
                path.display()
            );
        }
        assert!(counting >= 5, "the scripts that count requests were found");
    }

    /// Every script in `lua/` is one of [`Scripts`] (and so loaded at start-up), and every
    /// one of them names only helpers that exist.
    #[test]
    fn every_script_of_lua_is_declared_and_builds() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/lua");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".lua").map(str::to_string)
            })
            .collect();
        files.sort();
        let mut declared: Vec<&str> = super::Scripts::NAMES.to_vec();
        declared.sort();
        assert_eq!(files, declared);
        assert_eq!(super::Scripts::new().all().count(), declared.len());
    }

    /// lib/holds.lua calls lib/clock.lua's `now_us`: every script that names it names the
    /// clock first (a helper missing at run time is a nil call only the script's own run
    /// would find).
    #[test]
    fn scripts_that_use_the_holds_helpers_name_the_clock_before_them() {
        for name in super::Scripts::NAMES {
            let path = format!("{}/lua/{name}.lua", env!("CARGO_MANIFEST_DIR"));
            let source = std::fs::read_to_string(path).unwrap();
            let uses: Vec<&str> = source
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("-- uses: "))
                .map(|l| l.split_whitespace().collect())
                .unwrap_or_default();
            let at = |lib| uses.iter().position(|u| *u == lib);
            if let Some(holds) = at("lib/holds.lua") {
                assert!(
                    at("lib/clock.lua").is_some_and(|c| c < holds),
                    "{name}: {uses:?}"
                );
            }
        }
    }
}
