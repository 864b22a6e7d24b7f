//! The waiting queue: token issuance and the Queue-Token check. Every race is decided in a
//! Lua script (`issue_tokens`, `token_status`, and the admission tick's `admit_batch` in
//! [`crate::housekeeping`]); concurrent calls for one schedule share a script call.

use uuid::Uuid;

use crate::fallback;
use crate::identity::Caller;
use crate::model::{Error, TokenHolder, TokenState, TokenStatus};
use crate::mysql::Db;
use crate::redis::HotPath;
use crate::redis::scripts::{IssueOutcome, StatusOutcome};
use crate::users::UserDirectory;

/// Issues a new token for the caller on the schedule: WAITING, or ACTIVE at once when there
/// is room.
pub async fn issue(
    hot: &HotPath,
    users: &UserDirectory,
    db: &Db,
    caller: Caller,
    schedule_id: u64,
) -> Result<(Uuid, TokenState), Error> {
    let user_id = caller.user_id();
    if !users.exists(db, user_id).await? {
        return Err(Error::UserNotFound);
    }
    let token = Uuid::new_v4();
    match hot.issue_token(schedule_id, token, user_id).await? {
        IssueOutcome::Issued(state) => {
            if state.status == TokenStatus::Active {
                metrics::counter!("seatrush_queue_admitted_total", "schedule" => schedule_id.to_string())
                    .increment(1);
            }
            Ok((token, state))
        }
        IssueOutcome::Refused(refusal) => Err(refusal.into()),
    }
}

/// The caller's live (WAITING or ACTIVE) token: the token index names its schedule, whose
/// `token_status` script confirms it; another user's token is `403 FORBIDDEN`.
pub async fn authenticate(
    hot: &HotPath,
    token: Uuid,
    caller: Caller,
) -> Result<TokenHolder, Error> {
    let holder = holder(hot, token).await?;
    caller.owns(holder.user_id)?;
    Ok(holder)
}

async fn holder(hot: &HotPath, token: Uuid) -> Result<TokenHolder, Error> {
    let (schedule_id, indexed_user) = hot
        .token_index(&token)
        .await?
        .ok_or(Error::QueueTokenInvalid)?;
    match hot.token_status(schedule_id, token).await? {
        StatusOutcome::Live { user_id, state } if user_id == indexed_user => Ok(TokenHolder {
            token,
            user_id,
            schedule_id,
            state,
        }),
        _ => Err(Error::QueueTokenInvalid),
    }
}

/// [`authenticate`], or the token as MySQL has it while Redis is unreachable (then the flag
/// says the answer may be stale).
pub async fn authenticate_or_stale(
    hot: &HotPath,
    db: &Db,
    token: Uuid,
    caller: Caller,
) -> Result<(TokenHolder, bool), Error> {
    let (holder, stale) =
        fallback::or_mysql(holder(hot, token), || fallback::token_holder(db, token)).await?;
    caller.owns(holder.user_id)?;
    Ok((holder, stale))
}

/// Why a token a schedule's script did not find there is refused: it is another schedule's
/// (`QUEUE_TOKEN_WRONG_SCHEDULE`) or nobody's (`QUEUE_TOKEN_INVALID`).
pub async fn not_here(hot: &HotPath, token: &Uuid, schedule_id: u64) -> Error {
    match hot.token_index(token).await {
        Ok(Some((schedule, _))) if schedule != schedule_id => Error::QueueTokenWrongSchedule,
        Ok(_) => Error::QueueTokenInvalid,
        Err(e) => e.into(),
    }
}
