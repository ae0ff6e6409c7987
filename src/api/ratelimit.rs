//! Per-key rate limiting (GCRA, the leaky bucket as a virtual schedule): each key may make
//! `rate` requests per second on average and `burst` at once. A request over the limit is
//! answered 429 with `Retry-After` (whole seconds, at least 1) saying when the next one
//! will pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Time in microseconds from an arbitrary origin; injected so tests control it.
pub type MicrosClock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// A monotonic microsecond clock.
pub fn monotonic_micros() -> MicrosClock {
    let origin = std::time::Instant::now();
    Arc::new(move || origin.elapsed().as_micros() as i64)
}

/// The outcome for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Rejected; the next request would pass after this many seconds (rounded up, ≥ 1).
    Limit {
        retry_after_secs: u64,
    },
}

/// Shared by every request. Keys that have not been seen for a while are forgotten.
pub struct RateLimiter {
    /// Microseconds between two requests at the average rate (0: unlimited).
    interval_us: f64,
    /// How far ahead of now a key's schedule may run: `(burst − 1) · interval`.
    tolerance_us: f64,
    /// key → theoretical arrival time of its next request (µs). One short critical section
    /// per request; pruned when it grows.
    tat: Mutex<HashMap<Arc<str>, f64>>,
    clock: MicrosClock,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: u32, clock: MicrosClock) -> RateLimiter {
        let interval_us = if rate_per_sec > 0.0 {
            1e6 / rate_per_sec
        } else {
            0.0
        };
        RateLimiter {
            interval_us,
            tolerance_us: f64::from(burst.max(1) - 1) * interval_us,
            tat: Mutex::new(HashMap::new()),
            clock,
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.interval_us > 0.0
    }

    /// Counts one request of `key` and says whether it may pass.
    pub fn check(&self, key: &Arc<str>) -> Decision {
        if !self.is_enabled() {
            return Decision::Allow;
        }
        let now = (self.clock)() as f64;
        let mut tat = self.tat.lock().unwrap_or_else(|e| e.into_inner());
        if tat.len() > 100_000 {
            // forget keys whose schedule is in the past: they are back to a full burst anyway
            tat.retain(|_, t| *t > now);
        }
        let t = tat.get(key).copied().unwrap_or(now).max(now);
        if t - now > self.tolerance_us {
            let wait_us = t - now - self.tolerance_us;
            return Decision::Limit {
                retry_after_secs: ((wait_us / 1e6).ceil() as u64).max(1),
            };
        }
        let next = t + self.interval_us;
        match tat.get_mut(key) {
            Some(slot) => *slot = next,
            None => {
                tat.insert(key.clone(), next);
            }
        }
        Decision::Allow
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn manual() -> (Arc<AtomicI64>, MicrosClock) {
        let t = Arc::new(AtomicI64::new(1_000_000));
        let c = t.clone();
        (t, Arc::new(move || c.load(Ordering::SeqCst)))
    }

    #[test]
    fn burst_then_average_rate_then_retry_after() {
        let (t, clock) = manual();
        let rl = RateLimiter::new(2.0, 3, clock); // 2/s, burst 3
        let k: Arc<str> = Arc::from("k1");
        for _ in 0..3 {
            assert_eq!(rl.check(&k), Decision::Allow);
        }
        assert_eq!(
            rl.check(&k),
            Decision::Limit {
                retry_after_secs: 1
            }
        );
        // other keys are independent
        assert_eq!(rl.check(&Arc::from("k2")), Decision::Allow);
        // half a second later one more passes (2/s)
        t.fetch_add(500_000, Ordering::SeqCst);
        assert_eq!(rl.check(&k), Decision::Allow);
        assert!(matches!(rl.check(&k), Decision::Limit { .. }));
        // a long pause restores the whole burst, no more
        t.fetch_add(60_000_000, Ordering::SeqCst);
        for _ in 0..3 {
            assert_eq!(rl.check(&k), Decision::Allow);
        }
        assert!(matches!(rl.check(&k), Decision::Limit { .. }));
    }

    #[test]
    fn retry_after_says_when_the_next_passes() {
        let (t, clock) = manual();
        let rl = RateLimiter::new(0.1, 1, clock); // one per 10 s
        let k: Arc<str> = Arc::from("k");
        assert_eq!(rl.check(&k), Decision::Allow);
        assert_eq!(
            rl.check(&k),
            Decision::Limit {
                retry_after_secs: 10
            }
        );
        t.fetch_add(9_000_000, Ordering::SeqCst);
        assert_eq!(
            rl.check(&k),
            Decision::Limit {
                retry_after_secs: 1
            }
        );
        t.fetch_add(1_000_000, Ordering::SeqCst);
        assert_eq!(rl.check(&k), Decision::Allow);
    }

    #[test]
    fn zero_rate_is_unlimited() {
        let (_, clock) = manual();
        let rl = RateLimiter::new(0.0, 1, clock);
        let k: Arc<str> = Arc::from("k");
        for _ in 0..1000 {
            assert_eq!(rl.check(&k), Decision::Allow);
        }
    }
}
