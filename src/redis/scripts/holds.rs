//! Seat-hold scripts: holding, cancelling, listing free seats and expiring holds.

use std::sync::Arc;

use redis::{RedisResult, Value};

use super::{BatchKeys, Observe, PER_TICK, Reply, Scripts, bad_reply, refusal};
use crate::model::{
    Hold, Idempotency, PaymentAttempt, Refusal, ReservationId, ReservationRecord, SeatChoice,
    SeatView,
};
use crate::redis::RedisConn;
use crate::redis::keys::ScheduleKeys;

#[derive(Debug)]
pub enum HoldOutcome {
    Held(Hold),
    /// With the numbers its reply names: missing or taken seats, or how many are AVAILABLE.
    Refused(Refusal, Vec<u64>),
}

/// One request of a `hold_seats` batch.
#[derive(Debug, Clone)]
pub struct HoldRequest {
    /// The Queue-Token's sequence in the schedule.
    pub token: u64,
    pub user_id: u64,
    pub seats: SeatChoice,
    pub idempotency: Option<Idempotency>,
}

/// What a seat listing learns from `seat_view`: the schedule's seats now, or why the token
/// is refused.
pub type SeatViewOutcome = Result<SeatState, Refusal>;

/// The seats of a schedule as one `seat_view` call read them.
#[derive(Debug, Clone)]
pub struct SeatState {
    /// The schedule's seat-state version they were read at (`lua/lib/holds.lua`); `None`
    /// when no token of the batch was ACTIVE (then nothing was read).
    pub version: Option<String>,
    /// The AVAILABLE seat ids, sorted.
    pub available: Arc<Vec<u64>>,
    /// The seat ids of open holds (RESERVED or PAYING), sorted; read only when a request
    /// of the batch asked for the seat map (else `None`).
    pub held: Option<Arc<Vec<u64>>>,
}

/// What one `seat_view` call answers: the seats, and per request of the batch whether its
/// token may see them.
pub struct SeatViewReply {
    /// The seats read, or the caller's `known` ones when they are still current.
    pub state: SeatState,
    /// Whether `state` was read by this call (else it is the caller's, still current).
    pub read: bool,
    pub tokens: Vec<Result<(), Refusal>>,
}

