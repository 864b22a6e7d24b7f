//! `POST /api/v1/queue/tokens`, `GET /api/v1/queue/tokens/me` and
//! `DELETE /api/v1/queue/tokens/me`.

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::request::{JsonObject, idempotency_key, queue_token};
use super::response::{self, Body};
use crate::app::App;
use crate::identity::Caller;
use crate::model::{Error, TokenStatus, iso_ms};
use crate::queue;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuedToken {
    token: String,
    queue_position: u64,
    estimated_wait_time_minutes: u64,
    poll_after_ms: u64,
    status: TokenStatus,
}

/// `POST /api/v1/queue/tokens`: for the caller only.
pub async fn issue_token(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
    body: Vec<u8>,
) -> Result<Response<Body>, Error> {
    let key = idempotency_key(headers)?;
    let body = JsonObject::parse(body)?;
    let user_id = body.id("userId")?;
    let schedule_id = body.id("scheduleId")?;
    caller.owns(user_id)?;
    let (token, state) =
        queue::issue(&app.hot, &app.users, &app.db, caller, schedule_id, key).await?;
    Ok(response::ok(
        StatusCode::OK,
        &IssuedToken {
            token: app.tokens.seal(token),
            queue_position: state.position,
            estimated_wait_time_minutes: state.wait_minutes(),
            poll_after_ms: state.poll_after_ms(),
            status: state.status,
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenView {
    token: String,
    user_id: u64,
    schedule_id: u64,
    status: TokenStatus,
    queue_position: u64,
    estimated_wait_time_minutes: u64,
    poll_after_ms: u64,
    active_until: Option<String>,
}

/// `GET /api/v1/queue/tokens/me`: the caller's own token.
pub async fn my_token(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
) -> Result<Response<Body>, Error> {
    let token = queue_token(headers, &app.tokens)?;
    let (holder, stale) = queue::status_or_stale(&app.hot, &app.db, token, caller).await?;
    let state = holder.state;
    let view = TokenView {
        token: app.tokens.seal(holder.token),
        user_id: holder.token.user_id,
        schedule_id: holder.token.schedule_id,
        status: state.status,
        queue_position: state.position,
        estimated_wait_time_minutes: state.wait_minutes(),
        poll_after_ms: state.poll_after_ms(),
        active_until: state.expires_at_ms.map(iso_ms),
    };
    Ok(response::ok_maybe_stale(&view, stale))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LeftView {
    token: String,
    status: TokenStatus,
    cancelled_reservations: u64,
}

/// `DELETE /api/v1/queue/tokens/me`: the caller leaves the queue.
pub async fn leave(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
) -> Result<Response<Body>, Error> {
    let token = queue_token(headers, &app.tokens)?;
    let cancelled = queue::leave(&app.hot, token, caller).await?;
    Ok(response::ok(
        StatusCode::OK,
        &LeftView {
            token: app.tokens.seal(token),
            status: TokenStatus::Left,
            cancelled_reservations: cancelled,
        },
    ))
}
