//! The queue's event streams (`GET /api/v1/queue/tokens/me/events`): a client keeps one
//! connection open and is told its place, its admission and the end of its token, instead
//! of polling.
//!
//! One watcher task per schedule with open streams on this instance serves all of them:
//! every [`ROUND`] it asks Redis, in one `token_events` call, what changed for the tokens
//! that need asking, and pushes each stream's events into that stream's channel. No client
//! costs a Redis call of its own:
//! - Admission is found from the head of the queue: WAITING tokens are in order of their
//!   place (the arrival sequence, or for a shuffled pre-queue the place its shuffle gave,
//!   which the watcher derives from the shuffle's seed as every instance can), so a streamed
//!   token placed below the head has been admitted or has ended. Each round checks the
//!   streamed tokens up to a window past the head (the head moves by at most the admissions
//!   of a tick, plus the tokens that ended in between), so `active` follows an admission by
//!   about one round.
//! - A token in a pre-queue not shuffled yet has no place: it is checked only for its end
//!   until a round finds the queue shuffled, then asked for its place (those placed nearest
//!   the head first).
//! - A WAITING token's place is asked for every [`POSITION_EVERY`] (spread over the rounds,
//!   at most [`MAX_PROBES`] tokens a round), and sent when it changed.
//! - An ACTIVE token is checked every [`ACTIVE_EVERY`] for its end (expired, used by a
//!   payment, left); a WAITING token that left is found when its place is next asked for.
//! - A stream that has sent nothing for [`KEEP_ALIVE`] gets a keep-alive.
//!
//! A user has at most [`PER_TOKEN`] streams of one token on an instance (one more closes the
//! oldest), and the instance at most its configured number in all (one more is refused).
//! Streams end when their token ends, when the client goes, and at shutdown.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::model::{Error, QueueToken, Shuffle, TokenEvent, TokenHolder, TokenStatus, wait_ms};
use crate::redis::RedisConn;
use crate::redis::scripts::{EventRound, Observed, Probe, QueueOrdering, Scripts};
use crate::shutdown::{self, Shutdown, ShutdownTrigger};

/// How often a watcher asks Redis what changed.
pub const ROUND: Duration = Duration::from_millis(100);
/// How often a WAITING token's place is asked for (and sent when it changed).
pub const POSITION_EVERY: Duration = Duration::from_secs(5);
/// How often an ACTIVE token is checked for its end.
const ACTIVE_EVERY: Duration = Duration::from_secs(1);
/// A stream that has sent nothing this long gets a keep-alive.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Most tokens asked about in one round (bounds the script's run).
const MAX_PROBES: usize = 4_000;
/// Streams of one token an instance keeps open; one more closes the oldest.
pub const PER_TOKEN: usize = 2;
/// Events a stream may have queued while its client reads slowly; past it, the stream is
/// closed (its client reconnects and starts again from the state then).
const QUEUED: usize = 8;
/// Rounds a watcher with no stream waits for new ones before it ends.
const IDLE_ROUNDS: u32 = 50;

/// The events of one stream, in order; ends when its token ends or the stream is closed.
pub struct Subscription {
    pub events: mpsc::Receiver<TokenEvent>,
    _open: OpenStream,
}

/// Counts a stream as open until it is dropped (the client went, or it ended).
struct OpenStream(Arc<AtomicUsize>);

impl Drop for OpenStream {
    fn drop(&mut self) {
        let open = self.0.fetch_sub(1, Ordering::AcqRel) - 1;
        metrics::gauge!("seatrush_event_streams_open").set(open as f64);
    }
}

/// A stream joining its schedule's watcher.
struct Joining {
    token: QueueToken,
    first: TokenEvent,
    events: mpsc::Sender<TokenEvent>,
}

/// The event streams of this instance.
pub struct TokenEvents {
    conn: RedisConn,
    scripts: Arc<Scripts>,
    limit: usize,
    open: Arc<AtomicUsize>,
    /// Each schedule's watcher, by the channel streams join it through.
    watchers: Mutex<HashMap<u64, mpsc::UnboundedSender<Joining>>>,
    closing: ShutdownTrigger,
    shutdown: Shutdown,
}

