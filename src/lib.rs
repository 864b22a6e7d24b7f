//! seatrush: a ticket-booking backend for flash sales.
//!
//! Every contended decision (queue admission, seat holds, balance debits) is one atomic Redis
//! Lua script: the hot path. A write-behind flusher commits what happened to the MySQL primary
//! from per-slot outbox streams; reads Redis cannot answer go to the replica. The map of the
//! whole is `ARCHITECTURE.md`.
//!
//! # Layout, from the top down (a module uses only those below it)
//!
//! - [`app`]: start-up: connections, the shared state, the background loops.
//! - [`api`]: the edge: hyper server, router, request parsing, envelope, one file of endpoints
//!   per capability, and the waiting-room page (`web/`, compiled in). The only module that
//!   knows HTTP.
//! - [`housekeeping`]: the admission tick, hold expiry and the payment sweeper.
//! - [`demo`], [`rebuild`]: demo data for `make run`; Redis rebuilt from MySQL.
//! - Services, one per capability, each returning domain values or an [`model::Error`]:
//!   [`admin`], [`payment`] (the payment saga), [`holds`] (seat holds), [`wallet`],
//!   [`catalogue`] (venues, concerts, schedules, seats), [`queue`] (tokens, the
//!   Queue-Token check, the tokens' event streams, and a shuffled queue's opening), [`users`]
//!   (users and the directory of who exists).
//! - [`fallback`]: the same reads from MySQL while Redis is unreachable.
//! - [`writebehind`]: the flusher from the outbox streams to MySQL. [`reconcile`]: a Redis
//!   that came back older than MySQL brought forwards before it hands out ids. [`health`]:
//!   probes.
//! - [`redis`]: the connection (one Redis, a cluster, or the master Sentinels name, its
//!   writes confirmed by a replica) behind a circuit breaker, keys, the typed Lua scripts
//!   (`lua/`), the coalescing [`redis::HotPath`]. [`mysql`]: pools, migrations, loaders.
//!   [`identity`]: who is asking (the caller's verified JWT). [`telemetry`], [`config`],
//!   [`shutdown`].
//! - [`model`]: ids, records, status enums, refusals, settings, the pre-queue's shuffle: no
//!   I/O.

pub mod admin;
pub mod api;
pub mod app;
pub mod catalogue;
pub mod config;
pub mod demo;
pub mod fallback;
pub mod health;
pub mod holds;
pub mod housekeeping;
pub mod identity;
pub mod model;
pub mod mysql;
pub mod payment;
pub mod queue;
pub mod rebuild;
pub mod reconcile;
pub mod redis;
pub mod shutdown;
pub mod telemetry;
pub mod users;
pub mod wallet;
pub mod writebehind;
