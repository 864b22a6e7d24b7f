//! The outbox streams' consumer groups: every schedule's outbox gets one when the schedule is
//! registered, every wallet bucket's at start-up.

use redis::AsyncCommands;

use super::RedisConn;
use super::keys::{FLUSH_GROUP, WalletKeys};
use crate::model::WALLET_BUCKETS;

/// Creates the outbox's consumer group (and the stream) unless it exists.
pub async fn ensure_group(conn: &mut RedisConn, stream: &str) -> redis::RedisResult<()> {
    let created: redis::RedisResult<()> =
        conn.xgroup_create_mkstream(stream, FLUSH_GROUP, "0").await;
    match created {
        Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
        other => other,
    }
}

/// Creates the flusher's consumer group on every wallet bucket's outbox.
pub async fn prepare_wallet_outboxes(conn: &mut RedisConn) -> redis::RedisResult<()> {
    for bucket in 0..WALLET_BUCKETS {
        ensure_group(conn, &WalletKeys::bucket(bucket).outbox).await?;
    }
    Ok(())
}
