//! Throttling of the login, MFA and enrollment steps and of wrong bearer tokens. Guessing is refused
//! (429) per account *and* client address, so neither a busy address (loopback, a proxy) nor many
//! addresses guessing one account can lock its user out; past a number of failures per account or
//! per address, attempts are slowed down instead (a correct password and code still pass). The
//! wrong-code lockout of the factor itself is the core's (see `LockoutPolicy`).

use super::error::ApiError;
use crate::domain::Timestamp;
use axum::http::StatusCode;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each limiter holds at most this many keys; past it, full buckets go, then the oldest.
pub const MAX_KEYS: usize = 4096;

/// The longest login name looked at: user names are at most 64 bytes.
pub const MAX_NAME_BYTES: usize = 64;

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

    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn refill_per_sec(&self) -> f64 {
        f64::from(self.per_minute) / 60.0
    }

    /// Take one request from `key`'s bucket at `now`, or say in how many seconds one is available.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), u64> {
        self.take(key, now, true)
    }

    /// Is `key`'s bucket empty at `now` (without taking anything)?
    pub fn is_exhausted(&self, key: &str, now: Instant) -> bool {
        self.take(key, now, false).is_err()
    }

    fn take(&self, key: &str, now: Instant, take: bool) -> Result<(), u64> {
        if self.per_minute == 0 {
            return Ok(());
        }
        let capacity = f64::from(self.per_minute);
        let rate = self.refill_per_sec();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(key) {
            if !take {
                return Ok(());
            }
            if buckets.len() >= MAX_KEYS {
                make_room(&mut buckets, now, capacity, rate);
            }
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket { tokens: capacity, at: now });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        let tokens = (bucket.tokens + elapsed * rate).min(capacity);
        if tokens < 1.0 {
            return Err(((1.0 - tokens) / rate).ceil().max(1.0) as u64);
        }
        if take {
            bucket.tokens = tokens - 1.0;
            bucket.at = now;
        }
        Ok(())
    }
}

/// Forget the buckets that have refilled (they hold nothing a new bucket would not); if that is not
/// enough, the eighth least recently used, so that a flood of new keys costs bounded memory.
fn make_room(buckets: &mut HashMap<String, Bucket>, now: Instant, capacity: f64, rate: f64) {
    buckets.retain(|_, b| b.tokens + now.saturating_duration_since(b.at).as_secs_f64() * rate < capacity);
    if buckets.len() < MAX_KEYS {
        return;
    }
    let mut ages: Vec<Instant> = buckets.values().map(|b| b.at).collect();
    let cut = MAX_KEYS / 8;
    ages.select_nth_unstable(cut);
    let oldest = ages[cut];
    buckets.retain(|_, b| b.at > oldest);
}

/// The limits of the authentication endpoints, and which account each open login challenge is for.
#[derive(Debug)]
pub struct AuthLimits {
    /// Attempts for one account from one client address: refused (429) past the rate.
    per_pair: RateLimiter,
    /// Failed attempts per account (from anywhere) and per client address (for any account): past
    /// these rates, attempts wait `soft_delay` before they are checked.
    account_failures: RateLimiter,
    client_failures: RateLimiter,
    /// Wrong bearer tokens from one client address: 429 past the rate.
    bad_tokens: RateLimiter,
    soft_delay: Duration,
    /// SHA-256 of a challenge → (lower-cased user name, expiry), so the MFA step counts against
    /// the same account as the password step.
    challenges: Mutex<HashMap<[u8; 32], (String, Timestamp)>>,
}

impl AuthLimits {
    /// Take one second-factor check for `account` from `client` (`/validate/check`), or say in how
    /// many seconds one is available: the login's rate for one account from one address.
    pub fn admit_validation(&self, account: &str, client: &str) -> Result<(), u64> {
        self.per_pair.check(&format!("validate\u{0}{account}\u{0}{client}"), Instant::now())
    }

    pub fn new(per_client: u32, per_account: u32, soft_delay: Duration) -> AuthLimits {
        AuthLimits {
            per_pair: RateLimiter::new(per_account),
            account_failures: RateLimiter::new(per_account),
            client_failures: RateLimiter::new(per_client),
            bad_tokens: RateLimiter::new(per_client),
            soft_delay,
            challenges: Mutex::new(HashMap::new()),
        }
    }

