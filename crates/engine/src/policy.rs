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
    /// IAM eventual consistency: a role or instance profile refused right after creation.
    /// About two minutes in all.
    pub const PROPAGATION: RetryPolicy = RetryPolicy {
        max_attempts: 12,
        initial_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(15),
    };
    /// A just-created object not yet visible (`*.NotFound` for an id tap was just given; EC2's
    /// API reference, "Eventual consistency": seconds, occasionally minutes). About 90 s.
    pub const NOT_YET_VISIBLE: RetryPolicy = RetryPolicy {
        max_attempts: 12,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(10),
    };
    /// A delete refused while dependencies linger: ENIs of a deleted Lambda function, RDS
    /// instance or Auto Scaling group keep a security group or subnet in use for minutes
    /// (`DependencyViolation`; Lambda's guide says up to 20 minutes for Hyperplane ENIs, commonly
    /// a few). About 10 minutes.
    pub const LINGERING: RetryPolicy = RetryPolicy {
        max_attempts: 24,
        initial_backoff: Duration::from_secs(5),
        max_backoff: Duration::from_secs(30),
    };
    /// A create call that carries no idempotency token: throttled (refused, so sent again) or of
    /// unknown outcome (looked up, then sent again only if the object is not there).
    pub const CREATE: RetryPolicy = RetryPolicy {
        max_attempts: 6,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(20),
    };
    /// Looking for an object after a create that most likely did not run (refused with a 503,
    /// "the server is overloaded and cannot handle the request") or was answered "already
    /// exists" (the object is there; a read by name sees it): a few quick looks, about 6 s.
    pub const LOOK_UP: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_secs(2),
        max_backoff: Duration::from_secs(4),
    };
    /// Looking for an object whose create had an unknown outcome (a lost response: 500,
    /// timeout, connection reset), before sending the create again. Listings by tag are
    /// eventually consistent for longer than an id is: EC2's "Eventual consistency in the
    /// Amazon EC2 API" (https://docs.aws.amazon.com/ec2/latest/devguide/eventual-consistency.html)
    /// says to describe "starting with a couple of seconds of wait time, and increasing gradually
    /// up to a few minutes"; KMS's "AWS KMS eventual consistency"
    /// (https://docs.aws.amazon.com/kms/latest/developerguide/programming-eventual-consistency.html)
    /// "usually less than a few seconds, but in some cases ... several minutes". A miss re-sends
    /// CreateVpc, AllocateAddress, CreateKey... and makes a twin that counts against the quotas
    /// (5 VPCs, 5 Elastic IPs per region). About 2 minutes in all.
    pub const LOOK_UP_UNKNOWN: RetryPolicy = RetryPolicy {
        max_attempts: 11,
        initial_backoff: Duration::from_secs(1),
        max_backoff: Duration::from_secs(20),
    };

    /// Backoff before attempt `attempt + 1` (attempt counts from 1), without jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        exp_backoff(self.initial_backoff, self.max_backoff, attempt)
    }

    /// The backoff with "equal jitter": between half and all of [`Self::backoff`], so that nodes
    /// refused at once do not come back at once.
    pub fn jittered(&self, attempt: u32) -> Duration {
        let b = self.backoff(attempt);
        let mut r = [0u8; 4];
        getrandom::fill(&mut r).expect("OS random source");
        let f = f64::from(u32::from_le_bytes(r)) / f64::from(u32::MAX);
        b.mul_f64(0.5 + 0.5 * f)
    }

    /// The same policy with every duration multiplied by `factor` (tests shorten budgets).
    pub fn scaled(&self, factor: f64) -> RetryPolicy {
        RetryPolicy {
            max_attempts: self.max_attempts,
            initial_backoff: self.initial_backoff.mul_f64(factor),
            max_backoff: self.max_backoff.mul_f64(factor),
        }
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
        let p = RetryPolicy::CREATE;
        assert_eq!(p.backoff(1), Duration::from_secs(1));
        assert_eq!(p.backoff(2), Duration::from_secs(2));
        assert_eq!(p.backoff(5), Duration::from_secs(16));
        assert_eq!(p.backoff(6), Duration::from_secs(20));
        assert_eq!(p.backoff(60), Duration::from_secs(20));
        for a in 1..8 {
            let j = p.jittered(a);
            assert!(j >= p.backoff(a) / 2 && j <= p.backoff(a), "{j:?}");
        }
        // The eventual-consistency budgets: about 90 s and 10 minutes.
        let total = |p: RetryPolicy| (1..p.max_attempts).map(|a| p.backoff(a)).sum::<Duration>();
        assert_eq!(total(RetryPolicy::NOT_YET_VISIBLE), Duration::from_secs(85));
        assert!(total(RetryPolicy::LINGERING) >= Duration::from_secs(600));
        // The look-up after an unknown create outcome: about 2 minutes, not 6 s.
        assert_eq!(total(RetryPolicy::LOOK_UP_UNKNOWN), Duration::from_secs(131));
        assert_eq!(total(RetryPolicy::LOOK_UP), Duration::from_secs(6));
        let w = WaitPolicy::minutes(1).scaled(0.5);
        assert_eq!(w.max_wait, Duration::from_secs(30));
        assert_eq!(w.delay(1), Duration::from_millis(500));
    }
}
