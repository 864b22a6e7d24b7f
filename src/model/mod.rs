//! The domain, with no I/O: typed ids and their schemes, the records the Lua scripts keep
//! (tokens, reservations, balances, ledger lines) with their status enums and their one
//! encoding, the refusals the scripts answer with, queue settings and the pre-queue's
//! shuffle, catalogue values, and the error every failure a client can see becomes.
//! Everything else may use this module; it uses none of the rest (no Redis, MySQL, HTTP or
//! runtime types).

mod catalogue;
mod error;
mod idempotency;
mod ids;
mod payment;
mod record;
mod refusal;
mod reservation;
mod settings;
mod shuffle;
mod time;
mod token;
mod wallet;

pub use catalogue::{Concert, ListedSeat, Schedule, SeatView, schedule_status};
pub use error::Error;
pub use idempotency::Idempotency;
pub use ids::{
    MAX_SCHEDULE_ID, PaymentId, ReservationId, WALLET_BUCKETS, ledger_floor, wallet_bucket,
};
pub use payment::{Payment, PaymentAttempt};
pub use record::DecodeError;
pub use refusal::Refusal;
pub use reservation::{
    Hold, Reservation, ReservationRecord, ReservationStatus, Seat, SeatChoice, reservation_number,
};
pub use settings::{BookingWindow, MAX_PRE_QUEUE_MINUTES, MAX_SETTING, QueueOrder, QueueSettings};
pub use shuffle::Shuffle;
pub use time::iso_ms;
pub use token::{
    QueueToken, TokenEvent, TokenHolder, TokenRecord, TokenState, TokenStatus, wait_ms,
};
pub use wallet::{Balance, BalanceUpdate, LedgerLine, MAX_BALANCE, MAX_CHARGE};
