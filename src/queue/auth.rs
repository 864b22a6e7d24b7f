//! The Queue-Token check every authorised endpoint starts with: the header names a live
//! (WAITING or ACTIVE) token, found through the token index and confirmed by
//! `lua/token_status.lua` in the schedule's slot (concurrent checks of one schedule share a
//! script call).

use hyper::header::HeaderMap;
use redis::AsyncCommands;
use uuid::Uuid;

use crate::app::App;
use crate::error::ApiError;
use crate::redis::keys::TOKEN_INDEX;
use crate::redis::scripts::{StatusOutcome, TokenState};

pub const HEADER: &str = "queue-token";

/// Who a valid token belongs to, and its state now.
#[derive(Debug)]
pub struct TokenHolder {
    pub token: Uuid,
    pub user_id: u64,
    pub schedule_id: u64,
    pub state: TokenState,
}

/// A token is a hyphenated UUID; anything else is not a token we issued.
pub fn parse_token(headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let raw = headers.get(HEADER).ok_or(ApiError::QueueTokenMissing)?;
    let text = raw
        .to_str()
        .map_err(|_| ApiError::QueueTokenInvalid)?
        .trim();
    if text.is_empty() {
        return Err(ApiError::QueueTokenMissing);
    }
    if text.len() != 36 {
        return Err(ApiError::QueueTokenInvalid);
    }
    Uuid::try_parse(text).map_err(|_| ApiError::QueueTokenInvalid)
}

/// The schedule and user a token was issued for, from the token index.
pub async fn indexed(app: &App, token: &Uuid) -> Result<Option<(u64, u64)>, ApiError> {
    let mut redis = app.redis.clone();
    let indexed: Option<String> = redis.hget(TOKEN_INDEX, token.to_string()).await?;
    Ok(indexed
        .as_deref()
        .and_then(|v| v.split_once(':'))
        .and_then(|(s, u)| Some((s.parse::<u64>().ok()?, u.parse::<u64>().ok()?))))
}

/// Why a token a schedule's script did not find there is refused: it is another schedule's
/// (`QUEUE_TOKEN_WRONG_SCHEDULE`) or nobody's (`QUEUE_TOKEN_INVALID`).
pub async fn not_here(app: &App, token: &Uuid, schedule_id: u64) -> ApiError {
    match indexed(app, token).await {
        Ok(Some((schedule, _))) if schedule != schedule_id => ApiError::QueueTokenWrongSchedule,
        Ok(_) => ApiError::QueueTokenInvalid,
        Err(e) => e,
    }
}

/// Resolves the Queue-Token header to its live holder.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<TokenHolder, ApiError> {
    let token = parse_token(headers)?;
    let (schedule_id, indexed_user) = indexed(app, &token)
        .await?
        .ok_or(ApiError::QueueTokenInvalid)?;
    match app.token_checker.call(schedule_id, token).await? {
        StatusOutcome::Live { user_id, state } if user_id == indexed_user => Ok(TokenHolder {
            token,
            user_id,
            schedule_id,
            state,
        }),
        _ => Err(ApiError::QueueTokenInvalid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(value: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(v) = value {
            h.insert(HEADER, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn missing_blank_and_malformed_tokens_are_told_apart() {
        assert!(matches!(
            parse_token(&headers(None)),
            Err(ApiError::QueueTokenMissing)
        ));
        assert!(matches!(
            parse_token(&headers(Some(" "))),
            Err(ApiError::QueueTokenMissing)
        ));
        for bad in [
            "abc",
            "0f8fad5bd9cb469fa16570867728950e",
            "{0f8fad5b-d9cb-469f-a165-70867728950e}",
        ] {
            assert!(
                matches!(
                    parse_token(&headers(Some(bad))),
                    Err(ApiError::QueueTokenInvalid)
                ),
                "{bad}"
            );
        }
        let ok = "0f8fad5b-d9cb-469f-a165-70867728950e";
        assert_eq!(parse_token(&headers(Some(ok))).unwrap().to_string(), ok);
    }
}
