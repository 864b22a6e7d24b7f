//! Redis: one multiplexed, self-reconnecting connection shared by every request (commands from
//! concurrent requests are pipelined on it), the key layout, and the Lua scripts.

pub mod coalesce;
pub mod keys;
pub mod scripts;

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

pub use scripts::Scripts;

/// SPEC §8: every Redis call gives up after one second.
pub const TIMEOUT: Duration = Duration::from_secs(1);

pub type RedisConn = ConnectionManager;

pub async fn connect(url: &str) -> redis::RedisResult<RedisConn> {
    let client = redis::Client::open(url)?;
    let config = ConnectionManagerConfig::new()
        .set_response_timeout(Some(TIMEOUT))
        .set_connection_timeout(Some(TIMEOUT))
        .set_number_of_retries(2)
        .set_max_delay(Duration::from_millis(500));
    client.get_connection_manager_with_config(config).await
}
