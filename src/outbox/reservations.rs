//! Reservations as the flusher writes them: `reservations`, their `reservation_seats`, the
//! `seats` statuses they imply, and the `payments` of PAID ones.

use std::collections::HashMap;

use mysql_async::prelude::*;

use super::events::{DecodeError, number, opt_datetime, opt_ms, opt_text};
use super::rows::{self, Row, Table};
use crate::mysql::{datetime_ms, placeholders, shaped_chunks, timed};
use crate::reservation::reservation_number;

/// A reservation's full state (see `lua/lib/holds.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRow {
    pub id: u64,
    pub user_id: u64,
    pub schedule_id: u64,
    pub status: String,
    pub total_amount: u64,
    pub reserved_at_ms: i64,
    pub expires_at_ms: i64,
    /// (seatId, price)
    pub seats: Vec<(u64, u64)>,
    pub paid_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    /// The payment attempt while PAYING, the payment once PAID.
    pub payment_id: Option<u64>,
}

impl ReservationRow {
    /// Parses `userId|status|total|reservedAt|expiresAt|seatId:price,…|paidAt|endedAt|
    /// paymentId` (records written before payments existed end at endedAt).
    pub fn parse(id: &str, schedule_id: u64, record: &str) -> Result<Self, DecodeError> {
        let mut f: Vec<&str> = record.split('|').collect();
        if f.len() == 8 {
            f.push("");
        }
        let [user, status, total, rat, exp, seats, pat, fin, pay] = f[..] else {
            return Err(DecodeError(format!(
                "reservation record {record:?} has {} fields",
                f.len()
            )));
        };
        let seats = seats
            .split(',')
            .map(|pair| {
                let (seat, price) = pair
                    .split_once(':')
                    .ok_or_else(|| DecodeError(format!("seat {pair:?} has no price")))?;
                Ok((number(seat, "seatId")?, number(price, "price")?))
            })
            .collect::<Result<Vec<_>, DecodeError>>()?;
        Ok(ReservationRow {
            id: number(id, "reservationId")?,
            user_id: number(user, "userId")?,
            schedule_id,
            status: status.to_string(),
            total_amount: number(total, "totalAmount")?,
            reserved_at_ms: number(rat, "reservedAt")?,
            expires_at_ms: number(exp, "expiresAt")?,
            seats,
            paid_at_ms: opt_ms(pat, "paidAt")?,
            ended_at_ms: opt_ms(fin, "endedAt")?,
            payment_id: opt_ms(pay, "paymentId")?.map(|p| p as u64),
        })
    }

    /// The record as `lua/lib/holds.lua` stores it: the inverse of [`Self::parse`].
    pub fn record(&self) -> String {
        let seats: Vec<String> = self
            .seats
            .iter()
            .map(|(seat, price)| format!("{seat}:{price}"))
            .collect();
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.user_id,
            self.status,
            self.total_amount,
            self.reserved_at_ms,
            self.expires_at_ms,
            seats.join(","),
            opt_text(self.paid_at_ms),
            opt_text(self.ended_at_ms),
            opt_text(self.payment_id),
        )
    }

    /// The status MySQL records: a hold being paid (PAYING, transient) is still RESERVED.
    fn stored_status(&self) -> &str {
        match self.status.as_str() {
            "PAYING" => "RESERVED",
            other => other,
        }
    }
}

const TABLE: Table = Table {
    name: "reservations",
    key_column: "id",
    columns: "id, reservation_number, user_id, schedule_id, status, total_amount, reserved_at,
              expires_at, paid_at, ended_at",
    row: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    update: "paid_at = COALESCE(VALUES(paid_at), paid_at),
             ended_at = COALESCE(VALUES(ended_at), ended_at),
             status = IF(VALUES(status) + 0 > status + 0, VALUES(status), status)",
};

impl Row for ReservationRow {
    type Key = u64;

    fn key(&self) -> u64 {
        self.id
    }

    fn params(&self) -> Vec<mysql_async::Value> {
        vec![
            self.id.into(),
            reservation_number(self.id, self.reserved_at_ms).into(),
            self.user_id.into(),
            self.schedule_id.into(),
            self.stored_status().into(),
            self.total_amount.into(),
            datetime_ms(self.reserved_at_ms),
            datetime_ms(self.expires_at_ms),
            opt_datetime(self.paid_at_ms),
            opt_datetime(self.ended_at_ms),
        ]
    }
}

/// Which reservations [`load`] reads.
#[derive(Debug, Clone, Copy)]
pub enum Scope {
    One(u64),
    Schedule(u64),
}

