//! `POST /api/v1/queue/tokens`, `GET /api/v1/queue/tokens/me`, its event stream
//! `GET /api/v1/queue/tokens/me/events`, and `DELETE /api/v1/queue/tokens/me`.

use hyper::header::HeaderMap;
use hyper::{Response, StatusCode};
use serde::Serialize;

use super::request::{JsonObject, idempotency_key, queue_token};
use super::response::{self, Body};
use crate::app::App;
use crate::identity::Caller;
use crate::model::{Error, QueueToken, TokenEvent, TokenState, TokenStatus, iso_ms};
use crate::queue;

/// Where a token stands in its queue, as the issuance and status answers show it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Place {
    /// `null` in a pre-queue not shuffled yet.
    queue_position: Option<u64>,
    estimated_wait_time_minutes: u64,
    poll_after_ms: u64,
    pre_queue: bool,
    /// In a pre-queue: when booking opens and places are drawn.
    #[serde(skip_serializing_if = "Option::is_none")]
    booking_open_at: Option<String>,
}

impl Place {
    fn of(token: QueueToken, state: &TokenState) -> Self {
        let now_ms = chrono::Utc::now().timestamp_millis();
        Self {
            queue_position: state.opens_at_ms.is_none().then_some(state.position),
            estimated_wait_time_minutes: state.wait_minutes(),
            poll_after_ms: state.poll_after_ms(now_ms, token.sequence),
            pre_queue: state.opens_at_ms.is_some(),
            booking_open_at: state.opens_at_ms.map(iso_ms),
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuedToken {
    token: String,
    #[serde(flatten)]
    place: Place,
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
            place: Place::of(token, &state),
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
    #[serde(flatten)]
    place: Place,
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
        place: Place::of(holder.token, &state),
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

/// `GET /api/v1/queue/tokens/me/events`: the caller's token's state now, then each change,
/// as server-sent events, until the token ends (see `crate::queue::events`).
pub async fn events(
    app: &App,
    caller: Caller,
    headers: &HeaderMap,
) -> Result<Response<Body>, Error> {
    let token = queue_token(headers, &app.tokens)?;
    let holder = queue::live_token(&app.hot, token, caller).await?;
    let subscription = app.events.subscribe(&holder)?;
    Ok(response::event_stream(subscription, render_event))
}

/// One event on the wire: its name and a `data:` line of JSON, or a comment to keep the
/// connection alive.
fn render_event(event: TokenEvent) -> bytes::Bytes {
    let text = match event {
        TokenEvent::Position { position, wait_ms } => format!(
            "event: position\ndata: {{\"queuePosition\":{position},\"estimatedWaitTimeMinutes\":{},\"preQueue\":false}}\n\n",
            wait_ms.div_ceil(60_000)
        ),
        TokenEvent::PreQueue {
            opens_at_ms,
            wait_ms,
        } => format!(
            "event: position\ndata: {{\"queuePosition\":null,\"estimatedWaitTimeMinutes\":{},\"preQueue\":true,\"bookingOpenAt\":\"{}\"}}\n\n",
            wait_ms.div_ceil(60_000),
            iso_ms(opens_at_ms)
        ),
        TokenEvent::Active { until_ms } => format!(
            "event: active\ndata: {{\"activeUntil\":\"{}\"}}\n\n",
            iso_ms(until_ms)
        ),
        TokenEvent::Ended(status) => format!(
            "event: ended\ndata: {{\"status\":\"{}\"}}\n\n",
            status.as_str()
        ),
        TokenEvent::KeepAlive => ": keep-alive\n\n".to_string(),
    };
    bytes::Bytes::from(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_written_as_server_sent_events() {
        let text = |e| String::from_utf8(render_event(e).to_vec()).unwrap();
        assert_eq!(
            text(TokenEvent::Position {
                position: 42,
                wait_ms: 61_000
            }),
            "event: position\ndata: {\"queuePosition\":42,\"estimatedWaitTimeMinutes\":2,\"preQueue\":false}\n\n"
        );
        assert_eq!(
            text(TokenEvent::PreQueue {
                opens_at_ms: 60_000,
                wait_ms: 60_001
            }),
            "event: position\ndata: {\"queuePosition\":null,\"estimatedWaitTimeMinutes\":2,\"preQueue\":true,\"bookingOpenAt\":\"1970-01-01T00:01:00.000Z\"}\n\n"
        );
        assert_eq!(
            text(TokenEvent::Active { until_ms: 0 }),
            "event: active\ndata: {\"activeUntil\":\"1970-01-01T00:00:00.000Z\"}\n\n"
        );
        assert_eq!(
            text(TokenEvent::Ended(TokenStatus::Left)),
            "event: ended\ndata: {\"status\":\"LEFT\"}\n\n"
        );
        assert_eq!(text(TokenEvent::KeepAlive), ": keep-alive\n\n");
    }
}
