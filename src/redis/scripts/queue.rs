//! The waiting queue's scripts: issuance, status and the admission tick.

use redis::{RedisResult, ScriptInvocation};

use super::{BatchKeys, Observe, PER_TICK, Reply, Scripts, bad_reply, refusal};
use crate::model::{
    Idempotency, QueueSettings, QueueToken, Refusal, Shuffle, TokenState, TokenStatus,
};
use crate::redis::RedisConn;
use crate::redis::keys::ScheduleKeys;

/// One request of an `issue_tokens` batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    pub user_id: u64,
    pub idempotency: Option<Idempotency>,
}

#[derive(Debug)]
pub enum IssueOutcome {
    /// The token: the `sequence`-th arrival of the schedule, new or (`replayed`) the one a
    /// first request with the same Idempotency-Key was issued, as it was then.
    Issued {
        sequence: u64,
        state: TokenState,
        replayed: bool,
    },
    Refused(Refusal),
}

#[derive(Debug)]
pub enum StatusOutcome {
    Live {
        user_id: u64,
        state: TokenState,
    },
    Invalid,
    /// A live token whose user has spent their request rate.
    RateLimited,
}

/// Whether a Queue-Token check counts against its user's request rate: every public request
/// does, except asking for the token's own status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counted {
    Yes,
    No,
}

/// What a round of the event streams asks of one streamed token (`lua/token_events.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Its state, if it is no longer WAITING.
    Check(u64),
    /// Its state, and its place while it is WAITING.
    Rank(u64),
}

/// A streamed token's state as a round finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Still WAITING, at this place (when it was asked for).
    Waiting(Option<u64>),
    Active {
        expires_at_ms: i64,
        activated_at_ms: i64,
    },
    Ended(TokenStatus),
    /// No record: it ended long ago.
    Gone,
}

/// The order of a schedule's queue as a round of its event streams finds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum QueueOrdering {
    /// Arrival order: a token's place is its sequence.
    #[default]
    Arrival,
    /// A pre-queue not shuffled yet: its tokens have no place.
    Pending,
    /// The pre-queue was placed by this shuffle; everyone else's place is their sequence.
    Shuffled(Shuffle),
}

/// What one round of the event streams learns of a schedule.
#[derive(Debug, Clone, Default)]
pub struct EventRound {
    /// The place (see `lua/token_events.lua`) at the head of the queue (`None`: nobody
    /// waits).
    pub head: Option<u64>,
    pub waiting: u64,
    /// Admissions a second to estimate waits with.
    pub rate: f64,
    pub admission_per_second: u64,
    pub ordering: QueueOrdering,
    /// Per probed token (by sequence), in probe order.
    pub tokens: Vec<(u64, Observed)>,
}

/// Where a schedule whose sale may be over stands (`lua/retire_schedule.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retirement {
    /// Before its close, or something is live, unflushed or waiting to be removed.
    InUse,
    /// Nothing can happen to it any more; it may be retired from this time (ms) on.
    IdleUntil(i64),
    Retired,
}

#[derive(Debug, Default, Clone)]
pub struct AdmitOutcome {
    pub admitted: u64,
    pub expired: u64,
    pub waiting: u64,
    pub active: u64,
    /// Token records dropped (ended longer ago than the keep period).
    pub dropped: u64,
    /// The opening's shuffle of the pre-queue is due (nobody is admitted before it ran).
    pub shuffle_due: bool,
}

/// Where the opening's shuffle of a pre-queue stands (`lua/shuffle_begin.lua`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShuffleStart {
    /// Nothing to shuffle now.
    Nothing,
    /// To be applied from sequence `cursor` on; `drawn` if this call stored the seed.
    Run {
        shuffle: Shuffle,
        cursor: u64,
        drawn: bool,
    },
}

