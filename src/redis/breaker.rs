//! The circuit breaker in front of Redis (README, "Failure behaviour"). After [`TRIP_AFTER`]
//! calls in a row found Redis unreachable (refused, dropped, timed out, or "not now"), the
//! circuit opens: every call fails at once for [`OPEN_FOR`], so requests answer `503` with
//! `Retry-After` instead of each waiting out the connection timeout and piling up. Then one
//! call is let through as a probe (half-open): if Redis answers, the circuit closes; if not,
//! it opens again. An error reply by which Redis says "not now" (loading, out of memory,
//! read-only, …: `UNAVAILABLE_REPLIES` in `redis/mod.rs`) counts as unreachable, except a
//! write no replica confirmed in time (`NOREPLICAS`: the master answered); any other
//! answer, an error reply included, as reachable.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Unreachable calls in a row that open the circuit.
pub const TRIP_AFTER: u32 = 5;
/// How long an open circuit fails calls before it lets a probe through.
pub const OPEN_FOR: Duration = Duration::from_millis(500);

/// The `seatrush_circuit_state` gauge's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

#[derive(Debug)]
pub struct Breaker {
    name: &'static str,
    open_for: Duration,
    epoch: Instant,
    /// Unreachable calls in a row.
    failures: AtomicU32,
    /// 0 while closed; else when (ms after `epoch`, at least 1) the open circuit admits a
    /// probe.
    open_until_ms: AtomicU64,
    /// A probe is out.
    probing: AtomicBool,
}

impl Breaker {
    /// A closed breaker for the dependency `name` (the gauge's label).
    pub fn new(name: &'static str) -> Self {
        Self::with_open_for(name, OPEN_FOR)
    }

    fn with_open_for(name: &'static str, open_for: Duration) -> Self {
        let breaker = Self {
            name,
            open_for,
            epoch: Instant::now(),
            failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        };
        breaker.publish(State::Closed);
        breaker
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    pub fn state(&self) -> State {
        match self.open_until_ms.load(Ordering::Acquire) {
            0 => State::Closed,
            until if self.now_ms() < until => State::Open,
            _ => State::HalfOpen,
        }
    }

    /// Lets a call go to Redis now, or not (`None`). In the half-open state only one call
    /// (the probe) is let through until its [`Admission`] reports how it went, or is dropped
    /// unreported (the call was abandoned), which lets the next call probe instead.
    pub fn admit(&self) -> Option<Admission<'_>> {
        let probe = match self.state() {
            State::Closed => false,
            State::Open => return None,
            State::HalfOpen => {
                self.probing
                    .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                    .ok()?;
                true
            }
        };
        Some(Admission {
            breaker: self,
            probe,
        })
    }

    /// What an admitted call found: Redis reachable or not.
    fn record(&self, reachable: bool) {
        if reachable {
            self.failures.store(0, Ordering::Release);
            if self.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
                tracing::warn!(
                    dependency = self.name,
                    "circuit closed: Redis answers again"
                );
                self.publish(State::Closed);
            }
            self.probing.store(false, Ordering::Release);
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::AcqRel) + 1;
        let was_probe = self.probing.swap(false, Ordering::AcqRel);
        if failures >= TRIP_AFTER || was_probe {
            let until = self.now_ms() + self.open_for.as_millis() as u64;
            if self.open_until_ms.swap(until, Ordering::AcqRel) == 0 {
                tracing::error!(
                    dependency = self.name,
                    failures,
                    "circuit open: Redis unreachable; writes answer 503 until it returns"
                );
            }
            self.publish(State::Open);
        }
    }

    fn publish(&self, state: State) {
        metrics::gauge!("seatrush_circuit_state", "dependency" => self.name)
            .set(state as u8 as f64);
    }
}

/// A call the breaker let through; [`Admission::record`] says how it went.
pub struct Admission<'a> {
    breaker: &'a Breaker,
    /// This call is the half-open circuit's one probe.
    probe: bool,
}

impl Admission<'_> {
    pub fn record(mut self, reachable: bool) {
        self.probe = false;
        self.breaker.record(reachable);
    }
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One call through the breaker that found Redis reachable or not; false if refused.
    fn call(b: &Breaker, reachable: bool) -> bool {
        b.admit().map(|a| a.record(reachable)).is_some()
    }

    #[test]
    fn opens_after_failures_in_a_row_then_probes_once_and_closes() {
        let open_for = Duration::from_millis(30);
        let b = Breaker::with_open_for("test", open_for);
        for _ in 0..TRIP_AFTER - 1 {
            assert!(call(&b, false));
        }
        assert!(call(&b, true), "an answer in between resets the count");
        for _ in 0..TRIP_AFTER - 1 {
            call(&b, false);
        }
        assert_eq!(b.state(), State::Closed);
        call(&b, false);
        assert_eq!(b.state(), State::Open);
        assert!(b.admit().is_none(), "open: calls fail at once");

        std::thread::sleep(open_for + Duration::from_millis(5));
        assert_eq!(b.state(), State::HalfOpen);
        let probe = b.admit().expect("the probe");
        assert!(b.admit().is_none(), "one probe at a time");
        probe.record(false);
        assert_eq!(b.state(), State::Open, "a failed probe opens it again");

        std::thread::sleep(open_for + Duration::from_millis(5));
        let abandoned = b.admit().expect("a probe");
        drop(abandoned);
        let probe = b
            .admit()
            .expect("an abandoned probe lets the next call probe");
        probe.record(true);
        assert_eq!(b.state(), State::Closed);
        assert!(call(&b, true) && call(&b, true), "closed: everyone goes");
    }
}