impl Scripts {
    /// Decides a batch of hold requests for one schedule, in order: per request, all of
    /// its seats (or as many best-available seats as it asks for) are held for its user
    /// under its token, or none.
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
            .key(&k.reservation_sequence)
            .key(&k.outbox)
            .key(&k.userholds)
            .key(&k.rates[0])
            .key(&k.rates[1])
            .arg(schedule_id);
        let mut idempotency_keys = BatchKeys::after(&k, 13);
        for request in batch {
            call.arg(request.token).arg(request.user_id);
            idempotency_keys.add(&mut call, request.user_id, request.idempotency.as_ref());
            match &request.seats {
                SeatChoice::Seats(ids) => call.arg(ids.len()).arg(ids),
                SeatChoice::BestAvailable(n) => call.arg(0).arg(n),
            };
        }
        let replies: Vec<Value> = call.invoke_observed("hold_seats", conn).await?;
        replies.into_iter().map(hold_outcome).collect()
    }

    /// Cancels reservation `id` for `user_id`: its record after cancelling, or the refusal.
    pub async fn cancel_hold(
        &self,
        conn: &mut RedisConn,
        id: ReservationId,
        user_id: u64,
    ) -> RedisResult<Result<ReservationRecord, Refusal>> {
        let k = ScheduleKeys::new(id.schedule());
        let reply: Value = release_keys(&mut self.cancel_hold.prepare_invoke(), &k)
            .key(&k.seat)
            .arg(id.get())
            .arg(user_id)
            .invoke_observed("cancel_hold", conn)
            .await?;
        let reply = Reply::new(reply)?;
        if reply.code()? != "OK" {
            return Ok(Err(reply.refusal()?));
        }
        let record = reply.string(1)?;
        ReservationRecord::parse(id, &record)
            .map(Ok)
            .map_err(|e| bad_reply(&e.to_string()))
    }

    /// For each (token, user, view) of a batch, whether it is the user's ACTIVE token of the
    /// schedule, and the schedule's seats (shared by the batch): read, unless `known` are
    /// the seats of the schedule's current seat-state version (with the held ones if the
    /// batch asks for the map).
    pub async fn seat_view(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        tokens: &[(u64, u64, SeatView)],
        known: Option<&SeatState>,
    ) -> RedisResult<SeatViewReply> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.seat_view.key(&k.tokens);
        call.key(&k.avail)
            .key(&k.cfg)
            .key(&k.rates[0])
            .key(&k.rates[1])
            .key(&k.res)
            .key(&k.holds)
            .key(&k.sagas)
            .key(&k.stats)
            .arg(known.and_then(|s| s.version.as_deref()).unwrap_or(""));
        for (token, user_id, view) in tokens {
            let view = match view {
                SeatView::Available => "L",
                SeatView::Map => "M",
            };
            call.arg(token).arg(user_id).arg(view);
        }
        let reply = Reply::new(call.invoke_observed("seat_view", conn).await?)?;
        let codes = (3..tokens.len() + 3)
            .map(|i| {
                let code = reply.string(i)?;
                Ok(if code == "OK" {
                    Ok(())
                } else {
                    Err(refusal(&code)?)
                })
            })
            .collect::<RedisResult<Vec<_>>>()?;
        let (version, available) = (reply.string(0)?, reply.string(1)?);
        let (state, read) = match known {
            Some(known) if available == "=" => (known.clone(), false),
            _ if available == "=" => return Err(bad_reply("seats unchanged, but none known")),
            _ => {
                // The script reads the held seats only for a map its token may see.
                let map = tokens
                    .iter()
                    .zip(&codes)
                    .any(|((_, _, view), code)| *view == SeatView::Map && code.is_ok());
                let held = if map {
                    Some(Arc::new(sorted_ids(&reply.string(2)?)?))
                } else {
                    None
                };
                let state = SeatState {
                    version: (!version.is_empty()).then_some(version),
                    available: Arc::new(sorted_ids(&available)?),
                    held,
                };
                (state, true)
            }
        };
        Ok(SeatViewReply {
            state,
            read,
            tokens: codes,
        })
    }

    /// Moves the schedule's AVAILABLE seats from the unordered set seatrush kept before into
    /// the set ordered by seat number; how many moved (0 once done).
    pub async fn upgrade_free_seats(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
    ) -> RedisResult<u64> {
        let k = ScheduleKeys::new(schedule_id);
        self.upgrade_free_seats
            .key(k.unordered_available())
            .key(&k.avail)
            .key(&k.seat)
            .key(&k.stats)
            .invoke_observed("upgrade_free_seats", conn)
            .await
    }

    /// Expires the schedule's holds that are due; returns how many, and the payment sagas
    /// that have run longer than `saga_timeout` (for the caller to settle).
    pub async fn expire_holds(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        saga_timeout: std::time::Duration,
        keep: std::time::Duration,
    ) -> RedisResult<(u64, Vec<PaymentAttempt>)> {
        let k = ScheduleKeys::new(schedule_id);
        let (expired, stale, pruned): (u64, Vec<String>, u64) =
            release_keys(&mut self.expire_holds.prepare_invoke(), &k)
                .key(&k.sagas)
                .key(&k.seat)
                .arg(PER_TICK)
                .arg(saga_timeout.as_millis() as u64)
                .arg(keep.as_millis() as u64)
                .invoke_observed("expire_holds", conn)
                .await?;
        metrics::counter!("seatrush_redis_records_removed_total", "record" => "reservation")
            .increment(pruned);
        let stale = stale
            .iter()
            .map(|s| PaymentAttempt::parse(s).ok_or_else(|| bad_reply(s)))
            .collect::<RedisResult<_>>()?;
        Ok((expired, stale))
    }
}

/// Decodes one item of `hold_seats`' reply.
fn hold_outcome(reply: Value) -> RedisResult<HoldOutcome> {
    let reply = Reply::new(reply)?;
    if reply.code()? != "OK" {
        let seats = (1..reply.0.len())
            .map(|i| {
                let s = reply.string(i)?;
                s.parse().map_err(|_| bad_reply(&s))
            })
            .collect::<RedisResult<_>>()?;
        return Ok(HoldOutcome::Refused(reply.refusal()?, seats));
    }
    Ok(HoldOutcome::Held(Hold {
        reservation_id: ReservationId::from_u64(reply.uint(1)?),
        total_amount: reply.uint(2)?,
        reserved_at_ms: reply.opt_int(3)?.unwrap_or_default(),
        expires_at_ms: reply.opt_int(4)?.unwrap_or_default(),
        seats: reply.seats(5)?,
    }))
}

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
        .key(&k.rended)
}

/// Seat ids from a script's `id,id,…`, sorted and without repeats.
fn sorted_ids(listed: &str) -> RedisResult<Vec<u64>> {
    let mut ids = listed
        .split(',')
        .filter(|id| !id.is_empty())
        .map(|id| id.parse().map_err(|_| bad_reply(id)))
        .collect::<RedisResult<Vec<u64>>>()?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}