    /// A login name longer than any user name is refused before it costs a bucket or a hash.
    pub fn check_name(name: &str) -> Result<(), ApiError> {
        if name.len() > MAX_NAME_BYTES {
            return Err(ApiError::bad_request(format!(
                "the user name is {} bytes long; user names are at most {MAX_NAME_BYTES} bytes",
                name.len()
            )));
        }
        Ok(())
    }

    /// Admit one authentication attempt from `client` for `account` (when known): 429 past the
    /// pair's rate; otherwise, when the account or the address has failed too often lately, after
    /// the soft delay.
    pub async fn admit(&self, client: &str, account: Option<&str>) -> Result<(), ApiError> {
        let now = Instant::now();
        let account = account.map(str::to_lowercase);
        let pair = format!("{}\u{0}{client}", account.as_deref().unwrap_or(""));
        self.per_pair.check(&pair, now).map_err(|secs| {
            ApiError::too_many(
                format!("too many login attempts for this account from this address; try again in {secs} s"),
                secs,
            )
        })?;
        let slowed = self.client_failures.is_exhausted(client, now)
            || account.as_deref().is_some_and(|a| self.account_failures.is_exhausted(a, now));
        if slowed && !self.soft_delay.is_zero() {
            tokio::time::sleep(self.soft_delay).await;
        }
        Ok(())
    }

    /// A failed attempt (wrong name, password or code): it counts towards the soft delay, and is
    /// logged in one line with the address and the name given, for fail2ban and SIEMs.
    pub fn failed(&self, client: &str, account: Option<&str>, step: &'static str) {
        let now = Instant::now();
        let _ = self.client_failures.check(client, now);
        if let Some(account) = account {
            let _ = self.account_failures.check(&account.to_lowercase(), now);
        }
        tracing::warn!(target: "mfadmin::auth", client = %client, user = ?account.unwrap_or(""), step = %step, "login failed");
    }

    /// A request with a wrong bearer token: its 401 becomes a 429 once the address has sent too
    /// many (a valid token is never refused).
    pub fn bad_token(&self, client: &str, error: ApiError) -> ApiError {
        if error.status() != StatusCode::UNAUTHORIZED {
            return error;
        }
        match self.bad_tokens.check(client, Instant::now()) {
            Ok(()) => error,
            Err(secs) => {
                ApiError::too_many(format!("too many wrong tokens from this address; try again in {secs} s"), secs)
            }
        }
    }

    /// How many keys the limiters hold now (their memory).
    pub fn tracked_keys(&self) -> usize {
        self.per_pair.len() + self.account_failures.len() + self.client_failures.len() + self.bad_tokens.len()
    }

    pub fn remember_challenge(&self, challenge: &str, account: &str, expires_at: Timestamp, now: Timestamp) {
        let mut map = self.challenges.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > MAX_KEYS {
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
        for i in 0..MAX_KEYS {
            limiter.check(&i.to_string(), t0).unwrap();
        }
        limiter.check("late", t0 + Duration::from_secs(5)).unwrap();
        assert!(limiter.buckets.lock().unwrap().len() <= 2);
    }

    /// 60,000-byte names once grew the server by 100 MB: now a flood of new keys, none of them
    /// refilled, costs at most MAX_KEYS buckets, and the newest are kept.
    #[test]
    fn a_flood_of_new_keys_is_bounded() {
        let limiter = RateLimiter::new(10);
        let t0 = Instant::now();
        for i in 0..5 * MAX_KEYS {
            limiter.check(&format!("key{i}"), t0 + Duration::from_micros(i as u64)).unwrap();
        }
        assert!(limiter.len() <= MAX_KEYS, "{} keys", limiter.len());
        let newest = format!("key{}", 5 * MAX_KEYS - 1);
        assert!(limiter.buckets.lock().unwrap().contains_key(&newest));
    }

    #[test]
    fn looking_does_not_take_or_remember() {
        let limiter = RateLimiter::new(1);
        let t0 = Instant::now();
        assert!(!limiter.is_exhausted("a", t0));
        assert!(limiter.is_empty());
        limiter.check("a", t0).unwrap();
        assert!(limiter.is_exhausted("a", t0));
        assert!(limiter.is_exhausted("a", t0), "looking twice takes nothing");
    }
}
