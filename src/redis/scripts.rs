//! The Lua scripts of `lua/`, compiled into the binary, loaded at start-up and called by SHA
//! (redis-rs reloads on NOSCRIPT). Each has a typed call returning a typed reply, so handlers
//! never see raw Redis values.

use redis::{RedisResult, Script, Value};
use uuid::Uuid;

use super::RedisConn;
use super::keys::{ScheduleKeys, TOKEN_INDEX, WALLET_BUCKETS, WalletKeys};

/// Helper files scripts may name on their first line, `-- uses: lib/a.lua lib/b.lua`.
const LIBS: &[(&str, &str)] = &[
    ("lib/clock.lua", include_str!("../../lua/lib/clock.lua")),
    ("lib/queue.lua", include_str!("../../lua/lib/queue.lua")),
    ("lib/holds.lua", include_str!("../../lua/lib/holds.lua")),
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

pub struct Scripts {
    cancel_hold: Script,
    charge: Script,
    load_balance: Script,
    expire_holds: Script,
    hold_seats: Script,
    issue_tokens: Script,
    seat_view: Script,
    token_status: Script,
    admit_batch: Script,
}

/// Most tokens one admission tick expires or drops (the rest wait for the next tick).
const PER_TICK: u64 = 1000;

/// A token's state as the scripts report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub status: String,
    pub position: u64,
    pub wait_minutes: u64,
    /// When an ACTIVE token ends.
    pub expires_at_ms: Option<i64>,
}

#[derive(Debug)]
pub enum IssueOutcome {
    Issued(TokenState),
    /// A refusal code from the script (`SCHEDULE_NOT_FOUND`, `BOOKING_CLOSED`, …).
    Refused(String),
}

#[derive(Debug)]
pub enum StatusOutcome {
    Live { user_id: u64, state: TokenState },
    Invalid,
}

#[derive(Debug, Default, Clone)]
pub struct AdmitOutcome {
    pub admitted: u64,
    pub expired: u64,
    pub waiting: u64,
    pub active: u64,
    /// Tokens whose records were dropped (ended longer ago than the keep period).
    pub dropped: Vec<String>,
}

impl Default for Scripts {
    fn default() -> Self {
        Self::new()
    }
}

impl Scripts {
    pub fn new() -> Self {
        Self {
            cancel_hold: with_libs(include_str!("../../lua/cancel_hold.lua")),
            charge: with_libs(include_str!("../../lua/charge.lua")),
            load_balance: with_libs(include_str!("../../lua/load_balance.lua")),
            expire_holds: with_libs(include_str!("../../lua/expire_holds.lua")),
            hold_seats: with_libs(include_str!("../../lua/hold_seats.lua")),
            issue_tokens: with_libs(include_str!("../../lua/issue_tokens.lua")),
            seat_view: with_libs(include_str!("../../lua/seat_view.lua")),
            token_status: with_libs(include_str!("../../lua/token_status.lua")),
            admit_batch: with_libs(include_str!("../../lua/admit_batch.lua")),
        }
    }

    /// Loads every script so the first request already finds it cached.
    pub async fn load_all(&self, conn: &mut RedisConn) -> RedisResult<()> {
        for script in [
            &self.cancel_hold,
            &self.charge,
            &self.load_balance,
            &self.expire_holds,
            &self.hold_seats,
            &self.issue_tokens,
            &self.seat_view,
            &self.token_status,
            &self.admit_batch,
        ] {
            script.prepare_invoke().load_async(conn).await?;
        }
        Ok(())
    }