/// What one chunk of a shuffle did (`lua/shuffle_apply.lua`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShuffleStep {
    /// The next chunk starts at this sequence.
    At(u64),
    /// The queue is shuffled (at this time, ms).
    Done(i64),
    /// Another seed is in force, or the shuffle is done.
    Stale,
}

impl Scripts {
    /// Issues a token to each request's user of a batch, all for one schedule, in order.
    pub async fn issue_tokens(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        batch: &[IssueRequest],
    ) -> RedisResult<Vec<IssueOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.issue_tokens.key(&k.cfg);
        call.key(&k.token_sequence);
        queue_keys(&mut call, &k).key(&k.rates[0]).key(&k.rates[1]);
        let mut keys = BatchKeys::after(&k, 11);
        for request in batch {
            call.arg(request.user_id);
            keys.add(&mut call, request.user_id, request.idempotency.as_ref());
        }
        let replies: Vec<String> = call.invoke_observed("issue_tokens", conn).await?;
        replies.iter().map(|r| issue_outcome(r)).collect()
    }

    /// The live state of each token of a batch, all of one schedule; a check that is
    /// [`Counted`] counts against its user's request rate.
    pub async fn token_status(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        checks: &[(u64, Counted)],
    ) -> RedisResult<Vec<StatusOutcome>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.token_status.key(&k.cfg);
        call.key(&k.waiting)
            .key(&k.tokens)
            .key(&k.rates[0])
            .key(&k.rates[1]);
        for (sequence, counted) in checks {
            call.arg(sequence).arg(u8::from(*counted == Counted::Yes));
        }
        let replies: Vec<String> = call.invoke_observed("token_status", conn).await?;
        replies.iter().map(|r| status_outcome(r)).collect()
    }

    /// The token's user leaves the queue: the token ends as LEFT and the user's RESERVED
    /// holds of the schedule are cancelled. How many holds were, or the refusal.
    pub async fn leave_queue(
        &self,
        conn: &mut RedisConn,
        token: QueueToken,
    ) -> RedisResult<Result<u64, Refusal>> {
        let k = ScheduleKeys::new(token.schedule_id);
        let mut call = self.leave_queue.key(&k.cfg);
        queue_keys(&mut call, &k)
            .key(&k.rates[0])
            .key(&k.rates[1])
            .key(&k.res)
            .key(&k.holds)
            .key(&k.avail)
            .key(&k.userseats)
            .key(&k.userholds)
            .key(&k.rended)
            .key(&k.seat)
            .arg(token.sequence)
            .arg(token.user_id);
        let reply = Reply::new(call.invoke_observed("leave_queue", conn).await?)?;
        if reply.code()? != "OK" {
            return Ok(Err(reply.refusal()?));
        }
        reply.uint(1).map(Ok)
    }

    /// One round of a schedule's event streams: the head of the queue, and what became of
    /// each probed token. Reads only.
    pub async fn token_events(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        probes: &[Probe],
    ) -> RedisResult<EventRound> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.token_events.key(&k.cfg);
        call.key(&k.waiting).key(&k.tokens);
        for probe in probes {
            match probe {
                Probe::Check(seq) => call.arg(format!("c{seq}")),
                Probe::Rank(seq) => call.arg(format!("r{seq}")),
            };
        }
        let reply: Vec<String> = call.invoke_observed("token_events", conn).await?;
        event_round(&reply)
    }

    /// One admission tick for a schedule; drops records ended more than `keep` ago.
    pub async fn admit_batch(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        keep: std::time::Duration,
    ) -> RedisResult<AdmitOutcome> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.admit_batch.key(&k.cfg);
        let (admitted, expired, waiting, active, dropped, due): (u64, u64, u64, u64, u64, u8) =
            queue_keys(&mut call, &k)
                .key(&k.rates[0])
                .key(&k.rates[1])
                .arg(PER_TICK)
                .arg(keep.as_millis() as u64)
                .invoke_observed("admit_batch", conn)
                .await?;
        Ok(AdmitOutcome {
            admitted,
            expired,
            waiting,
            active,
            dropped,
            shuffle_due: due == 1,
        })
    }

    /// Starts the opening's shuffle of the schedule's pre-queue with `seed` if none is
    /// stored, or finds the stored one and where it stands.
    pub async fn shuffle_begin(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        seed: &[u8; 32],
    ) -> RedisResult<ShuffleStart> {
        let k = ScheduleKeys::new(schedule_id);
        let reply: Vec<String> = self
            .shuffle_begin
            .key(&k.cfg)
            .arg(Shuffle::hex_of(seed))
            .invoke_observed("shuffle_begin", conn)
            .await?;
        match &reply[..] {
            [none] if none == "NONE" => Ok(ShuffleStart::Nothing),
            [run, seed, first, last, cursor, drawn] if run == "RUN" => {
                let number = |s: &str| s.parse::<u64>().map_err(|_| bad_reply(s));
                Ok(ShuffleStart::Run {
                    shuffle: Shuffle {
                        seed: Shuffle::parse_seed(seed).ok_or_else(|| bad_reply(seed))?,
                        first: number(first)?,
                        last: number(last)?,
                    },
                    cursor: number(cursor)?,
                    drawn: drawn == "1",
                })
            }
            other => Err(bad_reply(&format!("{other:?}"))),
        }
    }

    /// Gives the pre-queue tokens of sequences `cursor`, `cursor + 1`, … the `places`.
    pub async fn shuffle_apply(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        shuffle: &Shuffle,
        cursor: u64,
        places: &[u64],
    ) -> RedisResult<ShuffleStep> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.shuffle_apply.key(&k.cfg);
        call.key(&k.waiting)
            .key(&k.outbox)
            .arg(shuffle.seed_hex())
            .arg(cursor)
            .arg(places);
        let reply: Vec<String> = call.invoke_observed("shuffle_apply", conn).await?;
        let number = |s: &str| s.parse::<i64>().map_err(|_| bad_reply(s));
        match &reply[..] {
            [at, cursor] if at == "AT" => Ok(ShuffleStep::At(number(cursor)? as u64)),
            [done, when] if done == "DONE" => Ok(ShuffleStep::Done(number(when)?)),
            [stale] if stale == "STALE" => Ok(ShuffleStep::Stale),
            other => Err(bad_reply(&format!("{other:?}"))),
        }
    }

    /// Writes the schedule's settings into its `cfg` hash; with `order_changes`, only while
    /// nobody holds a live token. `None`: no such schedule; `Some(false)`: locked.
    pub async fn store_settings(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
        settings: &QueueSettings,
        order_changes: bool,
    ) -> RedisResult<Option<bool>> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.store_settings.key(&k.cfg);
        call.key(&k.waiting)
            .key(&k.active)
            .arg(u8::from(order_changes));
        for (name, value) in settings.fields() {
            call.arg(name).arg(value);
        }
        let stored: i64 = call.invoke_observed("store_settings", conn).await?;
        Ok(match stored {
            -1 => None,
            n => Some(n == 1),
        })
    }
}

