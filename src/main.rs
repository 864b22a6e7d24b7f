//! The `seatrush` binary: parse, build, bind, serve until SIGTERM or Ctrl-C.

use std::process::ExitCode;

/// Requests allocate many small, short-lived buffers; mimalloc serves them faster than glibc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use seatrush::app::{self, App};
use seatrush::config::Config;
use seatrush::{api, demo, rebuild, shutdown, telemetry};

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = args.first().map(String::as_str);
    if matches!(command, Some("--help" | "-h" | "help")) {
        print!("{}", Config::help());
        return ExitCode::SUCCESS;
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
    let config = Config::from_env()?;
    let addr = config.http_addr;
    let app = App::build(config).await?;
    if demo_only {
        if demo::load_if_empty(&app.db, &mut app.hot.conn()).await? {
            tracing::info!("demo data loaded");
        } else {
            tracing::info!("database already has data; demo data not loaded");
        }
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

/// Rebuilds what Redis lacks from MySQL, balances included, and prints what it did.
async fn rebuild_redis() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let (mut redis, db, scripts) = app::open_stores(&config).await?;
    let options = rebuild::Options {
        ended_token_keep: config.ended_token_keep,
        balances: true,
    };
    let started = std::time::Instant::now();
    let report = rebuild::restore(&db, &mut redis, &scripts, &options).await?;
    println!("rebuild-redis ({:.2?}):\n{report}", started.elapsed());
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler installs");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