    /// Issues a batch of (token, userId) for one schedule, in order, and records the tokens
    /// in the token index, in one round trip (a second one removes refused tokens from it).
    pub async fn issue_tokens(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        batch: &[(Uuid, u64)],
    ) -> RedisResult<Vec<IssueOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.issue_tokens.prepare_invoke();
        call.key(&k.cfg)
            .key(&k.seq)
            .key(&k.waiting)
            .key(&k.active)
            .key(&k.tokens)
            .key(&k.users)
            .key(&k.stats)
            .key(&k.ended)
            .key(&k.outbox);
        let mut index = Vec::with_capacity(batch.len());
        for (token, user_id) in batch {
            let token = token.to_string();
            call.arg(&token).arg(user_id);
            index.push((token, format!("{schedule_id}:{user_id}")));
        }
        let mut pipe = redis::pipe();
        pipe.hset_multiple(TOKEN_INDEX, &index)
            .ignore()
            .invoke_script(&call);
        let result: RedisResult<(Vec<Value>,)> = pipe.query_async(conn).await;
        let (replies,) = match result {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                call.load_async(conn).await?;
                pipe.query_async(conn).await?
            }
            other => other?,
        };
        let outcomes = replies
            .into_iter()
            .map(issue_outcome)
            .collect::<RedisResult<Vec<_>>>()?;
        let refused: Vec<&str> = index
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| matches!(outcome, IssueOutcome::Refused(_)))
            .map(|((token, _), _)| token.as_str())
            .collect();
        if !refused.is_empty() {
            redis::cmd("HDEL")
                .arg(TOKEN_INDEX)
                .arg(&refused)
                .query_async::<()>(conn)
                .await?;
        }
        Ok(outcomes)
    }

    pub async fn token_status(
        &self,
        conn: &mut RedisConn,
        token: &Uuid,
        schedule_id: u64,
    ) -> RedisResult<StatusOutcome> {
        let k = ScheduleKeys::new(schedule_id);
        let reply: Value = self
            .token_status
            .key(&k.cfg)
            .key(&k.waiting)
            .key(&k.tokens)
            .arg(token.to_string())
            .invoke_async(conn)
            .await?;
        let reply = Reply::new(reply)?;
        if reply.code()? != "OK" {
            return Ok(StatusOutcome::Invalid);
        }
        Ok(StatusOutcome::Live {
            user_id: reply.uint(1)?,
            state: TokenState {
                status: reply.string(2)?,
                position: reply.uint(3)?,
                wait_minutes: reply.uint(4)?,
                expires_at_ms: reply.opt_int(7)?,
            },
        })
    }

    /// One admission tick for a schedule; drops records ended more than `keep` ago.
    pub async fn admit_batch(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        keep: std::time::Duration,
    ) -> RedisResult<AdmitOutcome> {
        let k = ScheduleKeys::new(schedule_id);
        let (admitted, expired, waiting, active, dropped): (u64, u64, u64, u64, Vec<String>) = self
            .admit_batch
            .key(&k.cfg)
            .key(&k.waiting)
            .key(&k.active)
            .key(&k.tokens)
            .key(&k.users)
            .key(&k.stats)
            .key(&k.ended)
            .key(&k.outbox)
            .arg(PER_TICK)
            .arg(keep.as_millis() as u64)
            .invoke_async(conn)
            .await?;
        Ok(AdmitOutcome {
            admitted,
            expired,
            waiting,
            active,
            dropped,
        })
    }
}

/// A new hold as `hold_seats` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reservation_id: u64,
    pub total_amount: u64,
    pub reserved_at_ms: i64,
    pub expires_at_ms: i64,
    /// (seatId, seatNumber, price) in request order.
    pub seats: Vec<(u64, u64, u64)>,
}

#[derive(Debug)]
pub enum HoldOutcome {
    Held(Hold),
    /// A refusal code, with the seat ids it names (missing or taken seats).
    Refused(String, Vec<u64>),
}

impl Scripts {
    /// Decides a batch of hold requests for one schedule, in order: per request, all of
    /// its seats are held for its user under its token, or none of them.
    pub async fn hold_seats(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        batch: &[HoldRequest],
    ) -> RedisResult<Vec<HoldOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.hold_seats.prepare_invoke();
        call.key(&k.cfg)
            .key(&k.tokens)
            .key(&k.seat)
            .key(&k.avail)
            .key(&k.res)
            .key(&k.holds)
            .key(&k.userseats)
            .key(&k.stats)
            .key(&k.rseq)
            .key(&k.outbox)
            .arg(schedule_id);
        let mut next_key = 11;
        for request in batch {
            call.arg(request.token.to_string()).arg(request.user_id);
            match &request.idempotency {
                Some(idem) => {
                    call.key(k.idempotency(request.user_id, &idem.key))
                        .arg(next_key)
                        .arg(&idem.fingerprint);
                    next_key += 1;
                }
                None => {
                    call.arg(0).arg("");
                }
            }
            call.arg(request.seat_ids.len()).arg(&request.seat_ids);
        }
        let replies: Vec<Value> = call.invoke_async(conn).await?;
        replies.into_iter().map(hold_outcome).collect()
    }
}

