//! A sale whose queue opens with a shuffle (`queueOrder` `SHUFFLE_AT_OPEN`, booking opening
//! after the users arrive): every user who joins before the opening waits in the pre-queue,
//! and at the opening seatrush gives the pre-queue its random order in short script calls.
//! [`watch`] measures that opening: when the shuffle was done (the admin queue view's
//! `shuffledAt`), and from Redis's slow log the longest command Redis ran from just before
//! the opening until then, the shuffle's own chunks and everything else.

use std::time::{Duration, Instant};

use hyper::Method;
use simd_json::prelude::*;

use super::client::Client;

/// Commands at least this long are logged while the opening is watched.
pub const THRESHOLD_US: u64 = 100;
/// The slow log keeps this many entries meanwhile.
const LOG_LENGTH: u64 = 100_000;

/// What the opening looked like.
#[derive(Debug, Default, serde::Serialize)]
pub struct Figures {
    /// Users whose token was issued in the pre-queue.
    pub pre_queued: u64,
    /// Seconds from the start of the run to the opening.
    pub opens_after_s: f64,
    /// Seconds from the opening to the end of the shuffle.
    pub shuffled_after_opening_s: f64,
    /// Commands of at least [`THRESHOLD_US`] from a second before the opening to the end of
    /// the shuffle, the longest of them (µs) and what it was.
    pub slow_commands: u64,
    pub longest_command_us: u64,
    pub longest_command: String,
    /// The shuffle's chunks (`shuffle_apply`: keys cfg, waiting, outbox) that reached the
    /// threshold, their median and the longest, µs (0: none). Durations are Redis's wall
    /// clock, so a chunk during which the machine ran something else on Redis's core counts
    /// that time too: the median is what a chunk costs.
    pub shuffle_chunks: u64,
    pub median_shuffle_chunk_us: u64,
    pub longest_shuffle_chunk_us: u64,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

/// Waits for the opening at `open_at_ms` (ms since the epoch) and its shuffle; Redis's slow
/// log is set to log commands of [`THRESHOLD_US`] from a second before the opening, and
/// put back as it was afterwards.
pub async fn watch(
    client: &Client,
    queue_path: &str,
    redis_url: &str,
    started: Instant,
    open_at_ms: i64,
) -> Result<Figures, Failure> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let opens_in = Duration::from_millis((open_at_ms - now_ms).max(0) as u64);
    let opens_after_s = (started.elapsed() + opens_in).as_secs_f64();
    tokio::time::sleep(opens_in.saturating_sub(Duration::from_secs(1))).await;
    let mut redis = seatrush::redis::connect(redis_url).await?;
    let before: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("slowlog-*")
        .query_async(&mut redis)
        .await?;
    let () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("slowlog-log-slower-than")
        .arg(THRESHOLD_US)
        .arg("slowlog-max-len")
        .arg(LOG_LENGTH)
        .query_async(&mut redis)
        .await?;
    let () = redis::cmd("SLOWLOG")
        .arg("RESET")
        .query_async(&mut redis)
        .await?;
    let shuffled_at = shuffled_at(client, queue_path).await;
    type Entry = (i64, i64, u64, Vec<Vec<u8>>, redis::Value, redis::Value);
    let entries: Vec<Entry> = redis::cmd("SLOWLOG")
        .arg("GET")
        .arg(LOG_LENGTH)
        .query_async(&mut redis)
        .await?;
    let mut restore = redis::cmd("CONFIG");
    restore.arg("SET").arg(&before);
    let () = restore.query_async(&mut redis).await?;
    let shuffled_at = shuffled_at.ok_or("the pre-queue was not shuffled within a minute")?;

    let text = |args: &[Vec<u8>]| {
        args.iter()
            .take(5)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let longest = entries.iter().max_by_key(|e| e.2);
    let is_chunk = |args: &[Vec<u8>]| {
        let key = |i: usize| args.get(i).map(|a| String::from_utf8_lossy(a).into_owned());
        key(2).as_deref() == Some("3")
            && key(3).is_some_and(|k| k.ends_with(":cfg"))
            && key(4).is_some_and(|k| k.ends_with(":waiting"))
            && key(5).is_some_and(|k| k.ends_with(":outbox"))
    };
    let mut chunks: Vec<u64> = entries
        .iter()
        .filter(|e| is_chunk(&e.3))
        .map(|e| e.2)
        .collect();
    chunks.sort_unstable();
    Ok(Figures {
        pre_queued: 0,
        opens_after_s,
        shuffled_after_opening_s: (shuffled_at - open_at_ms) as f64 / 1000.0,
        slow_commands: entries.len() as u64,
        longest_command_us: longest.map_or(0, |e| e.2),
        longest_command: longest.map_or_else(String::new, |e| text(&e.3)),
        shuffle_chunks: chunks.len() as u64,
        median_shuffle_chunk_us: chunks.get(chunks.len() / 2).copied().unwrap_or(0),
        longest_shuffle_chunk_us: chunks.last().copied().unwrap_or(0),
    })
}

/// `shuffledAt` from the admin queue view (ms since the epoch), once it is there (asked
/// every 20 ms for up to a minute after the opening).
async fn shuffled_at(client: &Client, queue_path: &str) -> Option<i64> {
    let admin = [("x-admin-key", "dev-admin-key")];
    let deadline = Instant::now() + Duration::from_secs(61);
    while Instant::now() < deadline {
        let (_, body, _) = client.call(Method::GET, queue_path, &admin, None).await;
        let at = body
            .get("data")
            .and_then(|d| d.get("shuffledAt"))
            .and_then(|v| v.as_str())
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok());
        if let Some(at) = at {
            return Some(at.timestamp_millis());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
