//! Reads while Redis is unreachable: the same answers, read from the MySQL primary instead,
//! which the write-behind keeps behind Redis (by up to `SEATRUSH_FLUSH_MAX_LAG` under load),
//! so the edge marks them `X-Data-Stale: true`. Writes never fall back: they answer `503`
//! with `Retry-After`, and nothing writes to MySQL behind Redis's back.

use std::future::Future;

use mysql_async::prelude::Queryable;

use crate::model::{
    Balance, Error, QueueOrder, QueueToken, ReservationId, ReservationRecord, TokenHolder,
    TokenState, TokenStatus, wait_ms,
};
use crate::mysql::records::{self, Scope};
use crate::mysql::{Db, timed};

/// Runs `fresh`; if it finds Redis unreachable, answers with `from_mysql` instead. The flag
/// says whether the answer came from MySQL (and may be stale).
pub async fn or_mysql<T, Fresh, Stale, StaleFut>(
    fresh: Fresh,
    from_mysql: Stale,
) -> Result<(T, bool), Error>
where
    Fresh: Future<Output = Result<T, Error>>,
    Stale: FnOnce() -> StaleFut,
    StaleFut: Future<Output = Result<T, Error>>,
{
    match fresh.await {
        Err(e) if e.is_redis_down() => {
            metrics::counter!("seatrush_stale_reads_total").increment(1);
            Ok((from_mysql().await?, true))
        }
        other => other.map(|v| (v, false)),
    }
}

/// The token's holder as MySQL has the token: WAITING (its position counted among the
/// schedule's WAITING tokens in arrival order, or in a pre-queue MySQL has no shuffle of yet,
/// no position until the opening) or ACTIVE before its expiry; anything else is invalid.
/// (A shuffled pre-queue's places are not derived here: its tokens are counted in arrival
/// order, an estimate, which the answer's staleness mark covers.)
pub async fn token_holder(db: &Db, token: QueueToken) -> Result<TokenHolder, Error> {
    let mut conn = db.primary_conn().await?;
    type Row = (u64, String, Option<i64>, u32, String, i64, i64, u8);
    let row: Option<Row> = timed(conn.exec_first(
        "SELECT t.user_id, t.status, CAST(UNIX_TIMESTAMP(t.expires_at) * 1000 AS SIGNED),
           s.admission_per_second, s.queue_order,
           CAST(UNIX_TIMESTAMP(s.booking_open_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(t.issued_at) * 1000 AS SIGNED),
           EXISTS (SELECT 1 FROM queue_shuffles q WHERE q.schedule_id = s.id)
         FROM queue_tokens t JOIN concert_schedules s ON s.id = t.schedule_id
         WHERE t.schedule_id = ? AND t.seq = ?",
        (token.schedule_id, token.sequence),
    ))
    .await?;
    let (user_id, status, expires_at_ms, rate, order, opens_at_ms, issued_at_ms, shuffled) =
        row.ok_or(Error::QueueTokenInvalid)?;
    let pre_queued = QueueOrder::parse(&order) == Some(QueueOrder::ShuffleAtOpen)
        && shuffled == 0
        && issued_at_ms < opens_at_ms;
    if user_id != token.user_id {
        return Err(Error::QueueTokenInvalid);
    }
    let (schedule_id, sequence) = (token.schedule_id, token.sequence);
    let status = TokenStatus::parse(&status).map_err(|e| Error::Internal(e.to_string()))?;
    let now = chrono::Utc::now().timestamp_millis();
    let (position, wait_ms) = match status {
        TokenStatus::Active if expires_at_ms.is_some_and(|at| at > now) => (0, 0),
        TokenStatus::Waiting if pre_queued => (0, (opens_at_ms - now).max(0) as u64),
        TokenStatus::Waiting => {
            let ahead: Option<u64> = timed(conn.exec_first(
                "SELECT COUNT(*) FROM queue_tokens
                 WHERE schedule_id = ? AND status = 'WAITING' AND seq < ?",
                (schedule_id, sequence),
            ))
            .await?;
            let position = ahead.unwrap_or(0) + 1;
            (position, wait_ms(position, f64::from(rate)))
        }
        _ => return Err(Error::QueueTokenInvalid),
    };
    Ok(TokenHolder {
        token,
        state: TokenState {
            status,
            position,
            wait_ms,
            expires_at_ms,
            opens_at_ms: (status == TokenStatus::Waiting && pre_queued).then_some(opens_at_ms),
        },
    })
}

/// The ids of the schedule's seats with `status` (`AVAILABLE`, `HELD` or `SOLD`) in MySQL,
/// sorted.
pub async fn seat_ids(db: &Db, schedule_id: u64, status: &str) -> Result<Vec<u64>, Error> {
    let mut conn = db.primary_conn().await?;
    Ok(timed(conn.exec(
        "SELECT id FROM seats WHERE schedule_id = ? AND status = ? ORDER BY id",
        (schedule_id, status),
    ))
    .await?)
}

/// How many seats of each schedule are AVAILABLE, in order.
pub async fn available_seat_counts(db: &Db, schedule_ids: &[u64]) -> Result<Vec<u64>, Error> {
    let mut conn = db.primary_conn().await?;
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
pub async fn reservation(db: &Db, id: ReservationId) -> Result<Option<ReservationRecord>, Error> {
    let mut conn = db.primary_conn().await?;
    let rows = records::reservations(&mut conn, Scope::One(id)).await?;
    Ok(rows.into_iter().next())
}

/// The user's balance as MySQL has it.
pub async fn balance(db: &Db, user_id: u64) -> Result<Balance, Error> {
    records::balance(db, user_id)
        .await?
        .map(|(balance, _)| balance)
        .ok_or(Error::UserNotFound)
}
