//! Seat-hold scripts: holding, cancelling, listing free seats and expiring holds.

use std::sync::Arc;

use redis::{RedisResult, Value};
use uuid::Uuid;

use super::payment::PaymentAttempt;
use super::{Idempotency, Observe, PER_TICK, Reply, Scripts, bad_reply, batch_idempotency};
use crate::redis::RedisConn;
use crate::redis::keys::ScheduleKeys;

/// A new hold as `hold_seats` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reservation_id: u64,
    pub total_amount: u64,
    pub reserved_at_ms: i64,
    pub expires_at_ms: i64,
    /// (seatId, seatNumber, price) in request order.
    pub seats: Vec<(u64, u64, u64)>,
}

#[derive(Debug)]
pub enum HoldOutcome {
    Held(Hold),
    /// A refusal code, with the seat ids it names (missing or taken seats).
    Refused(String, Vec<u64>),
}

impl Scripts {
    /// Decides a batch of hold requests for one schedule, in order: per request, all of
    /// its seats are held for its user under its token, or none of them.
    pub async fn hold_seats(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        batch: &[HoldRequest],
    ) -> RedisResult<Vec<HoldOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.hold_seats.prepare_invoke();
        call.key(&k.cfg)
            .key(&k.tokens)
            .key(&k.seat)
            .key(&k.avail)
            .key(&k.res)
            .key(&k.holds)
            .key(&k.userseats)
            .key(&k.stats)
            .key(&k.rseq)
            .key(&k.outbox)
            .key(&k.userholds)
            .arg(schedule_id);
        let mut next_key = 12;
        for request in batch {
            call.arg(request.token.to_string()).arg(request.user_id);
            batch_idempotency(
                &mut call,
                &k,
                request.user_id,
                request.idempotency.as_ref(),
                &mut next_key,
            );
            call.arg(request.seat_ids.len()).arg(&request.seat_ids);
        }
        let replies: Vec<Value> = call.invoke_observed("hold_seats", conn).await?;
        replies.into_iter().map(hold_outcome).collect()
    }
}

/// One request of a `hold_seats` batch.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    pub token: Uuid,
    pub user_id: u64,
    pub seat_ids: Vec<u64>,
    pub idempotency: Option<Idempotency>,
}

/// Decodes one item of `hold_seats`' reply.
fn hold_outcome(reply: Value) -> RedisResult<HoldOutcome> {
    let reply = Reply::new(reply)?;
    let code = reply.code()?;
    let rest = |from: usize| -> RedisResult<Vec<String>> {
        (from..reply.0.len()).map(|i| reply.string(i)).collect()
    };
    if code != "OK" {
        let seats = rest(1)?
            .iter()
            .map(|s| s.parse().map_err(|_| bad_reply(s)))
            .collect::<RedisResult<_>>()?;
        return Ok(HoldOutcome::Refused(code, seats));
    }
    let seats = rest(5)?
        .iter()
        .map(|s| {
            let mut parts = s.split('|').map(str::parse::<u64>);
            match (parts.next(), parts.next(), parts.next()) {
                (Some(Ok(id)), Some(Ok(number)), Some(Ok(price))) => Ok((id, number, price)),
                _ => Err(bad_reply(s)),
            }
        })
        .collect::<RedisResult<_>>()?;
    Ok(HoldOutcome::Held(Hold {
        reservation_id: reply.uint(1)?,
        total_amount: reply.uint(2)?,
        reserved_at_ms: reply.opt_int(3)?.unwrap_or_default(),
        expires_at_ms: reply.opt_int(4)?.unwrap_or_default(),
        seats,
    }))
}

impl Scripts {
    /// Cancels reservation `id` for `user_id`: `Ok(record)` after cancelling, or the
    /// refusal code.
    pub async fn cancel_hold(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        id: u64,
        user_id: u64,
    ) -> RedisResult<Result<String, String>> {
        let k = ScheduleKeys::new(schedule_id);
        let reply: Value = release_keys(&mut self.cancel_hold.prepare_invoke(), &k)
            .arg(id)
            .arg(user_id)
            .invoke_observed("cancel_hold", conn)
            .await?;
        let reply = Reply::new(reply)?;
        let code = reply.code()?;
        Ok(if code == "OK" {
            Ok(reply.string(1)?)
        } else {
            Err(code)
        })
    }

    /// For each token of a batch, the schedule's AVAILABLE seat ids (sorted, shared by the
    /// batch) if it is an ACTIVE token of the schedule, else the refusal code.
    pub async fn seat_view(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        tokens: &[Uuid],
    ) -> RedisResult<Vec<SeatViewOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.seat_view.key(&k.tokens);
        call.key(&k.avail);
        for token in tokens {
            call.arg(token.to_string());
        }
        let reply = Reply::new(call.invoke_observed("seat_view", conn).await?)?;
        let listed = reply.string(0)?;
        let mut ids = listed
            .split(',')
            .filter(|id| !id.is_empty())
            .map(|id| id.parse().map_err(|_| bad_reply(id)))
            .collect::<RedisResult<Vec<u64>>>()?;
        ids.sort_unstable();
        let available = Arc::new(ids);
        (1..=tokens.len())
            .map(|i| {
                let code = reply.string(i)?;
                Ok(if code == "OK" {
                    Ok(available.clone())
                } else {
                    Err(code)
                })
            })
            .collect()
    }

    /// Expires the schedule's holds that are due; returns how many, and the payment sagas
    /// that have run longer than `saga_timeout` (for the caller to settle).
    pub async fn expire_holds(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        saga_timeout: std::time::Duration,
    ) -> RedisResult<(u64, Vec<PaymentAttempt>)> {
        let k = ScheduleKeys::new(schedule_id);
        let (expired, stale): (u64, Vec<String>) =
            release_keys(&mut self.expire_holds.prepare_invoke(), &k)
                .key(&k.sagas)
                .arg(PER_TICK)
                .arg(saga_timeout.as_millis() as u64)
                .invoke_observed("expire_holds", conn)
                .await?;
        let stale = stale
            .iter()
            .map(|s| PaymentAttempt::parse(schedule_id, s).ok_or_else(|| bad_reply(s)))
            .collect::<RedisResult<_>>()?;
        Ok((expired, stale))
    }
}

/// What a seat listing learns from `seat_view`: the schedule's AVAILABLE seat ids, sorted,
/// or why the token is refused (`TOKEN_NOT_HERE`, `QUEUE_TOKEN_INVALID`, …).
pub type SeatViewOutcome = Result<Arc<Vec<u64>>, String>;

/// The keys of scripts that end holds (`release_hold` in `lua/lib/holds.lua`), in order.
pub(super) fn release_keys<'a, 'b>(
    call: &'b mut redis::ScriptInvocation<'a>,
    k: &ScheduleKeys,
) -> &'b mut redis::ScriptInvocation<'a> {
    call.key(&k.res)
        .key(&k.holds)
        .key(&k.avail)
        .key(&k.userseats)
        .key(&k.stats)
        .key(&k.outbox)
        .key(&k.userholds)
}
