//! The `seatrush` binary: parse, build, bind, serve until SIGTERM or Ctrl-C.

use std::io::Write;
use std::process::ExitCode;

/// Requests allocate many small, short-lived buffers; mimalloc serves them faster than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use seatrush::app::{self, App};
use seatrush::config::Config;
use seatrush::identity::{Identity, KeyError};
use seatrush::writebehind::dead_letters;
use seatrush::{api, demo, rebuild, reconcile, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str);
    if matches!(command, Some("--help" | "-h" | "help")) {
        print!("{}", Config::help());
        return ExitCode::SUCCESS;
    }
    if command == Some("sign-user-token") {
        return sign_user_token(&args[1..]);
    }
    if command == Some("dead-letters") {
        return dead_letters(&args[1..]).await;
    }
    if !matches!(command, None | Some("demo-data" | "rebuild-redis")) || args.len() > 1 {
        eprint!("unknown arguments {args:?}\n\n{}", Config::help());
        return ExitCode::from(2);
    }
    telemetry::init_logging();
    let outcome = match command {
        Some("rebuild-redis") => rebuild_redis().await,
        _ => run(command == Some("demo-data")).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(demo_only: bool) -> Result<(), Box<dyn std::error::Error>> {
    no_transparent_huge_pages();
    let mut config = Config::from_env()?;
    if let Some(open_files) = raise_open_files_limit()
        && config.fit_streams_to_open_files(open_files)
    {
        tracing::warn!(
            open_files,
            streams = config.max_event_streams,
            "SEATRUSH_MAX_EVENT_STREAMS lowered to fit the open files limit"
        );
    }
    let addr = config.http_addr;
    let app = App::build(config).await?;
    if demo_only {
        if demo::load_if_empty(&app.db, &mut app.hot.conn()).await? {
            tracing::info!("demo data loaded");
        } else {
            tracing::info!("database already has data; demo data not loaded");
        }
        print_identities(&app, addr).await?;
        return Ok(());
    }
    let listener = api::bind(addr)?;
    tracing::info!(%addr, "seatrush listening");
    // Two stages: the server stops and finishes its requests first, then the background
    // loops stop, the flusher draining the outbox last, so it sees every request's writes.
    let (stop_serving, serving) = shutdown::channel();
    let (stop_background, background_shutdown) = shutdown::channel();
    let background = app.spawn_background(&background_shutdown);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing requests and flushing the outbox");
        stop_serving.trigger();
    });
    api::serve(listener, app, serving).await;
    stop_background.trigger();
    for task in background {
        let _ = task.await;
    }
    Ok(())
}

/// Turns transparent huge pages off for this process. With them, every 2 MiB the allocator
/// touches is zeroed and resident whole: each open connection's partly used buffers then
/// cost their full size (an open event stream 26 KB of RSS instead of 18 KB), and a page
/// fault zeroes 2 MiB at a time while a crowd connects.
fn no_transparent_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process; it reads no memory.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } != 0 {
        tracing::debug!("transparent huge pages could not be turned off");
    }
}

/// Raises this process's limit of open files to the most the system allows it: each client
/// connection is a file, and event streams keep theirs open (100 000 of them and more). A
/// privileged process (`CAP_SYS_RESOURCE`) lifts the hard limit to [`OPEN_FILES_WANTED`]
/// too; any other takes its hard limit. Returns the limit now in force.
fn raise_open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        let before = limit.rlim_cur;
        let wanted = OPEN_FILES_WANTED.max(limit.rlim_max);
        let privileged = libc::rlimit {
            rlim_cur: wanted,
            rlim_max: wanted,
        };
        limit.rlim_cur = limit.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &privileged) == 0 {
            limit = privileged;
        } else if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            tracing::warn!(limit = before, "could not raise the open files limit");
            return Some(before);
        }
        tracing::info!(before, now = limit.rlim_cur, "open files limit");
        Some(limit.rlim_cur)
    }
}

/// Open files a privileged process asks for: room for 200 000 streams and their peers.
const OPEN_FILES_WANTED: libc::rlim_t = 1 << 19;

/// A ready identity (for a day) for each demo user, for trying the API with curl, and a link
/// to the first schedule's waiting room as each of them.
async fn print_identities(
    app: &App,
    addr: std::net::SocketAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut identities = Vec::new();
    for (id, name) in demo::first_users(&app.db).await? {
        match app.identity.sign(id, 24 * 3600) {
            Ok(token) => identities.push((id, name, token)),
            // Verifying with a public key: the identity provider signs, not seatrush.
            Err(KeyError::CannotSign) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    println!("Identities of the demo users (valid 24 h), for `Authorization: Bearer …`:");
    for (id, name, token) in &identities {
        println!("  user {id} ({name}): {token}");
    }
    if let Some((concert, schedule)) = demo::first_schedule(&app.db).await? {
        println!("The waiting room of schedule {schedule}, as each of them:");
        for (id, name, token) in &identities {
            println!(
                "  user {id} ({name}): http://{}/waiting-room/{concert}/{schedule}#identity={token}",
                browsable(addr)
            );
        }
    }
    Ok(())
}

/// The address a browser on this machine opens to reach a server listening on `addr`: a
/// wildcard (`0.0.0.0`, `::`) is where the server listens, not an address a browser may
/// open, so it becomes the loopback address of its family.
fn browsable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            (std::net::Ipv4Addr::LOCALHOST, addr.port()).into()
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            (std::net::Ipv6Addr::LOCALHOST, addr.port()).into()
        }
        _ => addr,
    }
}