/// One request of a `hold_seats` batch.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub token: Uuid,
    pub user_id: u64,
    pub seat_ids: Vec<u64>,
    pub idempotency: Option<Idempotency>,
}

/// Decodes one item of `hold_seats`' reply.
fn hold_outcome(reply: Value) -> RedisResult<HoldOutcome> {
    let reply = Reply::new(reply)?;
    let code = reply.code()?;
    let rest = |from: usize| -> RedisResult<Vec<String>> {
        (from..reply.0.len()).map(|i| reply.string(i)).collect()
    };
    if code != "OK" {
        let seats = rest(1)?
            .iter()
            .map(|s| s.parse().map_err(|_| bad_reply(s)))
            .collect::<RedisResult<_>>()?;
        return Ok(HoldOutcome::Refused(code, seats));
    }
    let seats = rest(5)?
        .iter()
        .map(|s| {
            let mut parts = s.split('|').map(str::parse::<u64>);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Ok(id)), Some(Ok(number)), Some(Ok(price))) => Ok((id, number, price)),
                _ => Err(bad_reply(s)),
            }
        })
        .collect::<RedisResult<_>>()?;
    Ok(HoldOutcome::Held(Hold {
        reservation_id: reply.uint(1)?,
        total_amount: reply.uint(2)?,
        reserved_at_ms: reply.opt_int(3)?.unwrap_or_default(),
        expires_at_ms: reply.opt_int(4)?.unwrap_or_default(),
        seats,
    }))
}

impl Scripts {
    /// Cancels reservation `id` for `user_id`: `Ok(record)` after cancelling, or the
    /// refusal code.
    pub async fn cancel_hold(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        id: u64,
        user_id: u64,
    ) -> RedisResult<Result<String, String>> {
        let k = ScheduleKeys::new(schedule_id);
        let reply: Value = release_keys(&mut self.cancel_hold.prepare_invoke(), &k)
            .arg(id)
            .arg(user_id)
            .invoke_async(conn)
            .await?;
        let reply = Reply::new(reply)?;
        let code = reply.code()?;
        Ok(if code == "OK" {
            Ok(reply.string(1)?)
        } else {
            Err(code)
        })
    }

    /// The schedule's AVAILABLE seat ids if `token` is an ACTIVE token of it, else the
    /// refusal code.
    pub async fn seat_view(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        token: &Uuid,
    ) -> RedisResult<Result<Vec<u64>, String>> {
        let k = ScheduleKeys::new(schedule_id);
        let reply: Value = self
            .seat_view
            .key(&k.tokens)
            .key(&k.avail)
            .arg(token.to_string())
            .invoke_async(conn)
            .await?;
        let reply = Reply::new(reply)?;
        let code = reply.code()?;
        if code != "OK" {
            return Ok(Err(code));
        }
        let ids = reply.string(1)?;
        ids.split(',')
            .filter(|id| !id.is_empty())
            .map(|id| id.parse().map_err(|_| bad_reply(id)))
            .collect::<RedisResult<_>>()
            .map(Ok)
    }

    /// Expires the schedule's holds that are due; returns how many.
    pub async fn expire_holds(&self, conn: &mut RedisConn, schedule_id: u64) -> RedisResult<u64> {
        let k = ScheduleKeys::new(schedule_id);
        release_keys(&mut self.expire_holds.prepare_invoke(), &k)
            .arg(PER_TICK)
            .invoke_async(conn)
            .await
    }
}

/// A charge as `charge.lua` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeOutcome {
    Charged {
        transaction_id: u64,
        balance: u64,
        charged_at_ms: i64,
    },
    /// Redis does not have the user's balance yet: load it, then charge again.
    NotLoaded,
    /// The balance would exceed the cap.
    OverLimit,
    /// The Idempotency-Key was first used for a different request.
    KeyReused,
}

/// An Idempotency-Key as the scripts use it: the user-scoped key and the fingerprint of the
/// request it was first used for.
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