impl Scripts {
    /// Retires the schedule if its sale is over and nothing in Redis still needs its
    /// records, or says from when it may be (see `lua/retire_schedule.lua`).
    pub async fn retire_schedule(
        &self,
        conn: &mut RedisConn,
        schedule_id: u64,
    ) -> RedisResult<Retirement> {
        let k = ScheduleKeys::new(schedule_id);
        let mut call = self.retire_schedule.key(&k.cfg);
        call.key(&k.waiting)
            .key(&k.active)
            .key(&k.holds)
            .key(&k.sagas)
            .key(&k.ended)
            .key(&k.rended)
            .key(&k.outbox);
        for gone in [
            &k.tokens,
            &k.users,
            &k.seat,
            &k.res,
            &k.userseats,
            &k.userholds,
            &k.rates[0],
            &k.rates[1],
        ] {
            call.key(gone);
        }
        let answer: i64 = call.invoke_observed("retire_schedule", conn).await?;
        Ok(match answer {
            0 => Retirement::InUse,
            1 => Retirement::Retired,
            from_ms => Retirement::IdleUntil(from_ms),
        })
    }
}

/// The queue's keys that issuance and admission change, in the order of their scripts'
/// KEYS after the fixed first ones.
fn queue_keys<'a, 'b>(
    call: &'b mut ScriptInvocation<'a>,
    k: &ScheduleKeys,
) -> &'b mut ScriptInvocation<'a> {
    call.key(&k.waiting)
        .key(&k.active)
        .key(&k.tokens)
        .key(&k.users)
        .key(&k.stats)
        .key(&k.ended)
        .key(&k.outbox)
}

