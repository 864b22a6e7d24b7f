//! Queue tokens: who and what a token names, their status, their live state, and their
//! record. Inside seatrush a token is its schedule and arrival sequence (and its user); the
//! Queue-Token a client holds adds a MAC to those (`crate::identity::TokenKey`). A token's
//! record lives in its schedule's `tokens` hash under its sequence, and every change of it
//! goes whole to the schedule's outbox, as
//! `userId|status|sequence|issuedAt|activatedAt|expiresAt|endedAt` (`lua/lib/queue.lua`
//! writes it).

use super::record::{DecodeError, fields, number, opt_number, opt_text};

/// A queue token: the `sequence`-th arrival in `schedule_id`'s queue, issued to `user_id`.
/// Sequences are never reused, so the pair names one token for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct QueueToken {
    pub schedule_id: u64,
    pub sequence: u64,
    pub user_id: u64,
}

/// Where a token is in its life: WAITING, then ACTIVE, then EXPIRED, USED (retired after a
/// payment) or LEFT (its user left the queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TokenStatus {
    Waiting,
    Active,
    Expired,
    Used,
    Left,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Waiting => "WAITING",
            TokenStatus::Active => "ACTIVE",
            TokenStatus::Expired => "EXPIRED",
            TokenStatus::Used => "USED",
            TokenStatus::Left => "LEFT",
        }
    }

    pub fn parse(text: &str) -> Result<Self, DecodeError> {
        Ok(match text {
            "WAITING" => TokenStatus::Waiting,
            "ACTIVE" => TokenStatus::Active,
            "EXPIRED" => TokenStatus::Expired,
            "USED" => TokenStatus::Used,
            "LEFT" => TokenStatus::Left,
            other => return Err(DecodeError(format!("token status {other:?}"))),
        })
    }

    /// WAITING or ACTIVE.
    pub fn is_live(self) -> bool {
        matches!(self, TokenStatus::Waiting | TokenStatus::Active)
    }
}

/// A live token's state as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenState {
    pub status: TokenStatus,
    /// 1-based place among the schedule's WAITING tokens; 0 once ACTIVE.
    pub position: u64,
    /// Expected time until admission, from the position and the measured admission rate;
    /// 0 once ACTIVE.
    pub wait_ms: u64,
    /// When an ACTIVE token ends.
    pub expires_at_ms: Option<i64>,
    /// While the token is in a pre-queue not yet shuffled (queue order `SHUFFLE_AT_OPEN`):
    /// when booking opens and its place is drawn. It has no position until then (0 here),
    /// and its wait is the time until the opening plus that of the middle of the pre-queue.
    pub opens_at_ms: Option<i64>,
}

impl TokenState {
    /// Shortest and longest advised wait between two status polls.
    pub const POLL_MS: (u64, u64) = (1_000, 30_000);

    /// The expected wait in whole minutes, rounded up (0 once ACTIVE).
    pub fn wait_minutes(&self) -> u64 {
        self.wait_ms.div_ceil(60_000)
    }

    /// When a client should ask again: about a quarter of the expected wait, so it sees its
    /// position move a few times on the way, within [`Self::POLL_MS`]; 0 once ACTIVE. In a
    /// pre-queue: just after the opening (a second, by when the shuffle has run), spread over
    /// [`Self::OPENING_SPREAD_MS`] by arrival `sequence` so the pre-queue does not all ask
    /// in the same instant.
    pub fn poll_after_ms(&self, now_ms: i64, sequence: u64) -> u64 {
        if self.status != TokenStatus::Waiting {
            return 0;
        }
        if let Some(opens_at_ms) = self.opens_at_ms {
            let until_open = opens_at_ms.saturating_sub(now_ms).max(0) as u64;
            return until_open + Self::POLL_MS.0 + sequence % Self::OPENING_SPREAD_MS;
        }
        (self.wait_ms / 4).clamp(Self::POLL_MS.0, Self::POLL_MS.1)
    }

    /// How widely a pre-queue's first polls after the opening are spread.
    pub const OPENING_SPREAD_MS: u64 = 2_000;
}

/// Milliseconds of expected wait for `position` at `rate` admissions a second (as the
/// scripts compute it: `lua/lib/queue.lua`'s `wait_ms`; a rate below 0.01 is taken as 0.01).
pub fn wait_ms(position: u64, rate: f64) -> u64 {
    (position as f64 * 1000.0 / rate.max(0.01)).ceil() as u64
}

/// What a queue token's event stream tells its client, in order: its state when the
/// stream opens, then each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenEvent {
    /// WAITING at this place (sent when it changes, at most every few seconds).
    Position { position: u64, wait_ms: u64 },
    /// WAITING in a pre-queue: no place until its shuffle when booking opens (then a
    /// [`TokenEvent::Position`]).
    PreQueue { opens_at_ms: i64, wait_ms: u64 },
    /// Admitted: ACTIVE until then.
    Active { until_ms: i64 },
    /// The token ended (EXPIRED, USED or LEFT); the stream closes after it.
    Ended(TokenStatus),
    /// Nothing changed for a while: the connection is still open.
    KeepAlive,
}

