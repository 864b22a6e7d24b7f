//! Time formats of the API: ISO 8601 UTC with milliseconds.

use chrono::{DateTime, SecondsFormat, Utc};

/// `2026-12-24T19:00:00.000Z` for ms since the epoch.
pub fn iso_ms(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    #[test]
    fn instants_have_milliseconds_and_z() {
        assert_eq!(super::iso_ms(1_798_138_800_000), "2026-12-24T19:00:00.000Z");
    }
}