impl TokenEvents {
    /// At most `limit` streams at once.
    pub fn new(conn: RedisConn, scripts: Arc<Scripts>, limit: usize) -> Self {
        let (closing, shutdown) = shutdown::channel();
        Self {
            conn,
            scripts,
            limit,
            open: Arc::new(AtomicUsize::new(0)),
            watchers: Mutex::new(HashMap::new()),
            closing,
            shutdown,
        }
    }

    /// Ends every stream (each stops after the events already queued) and refuses new ones:
    /// at shutdown, so that in-flight responses can finish.
    pub fn close(&self) {
        self.closing.trigger();
    }

    /// Streams open now.
    pub fn open_streams(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    /// Opens a stream of the live token `holder` (checked by the caller), beginning with
    /// its state now. `503` once the instance holds its limit of streams.
    pub fn subscribe(self: &Arc<Self>, holder: &TokenHolder) -> Result<Subscription, Error> {
        if self.shutdown.is_triggered() {
            return Err(Error::Unavailable("shutting down".into()));
        }
        let opened = self.open.fetch_add(1, Ordering::AcqRel) + 1;
        let guard = OpenStream(self.open.clone());
        if opened > self.limit {
            return Err(Error::StreamsFull);
        }
        metrics::gauge!("seatrush_event_streams_open").set(opened as f64);
        let (events, receiver) = mpsc::channel(QUEUED);
        let joining = Joining {
            token: holder.token,
            first: TokenEvent::of(&holder.state),
            events,
        };
        let schedule_id = holder.token.schedule_id;
        let mut watchers = self.watchers.lock().expect("watchers lock");
        let joining = match watchers.get(&schedule_id) {
            Some(watcher) => match watcher.send(joining) {
                Ok(()) => None,
                Err(mpsc::error::SendError(joining)) => Some(joining),
            },
            None => Some(joining),
        };
        if let Some(joining) = joining {
            let (join, joins) = mpsc::unbounded_channel();
            let _ = join.send(joining);
            watchers.insert(schedule_id, join);
            let hub = self.clone();
            tokio::spawn(async move { hub.watch(schedule_id, joins).await });
        }
        Ok(Subscription {
            events: receiver,
            _open: guard,
        })
    }

    /// The watcher of one schedule: rounds until it has had no stream for a while, or
    /// shutdown (which drops every stream's channel, ending the streams).
    async fn watch(self: Arc<Self>, schedule_id: u64, mut joins: mpsc::UnboundedReceiver<Joining>) {
        let mut watch = Watch::default();
        let mut conn = self.conn.clone();
        let mut ticker = tokio::time::interval(ROUND);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut idle = 0;
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                _ = self.shutdown.triggered() => return,
            }
            while let Ok(joining) = joins.try_recv() {
                watch.join(joining);
            }
            if watch.is_empty() {
                idle += 1;
                if idle >= IDLE_ROUNDS {
                    let mut watchers = self.watchers.lock().expect("watchers lock");
                    match joins.try_recv() {
                        Ok(joining) => watch.join(joining),
                        Err(_) => {
                            watchers.remove(&schedule_id);
                            return;
                        }
                    }
                }
                continue;
            }
            idle = 0;
            let (now, now_ms) = (Instant::now(), chrono::Utc::now().timestamp_millis());
            let probes = watch.probes(now, now_ms);
            match self
                .scripts
                .token_events(&mut conn, schedule_id, &probes)
                .await
            {
                Ok(round) => {
                    watch.reorder(&round.ordering).await;
                    watch.apply(&round, now, now_ms)
                }
                Err(e) => tracing::debug!(schedule = schedule_id, error = %e, "event round failed"),
            }
            watch.keep_alive(now);
        }
    }
}

/// A streamed token: its streams, and what they were last told.
struct Watched {
    streams: Vec<Stream>,
    state: Seen,
}

