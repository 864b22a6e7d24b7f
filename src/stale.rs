//! Reads while Redis is unreachable (SPEC §8): the same answers, read from the MySQL
//! primary instead, which the write-behind keeps behind Redis (by up to
//! `SEATRUSH_FLUSH_MAX_LAG` under load), so they carry `X-Data-Stale: true`. Writes never
//! fall back: they answer `503` with `Retry-After`, and nothing writes to MySQL behind
//! Redis's back.

use std::future::Future;

use hyper::Response;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use mysql_async::prelude::Queryable;

use crate::app::App;
use crate::error::ApiError;
use crate::http::response::Body;
use crate::mysql::timed;
use crate::outbox::reservations::{self, ReservationRow};
use crate::queue::auth::{self, TokenHolder};
use crate::redis::scripts::TokenState;
use crate::wallet::Balance;

pub const HEADER: HeaderName = HeaderName::from_static("x-data-stale");

/// Runs `fresh`; if it finds Redis unreachable, answers with `from_mysql` instead. The flag
/// says whether the answer came from MySQL.
pub async fn or_mysql<T, Fresh, Stale, StaleFut>(
    fresh: Fresh,
    from_mysql: Stale,
) -> Result<(T, bool), ApiError>
where
    Fresh: Future<Output = Result<T, ApiError>>,
    Stale: FnOnce() -> StaleFut,
    StaleFut: Future<Output = Result<T, ApiError>>,
{
    match fresh.await {
        Err(e) if e.is_redis_down() => {
            metrics::counter!("seatrush_stale_reads_total").increment(1);
            Ok((from_mysql().await?, true))
        }
        other => other.map(|v| (v, false)),
    }
}

/// Says `X-Data-Stale: true` on an answer read from MySQL.
pub fn mark(mut rsp: Response<Body>, stale: bool) -> Response<Body> {
    if stale {
        rsp.headers_mut()
            .insert(HEADER, HeaderValue::from_static("true"));
    }
    rsp
}

/// [`auth::authenticate`], or the token as MySQL has it when Redis is unreachable.
pub async fn authenticate(app: &App, headers: &HeaderMap) -> Result<(TokenHolder, bool), ApiError> {
    or_mysql(auth::authenticate(app, headers), || holder(app, headers)).await
}

/// The Queue-Token's holder as MySQL has the token: WAITING (its position counted among
/// the schedule's WAITING tokens) or ACTIVE before its expiry; anything else is invalid.
pub async fn holder(app: &App, headers: &HeaderMap) -> Result<TokenHolder, ApiError> {
    let token = auth::parse_token(headers)?;
    let mut conn = app.db.primary_conn().await?;
    let row: Option<(u64, u64, String, u64, Option<i64>, u32)> = timed(conn.exec_first(
        "SELECT t.user_id, t.schedule_id, t.status, t.seq,
           CAST(UNIX_TIMESTAMP(t.expires_at) * 1000 AS SIGNED), s.admission_per_second
         FROM queue_tokens t JOIN concert_schedules s ON s.id = t.schedule_id
         WHERE t.token = ?",
        (token.to_string(),),
    ))
    .await?;
    let (user_id, schedule_id, status, seq, expires_at_ms, rate) =
        row.ok_or(ApiError::QueueTokenInvalid)?;
    let now = chrono::Utc::now().timestamp_millis();
    let (position, wait_minutes) = match status.as_str() {
        "ACTIVE" if expires_at_ms.is_some_and(|at| at > now) => (0, 0),
        "WAITING" => {
            let ahead: Option<u64> = timed(conn.exec_first(
                "SELECT COUNT(*) FROM queue_tokens
                 WHERE schedule_id = ? AND status = 'WAITING' AND seq < ?",
                (schedule_id, seq),
            ))
            .await?;
            let position = ahead.unwrap_or(0) + 1;
            (position, position.div_ceil(u64::from(rate.max(1)) * 60))
        }
        _ => return Err(ApiError::QueueTokenInvalid),
    };
    Ok(TokenHolder {
        token,
        user_id,
        schedule_id,
        state: TokenState {
            status,
            position,
            wait_minutes,
            expires_at_ms,
        },
    })
}

/// The schedule's AVAILABLE seat ids, sorted.
pub async fn available_seats(app: &App, schedule_id: u64) -> Result<Vec<u64>, ApiError> {
    let mut conn = app.db.primary_conn().await?;
    Ok(timed(conn.exec(
        "SELECT id FROM seats WHERE schedule_id = ? AND status = 'AVAILABLE' ORDER BY id",
        (schedule_id,),
    ))
    .await?)
}

/// How many seats of each schedule are AVAILABLE, in order.
pub async fn available_counts(app: &App, schedule_ids: &[u64]) -> Result<Vec<u64>, ApiError> {
    let mut conn = app.db.primary_conn().await?;
    let mut counts = Vec::with_capacity(schedule_ids.len());
    for id in schedule_ids {
        let n: Option<u64> = timed(conn.exec_first(
            "SELECT COUNT(*) FROM seats WHERE schedule_id = ? AND status = 'AVAILABLE'",
            (id,),
        ))
        .await?;
        counts.push(n.unwrap_or(0));
    }
    Ok(counts)
}

/// A reservation with its seats, as MySQL has it.
pub async fn reservation(app: &App, id: u64) -> Result<Option<ReservationRow>, ApiError> {
    let mut conn = app.db.primary_conn().await?;
    let rows = reservations::load(&mut conn, reservations::Scope::One(id)).await?;
    Ok(rows.into_iter().next())
}

/// The user's balance as MySQL has it (`None`: no such user).
pub async fn balance(app: &App, user_id: u64) -> Result<Option<Balance>, ApiError> {
    Ok(crate::wallet::stored(&app.db, user_id)
        .await?
        .map(|(balance, _)| balance))
}
