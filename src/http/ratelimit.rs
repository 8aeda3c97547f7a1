//! Rate limits on the login, MFA and enrollment endpoints: a token bucket per client address and
//! one per account, so neither many accounts from one client nor many clients on one account get
//! far. The wrong-code lockout of the factor itself is the core's (see `LockoutPolicy`).

use super::error::ApiError;
use crate::domain::Timestamp;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Past this many keys, buckets that have refilled completely are forgotten.
const PRUNE_ABOVE: usize = 4096;

/// Buckets that hold `per_minute` requests and refill at `per_minute` a minute; 0 means no limit.
#[derive(Debug)]
pub struct RateLimiter {
    per_minute: u32,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    pub fn new(per_minute: u32) -> RateLimiter {
        RateLimiter { per_minute, buckets: Mutex::new(HashMap::new()) }
    }

    fn refill_per_sec(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    /// Take one request from `key`'s bucket at `now`, or say in how many seconds one is available.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let rate = self.refill_per_sec();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() > PRUNE_ABOVE {
            buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < capacity);
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket { tokens: capacity, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - bucket.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

/// The limits of the authentication endpoints, and which account each open login challenge is for.
#[derive(Debug)]
pub struct AuthLimits {
    per_client: RateLimiter,
    per_account: RateLimiter,
    /// SHA-256 of a challenge → (lower-cased user name, expiry), so the MFA step counts against
    /// the same account as the password step.
    challenges: Mutex<HashMap<[u8; 32], (String, Timestamp)>>,
}

impl AuthLimits {
    /// Take one attempt from the bucket of `key` (an account, or an account in a namespace), or
    /// say in how many seconds one is available.
    pub fn admit_account(&self, key: &str) -> Result<(), u64> {
        self.per_account.check(key, Instant::now())
    }

    pub fn new(per_client: u32, per_account: u32) -> AuthLimits {
        AuthLimits {
            per_client: RateLimiter::new(per_client),
            per_account: RateLimiter::new(per_account),
            challenges: Mutex::new(HashMap::new()),
        }
    }

    /// Admit one authentication request from `client` for `account` (when known), or refuse with 429.
    pub fn admit(&self, client: &str, account: Option<&str>) -> Result<(), ApiError> {
        let now = Instant::now();
        self.per_client.check(client, now).map_err(|secs| {
            ApiError::too_many(format!("too many login attempts from this address; try again in {secs} s"), secs)
        })?;
        if let Some(account) = account {
            self.per_account.check(&account.to_lowercase(), now).map_err(|secs| {
                ApiError::too_many(format!("too many login attempts for this account; try again in {secs} s"), secs)
            })?;
        }
        Ok(())
    }

    pub fn remember_challenge(&self, challenge: &str, account: &str, expires_at: Timestamp, now: Timestamp) {
        let mut map = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, (_, expires)| *expires > now);
        }
        map.insert(crate::auth::token::hash(challenge.trim()), (account.to_lowercase(), expires_at));
    }

    /// The account a challenge was issued for, while it is valid.
    pub fn account_of(&self, challenge: &str, now: Timestamp) -> Option<String> {
        let map = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        map.get(&crate::auth::token::hash(challenge.trim())).filter(|(_, e)| *e > now).map(|(a, _)| a.clone())
    }

    pub fn forget_challenge(&self, challenge: &str) {
        self.challenges.lock().unwrap_or_else(|p| p.into_inner()).remove(&crate::auth::token::hash(challenge.trim()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_bucket_empties_and_refills() {
        let limiter = RateLimiter::new(6); // one every 10 s
        let t0 = Instant::now();
        for _ in 0..6 {
            assert!(limiter.check("a", t0).is_ok());
        }
        assert_eq!(limiter.check("a", t0), Err(10));
        assert!(limiter.check("b", t0).is_ok(), "other keys have their own bucket");
        assert_eq!(limiter.check("a", t0 + Duration::from_secs(4)), Err(6));
        assert!(limiter.check("a", t0 + Duration::from_secs(10)).is_ok());
        assert!(limiter.check("a", t0 + Duration::from_secs(10)).is_err());
    }

    #[test]
    fn zero_means_no_limit() {
        let limiter = RateLimiter::new(0);
        let t0 = Instant::now();
        assert!((0..1000).all(|_| limiter.check("a", t0).is_ok()));
    }

    #[test]
    fn full_buckets_are_forgotten() {
        let limiter = RateLimiter::new(60);
        let t0 = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            limiter.check(&i.to_string(), t0).unwrap();
        }
        limiter.check("late", t0 + Duration::from_secs(5)).unwrap();
        assert!(limiter.buckets.lock().unwrap().len() <= 2);
    }
}