struct Stream {
    events: mpsc::Sender<TokenEvent>,
    last_sent: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Seen {
    /// In a pre-queue not shuffled yet (last checked then).
    PreQueue {
        asked: Instant,
    },
    Waiting {
        position: u64,
        asked: Instant,
    },
    Active {
        until_ms: i64,
        checked: Instant,
    },
}

/// One schedule's streamed tokens, by sequence, and what the last round found.
#[derive(Default)]
struct Watch {
    tokens: BTreeMap<u64, Watched>,
    /// The place at the head of the queue (`None`: nobody waited, or not known yet).
    head: Option<u64>,
    /// How far past the head admission may reach within a round, in places.
    window: u64,
    /// The queue's order as the last round found it (`None`: no round yet).
    ordering: Option<QueueOrdering>,
    /// The places of a shuffled pre-queue: its first sequence, and the place of each
    /// sequence from it on.
    places: Option<(u64, Vec<u64>)>,
}

impl Watch {
    fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    fn join(&mut self, joining: Joining) {
        let now = Instant::now();
        let Joining {
            token,
            first,
            events,
        } = joining;
        let state = match first {
            TokenEvent::Active { until_ms } => Seen::Active {
                until_ms,
                checked: now,
            },
            TokenEvent::Position { position, .. } => Seen::Waiting {
                position,
                asked: now,
            },
            TokenEvent::PreQueue { .. } => Seen::PreQueue { asked: now },
            _ => return,
        };
        if events.try_send(first).is_err() {
            return;
        }
        count(first);
        let stream = Stream {
            events,
            last_sent: now,
        };
        let watched = self.tokens.entry(token.sequence).or_insert(Watched {
            streams: Vec::new(),
            state,
        });
        if watched.streams.len() >= PER_TOKEN {
            watched.streams.remove(0); // its channel closes: the oldest stream ends
        }
        watched.streams.push(stream);
    }

    /// The token's place in the queue (its sequence, unless a shuffle placed it).
    fn place(&self, seq: u64) -> u64 {
        match &self.places {
            Some((first, places)) => Shuffle::place_of(places, *first, seq),
            None => seq,
        }
    }

    /// What to ask Redis this round: the streamed tokens near (or past) the head, the
    /// ACTIVE ones due for a check (or past their time), then the WAITING ones whose place
    /// is due.
    fn probes(&mut self, now: Instant, now_ms: i64) -> Vec<Probe> {
        self.tokens.retain(|_, w| {
            w.streams.retain(|s| !s.events.is_closed());
            !w.streams.is_empty()
        });
        let reach = match self.head {
            Some(head) => head.saturating_add(self.window),
            None => u64::MAX,
        };
        let shuffled = !matches!(self.ordering, None | Some(QueueOrdering::Pending));
        let mut probes = Vec::new();
        let mut due = Vec::new();
        for (&seq, watched) in &self.tokens {
            match watched.state {
                // Placed by the shuffle since: its place is asked for at once.
                Seen::PreQueue { .. } if shuffled => {
                    if self.place(seq) <= reach {
                        probes.push(Probe::Rank(seq));
                    } else {
                        due.push(Probe::Rank(seq));
                    }
                }
                Seen::PreQueue { asked } => {
                    if now.duration_since(asked) >= POSITION_EVERY {
                        due.push(Probe::Check(seq));
                    }
                }
                Seen::Waiting { asked, .. } => {
                    let place_due = now.duration_since(asked) >= POSITION_EVERY;
                    if self.place(seq) <= reach {
                        probes.push(if place_due {
                            Probe::Rank(seq)
                        } else {
                            Probe::Check(seq)
                        });
                    } else if place_due {
                        due.push(Probe::Rank(seq));
                    }
                }
                Seen::Active { checked, until_ms } => {
                    if now.duration_since(checked) >= ACTIVE_EVERY || until_ms <= now_ms {
                        probes.push(Probe::Check(seq));
                    }
                }
            }
            if probes.len() >= MAX_PROBES {
                break;
            }
        }
        let room = MAX_PROBES.saturating_sub(probes.len());
        probes.extend(due.into_iter().take(room));
        probes
    }

    /// Takes the queue's order a round found. A new shuffle's places are derived on a
    /// blocking thread, not on the runtime's workers: a million of them take tens of
    /// milliseconds. Should that fail, the order is taken again in the next round.
    async fn reorder(&mut self, ordering: &QueueOrdering) {
        if self.ordering.as_ref() == Some(ordering) {
            return;
        }
        self.places = match ordering {
            QueueOrdering::Shuffled(shuffle) => {
                let (first, shuffle) = (shuffle.first, shuffle.clone());
                match tokio::task::spawn_blocking(move || shuffle.places()).await {
                    Ok(places) => Some((first, places)),
                    Err(_) => return,
                }
            }
            _ => None,
        };
        self.ordering = Some(ordering.clone());
    }

