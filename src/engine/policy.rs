//! Retry and wait policies as values (smithy-rs style): how many attempts, what backoff, how
//! long at most. The driver applies them; resources only classify their errors.

use std::time::Duration;

/// Retries of one AWS operation that failed with a retryable error.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// Throttling, 5xx, connection errors (on top of the SDK's own three attempts).
    pub const TRANSIENT: RetryPolicy = RetryPolicy {
        max_attempts: 5,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(20),
    };
    /// IAM eventual consistency: a role or instance profile refused right after creation.
    /// About two minutes in all.
    pub const PROPAGATION: RetryPolicy = RetryPolicy {
        max_attempts: 12,
        initial_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(15),
    };

    /// Backoff before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        exp_backoff(self.initial_backoff, self.max_backoff, attempt)
    }
}

/// Polling until an object reaches the state a dependent needs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WaitPolicy {
    pub max_wait: Duration,
    pub initial_delay: Duration,
    pub max_delay: Duration,
}

impl WaitPolicy {
    pub const fn minutes(max_minutes: u64) -> WaitPolicy {
        WaitPolicy {
            max_wait: Duration::from_secs(max_minutes * 60),
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }

    pub fn delay(&self, poll: u32) -> Duration {
        exp_backoff(self.initial_delay, self.max_delay, poll)
    }

    /// The same policy with every duration multiplied by `factor` (tests shorten waits).
    pub fn scaled(&self, factor: f64) -> WaitPolicy {
        WaitPolicy {
            max_wait: self.max_wait.mul_f64(factor),
            initial_delay: self.initial_delay.mul_f64(factor),
            max_delay: self.max_delay.mul_f64(factor),
        }
    }
}

impl Default for WaitPolicy {
    fn default() -> Self {
        WaitPolicy::minutes(10)
    }
}

fn exp_backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(16));
    initial.saturating_mul(factor).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy::TRANSIENT;
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(5), Duration::from_secs(16));
        assert_eq!(p.backoff(6), Duration::from_secs(20));
        assert_eq!(p.backoff(60), Duration::from_secs(20));
        let w = WaitPolicy::minutes(1).scaled(0.5);
        assert_eq!(w.max_wait, Duration::from_secs(30));
        assert_eq!(w.delay(1), Duration::from_millis(500));
    }
}
