//! Idempotency-Keys: a repeat of a request with the same key and the same ask gets the first
//! answer again. Requests are compared by what they ask (the fingerprint), not by their bytes.

use super::ids::ReservationId;
use super::reservation::SeatChoice;

/// An Idempotency-Key of one user's request and the fingerprint of what it asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub key: String,
    pub fingerprint: String,
}

impl Idempotency {
    /// A queue token for this schedule.
    pub fn issue(key: String, schedule_id: u64) -> Self {
        Self {
            key,
            fingerprint: format!("issue:{schedule_id}"),
        }
    }

    /// A hold of these seats (or of this many, best available) of this schedule.
    pub fn hold(key: String, schedule_id: u64, seats: &SeatChoice) -> Self {
        let fingerprint = match seats {
            SeatChoice::Seats(ids) => format!("hold:{schedule_id}:{ids:?}"),
            SeatChoice::BestAvailable(n) => format!("hold:{schedule_id}:best:{n}"),
        };
        Self { key, fingerprint }
    }

    /// A charge of this amount.
    pub fn charge(key: String, amount: u64) -> Self {
        Self {
            key,
            fingerprint: format!("charge:{amount}"),
        }
    }

    /// A payment of this reservation from the balance.
    pub fn payment(key: String, reservation_id: ReservationId) -> Self {
        Self {
            key,
            fingerprint: format!("pay:{reservation_id}:BALANCE"),
        }
    }
}
