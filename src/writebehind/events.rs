//! Outbox events as the scripts write them, and how a batch of them is applied to MySQL with
//! idempotent statements: every event carries the full state of its row, so replaying one, or
//! applying an older one after a newer, changes nothing.

use std::collections::HashMap;

use mysql_async::prelude::*;
use redis::Value;

use super::{ledger, reservations, rows, tokens};
use crate::model::{
    BalanceUpdate, DecodeError, LedgerLine, ReservationId, ReservationRecord, Shuffle, TokenRecord,
};
use crate::mysql::{datetime_ms, timed};
use crate::redis::keys::OutboxOwner;

/// One decoded outbox entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The new state of each token a script run changed.
    Tokens(Vec<TokenRecord>),
    /// The new state of each reservation a script run changed.
    Reservations(Vec<ReservationRecord>),
    /// Ledger lines a wallet script wrote, and the balances after them.
    Ledger {
        lines: Vec<LedgerLine>,
        balances: Vec<BalanceUpdate>,
    },
    /// The opening's shuffle of the schedule's pre-queue, and when it ran (ms).
    Shuffle {
        schedule_id: u64,
        shuffle: Shuffle,
        at_ms: i64,
    },
}

fn field<'a>(map: &'a HashMap<String, Value>, name: &str) -> Result<&'a str, DecodeError> {
    match map.get(name) {
        Some(Value::BulkString(b)) => {
            std::str::from_utf8(b).map_err(|_| DecodeError(format!("{name} is not UTF-8")))
        }
        Some(Value::SimpleString(s)) => Ok(s),
        _ => Err(DecodeError(format!("{name} is missing"))),
    }
}

/// `tx:<id>` fields are ledger lines, `bal:<userId>` fields balances.
fn decode_ledger(map: &HashMap<String, Value>) -> Result<Event, DecodeError> {
    let mut lines = Vec::new();
    let mut balances = Vec::new();
    for (name, record) in pairs(map) {
        if let Some(id) = name.strip_prefix("tx:") {
            lines.push(LedgerLine::parse(id, record?)?);
        } else if let Some(user) = name.strip_prefix("bal:") {
            balances.push(BalanceUpdate::parse(user, record?)?);
        } else {
            return Err(DecodeError(format!("unknown ledger field {name:?}")));
        }
    }
    Ok(Event::Ledger { lines, balances })
}

/// Every field but `type`: an id and its record.
fn pairs(
    map: &HashMap<String, Value>,
) -> impl Iterator<Item = (&str, Result<&str, DecodeError>)> + '_ {
    map.keys()
        .filter(|name| *name != "type")
        .map(|name| (name.as_str(), field(map, name)))
}

/// The (id, record) rows of a tokens or reservations entry: packed in its `rows` field, id
/// and record on alternate lines (one field costs Redis far less to write than one per row),
/// or, in entries written before that, one field per id.
fn rows(map: &HashMap<String, Value>) -> Result<Vec<(&str, &str)>, DecodeError> {
    if !map.contains_key("rows") {
        return pairs(map).map(|(id, record)| Ok((id, record?))).collect();
    }
    if map.len() != 2 {
        return Err(DecodeError("a packed entry with other fields".to_string()));
    }
    let mut lines = field(map, "rows")?.split('\n');
    let mut rows = Vec::new();
    while let Some(id) = lines.next() {
        let record = lines
            .next()
            .ok_or_else(|| DecodeError(format!("row {id:?} without its record")))?;
        rows.push((id, record));
    }
    Ok(rows)
}

impl Event {
    /// Decodes an entry of `owner`'s outbox.
    pub fn decode(map: &HashMap<String, Value>, owner: OutboxOwner) -> Result<Self, DecodeError> {
        let kind = field(map, "type")?;
        if let OutboxOwner::WalletBucket(_) = owner {
            return match kind {
                "ledger" => decode_ledger(map),
                other => Err(DecodeError(format!(
                    "{other:?} event in {owner:?}'s outbox"
                ))),
            };
        }
        let OutboxOwner::Schedule(schedule_id) = owner else {
            return Err(DecodeError(format!("{kind} event in {owner:?}'s outbox")));
        };
        match kind {
            "tokens" => rows(map)?
                .into_iter()
                .map(|(token, record)| TokenRecord::parse(token, schedule_id, record))
                .collect::<Result<Vec<_>, _>>()
                .map(Event::Tokens),
            "reservations" => rows(map)?
                .into_iter()
                .map(|(id, record)| reservation(id, schedule_id, record))
                .collect::<Result<Vec<_>, _>>()
                .map(Event::Reservations),
            "shuffle" => {
                let number = |name: &str| {
                    let text = field(map, name)?;
                    text.parse::<i64>()
                        .map_err(|_| DecodeError(format!("shuffle {name} {text:?}")))
                };
                let seed = field(map, "seed")?;
                Ok(Event::Shuffle {
                    schedule_id,
                    shuffle: Shuffle {
                        seed: Shuffle::parse_seed(seed)
                            .ok_or_else(|| DecodeError(format!("shuffle seed {seed:?}")))?,
                        first: number("first")? as u64,
                        last: number("last")? as u64,
                    },
                    at_ms: number("at")?,
                })
            }
            other => Err(DecodeError(format!("unknown event type {other:?}"))),
        }
    }
}

