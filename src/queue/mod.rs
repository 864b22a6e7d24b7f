//! The waiting queue (SPEC §3 #1, #1b; §4 "Queue and tokens"): token issuance and status, the
//! Queue-Token check, the admission loop, and per-schedule settings. Every race is decided in
//! a Lua script (`lua/issue_tokens.lua`, `lua/token_status.lua`, `lua/admit_batch.lua`);
//! concurrent issuances for one schedule share a script call (`redis::coalesce`).

pub mod admission;
pub mod auth;
pub mod settings;

use hyper::StatusCode;
use hyper::header::HeaderMap;
use serde::Serialize;
use uuid::Uuid;

use crate::app::App;
use crate::error::ApiError;
use crate::http::request::JsonObject;
use crate::http::response::{self, Body};
use crate::redis::scripts::IssueOutcome;
use crate::time::iso_ms;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct IssuedToken {
    token: Uuid,
    queue_position: u64,
    estimated_wait_time_minutes: u64,
    status: String,
}

/// `POST /api/v1/queue/tokens`
pub async fn issue_token(app: &App, body: Vec<u8>) -> Result<hyper::Response<Body>, ApiError> {
    let body = JsonObject::parse(body)?;
    let user_id = body.id("userId")?;
    let schedule_id = body.id("scheduleId")?;
    if !app.users.exists(&app.db, user_id).await? {
        return Err(ApiError::UserNotFound);
    }
    let token = Uuid::new_v4();
    let outcome = app.token_issuer.call(schedule_id, (token, user_id)).await?;
    let state = match outcome {
        IssueOutcome::Issued(state) => {
            if state.status == "ACTIVE" {
                metrics::counter!("seatrush_queue_admitted_total", "schedule" => schedule_id.to_string())
                    .increment(1);
            }
            state
        }
        IssueOutcome::Refused(code) => {
            return Err(match code.as_str() {
                "SCHEDULE_NOT_FOUND" => ApiError::ScheduleNotFound,
                "BOOKING_CLOSED" => ApiError::BookingClosed,
                "TOKEN_ALREADY_ISSUED" => ApiError::TokenAlreadyIssued,
                "QUEUE_FULL" => ApiError::QueueFull,
                other => ApiError::Internal(format!("issue_token returned {other}")),
            });
        }
    };
    Ok(response::ok(
        StatusCode::OK,
        &IssuedToken {
            token,
            queue_position: state.position,
            estimated_wait_time_minutes: state.wait_minutes,
            status: state.status,
        },
    ))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenStatus {
    token: Uuid,
    user_id: u64,
    schedule_id: u64,
    status: String,
    queue_position: u64,
    estimated_wait_time_minutes: u64,
    active_until: Option<String>,
}

/// `GET /api/v1/queue/tokens/me`
pub async fn my_token(app: &App, headers: &HeaderMap) -> Result<hyper::Response<Body>, ApiError> {
    let (holder, stale) = crate::stale::authenticate(app, headers).await?;
    let state = holder.state;
    let rsp = response::ok(
        StatusCode::OK,
        &TokenStatus {
            token: holder.token,
            user_id: holder.user_id,
            schedule_id: holder.schedule_id,
            queue_position: state.position,
            estimated_wait_time_minutes: state.wait_minutes,
            active_until: state.expires_at_ms.map(iso_ms),
            status: state.status,
        },
    );
    Ok(crate::stale::mark(rsp, stale))
}
