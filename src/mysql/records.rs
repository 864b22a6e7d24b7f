//! Loading the records the write-behind writes, as MySQL has them: reservations with their
//! seats and payments, queue tokens, and balances.

use std::collections::HashMap;

use mysql_async::prelude::*;

use super::{Db, datetime_ms, timed};
use crate::model::{
    Balance, PaymentId, ReservationId, ReservationRecord, ReservationStatus, Seat, Shuffle,
    TokenRecord, TokenStatus, ledger_floor,
};

/// Which reservations [`reservations`] reads.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    One(ReservationId),
    Schedule(u64),
    /// A page of the user's reservations, newest first: at most `limit`, made before the
    /// user's reservation `before` (a cursor: another user's reads nothing).
    User {
        user_id: u64,
        before: Option<ReservationId>,
        limit: u32,
    },
}

/// A status column MySQL's ENUM guarantees; anything else is a broken database.
fn status<T>(
    parse: impl Fn(&str) -> Result<T, crate::model::DecodeError>,
    text: &str,
) -> Result<T, mysql_async::Error> {
    parse(text)
        .map_err(|e| mysql_async::Error::Other(Box::new(std::io::Error::other(e.to_string()))))
}

/// Reservations as MySQL has them, with their seats (by seat id) and the payment of PAID
/// ones, in id order (a user's page: newest first).
pub async fn reservations(
    conn: &mut mysql_async::Conn,
    scope: Scope,
) -> Result<Vec<ReservationRecord>, mysql_async::Error> {
    let (filter, order, params): (&str, String, Vec<mysql_async::Value>) = match scope {
        Scope::One(id) => ("r.id = ?", "r.id".into(), vec![id.get().into()]),
        Scope::Schedule(id) => ("r.schedule_id = ?", "r.id".into(), vec![id.into()]),
        Scope::User {
            user_id,
            before: None,
            limit,
        } => (
            "r.user_id = ?",
            format!("r.reserved_at DESC, r.id DESC LIMIT {limit}"),
            vec![user_id.into()],
        ),
        Scope::User {
            user_id,
            before: Some(before),
            limit,
        } => (
            "r.user_id = ? AND (r.reserved_at, r.id) <
               (SELECT reserved_at, id FROM reservations WHERE id = ? AND user_id = ?)",
            format!("r.reserved_at DESC, r.id DESC LIMIT {limit}"),
            vec![user_id.into(), before.get().into(), user_id.into()],
        ),
    };
    type Head = (
        u64,
        u64,
        u64,
        String,
        u64,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
    );
    let heads: Vec<(Head, Option<u64>)> = timed(conn.exec_map(
        format!(
            "SELECT r.id, r.user_id, r.schedule_id, r.status, r.total_amount,
               CAST(UNIX_TIMESTAMP(r.reserved_at) * 1000 AS SIGNED),
               CAST(UNIX_TIMESTAMP(r.expires_at) * 1000 AS SIGNED),
               CAST(UNIX_TIMESTAMP(r.paid_at) * 1000 AS SIGNED),
               CAST(UNIX_TIMESTAMP(r.ended_at) * 1000 AS SIGNED), p.id
             FROM reservations r LEFT JOIN payments p ON p.reservation_id = r.id
             WHERE {filter} ORDER BY {order}"
        ),
        params.clone(),
        |(a, b, c, d, e, f, g, h, i, payment)| ((a, b, c, d, e, f, g, h, i), payment),
    ))
    .await?;
    let seat_rows: Vec<(u64, u64, u64)> = match scope {
        Scope::User { .. } if heads.is_empty() => Vec::new(),
        // A page's seats by its reservations' ids (the page's filter has a LIMIT).
        Scope::User { .. } => {
            let ids: Vec<u64> = heads.iter().map(|(head, _)| head.0).collect();
            timed(conn.exec(
                format!(
                    "SELECT reservation_id, seat_id, price FROM reservation_seats
                     WHERE reservation_id IN ({}) ORDER BY reservation_id, seat_id",
                    super::placeholders(ids.len(), "?")
                ),
                ids,
            ))
            .await?
        }
        _ => {
            timed(conn.exec(
                format!(
                    "SELECT rs.reservation_id, rs.seat_id, rs.price
                     FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
                     WHERE {filter} ORDER BY rs.reservation_id, rs.seat_id"
                ),
                params,
            ))
            .await?
        }
    };
    let mut seats: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for (reservation, seat, price) in seat_rows {
        seats.entry(reservation).or_default().push((seat, price));
    }
    heads
        .into_iter()
        .map(|(head, payment_id)| {
            let (id, user_id, schedule_id, state, total_amount, reserved, expires, paid, ended) =
                head;
            Ok(ReservationRecord {
                id: ReservationId::from_u64(id),
                user_id,
                schedule_id,
                status: status(ReservationStatus::parse, &state)?,
                total_amount,
                reserved_at_ms: reserved,
                expires_at_ms: expires,
                seats: seats.remove(&id).unwrap_or_default(),
                paid_at_ms: paid,
                ended_at_ms: ended,
                payment_id: payment_id.map(PaymentId::from_u64),
            })
        })
        .collect()
}