/// Decodes one item of `issue_tokens`' reply:
/// `[REPLAY|]OK|status|position|waitMs|sequence|issuedAt|activatedAt|expiresAt[|opensAt]` or
/// a refusal code (a reply stored for an Idempotency-Key before `opensAt` existed has none).
fn issue_outcome(reply: &str) -> RedisResult<IssueOutcome> {
    let (text, replayed) = match reply.strip_prefix("REPLAY|") {
        Some(first) => (first, true),
        None => (reply, false),
    };
    let mut fields: Vec<&str> = text.split('|').collect();
    if fields.len() == 8 {
        fields.push("");
    }
    let [
        "OK",
        status,
        position,
        wait,
        sequence,
        _issued,
        _activated,
        expires,
        opens,
    ] = fields[..]
    else {
        return match fields[..] {
            [code] => Ok(IssueOutcome::Refused(refusal(code)?)),
            _ => Err(bad_reply(text)),
        };
    };
    Ok(IssueOutcome::Issued {
        replayed,
        sequence: Fields(text).int(sequence)? as u64,
        state: Fields(text).state(status, position, wait, expires, opens)?,
    })
}

/// Decodes one item of `token_status`' reply:
/// `OK|userId|status|position|waitMs|issuedAt|activatedAt|expiresAt|opensAt` or a refusal.
fn status_outcome(text: &str) -> RedisResult<StatusOutcome> {
    let fields: Vec<&str> = text.split('|').collect();
    let [
        "OK",
        user,
        status,
        position,
        wait,
        _issued,
        _activated,
        expires,
        opens,
    ] = fields[..]
    else {
        return match text {
            "RATE_LIMITED" => Ok(StatusOutcome::RateLimited),
            "QUEUE_TOKEN_INVALID" => Ok(StatusOutcome::Invalid),
            _ => Err(bad_reply(text)),
        };
    };
    Ok(StatusOutcome::Live {
        user_id: Fields(text).int(user)? as u64,
        state: Fields(text).state(status, position, wait, expires, opens)?,
    })
}

/// The fields of one reply string, decoded with the whole reply named in errors.
struct Fields<'a>(&'a str);

impl Fields<'_> {
    fn int(&self, s: &str) -> RedisResult<i64> {
        s.parse::<i64>().map_err(|_| bad_reply(self.0))
    }

    fn opt(&self, s: &str) -> RedisResult<Option<i64>> {
        if s.is_empty() {
            Ok(None)
        } else {
            self.int(s).map(Some)
        }
    }

    /// A token's state from its status, position (empty in a pre-queue), wait, expiry and
    /// opening (set in a pre-queue).
    fn state(
        &self,
        status: &str,
        position: &str,
        wait: &str,
        expires: &str,
        opens: &str,
    ) -> RedisResult<TokenState> {
        let opens_at_ms = self.opt(opens)?;
        Ok(TokenState {
            status: TokenStatus::parse(status).map_err(|_| bad_reply(self.0))?,
            position: match opens_at_ms {
                Some(_) => 0,
                None => self.int(position)? as u64,
            },
            wait_ms: self.int(wait)? as u64,
            expires_at_ms: self.opt(expires)?,
            opens_at_ms,
        })
    }
}

