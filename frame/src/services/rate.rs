//! Token buckets: the frame's one shape of rate limit (event publications, shard log lines).
//!
//! A bucket holds up to `burst` tokens and refills at `rate` tokens per second; a caller takes
//! tokens for what it is about to do, or is refused when there are not enough. Time comes from
//! the caller so the arithmetic is testable without sleeping.

use std::time::Instant;

/// A token bucket: `burst` tokens at most, refilled continuously at `rate` per second.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u64, burst: u64, now: Instant) -> Self {
        Self {
            rate: rate_per_sec as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        // A clock that went backwards (it cannot with Instant, but saturate anyway) adds nothing.
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// Whether `n` tokens are available at `now`, without taking them.
    pub fn has(&mut self, n: u64, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= n as f64
    }

    /// Takes `n` tokens if the bucket holds them; `false` (taking nothing) otherwise.
    pub fn try_take(&mut self, n: u64, now: Instant) -> bool {
        if !self.has(n, now) {
            return false;
        }
        self.tokens -= n as f64;
        true
    }

    /// How long until `n` tokens are available at `now` (zero when they are); `None` when they
    /// never will be (more than the bucket holds, or no refill).
    pub fn time_until(&mut self, n: u64, now: Instant) -> Option<std::time::Duration> {
        self.refill(now);
        let missing = n as f64 - self.tokens;
        if missing <= 0.0 {
            return Some(std::time::Duration::ZERO);
        }
        if n as f64 > self.burst || self.rate <= 0.0 {
            return None;
        }
        std::time::Duration::try_from_secs_f64(missing / self.rate).ok()
    }

    /// The configured refill rate, per second.
    pub fn rate(&self) -> u64 {
        self.rate as u64
    }

    /// The configured capacity.
    pub fn burst(&self) -> u64 {
        self.burst as u64
    }
}

/// Two buckets charged together: a count (events, lines) and a volume (bytes). A take succeeds
/// only if both have room, and then charges both, so a refusal costs nothing.
#[derive(Debug, Clone)]
pub struct CountAndBytes {
    /// The count bucket.
    pub count: TokenBucket,
    /// The byte bucket.
    pub bytes: TokenBucket,
}

/// Which bucket refused a [`CountAndBytes::try_take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Not enough count tokens.
    Count,
    /// Not enough byte tokens.
    Bytes,
}

impl CountAndBytes {
    /// Full buckets.
    pub fn new(rate: u64, burst: u64, bytes_rate: u64, bytes_burst: u64, now: Instant) -> Self {
        Self {
            count: TokenBucket::new(rate, burst, now),
            bytes: TokenBucket::new(bytes_rate, bytes_burst, now),
        }
    }

    /// Takes one count token and `bytes` byte tokens, or neither.
    pub fn try_take(&mut self, bytes: u64, now: Instant) -> Result<(), Refused> {
        if !self.count.has(1, now) {
            return Err(Refused::Count);
        }
        if !self.bytes.try_take(bytes, now) {
            return Err(Refused::Bytes);
        }
        self.count.try_take(1, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(10, 5, start);
        for _ in 0..5 {
            assert!(bucket.try_take(1, start));
        }
        assert!(!bucket.try_take(1, start));
        // 100 ms at 10/s refills one token, no more.
        let later = start + Duration::from_millis(100);
        assert!(bucket.try_take(1, later));
        assert!(!bucket.try_take(1, later));
        // Never more than the burst, however long it rests.
        let much_later = later + Duration::from_secs(3600);
        assert!(!bucket.try_take(6, much_later));
        assert!(bucket.try_take(5, much_later));
    }

    #[test]
    fn time_until_says_when_a_refused_take_would_pass() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(4, 2, start);
        assert_eq!(bucket.time_until(1, start), Some(Duration::ZERO));
        assert!(bucket.try_take(2, start));
        assert_eq!(
            bucket.time_until(1, start),
            Some(Duration::from_millis(250))
        );
        let later = start + Duration::from_millis(100);
        let wait = bucket.time_until(1, later).unwrap();
        assert!(wait > Duration::from_millis(149) && wait <= Duration::from_millis(150));
        // Past the bucket's size, or without refill: never.
        assert_eq!(bucket.time_until(3, later), None);
        let mut dry = TokenBucket::new(0, 1, start);
        assert!(dry.try_take(1, start));
        assert_eq!(dry.time_until(1, later), None);
    }

    #[test]
    fn a_refusal_charges_neither_bucket() {
        let now = Instant::now();
        let mut both = CountAndBytes::new(1, 2, 1, 100, now);
        assert_eq!(both.try_take(101, now), Err(Refused::Bytes));
        assert_eq!(both.try_take(60, now), Ok(()));
        assert_eq!(both.try_take(60, now), Err(Refused::Bytes));
        assert_eq!(both.try_take(40, now), Ok(()));
        assert_eq!(both.try_take(0, now), Err(Refused::Count));
    }
}
