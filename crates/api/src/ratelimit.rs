//! A token bucket per caller: `burst` requests at once, refilled at `per_second`.
//! Callers past it get 429 with `Retry-After`.

use crate::config::RateLimitConfig;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Above this many tracked callers, full (idle) buckets are forgotten: they are the same
/// as new ones, so memory stays bounded without changing anyone's limit.
const MAX_TRACKED_CALLERS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Per-caller token buckets.
#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Buckets as configured.
    pub fn new(config: RateLimitConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `caller` at `now`: `Ok` or `Err(wait)` until one is there.
    pub fn check(&self, caller: &str, now: Instant) -> Result<(), Duration> {
        if self.config.per_second <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.config.burst.max(1));
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if buckets.len() >= MAX_TRACKED_CALLERS && !buckets.contains_key(caller) {
            let per_second = self.config.per_second;
            buckets.retain(|_, bucket| {
                let refilled =
                    bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * per_second;
                refilled < burst
            });
        }
        let bucket = buckets.entry(caller.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.config.per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let missing = 1.0 - bucket.tokens;
            Err(Duration::from_secs_f64(missing / self.config.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_passes_then_the_bucket_refills_at_the_rate() {
        let limiter = RateLimiter::new(RateLimitConfig {
            per_second: 2.0,
            burst: 3,
        });
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.check("alice", start).is_ok());
        }
        let wait = limiter.check("alice", start).expect_err("bucket is empty");
        assert_eq!(wait, Duration::from_millis(500));
        // Another caller has a bucket of their own.
        assert!(limiter.check("bob", start).is_ok());
        // Half a second later one token is back, and only one.
        let later = start + Duration::from_millis(500);
        assert!(limiter.check("alice", later).is_ok());
        assert!(limiter.check("alice", later).is_err());
    }

    #[test]
    fn a_zero_rate_turns_the_limit_off() {
        let limiter = RateLimiter::new(RateLimitConfig {
            per_second: 0.0,
            burst: 0,
        });
        let now = Instant::now();
        for _ in 0..1000 {
            assert!(limiter.check("alice", now).is_ok());
        }
    }
}