/// Rebuilds what Redis lacks from MySQL, balances included, and prints what it did.
async fn rebuild_redis() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let (redis, db, scripts) = app::open_stores(&config).await?;
    let options = rebuild::Options {
        ended_record_keep: config.ended_record_keep,
        balances: true,
    };
    let started = std::time::Instant::now();
    let mut redis = redis.unfenced();
    let run = seatrush::redis::run_id(&redis).await?;
    let closes = redis.fence().closes();
    let report = rebuild::restore(&db, &mut redis, &scripts, &options).await?;
    seatrush::redis::schedules::track_live(&mut redis).await?;
    // The schedules Redis still had are brought forwards to MySQL as the reconciler would.
    let repair = reconcile::repair(&db, &mut redis, &scripts, config.ended_record_keep).await?;
    reconcile::mark_reconciled(&mut redis, &scripts, &run, closes).await?;
    println!(
        "rebuild-redis ({:.2?}):\n{report}\nmoved forwards to MySQL: {repair}",
        started.elapsed()
    );
    Ok(())
}

/// `dead-letters list`: each dead letter as a JSON line; `dead-letters replay [<stream> <id>]`:
/// all of them, or the one named (failing if it is not there), back into their outboxes.
async fn dead_letters(args: &[String]) -> ExitCode {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let only = match args.as_slice() {
        ["list"] | ["replay"] => None,
        ["replay", stream, id] => Some((*stream, *id)),
        _ => {
            eprintln!("usage: seatrush dead-letters list | replay [<stream> <id>]");
            return ExitCode::from(2);
        }
    };
    let outcome = async {
        let config = Config::from_env()?;
        let mut redis = seatrush::redis::connect(&config.redis_url).await?;
        let mut out = std::io::stdout().lock();
        if args[0] == "list" {
            for letter in dead_letters::list(&mut redis).await? {
                writeln!(out, "{}", simd_json::to_string(&letter)?)?;
            }
        } else {
            let replayed = dead_letters::replay(&mut redis, only).await?;
            if let (Some((stream, id)), 0) = (only, replayed) {
                // A named letter that is not there (a typo, or replayed already).
                return Err(format!("no dead letter {id} in {stream}").into());
            }
            writeln!(out, "replayed {replayed} dead letters")?;
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    };
    match outcome.await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seatrush dead-letters: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `sign-user-token <userId> [--ttl-seconds N] [--count N]`: prints an identity token signed
/// with the configured secret (with `--count`, one line for each of N users from `userId`).
fn sign_user_token(args: &[String]) -> ExitCode {
    let usage = || {
        eprintln!("usage: seatrush sign-user-token <userId> [--ttl-seconds N] [--count N]");
        ExitCode::from(2)
    };
    let Some((user, options)) = args.split_first() else {
        return usage();
    };
    let (mut ttl, mut count) = (3600u64, 1u64);
    for pair in options.chunks(2) {
        let value = pair.get(1).and_then(|v| v.parse::<u64>().ok());
        match (pair[0].as_str(), value) {
            ("--ttl-seconds", Some(v)) => ttl = v,
            ("--count", Some(v)) if v > 0 => count = v,
            _ => return usage(),
        }
    }
    let first = match user.parse::<u64>() {
        Ok(n)
            if n > 0
                && n.checked_add(count)
                    .is_some_and(|end| end <= i64::MAX as u64) =>
        {
            n
        }
        _ => return usage(),
    };
    let identity = match Config::from_env()
        .map_err(|e| e.to_string())
        .and_then(|config| Identity::from_config(&config).map_err(|e| e.to_string()))
    {
        Ok(identity) => identity,
        Err(e) => {
            eprintln!("seatrush sign-user-token: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for user_id in first..first + count {
        let line = identity
            .sign(user_id, ttl)
            .map_err(|e| e.to_string())
            .and_then(|token| writeln!(out, "{token}").map_err(|e| e.to_string()));
        if let Err(e) = line {
            eprintln!("seatrush sign-user-token: {e}");
            return ExitCode::FAILURE;
        }
    }
    match out.flush() {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::browsable;

    #[test]
    fn a_wildcard_listen_address_is_linked_as_loopback() {
        let cases = [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:8080", "[::1]:8080"),
            ("127.0.0.1:8089", "127.0.0.1:8089"),
            ("192.0.2.7:80", "192.0.2.7:80"),
            ("[2001:db8::1]:443", "[2001:db8::1]:443"),
        ];
        for (listen, link) in cases {
            assert_eq!(
                browsable(listen.parse().unwrap()).to_string(),
                link,
                "{listen}"
            );
        }
    }
}
