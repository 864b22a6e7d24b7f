//! Reservations as the flusher writes them: `reservations`, their `reservation_seats`, and
//! the `seats` statuses they imply.

use std::collections::HashMap;

use mysql_async::prelude::*;

use super::events::{DecodeError, number, opt_datetime, opt_ms};
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
}

impl ReservationRow {
    /// Parses `userId|status|total|reservedAt|expiresAt|seatId:price,…|paidAt|endedAt`.
    pub fn parse(id: &str, schedule_id: u64, record: &str) -> Result<Self, DecodeError> {
        let f: Vec<&str> = record.split('|').collect();
        let [user, status, total, rat, exp, seats, pat, fin] = f[..] else {
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
        })
    }

    /// The status its seats have while this is their latest reservation.
    fn seat_status(&self) -> &'static str {
        match self.status.as_str() {
            "RESERVED" => "HELD",
            "PAID" => "SOLD",
            _ => "AVAILABLE",
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
            self.status.as_str().into(),
            self.total_amount.into(),
            datetime_ms(self.reserved_at_ms),
            datetime_ms(self.expires_at_ms),
            opt_datetime(self.paid_at_ms),
            opt_datetime(self.ended_at_ms),
        ]
    }
}

/// Writes the latest state of each reservation, the seats of new ones, and seat statuses.
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
    // A seat's status is that of its latest reservation in stream order.
    let mut status_of: HashMap<u64, &'static str> = HashMap::new();
    for row in rows {
        for &(seat, _) in &row.seats {
            status_of.insert(seat, row.seat_status());
        }
    }
    for status in ["AVAILABLE", "HELD", "SOLD"] {
        let ids: Vec<u64> = status_of
            .iter()
            .filter(|(_, s)| **s == status)
            .map(|(&id, _)| id)
            .collect();
        for chunk in shaped_chunks(&ids) {
            let sql = format!(
                "UPDATE seats SET status = ? WHERE id IN ({})",
                placeholders(chunk.len(), "?")
            );
            let params: Vec<mysql_async::Value> = std::iter::once(status.into())
                .chain(chunk.iter().map(|&id| id.into()))
                .collect();
            timed(tx.exec_drop(sql, params)).await?;
        }
    }
    Ok(())
}
