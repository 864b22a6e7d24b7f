//! The waiting queue: token issuance and the Queue-Token check. Every race is decided in a
//! Lua script (`issue_tokens`, `token_status`, and the admission tick's `admit_batch` in
//! [`crate::housekeeping`]); concurrent calls for one schedule share a script call. A
//! `SHUFFLE_AT_OPEN` queue's pre-queue is ordered at the opening by [`shuffle`]. A token
//! names its schedule and user (the edge has checked its MAC), so it is routed to its
//! schedule without an index, and another user's token is refused without a Redis call.

pub mod events;
pub mod shuffle;

use crate::fallback;
use crate::identity::Caller;
use crate::model::{Error, Idempotency, QueueToken, TokenHolder, TokenState, TokenStatus};
use crate::mysql::Db;
use crate::redis::HotPath;
use crate::redis::scripts::{Counted, IssueOutcome, IssueRequest, StatusOutcome};
use crate::users::UserDirectory;

/// Issues a new token for the caller on the schedule: WAITING, or ACTIVE at once when there
/// is room. With an `Idempotency-Key` used before, the token that first request got, as it
/// was then.
pub async fn issue(
    hot: &HotPath,
    users: &UserDirectory,
    db: &Db,
    caller: Caller,
    schedule_id: u64,
    idempotency_key: Option<String>,
) -> Result<(QueueToken, TokenState), Error> {
    let user_id = caller.user_id();
    if !users.exists(db, user_id).await? {
        return Err(Error::UserNotFound);
    }
    let request = IssueRequest {
        user_id,
        idempotency: idempotency_key.map(|key| Idempotency::issue(key, schedule_id)),
    };
    match hot.issue_token(schedule_id, request).await? {
        IssueOutcome::Issued {
            sequence,
            state,
            replayed,
        } => {
            if state.status == TokenStatus::Active && !replayed {
                metrics::counter!("seatrush_queue_admitted_total", "schedule" => schedule_id.to_string())
                    .increment(1);
            }
            let token = QueueToken {
                schedule_id,
                sequence,
                user_id,
            };
            Ok((token, state))
        }
        IssueOutcome::Refused(refusal) => Err(refusal.into()),
    }
}

/// The caller's live (WAITING or ACTIVE) token, as its schedule's `token_status` script
/// has it; another user's token is `403 FORBIDDEN`. The request counts against the caller's
/// request rate (`429 RATE_LIMITED` once it is spent).
pub async fn authenticate(
    hot: &HotPath,
    token: QueueToken,
    caller: Caller,
) -> Result<TokenHolder, Error> {
    caller.owns(token.user_id)?;
    holder(hot, token, Counted::Yes).await
}

async fn holder(hot: &HotPath, token: QueueToken, counted: Counted) -> Result<TokenHolder, Error> {
    match hot.token_status(token, counted).await? {
        StatusOutcome::Live { user_id, state } if user_id == token.user_id => {
            Ok(TokenHolder { token, state })
        }
        StatusOutcome::RateLimited => Err(Error::RateLimited),
        _ => Err(Error::QueueTokenInvalid),
    }
}

/// The caller's live token as its schedule's `token_status` script has it, not counted
/// against the request rate: the state an event stream opens with (a stream needs Redis,
/// so there is no MySQL answer here).
pub async fn live_token(
    hot: &HotPath,
    token: QueueToken,
    caller: Caller,
) -> Result<TokenHolder, Error> {
    caller.owns(token.user_id)?;
    holder(hot, token, Counted::No).await
}

/// [`authenticate`], or the token as MySQL has it while Redis is unreachable (then the flag
/// says the answer may be stale).
pub async fn authenticate_or_stale(
    hot: &HotPath,
    db: &Db,
    token: QueueToken,
    caller: Caller,
) -> Result<(TokenHolder, bool), Error> {
    checked_or_stale(hot, db, token, caller, Counted::Yes).await
}

/// The caller's token as the status endpoint shows it: [`authenticate_or_stale`] without
/// counting against the request rate (clients poll it as `pollAfterMs` says).
pub async fn status_or_stale(
    hot: &HotPath,
    db: &Db,
    token: QueueToken,
    caller: Caller,
) -> Result<(TokenHolder, bool), Error> {
    checked_or_stale(hot, db, token, caller, Counted::No).await
}

async fn checked_or_stale(
    hot: &HotPath,
    db: &Db,
    token: QueueToken,
    caller: Caller,
    counted: Counted,
) -> Result<(TokenHolder, bool), Error> {
    caller.owns(token.user_id)?;
    fallback::or_mysql(holder(hot, token, counted), || {
        fallback::token_holder(db, token)
    })
    .await
}

/// The caller leaves the queue with their live token: it ends (LEFT), its place or slot is
/// someone else's at once, and the caller's RESERVED holds of the schedule are cancelled
/// (refused with `409 PAYMENT_IN_PROGRESS` while one of them is being paid). Returns how many
/// holds were cancelled.
pub async fn leave(hot: &HotPath, token: QueueToken, caller: Caller) -> Result<u64, Error> {
    caller.owns(token.user_id)?;
    let released = hot.leave_queue(token).await??;
    let schedule = token.schedule_id.to_string();
    metrics::counter!("seatrush_queue_left_total", "schedule" => schedule).increment(1);
    metrics::counter!("seatrush_holds_cancelled_total").increment(released);
    Ok(released)
}

/// The caller's token, if it is one of `schedule_id`'s: `401 QUEUE_TOKEN_WRONG_SCHEDULE`
/// for a token of another schedule, `403` for another user's.
pub fn for_schedule(
    token: QueueToken,
    caller: Caller,
    schedule_id: u64,
) -> Result<QueueToken, Error> {
    caller.owns(token.user_id)?;
    if token.schedule_id != schedule_id {
        return Err(Error::QueueTokenWrongSchedule);
    }
    Ok(token)
}