/// The opening's shuffle of the schedule's pre-queue, if MySQL has one.
pub async fn shuffle(
    conn: &mut mysql_async::Conn,
    schedule_id: u64,
) -> Result<Option<Shuffle>, mysql_async::Error> {
    let row: Option<(String, u64, u64)> = timed(conn.exec_first(
        "SELECT seed, first_seq, last_seq FROM queue_shuffles WHERE schedule_id = ?",
        (schedule_id,),
    ))
    .await?;
    row.map(|(seed, first, last)| stored_shuffle(schedule_id, &seed, first, last))
        .transpose()
}

/// A shuffle from its row of `queue_shuffles`; a seed that is not 64 hex digits is an error.
pub fn stored_shuffle(
    schedule_id: u64,
    seed: &str,
    first: u64,
    last: u64,
) -> Result<Shuffle, mysql_async::Error> {
    let seed = Shuffle::parse_seed(seed).ok_or_else(|| {
        mysql_async::Error::Other(format!("schedule {schedule_id}: shuffle seed {seed:?}").into())
    })?;
    Ok(Shuffle { seed, first, last })
}

/// The schedule's tokens as MySQL has them: the live ones and those ended at or after
/// `ended_since_ms`.
pub async fn tokens(
    conn: &mut mysql_async::Conn,
    schedule_id: u64,
    ended_since_ms: i64,
) -> Result<Vec<TokenRecord>, mysql_async::Error> {
    type Sql = (u64, String, u64, i64, Option<i64>, Option<i64>, Option<i64>);
    let rows: Vec<Sql> = timed(conn.exec(
        "SELECT user_id, status, seq, CAST(UNIX_TIMESTAMP(issued_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(activated_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(expires_at) * 1000 AS SIGNED),
           CAST(UNIX_TIMESTAMP(ended_at) * 1000 AS SIGNED)
         FROM queue_tokens WHERE schedule_id = ?
           AND (status IN ('WAITING', 'ACTIVE') OR ended_at >= ?)",
        (schedule_id, datetime_ms(ended_since_ms)),
    ))
    .await?;
    rows.into_iter()
        .map(
            |(user_id, state, sequence, issued, activated, expires, ended)| {
                Ok(TokenRecord {
                    user_id,
                    schedule_id,
                    status: status(TokenStatus::parse, &state)?,
                    sequence,
                    issued_at_ms: issued,
                    activated_at_ms: activated,
                    expires_at_ms: expires,
                    ended_at_ms: ended,
                })
            },
        )
        .collect()
}

/// Every balance MySQL has, by user, each as its Redis record.
pub async fn balance_records(
    conn: &mut mysql_async::Conn,
) -> Result<Vec<(u64, String)>, mysql_async::Error> {
    let rows: Vec<(u64, u64, u64, u64, i64)> = timed(conn.query(
        "SELECT user_id, balance, total_charged, total_used,
           CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED) FROM user_balances",
    ))
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(user, balance, total_charged, total_used, updated_at_ms)| {
                let record = Balance {
                    balance,
                    total_charged,
                    total_used,
                    updated_at_ms,
                };
                (user, record.record())
            },
        )
        .collect())
}

/// The user's balance as the primary has it (`None`: no such user), with the ledger
/// sequence floor ([`ledger_floor`]) for the ledger the primary holds.
pub async fn balance(db: &Db, user_id: u64) -> Result<Option<(Balance, u64)>, mysql_async::Error> {
    let mut conn = db.primary_conn().await?;
    let row: Option<(u64, u64, u64, i64, u64)> = timed(conn.exec_first(
        "SELECT balance, total_charged, total_used,
           CAST(UNIX_TIMESTAMP(updated_at) * 1000 AS SIGNED),
           (SELECT COALESCE(MAX(id), 0) FROM balance_transactions)
         FROM user_balances WHERE user_id = ?",
        (user_id,),
    ))
    .await?;
    Ok(row.map(
        |(balance, total_charged, total_used, updated_at_ms, max_ledger_id)| {
            let balance = Balance {
                balance,
                total_charged,
                total_used,
                updated_at_ms,
            };
            (balance, ledger_floor(max_ledger_id))
        },
    ))
}

/// A schedule's seats by seat number.
pub async fn seats(
    conn: &mut impl Queryable,
    schedule_id: u64,
) -> Result<Vec<Seat>, mysql_async::Error> {
    let rows: Vec<(u64, u64, u64)> = timed(conn.exec(
        "SELECT id, seat_number, price FROM seats WHERE schedule_id = ? ORDER BY seat_number",
        (schedule_id,),
    ))
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seat_id, seat_number, price)| Seat {
            seat_id,
            seat_number,
            price,
        })
        .collect())
}
