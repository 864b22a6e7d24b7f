//! Reservations (seat holds): their status, their seats, their record and their number.
//!
//! A reservation's record lives in its schedule's `res` hash as
//! `userId|status|totalAmount|reservedAt|expiresAt|seatId:price,…|paidAt|endedAt|paymentId`
//! (`lua/lib/holds.lua` writes it; `paymentId` is the attempt while PAYING and the payment
//! once PAID), and every change MySQL records goes whole to the schedule's outbox.

use chrono::Datelike;

use super::ids::{PaymentId, ReservationId};
use super::record::{DecodeError, number, opt_number, opt_text};

/// RESERVED (held), PAYING (a payment attempt runs; Redis only), then PAID, EXPIRED or
/// CANCELLED.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReservationStatus {
    Reserved,
    Paying,
    Paid,
    Expired,
    Cancelled,
}

impl ReservationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReservationStatus::Reserved => "RESERVED",
            ReservationStatus::Paying => "PAYING",
            ReservationStatus::Paid => "PAID",
            ReservationStatus::Expired => "EXPIRED",
            ReservationStatus::Cancelled => "CANCELLED",
        }
    }

    pub fn parse(text: &str) -> Result<Self, DecodeError> {
        Ok(match text {
            "RESERVED" => ReservationStatus::Reserved,
            "PAYING" => ReservationStatus::Paying,
            "PAID" => ReservationStatus::Paid,
            "EXPIRED" => ReservationStatus::Expired,
            "CANCELLED" => ReservationStatus::Cancelled,
            other => return Err(DecodeError(format!("reservation status {other:?}"))),
        })
    }

    /// The status clients and MySQL see: a hold being paid is still RESERVED (the attempt
    /// may yet be rolled back).
    pub fn as_seen(self) -> Self {
        match self {
            ReservationStatus::Paying => ReservationStatus::Reserved,
            other => other,
        }
    }
}

impl serde::Serialize for ReservationStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_seen().as_str())
    }
}

/// A seat as a reservation or payment shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Seat {
    pub seat_id: u64,
    pub seat_number: u64,
    pub price: u64,
}

impl Seat {
    /// A seat as the scripts reply with it: `seatId|seatNumber|price`.
    pub fn decode(text: &str) -> Option<Self> {
        let mut parts = text.split('|').map(str::parse::<u64>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(seat_id)), Some(Ok(seat_number)), Some(Ok(price)), None) => Some(Self {
                seat_id,
                seat_number,
                price,
            }),
            _ => None,
        }
    }

    /// The seat's value in its schedule's `seat` hash: `seatNumber|price`.
    pub fn catalogue_record(&self) -> String {
        format!("{}|{}", self.seat_number, self.price)
    }
}

/// Which seats a hold asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeatChoice {
    /// These seats, all or none.
    Seats(Vec<u64>),
    /// This many AVAILABLE seats, chosen by the hold script: the lowest seat numbers that
    /// are consecutive, else the lowest ones (`lua/hold_seats.lua`).
    BestAvailable(u64),
}

/// A new hold as the hold script reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub reservation_id: ReservationId,
    pub total_amount: u64,
    pub reserved_at_ms: i64,
    pub expires_at_ms: i64,
    /// In request order (best available: by seat number).
    pub seats: Vec<Seat>,
}

/// A reservation as its owner sees it: the record, with its seats' numbers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub record: ReservationRecord,
    /// In seat id order.
    pub seats: Vec<Seat>,
}

/// A reservation's full record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRecord {
    pub id: ReservationId,
    pub user_id: u64,
    pub schedule_id: u64,
    pub status: ReservationStatus,
    pub total_amount: u64,
    pub reserved_at_ms: i64,
    pub expires_at_ms: i64,
    /// (seatId, price)
    pub seats: Vec<(u64, u64)>,
    pub paid_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    /// The payment attempt while PAYING, the payment once PAID.
    pub payment_id: Option<PaymentId>,
}

