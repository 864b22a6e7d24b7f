//! seatrush: a ticket-booking backend for flash sales.
//!
//! Every contended decision (queue admission, seat holds, balance debits) is one atomic Redis
//! Lua script: the hot path. A write-behind flusher commits what happened to the MySQL primary
//! from per-schedule outbox streams; reads Redis cannot answer go to the replica.
//!
//! # Layout
//!
//! Capabilities (the seed's architecture):
//! - [`queue`]: waiting-queue tokens, the Queue-Token check, the admission loop, settings.
//! - [`catalogue`]: users, venues, concerts, schedules and seats (MySQL is their record), and
//!   the public reads over them (replica, short-lived cache, availability from Redis).
//! - [`reservation`]: seat holds (reservations) and their numbers.
//! - [`wallet`]: prepaid balances: charging and reading, in per-user wallet buckets.
//! - [`payment`]: paying a hold from the balance, a saga across the schedule's slot and the
//!   user's wallet bucket, and the sweeper that settles sagas whose request died.
//! - [`admin`]: the admin API over the catalogue and queue settings.
//!
//! Infrastructure beneath them:
//! - [`http`]: hyper server, router, request parsing, response envelope.
//! - [`error`]: every client-visible error and its status/code.
//! - [`redis`]: the shared connection (one Redis or a Redis Cluster) behind a circuit
//!   breaker, key layout, typed Lua script calls (`lua/`), and coalescing of concurrent calls
//!   per schedule (or wallet bucket) into one script call.
//! - [`stale`]: reads answered from MySQL (`X-Data-Stale: true`) while Redis is unreachable.
//! - [`rebuild`]: Redis state rebuilt from MySQL after Redis lost it (`seatrush rebuild-redis`,
//!   and every start-up).
//! - [`mysql`]: primary and replica pools, migrations (`migrations/`).
//! - [`outbox`]: the write-behind flusher from Redis streams to MySQL.
//! - [`health`], [`telemetry`]: `/health` probes, logs and Prometheus metrics.
//! - [`app`], [`config`], [`shutdown`], [`time`]: wiring, settings, stopping, time formats.
//! - [`demo`]: demo data for `make run`.

pub mod admin;
pub mod app;
pub mod catalogue;
pub mod config;
pub mod demo;
pub mod error;
pub mod health;
pub mod http;
pub mod mysql;
pub mod outbox;
pub mod payment;
pub mod queue;
pub mod rebuild;
pub mod redis;
pub mod reservation;
pub mod shutdown;
pub mod stale;
pub mod telemetry;
pub mod time;
pub mod wallet;
