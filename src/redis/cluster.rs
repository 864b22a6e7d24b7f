//! Redis Cluster: which slot a command's keys live in, and pipelines that span slots.
//!
//! Every script keeps its keys in one slot (the hash tags of `keys.rs`), so scripts run on a
//! cluster unchanged. A few pipelines touch several slots at once (outbox lengths over every
//! stream, a token batch with its index entries, balances of many wallet buckets); the
//! cluster client sends a pipeline to one node only, so such a pipeline is split here into
//! one per slot, sent concurrently, and its replies put back in order.

use std::collections::HashMap;

use redis::aio::ConnectionLike;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::Slot;
use redis::{Arg, Cmd, Pipeline, RedisResult, Value};

/// The slot of a command's first key (for `EVAL`/`EVALSHA`, the first of its KEYS), or
/// `None` for a command without keys.
pub fn slot_of(cmd: &Cmd) -> Option<Slot> {
    let mut args = cmd.args_iter().filter_map(|arg| match arg {
        Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    let name = args.next()?;
    let key = if name.eq_ignore_ascii_case(b"EVALSHA") || name.eq_ignore_ascii_case(b"EVAL") {
        args.next()?; // the script or its digest
        let keys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
        if keys == 0 {
            return None;
        }
        args.next()?
    } else {
        args.next()?
    };
    Some(Slot::for_key(key))
}

/// The commands of a pipeline grouped by slot, as indices in pipeline order; commands
/// without keys go with the first group.
pub fn groups(pipeline: &Pipeline) -> Vec<Vec<usize>> {
    let mut order: Vec<Option<Slot>> = Vec::new();
    let mut by_slot: HashMap<Option<Slot>, Vec<usize>> = HashMap::new();
    for (i, cmd) in pipeline.cmd_iter().enumerate() {
        let slot = slot_of(cmd);
        let slot = if slot.is_none() {
            order.first().copied().flatten()
        } else {
            slot
        };
        by_slot
            .entry(slot)
            .or_insert_with(|| {
                order.push(slot);
                Vec::new()
            })
            .push(i);
    }
    order
        .into_iter()
        .filter_map(|slot| by_slot.remove(&slot))
        .collect()
}

/// Sends `pipeline` (every command's reply wanted) over the cluster: as it is when its
/// commands share a slot, else as one pipeline per slot, concurrently.
pub async fn send(conn: &mut ClusterConnection, pipeline: &Pipeline) -> RedisResult<Vec<Value>> {
    let groups = groups(pipeline);
    if groups.len() <= 1 {
        return conn.req_packed_commands(pipeline, 0, pipeline.len()).await;
    }
    let commands: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let parts: Vec<_> = groups
        .iter()
        .map(|indices| {
            let mut part = redis::pipe();
            for &i in indices {
                part.add_command(commands[i].clone());
            }
            let mut conn = conn.clone();
            tokio::spawn(async move {
                let len = part.len();
                conn.req_packed_commands(&part, 0, len).await
            })
        })
        .collect();
    let mut out = vec![Value::Nil; commands.len()];
    for (indices, part) in groups.iter().zip(parts) {
        let values = part.await.map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::Io, "pipeline part failed", e.to_string()))
        })??;
        for (&i, value) in indices.iter().zip(values) {
            out[i] = value;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_grouped_by_the_slot_of_their_first_key() {
        let mut pipe = redis::pipe();
        pipe.xlen("{s:1}:outbox")
            .xlen("{w:3}:outbox")
            .hset("{s:1}:res", 7, "x")
            .cmd("EVALSHA")
            .arg("abc")
            .arg(2)
            .arg("{w:3}:bal")
            .arg("{w:3}:txseq")
            .arg("arg")
            .cmd("PING");
        assert_eq!(groups(&pipe), vec![vec![0, 2, 4], vec![1, 3]]);
        let evalsha = pipe.cmd_iter().nth(3).unwrap();
        assert_eq!(slot_of(evalsha), Some(Slot::for_key("{w:3}:bal")));
        assert_eq!(slot_of(pipe.cmd_iter().nth(4).unwrap()), None);
    }
}