impl ReservationRecord {
    /// Decodes the record of reservation `id` (records written before payments existed end
    /// at endedAt).
    pub fn parse(id: ReservationId, record: &str) -> Result<Self, DecodeError> {
        let mut f: Vec<&str> = record.split('|').collect();
        if f.len() == 8 {
            f.push("");
        }
        let [
            user,
            status,
            total,
            reserved,
            expires,
            seats,
            paid,
            ended,
            payment,
        ] = f[..]
        else {
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
        Ok(ReservationRecord {
            id,
            user_id: number(user, "userId")?,
            schedule_id: id.schedule(),
            status: ReservationStatus::parse(status)?,
            total_amount: number(total, "totalAmount")?,
            reserved_at_ms: number(reserved, "reservedAt")?,
            expires_at_ms: number(expires, "expiresAt")?,
            seats,
            paid_at_ms: opt_number(paid, "paidAt")?,
            ended_at_ms: opt_number(ended, "endedAt")?,
            payment_id: opt_number(payment, "paymentId")?.map(PaymentId::from_u64),
        })
    }

    /// The record as the scripts store it: the inverse of [`Self::parse`].
    pub fn record(&self) -> String {
        let seats: Vec<String> = self
            .seats
            .iter()
            .map(|(seat, price)| format!("{seat}:{price}"))
            .collect();
        format!(
            "{}|{}|{}|{}|{}|{}|{}|{}|{}",
            self.user_id,
            self.status.as_str(),
            self.total_amount,
            self.reserved_at_ms,
            self.expires_at_ms,
            seats.join(","),
            opt_text(self.paid_at_ms),
            opt_text(self.ended_at_ms),
            opt_text(self.payment_id),
        )
    }
}

/// Crockford's base-32 alphabet: no I, L, O or U to misread.
const BASE32: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// The human-friendly reservation number, `R<yyyymmdd>-<11 characters>`: the reservation
/// date, then the id scrambled by an odd multiplier modulo 2^55 (a bijection, so numbers are
/// unique like ids without showing their sequence) in base 32.
pub fn reservation_number(id: ReservationId, reserved_at_ms: i64) -> String {
    const BITS: u32 = 55;
    let scrambled = id.get().wrapping_mul(0x2545_F491_4F6C_DD1D) & ((1 << BITS) - 1);
    let code: String = (0..BITS.div_ceil(5))
        .rev()
        .map(|i| BASE32[((scrambled >> (i * 5)) & 31) as usize] as char)
        .collect();
    // The date's fields written directly: a strftime pattern is parsed on every call.
    let date = chrono::DateTime::from_timestamp_millis(reserved_at_ms)
        .unwrap_or_default()
        .date_naive();
    format!(
        "R{:04}{:02}{:02}-{code}",
        date.year(),
        date.month(),
        date.day()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_records_round_trip() {
        for record in [
            "9|RESERVED|100000|1700000000000|1700000300000|101:50000,102:50000|||",
            "9|PAID|50000|1|2|103:50000|3||4294967297",
        ] {
            let parsed = ReservationRecord::parse(ReservationId::new(3, 7), record).unwrap();
            assert_eq!(parsed.record(), record);
            assert_eq!(parsed.schedule_id, 3);
        }
        let bad = ReservationRecord::parse(ReservationId::new(3, 1), "9|RESERVED|1|2|3|101||");
        assert!(bad.is_err(), "a seat without a price is refused");
    }

    #[test]
    fn a_hold_being_paid_is_seen_as_reserved() {
        assert_eq!(
            ReservationStatus::Paying.as_seen(),
            ReservationStatus::Reserved
        );
        assert_eq!(ReservationStatus::Paid.as_seen(), ReservationStatus::Paid);
        for status in ["RESERVED", "PAYING", "PAID", "EXPIRED", "CANCELLED"] {
            assert_eq!(ReservationStatus::parse(status).unwrap().as_str(), status);
        }
    }

    #[test]
    fn seats_decode_from_the_scripts_replies_only_when_whole() {
        let seat = Seat::decode("101|7|50000").unwrap();
        assert_eq!(
            (seat.seat_id, seat.seat_number, seat.price),
            (101, 7, 50_000)
        );
        assert_eq!(seat.catalogue_record(), "7|50000");
        for bad in ["101|7", "101|x|5", "1|2|3|4"] {
            assert_eq!(Seat::decode(bad), None, "{bad}");
        }
    }

    #[test]
    fn reservation_numbers_are_dated_distinct_and_readable() {
        let at = 1_798_138_800_000; // 2026-12-24T19:00:00Z
        let a = reservation_number(ReservationId::new(12, 1), at);
        let b = reservation_number(ReservationId::new(12, 2), at);
        assert!(
            a.starts_with("R20261224-") && a.len() == "R20261224-".len() + 11,
            "{a}"
        );
        assert_ne!(a, b);
        assert!(a[10..].chars().all(|c| BASE32.contains(&(c as u8))));
        let many: std::collections::HashSet<String> = (1..5000u64)
            .map(|n| reservation_number(ReservationId::new(7, n), at))
            .collect();
        assert_eq!(many.len(), 4999);
    }
}
