//! Reservations as the flusher writes them: `reservations`, their `reservation_seats`, the
//! `seats` statuses they imply, and the `payments` of PAID ones.

use mysql_async::prelude::*;

use super::rows::{self, Row, Table, WriteError, opt_datetime};
use crate::model::{ReservationRecord, ReservationStatus, reservation_number};
use crate::mysql::{datetime_ms, placeholders, shaped_chunks, timed};

pub const TABLE: Table = Table {
    name: "reservations",
    key_column: "id",
    columns: "id, reservation_number, user_id, schedule_id, status, total_amount, reserved_at,
              expires_at, paid_at, ended_at",
    row: "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    update: "paid_at = COALESCE(VALUES(paid_at), paid_at),
             ended_at = COALESCE(VALUES(ended_at), ended_at),
             status = IF(VALUES(status) + 0 > status + 0, VALUES(status), status)",
    identity: "CONCAT_WS('|', user_id, total_amount,
                 COALESCE((SELECT GROUP_CONCAT(seat_id ORDER BY seat_id) FROM reservation_seats
                           WHERE reservation_id = reservations.id), ''))",
};

impl Row for ReservationRecord {
    type Key = u64;

    fn key(&self) -> u64 {
        self.id.get()
    }

    fn params(&self) -> Vec<mysql_async::Value> {
        vec![
            self.id.get().into(),
            reservation_number(self.id, self.reserved_at_ms).into(),
            self.user_id.into(),
            self.schedule_id.into(),
            self.status.as_seen().as_str().into(),
            self.total_amount.into(),
            datetime_ms(self.reserved_at_ms),
            datetime_ms(self.expires_at_ms),
            opt_datetime(self.paid_at_ms),
            opt_datetime(self.ended_at_ms),
        ]
    }

    fn identity(&self) -> String {
        let mut seats: Vec<u64> = self.seats.iter().map(|s| s.0).collect();
        seats.sort_unstable();
        let seats: Vec<String> = seats.iter().map(u64::to_string).collect();
        format!("{}|{}|{}", self.user_id, self.total_amount, seats.join(","))
    }
}

/// The payment of a PAID reservation.
struct PaymentRow<'a>(&'a ReservationRecord);

const PAYMENTS: Table = Table {
    name: "payments",
    key_column: "id",
    columns: "id, reservation_id, user_id, amount, method, status, paid_at",
    row: "(?, ?, ?, ?, 'BALANCE', 'COMPLETED', ?)",
    update: "id = id",
    identity: "CONCAT_WS('|', reservation_id, user_id, amount)",
};

impl Row for PaymentRow<'_> {
    type Key = u64;

    fn key(&self) -> u64 {
        self.0.payment_id.map_or(0, |p| p.get())
    }

    fn params(&self) -> Vec<mysql_async::Value> {
        let r = self.0;
        vec![
            self.key().into(),
            r.id.get().into(),
            r.user_id.into(),
            r.total_amount.into(),
            opt_datetime(r.paid_at_ms),
        ]
    }

    fn identity(&self) -> String {
        let r = self.0;
        format!("{}|{}|{}", r.id.get(), r.user_id, r.total_amount)
    }
}

/// Writes the latest state of each reservation, the seats of new ones, seat statuses, and
/// the payments of PAID ones.
pub async fn write(
    tx: &mut mysql_async::Transaction<'_>,
    rows: &[&ReservationRecord],
) -> Result<(), WriteError> {
    let new = rows::write(tx, &TABLE, rows).await?;
    let seats: Vec<(u64, u64, u64)> = new
        .iter()
        .flat_map(|r| {
            r.seats
                .iter()
                .map(|&(seat, price)| (r.id.get(), seat, price))
        })
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
        .filter(|r| r.status == ReservationStatus::Paid && r.payment_id.is_some())
        .map(|r| PaymentRow(r))
        .collect();
    rows::write(tx, &PAYMENTS, &payments.iter().collect::<Vec<_>>()).await?;
    Ok(())
}
