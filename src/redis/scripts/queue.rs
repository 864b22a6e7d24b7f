//! The waiting queue's scripts: issuance, status and the admission tick.

use redis::{RedisResult, ScriptInvocation};

use super::{BatchKeys, Observe, PER_TICK, Reply, Scripts, bad_reply, refusal};
use crate::model::{Idempotency, QueueToken, Refusal, TokenState, TokenStatus};
use crate::redis::RedisConn;
use crate::redis::keys::ScheduleKeys;

/// One request of an `issue_tokens` batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    pub user_id: u64,
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug)]
pub enum IssueOutcome {
    /// The token: the `sequence`-th arrival of the schedule, new or (`replayed`) the one a
    /// first request with the same Idempotency-Key was issued, as it was then.
    Issued {
        sequence: u64,
        state: TokenState,
        replayed: bool,
    },
    Refused(Refusal),
}

#[derive(Debug)]
pub enum StatusOutcome {
    Live {
        user_id: u64,
        state: TokenState,
    },
    Invalid,
    /// A live token whose user has spent their request rate.
    RateLimited,
}

/// Whether a Queue-Token check counts against its user's request rate: every public request
/// does, except asking for the token's own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Yes,
    No,
}

#[derive(Debug, Default, Clone)]
pub struct AdmitOutcome {
    pub admitted: u64,
    pub expired: u64,
    pub waiting: u64,
    pub active: u64,
    /// Token records dropped (ended longer ago than the keep period).
    pub dropped: u64,
}

impl Scripts {
    /// Issues a token to each request's user of a batch, all for one schedule, in order.
    pub async fn issue_tokens(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        batch: &[IssueRequest],
    ) -> RedisResult<Vec<IssueOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.issue_tokens.key(&k.cfg);
        call.key(&k.token_sequence);
        queue_keys(&mut call, &k).key(&k.rates[0]).key(&k.rates[1]);
        let mut keys = BatchKeys::after(&k, 11);
        for request in batch {
            call.arg(request.user_id);
            keys.add(&mut call, request.user_id, request.idempotency.as_ref());
        }
        let replies: Vec<String> = call.invoke_observed("issue_tokens", conn).await?;
        replies.iter().map(|r| issue_outcome(r)).collect()
    }

    /// The live state of each token of a batch, all of one schedule; a check that is
    /// [`Counted`] counts against its user's request rate.
    pub async fn token_status(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        checks: &[(u64, Counted)],
    ) -> RedisResult<Vec<StatusOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.token_status.key(&k.cfg);
        call.key(&k.waiting)
            .key(&k.tokens)
            .key(&k.rates[0])
            .key(&k.rates[1]);
        for (sequence, counted) in checks {
            call.arg(sequence).arg(u8::from(*counted == Counted::Yes));
        }
        let replies: Vec<String> = call.invoke_observed("token_status", conn).await?;
        replies.iter().map(|r| status_outcome(r)).collect()
    }

    /// The token's user leaves the queue: the token ends as LEFT and the user's RESERVED
    /// holds of the schedule are cancelled. How many holds were, or the refusal.
    pub async fn leave_queue(
        &self,
        conn: &mut RedisConn,
        token: QueueToken,
    ) -> RedisResult<Result<u64, Refusal>> {
        let k = ScheduleKeys::new(token.schedule_id);
        let mut call = self.leave_queue.key(&k.cfg);
        queue_keys(&mut call, &k)
            .key(&k.rates[0])
            .key(&k.rates[1])
            .key(&k.res)
            .key(&k.holds)
            .key(&k.avail)
            .key(&k.userseats)
            .key(&k.userholds)
            .key(&k.rended)
            .key(&k.seat)
            .arg(token.sequence)
            .arg(token.user_id);
        let reply = Reply::new(call.invoke_observed("leave_queue", conn).await?)?;
        if reply.code()? != "OK" {
            return Ok(Err(reply.refusal()?));
        }
        reply.uint(1).map(Ok)
    }

    /// One admission tick for a schedule; drops records ended more than `keep` ago.
    pub async fn admit_batch(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        keep: std::time::Duration,
    ) -> RedisResult<AdmitOutcome> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.admit_batch.key(&k.cfg);
        let (admitted, expired, waiting, active, dropped): (u64, u64, u64, u64, u64) =
            queue_keys(&mut call, &k)
                .key(&k.rates[0])
                .key(&k.rates[1])
                .arg(PER_TICK)
                .arg(keep.as_millis() as u64)
                .invoke_observed("admit_batch", conn)
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

