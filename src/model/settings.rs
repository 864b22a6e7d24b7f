//! Per-schedule queue settings: their defaults, and their fields as the schedule's `cfg`
//! hash holds them for the scripts.

use std::collections::HashMap;

use serde::Serialize;

/// Upper bound of every numeric setting.
pub const MAX_SETTING: u64 = i32::MAX as u64;

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
    pub paused: bool,
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
            paused: false,
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
    pub fn numeric_mut(&mut self) -> [(&'static str, &mut u64); 7] {
        [
            ("maxActiveUsers", &mut self.max_active_users),
            ("maxWaitingUsers", &mut self.max_waiting_users),
            ("admissionPerSecond", &mut self.admission_per_second),
            ("activeTtlSeconds", &mut self.active_ttl_seconds),
            ("holdTtlSeconds", &mut self.hold_ttl_seconds),
            ("maxSeatsPerUser", &mut self.max_seats_per_user),
            ("userRequestsPerSecond", &mut self.user_requests_per_second),
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
        fields
    }

    /// The settings a `cfg` hash holds, if it holds them all (a schedule stored before
    /// `userRequestsPerSecond` existed has the default, as its scripts assume).
    pub fn from_fields(cfg: &HashMap<String, String>) -> Option<Self> {
        let mut settings = Self::default();
        for (name, slot) in settings.numeric_mut() {
            match cfg.get(name) {
                Some(value) => *slot = value.parse().ok()?,
                None if name == "userRequestsPerSecond" => {}
                None => return None,
            }
        }
        settings.paused = cfg.get("paused")? == "1";
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
    }
}
