//! A crowd of ACTIVE buyers for `make bench`'s `crowd` run (README, "Benchmarks"): users
//! `first`… each take a queue token on one schedule whose queue admits them all at once, and
//! the users, their identities and tokens are written one per line, "userId identity token",
//! for `bench/hold_seats.lua` (`BENCH_CROWD_FILE`) to hold seats as a different user per
//! request.
//!
//! Or, for the `opening` run, a crowd in a pre-queue: given the opening of a `SHUFFLE_AT_OPEN`
//! schedule (ms since the epoch), every user must be pre-queued, and then the opening is
//! watched (`bench/flashsale/opening.rs`): its figures are printed as one line of JSON after
//! `opening `.
//!
//! `cargo run --release --example crowd -- <base url> <scheduleId> <first userId> <users>
//! <file> [opening ms]`; `SEATRUSH_AUTH_SECRET` and `SEATRUSH_REDIS_URL` as the server's.
//! Fails unless every user got an ACTIVE (or pre-queue) token.

#[path = "flashsale/client.rs"]
#[expect(
    dead_code,
    reason = "the crowd only issues tokens; event streams are not opened"
)]
mod client;
#[path = "flashsale/opening.rs"]
mod opening;

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use hyper::Method;
use seatrush::identity::Identity;
use simd_json::prelude::*;
use tokio::sync::Semaphore;

use client::Client;

/// Issuance requests in flight at once (over 64 keep-alive connections).
const IN_FLIGHT: usize = 256;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (base, schedule, first_user, users, file, opens_at_ms) = match &args[..] {
        [base, schedule, first_user, users, file] => {
            (base, schedule, first_user, users, file, None)
        }
        [base, schedule, first_user, users, file, opens] => (
            base,
            schedule,
            first_user,
            users,
            file,
            Some(opens.parse::<i64>()?),
        ),
        _ => {
            return Err(
                "usage: crowd <base url> <scheduleId> <first userId> <users> <file> \
                        [opening ms]"
                    .into(),
            );
        }
    };
    let wanted = if opens_at_ms.is_some() {
        "pre-queued"
    } else {
        "ACTIVE"
    };
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let (schedule, first_user, users): (u64, u64, u64) =
        (schedule.parse()?, first_user.parse()?, users.parse()?);
    let config = seatrush::config::Config::from_env()?;
    let identity = Identity::from_config(&config)?;
    let client = Arc::new(Client::new(addr, 64).await);

    let started = Instant::now();
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT));
    let mut joins = Vec::new();
    for user in first_user..first_user + users {
        let (client, in_flight) = (client.clone(), in_flight.clone());
        let signed = identity.sign(user, 86_400)?;
        joins.push(tokio::spawn(async move {
            let _turn = in_flight.acquire().await.ok()?;
            let body = format!(r#"{{"userId":{user},"scheduleId":{schedule}}}"#);
            let auth = format!("Bearer {signed}");
            let (status, json, _) = client
                .call(
                    Method::POST,
                    "/api/v1/queue/tokens",
                    &[("authorization", auth.as_str())],
                    Some(body),
                )
                .await;
            let data = json.get("data")?;
            let got = match opens_at_ms {
                Some(_) => data.get("preQueue")?.as_bool()?,
                None => data.get("status")?.as_str()? == "ACTIVE",
            };
            let token = data.get("token")?.as_str()?.to_string();
            (status == 200 && got).then(|| format!("{user} {signed} {token}\n"))
        }));
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    let mut active = 0u64;
    for join in joins {
        if let Some(line) = join.await? {
            out.write_all(line.as_bytes())?;
            active += 1;
        }
    }
    out.flush()?;
    println!(
        "crowd: {active} of {users} users {wanted} on schedule {schedule} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if active < users {
        return Err(format!("only {active} of {users} users got a token {wanted}").into());
    }
    if let Some(opens_at_ms) = opens_at_ms {
        let queue_path = format!("/api/v1/admin/schedules/{schedule}/queue");
        let redis_url = std::env::var("SEATRUSH_REDIS_URL")?;
        let mut figures = opening::watch(&client, &queue_path, &redis_url, started, opens_at_ms)
            .await
            .map_err(|e| e.to_string())?;
        figures.pre_queued = active;
        println!("opening {}", simd_json::to_string(&figures)?);
    }
    Ok(())
}
