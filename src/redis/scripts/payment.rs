//! The payment saga's scripts (see `crate::payment::saga`): begin (schedule slot), debit or void (the user's
//! wallet bucket), commit or roll back (schedule slot).

use std::time::Duration;

use redis::{RedisResult, Value};

use super::holds::release_keys;
use super::{BatchKeys, Observe, Reply, Scripts, bad_reply};
use crate::model::{
    Idempotency, Payment, PaymentAttempt, PaymentId, Refusal, ReservationId, WALLET_BUCKETS,
};
use crate::redis::RedisConn;
use crate::redis::keys::{ScheduleKeys, WalletKeys};

/// How long a reservation's debit record is kept: far longer than any payment attempt runs,
/// which is all it is consulted for (a PAID reservation never starts another attempt).
pub const DEBIT_KEEP: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug)]
pub enum BeginOutcome {
    /// The reservation is PAYING under this attempt: debit it next.
    Paying {
        payment_id: PaymentId,
        amount: u64,
    },
    /// A repeat of a request that completed: its payment.
    Paid(Payment),
    Refused(Refusal),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DebitOutcome {
    /// The reservation is debited (now or before) by attempt `payment_id`.
    Debited {
        payment_id: PaymentId,
        balance_after: u64,
    },
    /// Redis does not have the user's balance yet: load it, then debit again.
    NotLoaded,
    /// The balance is below the amount; nothing was debited and the attempt is fenced off.
    Insufficient { balance: u64 },
    /// The attempt was given up; nothing was debited and nothing ever will be for it.
    Voided,
}

#[derive(Debug)]
pub enum CommitOutcome {
    Paid(Payment),
    /// The reservation is not being paid by that attempt (its status): nothing changed.
    NotPaying(String),
}

/// The PAID reply of `lua/lib/holds.lua`
/// (`PAID, paymentId, totalAmount, paidAt, userId, reservedAt, seat…`).
fn paid(reply: &Reply) -> RedisResult<Payment> {
    Ok(Payment {
        payment_id: PaymentId::from_u64(reply.uint(1)?),
        total_amount: reply.uint(2)?,
        paid_at_ms: reply.opt_int(3)?.unwrap_or_default(),
        user_id: reply.uint(4)?,
        reserved_at_ms: reply.opt_int(5)?.unwrap_or_default(),
        seats: reply.seats(6)?,
    })
}

fn begin_outcome(reply: Value) -> RedisResult<BeginOutcome> {
    let reply = Reply::new(reply)?;
    Ok(match reply.code()?.as_str() {
        "PAYING" => BeginOutcome::Paying {
            payment_id: PaymentId::from_u64(reply.uint(1)?),
            amount: reply.uint(2)?,
        },
        "PAID" => BeginOutcome::Paid(paid(&reply)?),
        _ => BeginOutcome::Refused(reply.refusal()?),
    })
}

fn debit_outcome(reply: &Reply) -> RedisResult<DebitOutcome> {
    Ok(match reply.code()?.as_str() {
        "DEBITED" => DebitOutcome::Debited {
            payment_id: PaymentId::from_u64(reply.uint(1)?),
            balance_after: reply.uint(3)?,
        },
        "NOT_LOADED" => DebitOutcome::NotLoaded,
        "INSUFFICIENT" => DebitOutcome::Insufficient {
            balance: reply.uint(1)?,
        },
        "VOIDED" => DebitOutcome::Voided,
        other => return Err(bad_reply(other)),
    })
}

/// One request of a `pay_begin` batch.
#[derive(Debug, Clone)]
pub struct BeginRequest {
    /// The Queue-Token's sequence in the reservation's schedule.
    pub token: u64,
    pub user_id: u64,
    pub reservation_id: ReservationId,
    pub idempotency: Option<Idempotency>,
}

/// One debit of a `debit` batch: the attempt's amount from its user's balance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebitRequest {
    pub user_id: u64,
    pub reservation_id: ReservationId,
    pub payment_id: PaymentId,
    pub amount: u64,
}

impl DebitRequest {
    /// The debit of a payment attempt.
    pub fn of(attempt: &PaymentAttempt) -> Self {
        Self {
            user_id: attempt.user_id,
            reservation_id: attempt.reservation_id,
            payment_id: attempt.payment_id,
            amount: attempt.amount,
        }
    }
}

