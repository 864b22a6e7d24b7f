//! Every outcome a client can see that is not a success, and the one place that maps each to
//! its HTTP status and error code.

use hyper::StatusCode;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    InvalidRequest { field: String, message: String },
    #[error("Queue-Token header is missing")]
    QueueTokenMissing,
    #[error("queue token is unknown or expired")]
    QueueTokenInvalid,
    #[error("the queue token is still waiting; this needs an ACTIVE token")]
    QueueTokenNotActive,
    #[error("the queue token belongs to another schedule")]
    QueueTokenWrongSchedule,
    #[error("admin key is missing or wrong")]
    AdminKeyInvalid,
    #[error("the queue token belongs to another user")]
    Forbidden,
    #[error("user not found")]
    UserNotFound,
    #[error("concert not found")]
    ConcertNotFound,
    #[error("schedule not found")]
    ScheduleNotFound,
    #[error("reservation not found")]
    ReservationNotFound,
    #[error("seat not found in this schedule")]
    SeatNotFound { seat_ids: Vec<u64> },
    #[error("no such route")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    #[error("the user already holds a live token for this schedule")]
    TokenAlreadyIssued,
    #[error("seats are already reserved")]
    SeatAlreadyReserved { seat_ids: Vec<u64> },
    #[error("a payment of this reservation is in progress")]
    PaymentInProgress,
    #[error("the balance is lower than the amount to pay")]
    InsufficientBalance,
    #[error("this reservation is paid already")]
    ReservationAlreadyPaid,
    #[error("this reservation has expired")]
    ReservationExpired,
    #[error("only a RESERVED reservation can be paid")]
    ReservationNotPayable,
    #[error("a request with this Idempotency-Key is still running")]
    RequestInProgress,
    #[error("only a RESERVED reservation can be cancelled")]
    ReservationNotCancellable,
    #[error("the user would hold more seats than this schedule allows")]
    SeatLimitExceeded,
    #[error("booking for this schedule has not opened yet")]
    BookingNotOpen,
    #[error("this Idempotency-Key was first used for a different request")]
    IdempotencyKeyReused,
    #[error("request body is larger than 64 KiB")]
    PayloadTooLarge,
    #[error("booking for this schedule has closed")]
    BookingClosed,
    #[error("the waiting queue is full")]
    QueueFull,
    #[error("internal error")]
    Internal(String),
    #[error("a dependency is unavailable; retry shortly")]
    Unavailable(String),
    /// Redis could not be reached (or its circuit is open): reads fall back to MySQL.
    #[error("a dependency is unavailable; retry shortly")]
    RedisUnavailable(String),
}

impl ApiError {
    pub fn is_redis_down(&self) -> bool {
        matches!(self, ApiError::RedisUnavailable(_))
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// Status and code, as listed in SPEC §3.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        match self {
            InvalidRequest { .. } => (StatusCode::BAD_REQUEST, "INVALID_REQUEST"),
            QueueTokenMissing => (StatusCode::UNAUTHORIZED, "QUEUE_TOKEN_MISSING"),
            QueueTokenInvalid => (StatusCode::UNAUTHORIZED, "QUEUE_TOKEN_INVALID"),
            QueueTokenNotActive => (StatusCode::UNAUTHORIZED, "QUEUE_TOKEN_NOT_ACTIVE"),
            QueueTokenWrongSchedule => (StatusCode::UNAUTHORIZED, "QUEUE_TOKEN_WRONG_SCHEDULE"),
            AdminKeyInvalid => (StatusCode::UNAUTHORIZED, "ADMIN_KEY_INVALID"),
            Forbidden => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            UserNotFound => (StatusCode::NOT_FOUND, "USER_NOT_FOUND"),
            ConcertNotFound => (StatusCode::NOT_FOUND, "CONCERT_NOT_FOUND"),
            ScheduleNotFound => (StatusCode::NOT_FOUND, "SCHEDULE_NOT_FOUND"),
            ReservationNotFound => (StatusCode::NOT_FOUND, "RESERVATION_NOT_FOUND"),
            SeatNotFound { .. } => (StatusCode::NOT_FOUND, "SEAT_NOT_FOUND"),
            NotFound => (StatusCode::NOT_FOUND, "NOT_FOUND"),
            MethodNotAllowed { .. } => (StatusCode::METHOD_NOT_ALLOWED, "METHOD_NOT_ALLOWED"),
            TokenAlreadyIssued => (StatusCode::CONFLICT, "TOKEN_ALREADY_ISSUED"),
            SeatAlreadyReserved { .. } => (StatusCode::CONFLICT, "SEAT_ALREADY_RESERVED"),
            PaymentInProgress => (StatusCode::CONFLICT, "PAYMENT_IN_PROGRESS"),
            InsufficientBalance => (StatusCode::PAYMENT_REQUIRED, "INSUFFICIENT_BALANCE"),
            ReservationAlreadyPaid => (StatusCode::CONFLICT, "RESERVATION_ALREADY_PAID"),
            ReservationExpired => (StatusCode::CONFLICT, "RESERVATION_EXPIRED"),
            ReservationNotPayable => (StatusCode::UNPROCESSABLE_ENTITY, "RESERVATION_NOT_PAYABLE"),
            RequestInProgress => (StatusCode::CONFLICT, "REQUEST_IN_PROGRESS"),
            ReservationNotCancellable => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "RESERVATION_NOT_CANCELLABLE",
            ),
            SeatLimitExceeded => (StatusCode::UNPROCESSABLE_ENTITY, "SEAT_LIMIT_EXCEEDED"),
            BookingNotOpen => (StatusCode::UNPROCESSABLE_ENTITY, "BOOKING_NOT_OPEN"),
            IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "IDEMPOTENCY_KEY_REUSED"),
            PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "PAYLOAD_TOO_LARGE"),
            BookingClosed => (StatusCode::UNPROCESSABLE_ENTITY, "BOOKING_CLOSED"),
            QueueFull => (StatusCode::TOO_MANY_REQUESTS, "QUEUE_FULL"),
            Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL"),
            Unavailable(_) | RedisUnavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "SERVICE_UNAVAILABLE")
            }
        }
    }
}

impl From<redis::RedisError> for ApiError {
    fn from(e: redis::RedisError) -> Self {
        if crate::redis::is_unreachable(&e) {
            ApiError::RedisUnavailable(format!("redis: {e}"))
        } else {
            ApiError::Internal(format!("redis: {e}"))
        }
    }
}

impl From<mysql_async::Error> for ApiError {
    fn from(e: mysql_async::Error) -> Self {
        match e {
            mysql_async::Error::Io(_) | mysql_async::Error::Driver(_) => {
                ApiError::Unavailable(format!("mysql: {e}"))
            }
            other => ApiError::Internal(format!("mysql: {other}")),
        }
    }
}
