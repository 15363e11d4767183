//! The driver's retries and waits: one AWS operation retried per the policy of its error
//! class (eventual consistency only; the SDK has retried throttling and 5xx), and polls until an
//! object is ready or gone. Policies are values (`policy`), not loops scattered through code.

use crate::events::Event;
use crate::policy::{RetryPolicy, WaitPolicy};
use crate::reconcile::Driver;
use crate::resource::{ErrorClass, NodeCx, NodeError, Readiness};
use std::future::Future;
use tokio::time::Instant;

impl Driver {
    /// The retry budget of an error class that `call` retries (scaled like the waits).
    pub(crate) fn policy_for(&self, class: ErrorClass) -> Option<RetryPolicy> {
        let p = match class {
            ErrorClass::Propagation => RetryPolicy::PROPAGATION,
            ErrorClass::NotYetVisible => RetryPolicy::NOT_YET_VISIBLE,
            ErrorClass::Lingering => RetryPolicy::LINGERING,
            // Throttled and Transient were retried by the SDK already; the rest will not change.
            ErrorClass::Fatal | ErrorClass::Throttled | ErrorClass::Transient | ErrorClass::AlreadyExists => {
                return None;
            }
        };
        Some(p.scaled(self.wait_scale))
    }

    /// Sleeps before retry `attempt` of `e`, showing why; `Err` when the run is interrupted.
    pub(crate) async fn back_off(
        &self,
        cx: &NodeCx,
        e: &NodeError,
        policy: RetryPolicy,
        attempt: u32,
    ) -> Result<(), NodeError> {
        let delay = policy.jittered(attempt);
        self.progress.set_status(
            cx.id(),
            &format!("retrying {} after {} ({attempt}/{})", e.op, e.code, policy.max_attempts),
        );
        self.events.emit(Event::Retry {
            at: self.at(cx),
            operation: e.op.clone(),
            code: e.code.clone(),
            attempt,
            delay_s: delay.as_secs_f64(),
        });
        match self.cancel.sleep(delay).await {
            true => Ok(()),
            false => Err(NodeError::interrupted(e.op.clone())),
        }
    }

    /// One AWS operation, holding a permit per attempt; eventual-consistency refusals are retried
    /// per their policy (the SDK has already retried throttling and 5xx).
    pub async fn call<T, F, Fut>(&self, cx: &NodeCx, mut f: F) -> Result<T, NodeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, NodeError>>,
    {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let r = {
                let _permit = self.permits.acquire(&cx.region).await;
                f().await
            };
            let e = match r {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            match self.policy_for(e.class) {
                Some(p) if attempt < p.max_attempts => self.back_off(cx, &e, p, attempt).await?,
                _ => return Err(e),
            }
        }
    }

    /// Polls `check` until ready, per the wait policy; progress shows the current status.
    pub async fn wait<F, Fut>(&self, cx: &NodeCx, policy: WaitPolicy, what: &str, mut check: F) -> Result<(), NodeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Readiness, NodeError>>,
    {
        let t0 = Instant::now();
        let mut announced = false;
        let res = self.wait_inner(cx, policy, what, &mut check, &mut announced).await;
        if announced {
            self.events.emit(Event::NodeWaitEnd {
                at: self.at(cx),
                wait_s: t0.elapsed().as_secs_f64(),
            });
        }
        res
    }

    async fn wait_inner<F, Fut>(
        &self,
        cx: &NodeCx,
        policy: WaitPolicy,
        what: &str,
        check: &mut F,
        announced: &mut bool,
    ) -> Result<(), NodeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<Readiness, NodeError>>,
    {
        let policy = policy.scaled(self.wait_scale);
        let t0 = Instant::now();
        let mut poll = 0u32;
        let mut last = String::new();
        loop {
            poll += 1;
            match self.call(cx, &mut *check).await? {
                Readiness::Ready => return Ok(()),
                Readiness::Failed(m) => return Err(NodeError::fatal(format!("wait for {what}"), "WaitFailed", m)),
                Readiness::Pending(s) => {
                    let waited = t0.elapsed();
                    if waited >= policy.max_wait {
                        return Err(NodeError::fatal(
                            format!("wait for {what}"),
                            "WaitTimeout",
                            format!(
                                "still {s} after {}s (max wait {}s)",
                                waited.as_secs(),
                                policy.max_wait.as_secs()
                            ),
                        ));
                    }
                    let status = format!("{what}: {s}");
                    if status != last {
                        self.progress.set_status(cx.id(), &format!("waiting for {status}"));
                        self.events.emit(Event::NodeWait {
                            at: self.at(cx),
                            waiting_for: status.clone(),
                        });
                        *announced = true;
                        last = status;
                    }
                    if !self
                        .cancel
                        .sleep(policy.delay(poll).min(policy.max_wait - waited))
                        .await
                    {
                        return Err(NodeError::interrupted(format!("wait for {what}")));
                    }
                }
            }
        }
    }
}