impl Scripts {
    /// Retires the schedule if its sale is over and nothing in Redis still needs its
    /// records (see `lua/retire_schedule.lua`); true once it is retired.
    pub async fn retire_schedule(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
    ) -> RedisResult<bool> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.retire_schedule.key(&k.cfg);
        call.key(&k.waiting)
            .key(&k.active)
            .key(&k.holds)
            .key(&k.sagas)
            .key(&k.outbox);
        for gone in [
            &k.tokens,
            &k.users,
            &k.ended,
            &k.seat,
            &k.res,
            &k.rended,
            &k.userseats,
            &k.userholds,
            &k.rates[0],
            &k.rates[1],
        ] {
            call.key(gone);
        }
        let retired: u8 = call.invoke_observed("retire_schedule", conn).await?;
        Ok(retired == 1)
    }
}

/// The queue's keys that issuance and admission change, in the order of their scripts'
/// KEYS after the fixed first ones.
fn queue_keys<'a, 'b>(
    call: &'b mut ScriptInvocation<'a>,
    k: &ScheduleKeys,
) -> &'b mut ScriptInvocation<'a> {
    call.key(&k.waiting)
        .key(&k.active)
        .key(&k.tokens)
        .key(&k.users)
        .key(&k.stats)
        .key(&k.ended)
        .key(&k.outbox)
}

/// Decodes one item of `issue_tokens`' reply:
/// `[REPLAY|]OK|status|position|waitMs|sequence|issuedAt|activatedAt|expiresAt` or a
/// refusal code.
fn issue_outcome(reply: &str) -> RedisResult<IssueOutcome> {
    let (text, replayed) = match reply.strip_prefix("REPLAY|") {
        Some(first) => (first, true),
        None => (reply, false),
    };
    let fields: Vec<&str> = text.split('|').collect();
    let [
        code,
        status,
        position,
        wait,
        sequence,
        _issued,
        _activated,
        expires,
    ] = fields[..]
    else {
        return Ok(IssueOutcome::Refused(refusal(text)?));
    };
    if code != "OK" {
        return Err(bad_reply(text));
    }
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad_reply(text));
    let opt = |s: &str| {
        if s.is_empty() {
            Ok(None)
        } else {
            int(s).map(Some)
        }
    };
    Ok(IssueOutcome::Issued {
        replayed,
        sequence: int(sequence)? as u64,
        state: TokenState {
            status: TokenStatus::parse(status).map_err(|_| bad_reply(text))?,
            position: int(position)? as u64,
            wait_ms: int(wait)? as u64,
            expires_at_ms: opt(expires)?,
        },
    })
}

/// Decodes one item of `token_status`' reply:
/// `OK|userId|status|position|waitMs|issuedAt|activatedAt|expiresAt` or a refusal.
fn status_outcome(text: &str) -> RedisResult<StatusOutcome> {
    let fields: Vec<&str> = text.split('|').collect();
    let [
        code,
        user,
        status,
        position,
        wait,
        _issued,
        _activated,
        expires,
    ] = fields[..]
    else {
        return Ok(match text {
            "RATE_LIMITED" => StatusOutcome::RateLimited,
            _ => StatusOutcome::Invalid,
        });
    };
    if code != "OK" {
        return Err(bad_reply(text));
    }
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad_reply(text));
    Ok(StatusOutcome::Live {
        user_id: int(user)? as u64,
        state: TokenState {
            status: TokenStatus::parse(status).map_err(|_| bad_reply(text))?,
            position: int(position)? as u64,
            wait_ms: int(wait)? as u64,
            expires_at_ms: if expires.is_empty() {
                None
            } else {
                Some(int(expires)?)
            },
        },
    })
}
