//! The waiting queue's scripts: issuance, status and the admission tick.

use redis::{RedisResult, Value};
use uuid::Uuid;

use super::{Observe, PER_TICK, Scripts, bad_reply, observed};
use crate::redis::RedisConn;
use crate::redis::keys::{ScheduleKeys, TOKEN_INDEX};

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

impl Scripts {
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
        let result: RedisResult<(Vec<Value>,)> =
            observed("issue_tokens", pipe.query_async(conn)).await;
        let (replies,) = match result {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                call.load_async(conn).await?;
                observed("issue_tokens", pipe.query_async(conn)).await?
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

    /// The live state of each token of a batch, all of one schedule.
    pub async fn token_status(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        tokens: &[Uuid],
    ) -> RedisResult<Vec<StatusOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.token_status.key(&k.cfg);
        call.key(&k.waiting).key(&k.tokens);
        for token in tokens {
            call.arg(token.to_string());
        }
        let replies: Vec<String> = call.invoke_observed("token_status", conn).await?;
        replies.iter().map(|r| status_outcome(r)).collect()
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

/// Decodes one item of `token_status`' reply: `OK|userId|status|position|wait|iat|aat|exp`
/// or a refusal.
fn status_outcome(text: &str) -> RedisResult<StatusOutcome> {
    let fields: Vec<&str> = text.split('|').collect();
    let [code, user, status, position, wait, _issued, _activated, exp] = fields[..] else {
        return Ok(StatusOutcome::Invalid);
    };
    if code != "OK" {
        return Err(bad_reply(text));
    }
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad_reply(text));
    Ok(StatusOutcome::Live {
        user_id: int(user)? as u64,
        state: TokenState {
            status: status.to_string(),
            position: int(position)? as u64,
            wait_minutes: int(wait)? as u64,
            expires_at_ms: if exp.is_empty() {
                None
            } else {
                Some(int(exp)?)
            },
        },
    })
}
