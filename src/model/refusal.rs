//! The refusals the Lua scripts answer with, parsed once from their codes (the `Returns`
//! lines of each script's header name them), and the error each becomes.

use super::Error;

/// Why a script refused a request; nothing changed in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    ScheduleNotFound,
    BookingNotOpen,
    BookingClosed,
    TokenAlreadyIssued,
    QueueFull,
    QueueTokenInvalid,
    QueueTokenNotActive,
    /// The token is not one of this schedule's: the caller tells another schedule's token
    /// (`QUEUE_TOKEN_WRONG_SCHEDULE`) from nobody's (`QUEUE_TOKEN_INVALID`).
    TokenNotHere,
    Forbidden,
    SeatNotFound,
    SeatAlreadyReserved,
    SeatLimitExceeded,
    /// Fewer seats AVAILABLE than a best-available hold asks for.
    NotEnoughSeats,
    ReservationNotFound,
    ReservationAlreadyPaid,
    ReservationExpired,
    ReservationNotPayable,
    ReservationNotCancellable,
    PaymentInProgress,
    InsufficientBalance,
    RequestInProgress,
    IdempotencyKeyReused,
    /// A charge would take the balance over its cap.
    BalanceLimit,
    /// The user has spent their `userRequestsPerSecond`.
    RateLimited,
}

/// Every refusal with the code the scripts write for it.
const CODES: [(Refusal, &str); 24] = [
    (Refusal::ScheduleNotFound, "SCHEDULE_NOT_FOUND"),
    (Refusal::BookingNotOpen, "BOOKING_NOT_OPEN"),
    (Refusal::BookingClosed, "BOOKING_CLOSED"),
    (Refusal::TokenAlreadyIssued, "TOKEN_ALREADY_ISSUED"),
    (Refusal::QueueFull, "QUEUE_FULL"),
    (Refusal::QueueTokenInvalid, "QUEUE_TOKEN_INVALID"),
    (Refusal::QueueTokenNotActive, "QUEUE_TOKEN_NOT_ACTIVE"),
    (Refusal::TokenNotHere, "TOKEN_NOT_HERE"),
    (Refusal::Forbidden, "FORBIDDEN"),
    (Refusal::SeatNotFound, "SEAT_NOT_FOUND"),
    (Refusal::SeatAlreadyReserved, "SEAT_ALREADY_RESERVED"),
    (Refusal::SeatLimitExceeded, "SEAT_LIMIT_EXCEEDED"),
    (Refusal::NotEnoughSeats, "NOT_ENOUGH_SEATS"),
    (Refusal::ReservationNotFound, "RESERVATION_NOT_FOUND"),
    (Refusal::ReservationAlreadyPaid, "RESERVATION_ALREADY_PAID"),
    (Refusal::ReservationExpired, "RESERVATION_EXPIRED"),
    (Refusal::ReservationNotPayable, "RESERVATION_NOT_PAYABLE"),
    (
        Refusal::ReservationNotCancellable,
        "RESERVATION_NOT_CANCELLABLE",
    ),
    (Refusal::PaymentInProgress, "PAYMENT_IN_PROGRESS"),
    (Refusal::InsufficientBalance, "INSUFFICIENT_BALANCE"),
    (Refusal::RequestInProgress, "REQUEST_IN_PROGRESS"),
    (Refusal::IdempotencyKeyReused, "IDEMPOTENCY_KEY_REUSED"),
    (Refusal::BalanceLimit, "BALANCE_LIMIT"),
    (Refusal::RateLimited, "RATE_LIMITED"),
];

impl Refusal {
    /// The refusal a script's code names, if it names one.
    pub fn parse(code: &str) -> Option<Self> {
        CODES.iter().find(|(_, c)| *c == code).map(|(r, _)| *r)
    }

    /// The code the scripts write for it.
    pub fn code(self) -> &'static str {
        CODES
            .iter()
            .find(|(r, _)| *r == self)
            .map(|(_, c)| *c)
            .expect("every refusal has a code")
    }

    /// The error a client sees; `named` are the numbers a hold refusal's reply carries
    /// after its code: the seats it names, or how many seats are AVAILABLE.
    pub fn into_error(self, named: Vec<u64>) -> Error {
        match self {
            Refusal::ScheduleNotFound => Error::ScheduleNotFound,
            Refusal::BookingNotOpen => Error::BookingNotOpen,
            Refusal::BookingClosed => Error::BookingClosed,
            Refusal::TokenAlreadyIssued => Error::TokenAlreadyIssued,
            Refusal::QueueFull => Error::QueueFull,
            Refusal::QueueTokenInvalid | Refusal::TokenNotHere => Error::QueueTokenInvalid,
            Refusal::QueueTokenNotActive => Error::QueueTokenNotActive,
            Refusal::Forbidden => Error::Forbidden,
            Refusal::SeatNotFound => Error::SeatNotFound { seat_ids: named },
            Refusal::SeatAlreadyReserved => Error::SeatAlreadyReserved { seat_ids: named },
            Refusal::SeatLimitExceeded => Error::SeatLimitExceeded,
            Refusal::NotEnoughSeats => Error::NotEnoughSeats {
                available: named.first().copied().unwrap_or(0),
            },
            Refusal::ReservationNotFound => Error::ReservationNotFound,
            Refusal::ReservationAlreadyPaid => Error::ReservationAlreadyPaid,
            Refusal::ReservationExpired => Error::ReservationExpired,
            Refusal::ReservationNotPayable => Error::ReservationNotPayable,
            Refusal::ReservationNotCancellable => Error::ReservationNotCancellable,
            Refusal::PaymentInProgress => Error::PaymentInProgress,
            Refusal::InsufficientBalance => Error::InsufficientBalance,
            Refusal::RequestInProgress => Error::RequestInProgress,
            Refusal::IdempotencyKeyReused => Error::IdempotencyKeyReused,
            Refusal::RateLimited => Error::RateLimited,
            Refusal::BalanceLimit => Error::invalid(
                "amount",
                format!("the balance may not exceed {}", super::MAX_BALANCE),
            ),
        }
    }
}

impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        refusal.into_error(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_parses_back_to_its_refusal() {
        for (refusal, code) in CODES {
            assert_eq!(Refusal::parse(code), Some(refusal));
            assert_eq!(refusal.code(), code);
        }
        assert_eq!(Refusal::parse("OK"), None);
        assert_eq!(Refusal::parse("seat_not_found"), None);
    }

    #[test]
    fn hold_refusals_keep_the_seats_they_name() {
        match Refusal::SeatAlreadyReserved.into_error(vec![4, 5]) {
            Error::SeatAlreadyReserved { seat_ids } => assert_eq!(seat_ids, [4, 5]),
            other => panic!("{other:?}"),
        }
        match Refusal::NotEnoughSeats.into_error(vec![3]) {
            Error::NotEnoughSeats { available } => assert_eq!(available, 3),
            other => panic!("{other:?}"),
        }
    }
}