/// Reservations as MySQL has them, with their seats (by seat id) and the payment of PAID
/// ones, in id order.
pub async fn load(
    conn: &mut mysql_async::Conn,
    scope: Scope,
) -> Result<Vec<ReservationRow>, mysql_async::Error> {
    let (filter, id) = match scope {
        Scope::One(id) => ("r.id = ?", id),
        Scope::Schedule(id) => ("r.schedule_id = ?", id),
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
             WHERE {filter} ORDER BY r.id"
        ),
        (id,),
        |(a, b, c, d, e, f, g, h, i, payment)| ((a, b, c, d, e, f, g, h, i), payment),
    ))
    .await?;
    let seat_rows: Vec<(u64, u64, u64)> = timed(conn.exec(
        format!(
            "SELECT rs.reservation_id, rs.seat_id, rs.price
             FROM reservation_seats rs JOIN reservations r ON r.id = rs.reservation_id
             WHERE {filter} ORDER BY rs.reservation_id, rs.seat_id"
        ),
        (id,),
    ))
    .await?;
    let mut seats: HashMap<u64, Vec<(u64, u64)>> = HashMap::new();
    for (reservation, seat, price) in seat_rows {
        seats.entry(reservation).or_default().push((seat, price));
    }
    Ok(heads
        .into_iter()
        .map(|(head, payment_id)| {
            let (id, user_id, schedule_id, status, total_amount, reserved, expires, paid, ended) =
                head;
            ReservationRow {
                id,
                user_id,
                schedule_id,
                status,
                total_amount,
                reserved_at_ms: reserved,
                expires_at_ms: expires,
                seats: seats.remove(&id).unwrap_or_default(),
                paid_at_ms: paid,
                ended_at_ms: ended,
                payment_id,
            }
        })
        .collect())
}

/// The payment of a PAID reservation.
struct PaymentRow<'a>(&'a ReservationRow);

const PAYMENTS: Table = Table {
    name: "payments",
    key_column: "id",
    columns: "id, reservation_id, user_id, amount, method, status, paid_at",
    row: "(?, ?, ?, ?, 'BALANCE', 'COMPLETED', ?)",
    update: "id = id",
};

impl Row for PaymentRow<'_> {
    type Key = u64;

    fn key(&self) -> u64 {
        self.0.payment_id.unwrap_or_default()
    }

    fn params(&self) -> Vec<mysql_async::Value> {
        let r = self.0;
        vec![
            self.key().into(),
            r.id.into(),
            r.user_id.into(),
            r.total_amount.into(),
            opt_datetime(r.paid_at_ms),
        ]
    }
}

/// Writes the latest state of each reservation, the seats of new ones, seat statuses, and
/// the payments of PAID ones.
pub async fn write(
    tx: &mut mysql_async::Transaction<'_>,
    rows: &[&ReservationRow],
) -> Result<(), mysql_async::Error> {
    let new = rows::write(tx, &TABLE, rows).await?;
    let seats: Vec<(u64, u64, u64)> = new
        .iter()
        .flat_map(|r| r.seats.iter().map(|&(seat, price)| (r.id, seat, price)))
        .collect();
    for chunk in shaped_chunks(&seats) {
        let sql = format!(
            "INSERT INTO reservation_seats (reservation_id, seat_id, price) VALUES {}",
            placeholders(chunk.len(), "(?, ?, ?)")
        );
        let params: Vec<mysql_async::Value> = chunk
            .iter()
            .flat_map(|&(r, s, p)| [r.into(), s.into(), p.into()])
            .collect();
        timed(tx.exec_drop(sql, params)).await?;
    }
    // A seat's status is that of its latest reservation as stored, so entries applied out
    // of order (a claimed one, another instance's batch) cannot move a seat backwards.
    // Reservation ids grow per schedule, so the latest is the highest.
    let mut touched: Vec<u64> = rows
        .iter()
        .flat_map(|r| r.seats.iter().map(|s| s.0))
        .collect();
    touched.sort_unstable();
    touched.dedup();
    for chunk in shaped_chunks(&touched) {
        let sql = format!(
            "UPDATE seats s
             JOIN (SELECT seat_id, MAX(reservation_id) AS rid FROM reservation_seats
                   WHERE seat_id IN ({}) GROUP BY seat_id) latest ON latest.seat_id = s.id
             JOIN reservations r ON r.id = latest.rid
             SET s.status = CASE r.status WHEN 'RESERVED' THEN 'HELD' WHEN 'PAID' THEN 'SOLD'
                                          ELSE 'AVAILABLE' END",
            placeholders(chunk.len(), "?")
        );
        timed(tx.exec_drop(sql, chunk.to_vec())).await?;
    }
    let payments: Vec<PaymentRow> = rows
        .iter()
        .filter(|r| r.status == "PAID" && r.payment_id.is_some())
        .map(|r| PaymentRow(r))
        .collect();
    rows::write(tx, &PAYMENTS, &payments.iter().collect::<Vec<_>>()).await?;
    Ok(())
}
