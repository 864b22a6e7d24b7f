//! Smart batching for the hot path: concurrent calls for the same schedule (or, for debits,
//! the same wallet bucket: whatever names the script's slot) are run as one script call. Each schedule has [`LANES`] lanes per instance, calls spread over them in
//! turn, and each lane has at most one batch in Redis: what arrives while it is there goes
//! together in the lane's next one. So Redis always has the next batch queued while seatrush
//! handles the last one's replies. An idle instance sends batches of one, so no timer adds
//! latency; a busy one amortises the round trip and the script's fixed cost over up to
//! [`MAX_BATCH`] requests. A lane (task and queue) exists only while it has work, so requests
//! for unknown schedules leave nothing behind.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use redis::RedisResult;
use tokio::sync::{mpsc, oneshot};

/// Most requests one script call carries.
pub const MAX_BATCH: usize = 256;
/// Lanes per schedule: batches of one schedule in Redis at once, per instance.
pub const LANES: u64 = 2;

type Reply<O> = oneshot::Sender<RedisResult<O>>;
type Lane<I, O> = mpsc::UnboundedSender<(I, Reply<O>)>;
/// Runs one batch for a schedule; returns one output per input, in order.
pub type BatchFn<I, O> = Arc<
    dyn Fn(u64, Vec<I>) -> Pin<Box<dyn Future<Output = RedisResult<Vec<O>>> + Send>> + Send + Sync,
>;

/// A lane: (schedule, lane number).
type LaneKey = (u64, u64);

pub struct Coalescer<I, O> {
    lanes: Arc<Mutex<HashMap<LaneKey, Lane<I, O>>>>,
    run: BatchFn<I, O>,
    /// Calls so far, to spread them over the lanes in turn.
    calls: std::sync::atomic::AtomicU64,
}

impl<I: Send + 'static, O: Send + 'static> Coalescer<I, O> {
    pub fn new(run: BatchFn<I, O>) -> Self {
        Self {
            lanes: Arc::default(),
            run,
            calls: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Runs `item` for `schedule` in the next batch and returns its output.
    pub async fn call(&self, schedule: u64, item: I) -> RedisResult<O> {
        let (tx, rx) = oneshot::channel();
        let lane_key = (
            schedule,
            self.calls
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                % LANES,
        );
        {
            // Sending under the lock pairs with the lane's exit check below: an item is
            // either seen by the running lane or starts a new one, never lost between.
            let mut lanes = self.lanes.lock().expect("coalescer lock");
            let lane = lanes
                .entry(lane_key)
                .or_insert_with(|| self.spawn_lane(lane_key));
            if let Err(mpsc::error::SendError(job)) = lane.send((item, tx)) {
                // The lane's task is gone (it panicked): replace it.
                let fresh = self.spawn_lane(lane_key);
                let _ = fresh.send(job);
                *lane = fresh;
            }
        }
        rx.await.unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "batch task ended without a reply",
            )))
        })
    }

    fn spawn_lane(&self, lane_key: LaneKey) -> Lane<I, O> {
        let schedule = lane_key.0;
        let (tx, mut rx) = mpsc::unbounded_channel::<(I, Reply<O>)>();
        let lanes = self.lanes.clone();
        let run = self.run.clone();
        tokio::spawn(async move {
            let mut items = Vec::with_capacity(MAX_BATCH);
            let mut replies = Vec::with_capacity(MAX_BATCH);
            loop {
                while items.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok((item, reply)) => {
                            items.push(item);
                            replies.push(reply);
                        }
                        Err(_) => break,
                    }
                }
                if items.is_empty() {
                    let mut map = lanes.lock().expect("coalescer lock");
                    if rx.is_empty() {
                        map.remove(&lane_key);
                        return;
                    }
                    continue;
                }
                let outputs = run(schedule, std::mem::take(&mut items)).await;
                deliver(outputs, &mut replies);
            }
        });
        tx
    }
}

/// Hands each caller its output, or the batch's error to all of them.
fn deliver<O>(outputs: RedisResult<Vec<O>>, replies: &mut Vec<Reply<O>>) {
    match outputs {
        Ok(outputs) if outputs.len() == replies.len() => {
            for (reply, output) in replies.drain(..).zip(outputs) {
                let _ = reply.send(Ok(output));
            }
        }
        Ok(outputs) => {
            let message = format!("batch of {} got {} replies", replies.len(), outputs.len());
            for reply in replies.drain(..) {
                let err = (
                    redis::ErrorKind::UnexpectedReturnType,
                    "bad batch reply",
                    message.clone(),
                );
                let _ = reply.send(Err(redis::RedisError::from(err)));
            }
        }
        Err(e) => {
            for reply in replies.drain(..) {
                let _ = reply.send(Err(e.clone()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_calls_share_batches_and_each_gets_its_own_output() {
        let batches = Arc::new(AtomicUsize::new(0));
        let counted = batches.clone();
        let run: BatchFn<u64, u64> = Arc::new(move |schedule, items: Vec<u64>| {
            counted.fetch_add(1, Ordering::SeqCst);
            Box::pin(async move {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                Ok(items.into_iter().map(|i| i * 10 + schedule).collect())
            })
        });
        let coalescer = Arc::new(Coalescer::new(run));
        let calls: Vec<_> = (0..500u64)
            .map(|i| {
                let c = coalescer.clone();
                tokio::spawn(async move { (i, c.call(i % 2 + 1, i).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (i, out) = call.await.unwrap();
            assert_eq!(out, i * 10 + i % 2 + 1);
        }
        assert!(batches.load(Ordering::SeqCst) < 500, "calls were coalesced");
        // Idle lanes close themselves.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !coalescer.lanes.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "lanes stayed open");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}
