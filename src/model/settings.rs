//! Per-schedule queue settings: their defaults, and their fields as the schedule's `cfg`
//! hash holds them for the scripts.

use std::collections::HashMap;

use serde::Serialize;

/// The order a schedule's queue admits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueOrder {
    /// Arrival order from the moment the schedule exists.
    #[default]
    Fifo,
    /// Everyone who queued in the pre-queue (the `preQueueMinutes` before `bookingOpenAt`)
    /// in a uniformly random order drawn at the opening, ahead of later arrivals, who queue
    /// in arrival order (see `crate::queue::shuffle`).
    ShuffleAtOpen,
}

impl QueueOrder {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueOrder::Fifo => "FIFO",
            QueueOrder::ShuffleAtOpen => "SHUFFLE_AT_OPEN",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "FIFO" => Some(QueueOrder::Fifo),
            "SHUFFLE_AT_OPEN" => Some(QueueOrder::ShuffleAtOpen),
            _ => None,
        }
    }
}

/// Upper bound of every numeric setting.
pub const MAX_SETTING: u64 = i32::MAX as u64;

/// Upper bound of `preQueueMinutes`: a WAITING token lives a day, so a longer pre-queue would
/// lose its first arrivals before the opening.
pub const MAX_PRE_QUEUE_MINUTES: u64 = 24 * 60;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSettings {
    pub max_active_users: u64,
    pub max_waiting_users: u64,
    pub admission_per_second: u64,
    pub active_ttl_seconds: u64,
    pub hold_ttl_seconds: u64,
    pub max_seats_per_user: u64,
    /// Public requests a user may make per second (bursts of as many), counted per schedule.
    pub user_requests_per_second: u64,
    /// How long before `bookingOpenAt` a [`QueueOrder::ShuffleAtOpen`] queue takes arrivals.
    pub pre_queue_minutes: u64,
    pub paused: bool,
    pub queue_order: QueueOrder,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            max_active_users: 1000,
            max_waiting_users: 100_000,
            admission_per_second: 200,
            active_ttl_seconds: 300,
            hold_ttl_seconds: 300,
            max_seats_per_user: 4,
            user_requests_per_second: 50,
            pre_queue_minutes: 30,
            paused: false,
            queue_order: QueueOrder::Fifo,
        }
    }
}

/// A schedule's booking window in ms since the epoch.
#[derive(Debug, Clone, Copy)]
pub struct BookingWindow {
    pub open_ms: i64,
    pub close_ms: i64,
}

impl QueueSettings {
    /// Every numeric setting with its name in the API and in the `cfg` hash.
    pub fn numeric_mut(&mut self) -> [(&'static str, &mut u64); 8] {
        [
            ("maxActiveUsers", &mut self.max_active_users),
            ("maxWaitingUsers", &mut self.max_waiting_users),
            ("admissionPerSecond", &mut self.admission_per_second),
            ("activeTtlSeconds", &mut self.active_ttl_seconds),
            ("holdTtlSeconds", &mut self.hold_ttl_seconds),
            ("maxSeatsPerUser", &mut self.max_seats_per_user),
            ("userRequestsPerSecond", &mut self.user_requests_per_second),
            ("preQueueMinutes", &mut self.pre_queue_minutes),
        ]
    }

    /// Field/value pairs as stored in the `cfg` hash.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        let mut copy = *self;
        let mut fields: Vec<_> = copy
            .numeric_mut()
            .into_iter()
            .map(|(name, v)| (name, v.to_string()))
            .collect();
        fields.push(("paused", if self.paused { "1" } else { "0" }.to_string()));
        fields.push(("queueOrder", self.queue_order.as_str().to_string()));
        fields
    }

    /// The settings a `cfg` hash holds, if it holds them all (a schedule stored before
    /// `userRequestsPerSecond`, `preQueueMinutes` or `queueOrder` existed has the default,
    /// as its scripts assume).
    pub fn from_fields(cfg: &HashMap<String, String>) -> Option<Self> {
        let mut settings = Self::default();
        for (name, slot) in settings.numeric_mut() {
            match cfg.get(name) {
                Some(value) => *slot = value.parse().ok()?,
                None if matches!(name, "userRequestsPerSecond" | "preQueueMinutes") => {}
                None => return None,
            }
        }
        settings.paused = cfg.get("paused")? == "1";
        if let Some(order) = cfg.get("queueOrder") {
            settings.queue_order = QueueOrder::parse(order)?;
        }
        Some(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_through_the_cfg_fields() {
        let s = QueueSettings {
            max_active_users: 7,
            paused: true,
            queue_order: QueueOrder::ShuffleAtOpen,
            pre_queue_minutes: 5,
            ..QueueSettings::default()
        };
        let map: HashMap<String, String> = s
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(QueueSettings::from_fields(&map), Some(s));
        let mut partial = map.clone();
        partial.remove("holdTtlSeconds");
        assert_eq!(QueueSettings::from_fields(&partial), None);
        let mut older = map.clone();
        older.remove("queueOrder");
        older.remove("preQueueMinutes");
        let defaults = QueueSettings::from_fields(&older).unwrap();
        assert_eq!(
            (defaults.queue_order, defaults.pre_queue_minutes),
            (QueueOrder::Fifo, 30)
        );
    }
}