impl Scripts {
    /// Charges `amount`; with an Idempotency-Key, a repeat gets the first outcome back.
    pub async fn charge(
        &self,
        conn: &mut RedisConn,
        user_id: u64,
        amount: u64,
        balance_cap: u64,
        idempotency: Option<&Idempotency>,
    ) -> RedisResult<ChargeOutcome> {
        let k = WalletKeys::of_user(user_id);
        let mut call = self.charge.prepare_invoke();
        call.key(&k.balances)
            .key(&k.txseq)
            .key(&k.outbox)
            .arg(user_id)
            .arg(amount)
            .arg(balance_cap)
            .arg(k.bucket)
            .arg(WALLET_BUCKETS);
        if let Some(idem) = idempotency {
            call.key(k.idempotency(user_id, &idem.key))
                .arg(&idem.fingerprint);
        }
        let reply = Reply::new(call.invoke_async(conn).await?)?;
        let code = reply.code()?;
        if code == "REPLAY" {
            let outcome = reply.string(1)?;
            let mut f = outcome.split('|');
            return match (f.next(), f.next(), f.next(), f.next()) {
                (Some("OK"), Some(tx), Some(balance), Some(at)) => Ok(ChargeOutcome::Charged {
                    transaction_id: tx.parse().map_err(|_| bad_reply(&outcome))?,
                    balance: balance.parse().map_err(|_| bad_reply(&outcome))?,
                    charged_at_ms: at.parse().map_err(|_| bad_reply(&outcome))?,
                }),
                (Some("BALANCE_LIMIT"), None, ..) => Ok(ChargeOutcome::OverLimit),
                _ => Err(bad_reply(&outcome)),
            };
        }
        Ok(match code.as_str() {
            "OK" => ChargeOutcome::Charged {
                transaction_id: reply.uint(1)?,
                balance: reply.uint(2)?,
                charged_at_ms: reply.opt_int(3)?.unwrap_or_default(),
            },
            "NOT_LOADED" => ChargeOutcome::NotLoaded,
            "BALANCE_LIMIT" => ChargeOutcome::OverLimit,
            "IDEMPOTENCY_KEY_REUSED" => ChargeOutcome::KeyReused,
            other => return Err(bad_reply(other)),
        })
    }

    /// Puts `record` in as the user's balance unless Redis has one; returns the one it has.
    pub async fn load_balance(
        &self,
        conn: &mut RedisConn,
        user_id: u64,
        record: &str,
    ) -> RedisResult<String> {
        self.load_balance
            .key(WalletKeys::of_user(user_id).balances)
            .arg(user_id)
            .arg(record)
            .invoke_async(conn)
            .await
    }
}

/// The keys of scripts that end holds (`release_hold` in `lua/lib/holds.lua`), in order.
fn release_keys<'a, 'b>(
    call: &'b mut redis::ScriptInvocation<'a>,
    k: &ScheduleKeys,
) -> &'b mut redis::ScriptInvocation<'a> {
    call.key(&k.res)
        .key(&k.holds)
        .key(&k.avail)
        .key(&k.userseats)
        .key(&k.stats)
        .key(&k.outbox)
}

/// Decodes one item of `issue_tokens`' reply: `OK|status|position|wait|seq|iat|aat|exp` or
/// a refusal code.
fn issue_outcome(reply: Value) -> RedisResult<IssueOutcome> {
    let text = match reply {
        Value::BulkString(bytes) => String::from_utf8(bytes).map_err(|_| bad_reply("not UTF-8"))?,
        other => return Err(bad_reply(&format!("{other:?}"))),
    };
    let fields: Vec<&str> = text.split('|').collect();
    let [code, status, position, wait, _seq, _issued, _activated, exp] = fields[..] else {
        return Ok(IssueOutcome::Refused(text));
    };
    if code != "OK" {
        return Err(bad_reply(&text));
    }
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad_reply(&text));
    let opt = |s: &str| {
        if s.is_empty() {
            Ok(None)
        } else {
            int(s).map(Some)
        }
    };
    Ok(IssueOutcome::Issued(TokenState {
        status: status.to_string(),
        position: int(position)? as u64,
        wait_minutes: int(wait)? as u64,
        expires_at_ms: opt(exp)?,
    }))
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
