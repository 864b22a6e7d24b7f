//! Payments: a payment attempt of the saga, and a completed payment.

use super::ids::{PaymentId, ReservationId};
use super::reservation::Seat;

/// One payment attempt of a reservation: what the saga's first step began, and what the
/// hold expiry reports of a saga left PAYING too long (`reservationId|userId|paymentId|total`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentAttempt {
    pub reservation_id: ReservationId,
    pub user_id: u64,
    pub payment_id: PaymentId,
    pub amount: u64,
}

impl PaymentAttempt {
    pub fn parse(text: &str) -> Option<Self> {
        let mut f = text.split('|').map(str::parse::<u64>);
        let attempt = Self {
            reservation_id: ReservationId::from_u64(f.next()?.ok()?),
            user_id: f.next()?.ok()?,
            payment_id: PaymentId::from_u64(f.next()?.ok()?),
            amount: f.next()?.ok()?,
        };
        f.next().is_none().then_some(attempt)
    }

    pub fn schedule_id(&self) -> u64 {
        self.reservation_id.schedule()
    }
}

/// A completed payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payment {
    pub payment_id: PaymentId,
    pub total_amount: u64,
    pub paid_at_ms: i64,
    pub user_id: u64,
    pub reserved_at_ms: i64,
    pub seats: Vec<Seat>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_parse_from_the_sweepers_list() {
        let r = ReservationId::new(5, 1);
        let p = PaymentId::new(5, 2);
        let attempt = PaymentAttempt::parse(&format!("{r}|9|{p}|50000")).unwrap();
        assert_eq!(attempt.schedule_id(), 5);
        assert_eq!(
            (attempt.user_id, attempt.payment_id, attempt.amount),
            (9, p, 50_000)
        );
        assert_eq!(PaymentAttempt::parse("1|2|3"), None);
        assert_eq!(PaymentAttempt::parse("1|2|3|4|5"), None);
    }
}