/// A reservation of `schedule_id`'s outbox: its id must name that schedule.
fn reservation(id: &str, schedule_id: u64, record: &str) -> Result<ReservationRecord, DecodeError> {
    let id = id
        .parse()
        .map(ReservationId::from_u64)
        .map_err(|_| DecodeError(format!("reservation id {id:?}")))?;
    if id.schedule() != schedule_id {
        return Err(DecodeError(format!(
            "reservation {id} in schedule {schedule_id}'s outbox"
        )));
    }
    ReservationRecord::parse(id, record)
}

/// Applies events inside the caller's transaction.
pub async fn apply(
    tx: &mut mysql_async::Transaction<'_>,
    events: &[Event],
) -> Result<(), rows::WriteError> {
    let tokens = rows::latest(
        &tokens::TABLE,
        events.iter().flat_map(|e| match e {
            Event::Tokens(rows) => rows.as_slice(),
            _ => &[],
        }),
    )?;
    rows::write(tx, &tokens::TABLE, &tokens).await?;
    let reservations = rows::latest(
        &reservations::TABLE,
        events.iter().flat_map(|e| match e {
            Event::Reservations(rows) => rows.as_slice(),
            _ => &[],
        }),
    )?;
    reservations::write(tx, &reservations).await?;
    let lines = rows::latest(
        &ledger::LEDGER,
        events.iter().flat_map(|e| match e {
            Event::Ledger { lines, .. } => lines.as_slice(),
            _ => &[],
        }),
    )?;
    rows::write(tx, &ledger::LEDGER, &lines).await?;
    let balances = rows::latest(
        &ledger::BALANCES,
        events.iter().flat_map(|e| match e {
            Event::Ledger { balances, .. } => balances.as_slice(),
            _ => &[],
        }),
    )?;
    rows::write(tx, &ledger::BALANCES, &balances).await?;
    for event in events {
        if let Event::Shuffle {
            schedule_id,
            shuffle,
            at_ms,
        } = event
        {
            // A schedule shuffles once; a rebuild that lost the shuffle before it reached
            // MySQL shuffles again, and that one is the order in force. The same shuffle
            // applied again (reconciliation puts MySQL's back) keeps when it first ran:
            // shuffled_at is assigned before seed, so it compares with the stored seed.
            timed(tx.exec_drop(
                "INSERT INTO queue_shuffles (schedule_id, seed, first_seq, last_seq, shuffled_at)
                 VALUES (?, ?, ?, ?, ?)
                 ON DUPLICATE KEY UPDATE
                   shuffled_at = IF(seed = VALUES(seed), shuffled_at, VALUES(shuffled_at)),
                   seed = VALUES(seed), first_seq = VALUES(first_seq),
                   last_seq = VALUES(last_seq)",
                (
                    schedule_id,
                    shuffle.seed_hex(),
                    shuffle.first,
                    shuffle.last,
                    datetime_ms(*at_ms),
                ),
            ))
            .await
            .map_err(rows::WriteError::Mysql)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(pairs: &[(&str, &str)]) -> HashMap<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Value::BulkString(v.as_bytes().to_vec())))
            .collect()
    }

    #[test]
    fn token_events_decode_with_empty_times_as_none() {
        let map = entry(&[
            ("type", "tokens"),
            ("12", "9|WAITING|12|1700000000123|||"),
            (
                "13",
                "8|ACTIVE|13|1700000000124|1700000000124|1700000300124|",
            ),
        ]);
        let Event::Tokens(mut rows) = Event::decode(&map, OutboxOwner::Schedule(3)).unwrap() else {
            panic!("tokens decode as tokens");
        };
        rows.sort_by_key(|r| r.sequence);
        let row = &rows[0];
        assert_eq!((row.user_id, row.schedule_id, row.sequence), (9, 3, 12));
        assert_eq!(row.issued_at_ms, 1_700_000_000_123);
        assert_eq!(row.activated_at_ms, None);
        assert_eq!(rows[1].expires_at_ms, Some(1_700_000_300_124));
    }

    #[test]
    fn packed_rows_decode_as_the_fields_of_earlier_entries_do() {
        let fields = entry(&[
            ("type", "tokens"),
            ("12", "9|WAITING|12|1700000000123|||"),
            ("13", "8|WAITING|13|1700000000124|||"),
        ]);
        let packed = entry(&[
            ("type", "tokens"),
            (
                "rows",
                "12\n9|WAITING|12|1700000000123|||\n13\n8|WAITING|13|1700000000124|||",
            ),
        ]);
        let decoded = |map| match Event::decode(map, OutboxOwner::Schedule(3)) {
            Ok(Event::Tokens(mut rows)) => {
                rows.sort_by_key(|r| r.sequence);
                rows
            }
            other => panic!("tokens decode as tokens, not {other:?}"),
        };
        let rows = decoded(&packed);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows, decoded(&fields));
        let odd = entry(&[
            ("type", "tokens"),
            ("rows", "12\n9|WAITING|12|1700000000123|||\n13"),
        ]);
        assert!(
            Event::decode(&odd, OutboxOwner::Schedule(3)).is_err(),
            "a row without a record"
        );
        let mixed = entry(&[
            ("type", "tokens"),
            ("rows", "12\n9|WAITING|12|1700000000123|||"),
            ("13", "8|WAITING|13|1700000000124|||"),
        ]);
        assert!(
            Event::decode(&mixed, OutboxOwner::Schedule(3)).is_err(),
            "rows and fields both"
        );
    }

    #[test]
    fn reservation_events_decode_with_their_priced_seats() {
        let map = entry(&[
            ("type", "reservations"),
            (
                "51539607553",
                "9|RESERVED|100000|1700000000000|1700000300000|101:50000,102:50000||",
            ),
        ]);
        let Event::Reservations(rows) = Event::decode(&map, OutboxOwner::Schedule(12)).unwrap()
        else {
            panic!("reservations decode as reservations");
        };
        assert_eq!(rows[0].id, ReservationId::new(12, 1));
        assert_eq!(
            (rows[0].user_id, rows[0].schedule_id, rows[0].total_amount),
            (9, 12, 100_000)
        );
        assert_eq!(rows[0].seats, vec![(101, 50_000), (102, 50_000)]);
        let bad = entry(&[("type", "reservations"), ("1", "9|RESERVED|1|2|3|101||")]);
        assert!(
            Event::decode(&bad, OutboxOwner::Schedule(12)).is_err(),
            "a seat without a price is refused"
        );
    }

    #[test]
    fn unknown_or_broken_events_are_refused() {
        assert!(Event::decode(&entry(&[("type", "bogus")]), OutboxOwner::Schedule(1)).is_err());
        assert!(Event::decode(&entry(&[("token", "x")]), OutboxOwner::Schedule(1)).is_err());
        assert!(
            Event::decode(
                &entry(&[("type", "tokens"), ("x", "9|WAITING|1")]),
                OutboxOwner::Schedule(1)
            )
            .is_err()
        );
        let bad = entry(&[("type", "tokens"), ("x", "nine|WAITING|1|2|||")]);
        assert!(Event::decode(&bad, OutboxOwner::Schedule(1)).is_err());
        let ledger = entry(&[
            ("type", "ledger"),
            ("tx:129", "9|CHARGE|1000|1000||1700000000000"),
            ("bal:9", "1000|1000|0|1700000000000"),
        ]);
        let Event::Ledger { lines, balances } =
            Event::decode(&ledger, OutboxOwner::WalletBucket(9)).unwrap()
        else {
            panic!("a ledger entry decodes as one");
        };
        assert_eq!(
            (lines[0].id, lines[0].amount, lines[0].ref_id),
            (129, 1000, None)
        );
        assert_eq!(balances[0].balance.total_charged, 1000);
        assert!(Event::decode(&ledger, OutboxOwner::Schedule(9)).is_err());
        let good = entry(&[("type", "tokens"), ("1", "9|WAITING|1|2|||")]);
        assert!(
            Event::decode(&good, OutboxOwner::WalletBucket(1)).is_err(),
            "a schedule event in a wallet outbox is refused"
        );
    }
}