    /// Applies what a round found (its order taken by [`Self::reorder`]): events to the
    /// streams it concerns.
    fn apply(&mut self, round: &EventRound, now: Instant, now_ms: i64) {
        self.head = round.head;
        self.window = 3 * round.admission_per_second.div_ceil(10) + 256;
        for &(seq, observed) in &round.tokens {
            let Some(watched) = self.tokens.get_mut(&seq) else {
                continue;
            };
            let event = match (observed, watched.state) {
                (Observed::Waiting(Some(position)), Seen::Waiting { position: was, .. }) => {
                    watched.state = Seen::Waiting {
                        position,
                        asked: now,
                    };
                    (position != was).then_some(TokenEvent::Position {
                        position,
                        wait_ms: wait_ms(position, round.rate),
                    })
                }
                (Observed::Waiting(Some(position)), Seen::PreQueue { .. }) => {
                    watched.state = Seen::Waiting {
                        position,
                        asked: now,
                    };
                    Some(TokenEvent::Position {
                        position,
                        wait_ms: wait_ms(position, round.rate),
                    })
                }
                (Observed::Waiting(None), Seen::PreQueue { .. }) => {
                    watched.state = Seen::PreQueue { asked: now };
                    None
                }
                (Observed::Waiting(_), _) => None,
                (Observed::Active { expires_at_ms, .. }, _) if expires_at_ms <= now_ms => {
                    Some(TokenEvent::Ended(TokenStatus::Expired))
                }
                (
                    Observed::Active {
                        expires_at_ms,
                        activated_at_ms,
                    },
                    Seen::Waiting { .. } | Seen::PreQueue { .. },
                ) => {
                    watched.state = Seen::Active {
                        until_ms: expires_at_ms,
                        checked: now,
                    };
                    metrics::histogram!("seatrush_event_delay_seconds", "event" => "active")
                        .record((now_ms - activated_at_ms).max(0) as f64 / 1000.0);
                    Some(TokenEvent::Active {
                        until_ms: expires_at_ms,
                    })
                }
                (Observed::Active { expires_at_ms, .. }, Seen::Active { .. }) => {
                    watched.state = Seen::Active {
                        until_ms: expires_at_ms,
                        checked: now,
                    };
                    None
                }
                (Observed::Ended(status), _) => Some(TokenEvent::Ended(status)),
                (Observed::Gone, _) => Some(TokenEvent::Ended(TokenStatus::Expired)),
            };
            if let Some(event) = event {
                send(watched, event, now);
            }
            if matches!(event, Some(TokenEvent::Ended(_))) {
                self.tokens.remove(&seq); // its channels close after the event
            }
        }
    }

    /// A keep-alive to every stream that has sent nothing for [`KEEP_ALIVE`].
    fn keep_alive(&mut self, now: Instant) {
        for watched in self.tokens.values_mut() {
            if watched
                .streams
                .iter()
                .any(|s| now.duration_since(s.last_sent) >= KEEP_ALIVE)
            {
                send(watched, TokenEvent::KeepAlive, now);
            }
        }
    }
}

/// Sends `event` to the token's streams; a stream whose client has gone, or has fallen
/// [`QUEUED`] events behind, is closed.
fn send(watched: &mut Watched, event: TokenEvent, now: Instant) {
    watched.streams.retain_mut(|stream| {
        if event == TokenEvent::KeepAlive && now.duration_since(stream.last_sent) < KEEP_ALIVE {
            return true;
        }
        match stream.events.try_send(event) {
            Ok(()) => {
                stream.last_sent = now;
                count(event);
                true
            }
            Err(_) => false,
        }
    });
}

fn count(event: TokenEvent) {
    let name = match event {
        TokenEvent::Position { .. } | TokenEvent::PreQueue { .. } => "position",
        TokenEvent::Active { .. } => "active",
        TokenEvent::Ended(_) => "ended",
        TokenEvent::KeepAlive => "keep_alive",
    };
    metrics::counter!("seatrush_events_sent_total", "event" => name).increment(1);
}
