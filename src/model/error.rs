//! Every outcome a client can see that is not a success. The edge (`api`) gives each its
//! HTTP status and error code; the services only say what went wrong.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{message}")]
    InvalidRequest { field: String, message: String },
    #[error("an Authorization: Bearer header with the caller's identity is required")]
    AuthRequired,
    #[error("the Bearer token is not a valid identity (malformed, badly signed or expired)")]
    AuthInvalid,
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
    #[error("this belongs to another user")]
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
    #[error("fewer seats are available than asked for")]
    NotEnoughSeats { available: u64 },
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
    #[error("queueOrder and preQueueMinutes can change only while the schedule has no live token")]
    SettingsLocked,
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
    #[error("too many requests from this user; retry after the time Retry-After names")]
    RateLimited,
    #[error(
        "schedule ids have reached the most that reservation ids can carry exactly (2^21 - 1); \
         no more schedules can be created in this database"
    )]
    ScheduleIdsExhausted,
    #[error("internal error")]
    Internal(String),
    #[error("a dependency is unavailable; retry shortly")]
    Unavailable(String),
    /// This instance holds as many event streams as it may: shedding load, not a fault.
    #[error("this instance holds as many event streams as it can; retry shortly")]
    StreamsFull,
    /// Redis could not be reached (or its circuit is open): reads fall back to MySQL.
    #[error("a dependency is unavailable; retry shortly")]
    RedisUnavailable(String),
}

impl Error {
    pub fn is_redis_down(&self) -> bool {
        matches!(self, Error::RedisUnavailable(_))
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The error's code in the API (`UPPER_SNAKE`).
    pub fn code(&self) -> &'static str {
        use Error::*;
        match self {
            InvalidRequest { .. } => "INVALID_REQUEST",
            AuthRequired => "AUTH_REQUIRED",
            AuthInvalid => "AUTH_INVALID",
            QueueTokenMissing => "QUEUE_TOKEN_MISSING",
            QueueTokenInvalid => "QUEUE_TOKEN_INVALID",
            QueueTokenNotActive => "QUEUE_TOKEN_NOT_ACTIVE",
            QueueTokenWrongSchedule => "QUEUE_TOKEN_WRONG_SCHEDULE",
            AdminKeyInvalid => "ADMIN_KEY_INVALID",
            Forbidden => "FORBIDDEN",
            UserNotFound => "USER_NOT_FOUND",
            ConcertNotFound => "CONCERT_NOT_FOUND",
            ScheduleNotFound => "SCHEDULE_NOT_FOUND",
            ReservationNotFound => "RESERVATION_NOT_FOUND",
            SeatNotFound { .. } => "SEAT_NOT_FOUND",
            NotFound => "NOT_FOUND",
            MethodNotAllowed { .. } => "METHOD_NOT_ALLOWED",
            TokenAlreadyIssued => "TOKEN_ALREADY_ISSUED",
            SeatAlreadyReserved { .. } => "SEAT_ALREADY_RESERVED",
            NotEnoughSeats { .. } => "NOT_ENOUGH_SEATS",
            PaymentInProgress => "PAYMENT_IN_PROGRESS",
            InsufficientBalance => "INSUFFICIENT_BALANCE",
            ReservationAlreadyPaid => "RESERVATION_ALREADY_PAID",
            ReservationExpired => "RESERVATION_EXPIRED",
            ReservationNotPayable => "RESERVATION_NOT_PAYABLE",
            RequestInProgress => "REQUEST_IN_PROGRESS",
            SettingsLocked => "SETTINGS_LOCKED",
            ReservationNotCancellable => "RESERVATION_NOT_CANCELLABLE",
            SeatLimitExceeded => "SEAT_LIMIT_EXCEEDED",
            BookingNotOpen => "BOOKING_NOT_OPEN",
            IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            BookingClosed => "BOOKING_CLOSED",
            QueueFull => "QUEUE_FULL",
            RateLimited => "RATE_LIMITED",
            ScheduleIdsExhausted => "SCHEDULE_IDS_EXHAUSTED",
            Internal(_) => "INTERNAL",
            Unavailable(_) | RedisUnavailable(_) | StreamsFull => "SERVICE_UNAVAILABLE",
        }
    }
}