/// Decodes `token_events`' reply.
fn event_round(reply: &[String]) -> RedisResult<EventRound> {
    let [head, waiting, rate, configured, order, tokens @ ..] = reply else {
        return Err(bad_reply(&format!("{reply:?}")));
    };
    let int = |s: &str| s.parse::<i64>().map_err(|_| bad_reply(s));
    let head = int(head)?;
    let ordering = match order.as_str() {
        "" => QueueOrdering::Arrival,
        "PENDING" => QueueOrdering::Pending,
        shuffled => {
            let mut parts = shuffled.split('|');
            let (Some(seed), Some(first), Some(last), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad_reply(shuffled));
            };
            QueueOrdering::Shuffled(Shuffle {
                seed: Shuffle::parse_seed(seed).ok_or_else(|| bad_reply(seed))?,
                first: int(first)? as u64,
                last: int(last)? as u64,
            })
        }
    };
    let tokens = tokens
        .iter()
        .map(|item| {
            let mut fields = item.split('|');
            let (Some(seq), Some(state), Some(value)) =
                (fields.next(), fields.next(), fields.next())
            else {
                return Err(bad_reply(item));
            };
            let observed = match state {
                "WAITING" if value.is_empty() => Observed::Waiting(None),
                "WAITING" => Observed::Waiting(Some(int(value)? as u64)),
                "ACTIVE" => Observed::Active {
                    expires_at_ms: int(value)?,
                    activated_at_ms: int(fields.next().unwrap_or(""))?,
                },
                "GONE" => Observed::Gone,
                ended => Observed::Ended(TokenStatus::parse(ended).map_err(|_| bad_reply(item))?),
            };
            Ok((int(seq)? as u64, observed))
        })
        .collect::<RedisResult<_>>()?;
    Ok(EventRound {
        head: (head > 0).then_some(head as u64),
        waiting: int(waiting)? as u64,
        rate: rate.parse().map_err(|_| bad_reply(rate))?,
        admission_per_second: int(configured)? as u64,
        ordering,
        tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_round_decodes_every_state() {
        let reply: Vec<String> = [
            "7",
            "3",
            "12.5",
            "200",
            "",
            "7|WAITING|1",
            "8|WAITING|",
            "5|ACTIVE|2000|1000",
            "4|USED|",
            "3|LEFT|",
            "2|GONE|",
        ]
        .map(String::from)
        .to_vec();
        let round = event_round(&reply).unwrap();
        assert_eq!((round.head, round.waiting, round.rate), (Some(7), 3, 12.5));
        assert_eq!(
            round.tokens,
            [
                (7, Observed::Waiting(Some(1))),
                (8, Observed::Waiting(None)),
                (
                    5,
                    Observed::Active {
                        expires_at_ms: 2000,
                        activated_at_ms: 1000
                    }
                ),
                (4, Observed::Ended(TokenStatus::Used)),
                (3, Observed::Ended(TokenStatus::Left)),
                (2, Observed::Gone),
            ]
        );
        let empty = event_round(&["0", "0", "200", "200", "PENDING"].map(String::from)).unwrap();
        assert_eq!((empty.head, empty.ordering), (None, QueueOrdering::Pending));
        let seed = "ab".repeat(32);
        let shuffled = format!("{seed}|3|9");
        let round = event_round(&["4", "6", "200", "200", &shuffled].map(String::from)).unwrap();
        assert_eq!(
            round.ordering,
            QueueOrdering::Shuffled(Shuffle {
                seed: [0xab; 32],
                first: 3,
                last: 9
            })
        );
        assert!(event_round(&["1", "2|WAITING|"].map(String::from)).is_err());
        assert!(event_round(&["1", "0", "1", "1", "x|1"].map(String::from)).is_err());
    }
}
