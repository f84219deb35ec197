//! Per-token rate limits on ingest and query (GCRA, from `governor`) and login throttling.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct LimitSettings {
    /// Ingest requests per second per token, and the burst allowed on top.
    pub ingest_per_sec: u32,
    pub ingest_burst: u32,
    /// SQL queries per minute per token, and the burst.
    pub queries_per_min: u32,
    pub query_burst: u32,
    /// Failed logins per user name (and per client address) before a lockout.
    pub login_failures: u32,
    pub login_lockout_secs: u64,
}

/// What a caller is told when over a limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryAfter {
    pub secs: u64,
    pub what: &'static str,
}

pub struct RateLimits {
    ingest: DefaultKeyedRateLimiter<String>,
    query: DefaultKeyedRateLimiter<String>,
    clock: DefaultClock,
}

fn quota(per: Duration, count: u32, burst: u32) -> Quota {
    let count = NonZeroU32::new(count.max(1)).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(per / count.get())
        .unwrap_or_else(|| Quota::per_second(count))
        .allow_burst(burst)
}

impl RateLimits {
    pub fn new(settings: &LimitSettings) -> Self {
        RateLimits {
            ingest: RateLimiter::keyed(quota(
                Duration::from_secs(1),
                settings.ingest_per_sec,
                settings.ingest_burst,
            )),
            query: RateLimiter::keyed(quota(
                Duration::from_secs(60),
                settings.queries_per_min,
                settings.query_burst,
            )),
            clock: DefaultClock::default(),
        }
    }

    fn check(
        &self,
        limiter: &DefaultKeyedRateLimiter<String>,
        key: &str,
        what: &'static str,
    ) -> Result<(), RetryAfter> {
        limiter.check_key(&key.to_string()).map_err(|not_until| {
            let wait = not_until.wait_time_from(self.clock.now());
            RetryAfter {
                secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                what,
            }
        })
    }

    pub fn ingest(&self, token_key: &str) -> Result<(), RetryAfter> {
        self.check(&self.ingest, token_key, "ingest requests")
    }

    pub fn query(&self, token_key: &str) -> Result<(), RetryAfter> {
        self.check(&self.query, token_key, "queries")
    }
}

/// Counts failed logins per key (user name, client address); after `max_failures` within the
/// lockout window the key is locked until the window has passed since the last failure.
pub struct LoginThrottle {
    max_failures: u32,
    lockout: Duration,
    failures: Mutex<HashMap<String, (u32, Instant)>>,
}

impl LoginThrottle {
    pub fn new(max_failures: u32, lockout: Duration) -> Self {
        LoginThrottle {
            max_failures: max_failures.max(1),
            lockout,
            failures: Mutex::default(),
        }
    }

    /// Refuses a login attempt for any locked key.
    pub fn check(&self, keys: &[&str]) -> Result<(), RetryAfter> {
        self.check_at(keys, Instant::now())
    }

    fn check_at(&self, keys: &[&str], now: Instant) -> Result<(), RetryAfter> {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if let Some(&(count, last)) = failures.get(*key) {
                let until = last + self.lockout;
                if count >= self.max_failures && now < until {
                    let secs = (until - now).as_secs_f64().ceil().max(1.0) as u64;
                    return Err(RetryAfter {
                        secs,
                        what: "failed logins",
                    });
                }
            }
        }
        Ok(())
    }

    pub fn failed(&self, keys: &[&str]) {
        self.failed_at(keys, Instant::now())
    }

    fn failed_at(&self, keys: &[&str], now: Instant) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        // Forget keys whose window has passed, so the map stays small.
        failures.retain(|_, (_, last)| now.saturating_duration_since(*last) < self.lockout);
        for key in keys {
            let entry = failures.entry(key.to_string()).or_insert((0, now));
            entry.0 += 1;
            entry.1 = now;
        }
    }

    pub fn succeeded(&self, keys: &[&str]) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            failures.remove(*key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_locked_after_the_allowed_failures_and_freed_after_the_lockout() {
        let throttle = LoginThrottle::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(
                throttle.check_at(&["li"], t0).is_ok(),
                "attempt {i} allowed"
            );
            throttle.failed_at(&["li"], t0);
        }
        let refused = throttle
            .check_at(&["li"], t0 + Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(refused.secs, 59);
        assert!(
            throttle.check_at(&["wang"], t0).is_ok(),
            "other users are not affected"
        );
        assert!(throttle
            .check_at(&["li"], t0 + Duration::from_secs(61))
            .is_ok());
    }

    #[test]
    fn a_success_clears_the_count() {
        let throttle = LoginThrottle::new(2, Duration::from_secs(60));
        throttle.failed(&["li"]);
        throttle.succeeded(&["li"]);
        throttle.failed(&["li"]);
        assert!(throttle.check(&["li"]).is_ok());
    }

    #[test]
    fn the_burst_passes_then_the_rate_limit_answers_with_a_wait() {
        let limits = RateLimits::new(&LimitSettings {
            ingest_per_sec: 1,
            ingest_burst: 3,
            queries_per_min: 1,
            query_burst: 1,
            login_failures: 5,
            login_lockout_secs: 60,
        });
        for _ in 0..3 {
            limits.ingest("token-a").unwrap();
        }
        let refused = limits.ingest("token-a").unwrap_err();
        assert_eq!(refused.secs, 1);
        limits.ingest("token-b").expect("limits are per token");
        limits.query("token-a").unwrap();
        assert!(limits.query("token-a").unwrap_err().secs >= 59);
    }
}
