//! Per-schedule queue settings (SPEC §3 admin table): their defaults, validation of updates,
//! and their copy in the schedule's Redis `cfg` hash that the scripts read.

use std::collections::HashMap;

use serde::Serialize;

use crate::error::ApiError;
use crate::http::request::JsonObject;
use crate::redis::RedisConn;
use crate::redis::keys::{SCHEDULES, ScheduleKeys};

/// Upper bound of every numeric setting.
const MAX_SETTING: u64 = i32::MAX as u64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueSettings {
    pub max_active_users: u64,
    pub max_waiting_users: u64,
    pub admission_per_second: u64,
    pub active_ttl_seconds: u64,
    pub hold_ttl_seconds: u64,
    pub max_seats_per_user: u64,
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
    fn numeric_mut(&mut self) -> [(&'static str, &mut u64); 6] {
        [
            ("maxActiveUsers", &mut self.max_active_users),
            ("maxWaitingUsers", &mut self.max_waiting_users),
            ("admissionPerSecond", &mut self.admission_per_second),
            ("activeTtlSeconds", &mut self.active_ttl_seconds),
            ("holdTtlSeconds", &mut self.hold_ttl_seconds),
            ("maxSeatsPerUser", &mut self.max_seats_per_user),
        ]
    }

    /// Applies the fields present in an update body; fails on the first bad one.
    pub fn apply_update(&mut self, body: &JsonObject) -> Result<(), ApiError> {
        let mut any = false;
        for (name, slot) in self.numeric_mut() {
            if let Some(v) = body.opt_positive(name, MAX_SETTING)? {
                *slot = v;
                any = true;
            }
        }
        if let Some(paused) = body.opt_bool("paused")? {
            self.paused = paused;
            any = true;
        }
        if !any {
            return Err(ApiError::invalid("body", "no queue setting to change"));
        }
        Ok(())
    }

    /// Field/value pairs as stored in the `cfg` hash.
    fn redis_fields(&self) -> Vec<(&'static str, String)> {
        let mut copy = *self;
        let mut fields: Vec<_> = copy
            .numeric_mut()
            .into_iter()
            .map(|(name, v)| (name, v.to_string()))
            .collect();
        fields.push(("paused", if self.paused { "1" } else { "0" }.to_string()));
        fields
    }

    pub fn from_redis(cfg: &HashMap<String, String>) -> Option<Self> {
        let mut settings = Self::default();
        for (name, slot) in settings.numeric_mut() {
            *slot = cfg.get(name)?.parse().ok()?;
        }
        settings.paused = cfg.get("paused")? == "1";
        Some(settings)
    }

    /// Writes the settings into the schedule's `cfg` hash (applied from the next tick).
    pub async fn store(&self, conn: &mut RedisConn, schedule_id: u64) -> redis::RedisResult<()> {
        let k = ScheduleKeys::new(schedule_id);
        redis::cmd("HSET")
            .arg(&k.cfg)
            .arg(self.redis_fields())
            .query_async(conn)
            .await
    }

    /// Makes a schedule known to Redis: settings, booking window, the registry the background
    /// loops read, and the outbox's consumer group.
    pub async fn register(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        window: BookingWindow,
    ) -> redis::RedisResult<()> {
        let k = ScheduleKeys::new(schedule_id);
        redis::pipe()
            .hset_multiple(
                &k.cfg,
                &[
                    ("bookingOpenAt", window.open_ms),
                    ("bookingCloseAt", window.close_ms),
                ],
            )
            .ignore()
            .sadd(SCHEDULES, schedule_id)
            .ignore()
            .query_async::<()>(conn)
            .await?;
        self.store(conn, schedule_id).await?;
        crate::outbox::ensure_group(conn, &k.outbox).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(json: &str) -> JsonObject {
        JsonObject::parse(json.as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn updates_change_only_the_fields_given() {
        let mut s = QueueSettings::default();
        s.apply_update(&body(r#"{"maxActiveUsers": 5, "paused": true}"#))
            .unwrap();
        assert_eq!(s.max_active_users, 5);
        assert!(s.paused);
        assert_eq!(s.hold_ttl_seconds, 300);
    }

    #[test]
    fn bad_or_empty_updates_are_refused() {
        for (json, field) in [
            (r#"{"holdTtlSeconds": 0}"#, "holdTtlSeconds"),
            (r#"{"admissionPerSecond": 1.5}"#, "admissionPerSecond"),
            (r#"{"paused": "yes"}"#, "paused"),
            (r#"{"unknown": 1}"#, "body"),
        ] {
            match QueueSettings::default().apply_update(&body(json)) {
                Err(ApiError::InvalidRequest { field: f, .. }) => assert_eq!(f, field, "{json}"),
                other => panic!("{json}: {other:?}"),
            }
        }
    }

    #[test]
    fn settings_round_trip_through_the_redis_fields() {
        let s = QueueSettings {
            max_active_users: 7,
            paused: true,
            ..QueueSettings::default()
        };
        let map: HashMap<String, String> = s
            .redis_fields()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        assert_eq!(QueueSettings::from_redis(&map), Some(s));
    }
}