impl Scripts {
    /// Step 1 for a batch of requests to one schedule, in order: checks each token and
    /// reservation and marks the reservation PAYING under a new attempt.
    pub async fn pay_begin(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        batch: &[BeginRequest],
    ) -> RedisResult<Vec<BeginOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.pay_begin.prepare_invoke();
        release_keys(&mut call, &k)
            .key(&k.tokens)
            .key(&k.sagas)
            .key(&k.payment_sequence)
            .key(&k.seat)
            .key(&k.cfg)
            .key(&k.rates[0])
            .key(&k.rates[1])
            .arg(schedule_id);
        let mut idempotency_keys = BatchKeys::after(&k, 15);
        for request in batch {
            call.arg(request.token)
                .arg(request.user_id)
                .arg(request.reservation_id.get());
            idempotency_keys.add(&mut call, request.user_id, request.idempotency.as_ref());
        }
        let replies: Vec<Value> = call.invoke_observed("pay_begin", conn).await?;
        replies.into_iter().map(begin_outcome).collect()
    }

    /// Step 2 for a batch of debits of one wallet bucket, in order.
    pub async fn debit(
        &self,
        conn: &mut RedisConn,
        bucket: u64,
        batch: &[DebitRequest],
    ) -> RedisResult<Vec<DebitOutcome>> {
        let k = WalletKeys::bucket(bucket);
        let mut call = self.debit.key(&k.balances);
        call.key(&k.txseq)
            .key(&k.outbox)
            .arg(k.bucket)
            .arg(WALLET_BUCKETS)
            .arg(DEBIT_KEEP.as_millis() as u64);
        for d in batch {
            call.key(k.debit(d.reservation_id))
                .arg(d.user_id)
                .arg(d.reservation_id.get())
                .arg(d.payment_id.get())
                .arg(d.amount);
        }
        let replies: Vec<Value> = call.invoke_observed("debit", conn).await?;
        replies
            .into_iter()
            .map(|reply| debit_outcome(&Reply::new(reply)?))
            .collect()
    }

    /// Settling a given-up attempt: `Debited` if the reservation was debited, else the
    /// attempt is fenced off and `Voided`.
    pub async fn void_debit(
        &self,
        conn: &mut RedisConn,
        attempt: &PaymentAttempt,
    ) -> RedisResult<DebitOutcome> {
        let reply = self
            .void_debit
            .key(WalletKeys::of_user(attempt.user_id).debit(attempt.reservation_id))
            .arg(attempt.payment_id.get())
            .arg(DEBIT_KEEP.as_millis() as u64)
            .invoke_observed("void_debit", conn)
            .await?;
        debit_outcome(&Reply::new(reply)?)
    }

    /// Step 3 for a batch of debited attempts (reservation, the attempt that debited it) of
    /// one schedule: each reservation becomes PAID.
    pub async fn pay_commit(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        batch: &[(ReservationId, PaymentId)],
    ) -> RedisResult<Vec<CommitOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.pay_commit.prepare_invoke();
        release_keys(&mut call, &k)
            .key(&k.tokens)
            .key(&k.sagas)
            .key(&k.seat)
            .key(&k.users)
            .key(&k.active)
            .key(&k.waiting)
            .key(&k.ended);
        for (reservation_id, payment_id) in batch {
            call.arg(reservation_id.get()).arg(payment_id.get());
        }
        let replies: Vec<Value> = call.invoke_observed("pay_commit", conn).await?;
        replies
            .into_iter()
            .map(|reply| {
                let reply = Reply::new(reply)?;
                Ok(match reply.code()?.as_str() {
                    "PAID" => CommitOutcome::Paid(paid(&reply)?),
                    _ => CommitOutcome::NotPaying(reply.string(1)?),
                })
            })
            .collect()
    }

    /// Puts the attempt's PAYING reservation back to RESERVED; with the request's
    /// Idempotency-Key, keeps `outcome` as its answer. False if it was settled already.
    pub async fn pay_rollback(
        &self,
        conn: &mut RedisConn,
        attempt: &PaymentAttempt,
        kept: Option<(&Idempotency, Refusal)>,
    ) -> RedisResult<bool> {
        let k = ScheduleKeys::new(attempt.schedule_id());
        let mut call = self.pay_rollback.prepare_invoke();
        call.key(&k.res)
            .key(&k.sagas)
            .arg(attempt.reservation_id.get())
            .arg(attempt.payment_id.get());
        if let Some((idem, outcome)) = kept {
            call.key(k.idempotency(attempt.user_id, &idem.key))
                .arg(&idem.fingerprint)
                .arg(outcome.code());
        }
        let reply = Reply::new(call.invoke_observed("pay_rollback", conn).await?)?;
        Ok(reply.code()? == "OK")
    }
}