impl TokenEvent {
    /// The event a stream opens with: the token's state now.
    pub fn of(state: &TokenState) -> Self {
        match (state.expires_at_ms, state.opens_at_ms) {
            (Some(until_ms), _) if state.status == TokenStatus::Active => {
                TokenEvent::Active { until_ms }
            }
            (_, Some(opens_at_ms)) => TokenEvent::PreQueue {
                opens_at_ms,
                wait_ms: state.wait_ms,
            },
            _ => TokenEvent::Position {
                position: state.position,
                wait_ms: state.wait_ms,
            },
        }
    }
}

/// Who a valid Queue-Token belongs to, and its state now.
#[derive(Debug, Clone)]
pub struct TokenHolder {
    pub token: QueueToken,
    pub state: TokenState,
}

/// A queue token's full record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub user_id: u64,
    pub schedule_id: u64,
    pub status: TokenStatus,
    /// Arrival order in the schedule's queue.
    pub sequence: u64,
    pub issued_at_ms: i64,
    pub activated_at_ms: Option<i64>,
    pub expires_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
}

impl TokenRecord {
    /// Decodes the record a token of `schedule_id` keeps under `field` (its sequence).
    pub fn parse(field: &str, schedule_id: u64, record: &str) -> Result<Self, DecodeError> {
        let [user, status, sequence, issued, activated, expires, ended] = fields("token", record)?;
        if field != sequence {
            return Err(DecodeError(format!(
                "token record {record:?} kept under {field:?}"
            )));
        }
        Ok(TokenRecord {
            user_id: number(user, "userId")?,
            schedule_id,
            status: TokenStatus::parse(status)?,
            sequence: number(sequence, "sequence")?,
            issued_at_ms: number(issued, "issuedAt")?,
            activated_at_ms: opt_number(activated, "activatedAt")?,
            expires_at_ms: opt_number(expires, "expiresAt")?,
            ended_at_ms: opt_number(ended, "endedAt")?,
        })
    }

    /// The token this record is of.
    pub fn token(&self) -> QueueToken {
        QueueToken {
            schedule_id: self.schedule_id,
            sequence: self.sequence,
            user_id: self.user_id,
        }
    }

    /// The record as the scripts store it: the inverse of [`Self::parse`].
    pub fn record(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}|{}|{}",
            self.user_id,
            self.status.as_str(),
            self.sequence,
            self.issued_at_ms,
            opt_text(self.activated_at_ms),
            opt_text(self.expires_at_ms),
            opt_text(self.ended_at_ms),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_records_round_trip_with_empty_times_as_none() {
        for (field, record) in [
            ("12", "9|WAITING|12|1700000000123|||"),
            ("13", "8|USED|13|1|2|3|4"),
            ("14", "8|LEFT|14|1|||4"),
        ] {
            assert_eq!(
                TokenRecord::parse(field, 3, record).unwrap().record(),
                record
            );
        }
        let waiting = TokenRecord::parse("12", 3, "9|WAITING|12|1700000000123|||").unwrap();
        assert_eq!(
            (waiting.user_id, waiting.schedule_id, waiting.sequence),
            (9, 3, 12)
        );
        assert_eq!(waiting.activated_at_ms, None);
    }

    #[test]
    fn the_poll_interval_is_a_quarter_of_the_wait_within_its_bounds() {
        let waiting = |position, rate: u64| TokenState {
            status: TokenStatus::Waiting,
            position,
            wait_ms: wait_ms(position, rate as f64),
            expires_at_ms: None,
            opens_at_ms: None,
        };
        let poll = |state: &TokenState| state.poll_after_ms(0, 7);
        // 100 000th at 2 000 a second: 50 s to wait, asked again after 12.5 s.
        let far = waiting(100_000, 2_000);
        assert_eq!(
            (far.wait_ms, far.wait_minutes(), poll(&far)),
            (50_000, 1, 12_500)
        );
        assert_eq!(poll(&waiting(10, 2_000)), 1_000);
        assert_eq!(poll(&waiting(1_000_000, 200)), 30_000);
        assert_eq!(waiting(1_000_000, 200).wait_minutes(), 84);
        assert_eq!(
            waiting(7, 0).wait_ms,
            700_000,
            "a rate of 0 is taken as 0.01"
        );
        let active = TokenState {
            status: TokenStatus::Active,
            position: 0,
            wait_ms: 0,
            expires_at_ms: Some(1),
            opens_at_ms: None,
        };
        assert_eq!((active.wait_minutes(), poll(&active)), (0, 0));
        // In a pre-queue opening in 10 minutes: asked again a second after the opening,
        // spread by arrival sequence.
        let pre_queued = TokenState {
            opens_at_ms: Some(600_000),
            ..waiting(0, 200)
        };
        assert_eq!(pre_queued.poll_after_ms(0, 3), 601_003);
        assert_eq!(pre_queued.poll_after_ms(0, 2_003), 601_003);
        assert_eq!(
            pre_queued.poll_after_ms(700_000, 3),
            1_003,
            "opened already"
        );
    }

    #[test]
    fn broken_token_records_are_refused() {
        for bad in [
            "9|WAITING|1",
            "nine|WAITING|1|2|||",
            "9|LOST|1|2|||",
            "9|WAITING|2|2|||",
        ] {
            assert!(TokenRecord::parse("1", 3, bad).is_err(), "{bad}");
        }
    }
}
