//! Cancellation of a run (Ctrl-C): set once, seen by the scheduler (start no new node) and by
//! every sleep of a retry or wait (stop there).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

#[derive(Clone, Default)]
pub struct Cancel(Arc<Inner>);

#[derive(Default)]
struct Inner {
    set: AtomicBool,
    notify: Notify,
}

impl Cancel {
    pub fn trigger(&self) {
        self.0.set.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_set(&self) -> bool {
        self.0.set.load(Ordering::SeqCst)
    }

    /// Resolves once the run is cancelled.
    pub async fn cancelled(&self) {
        loop {
            let n = self.0.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.is_set() {
                return;
            }
            n.await;
        }
    }

    /// Sleeps `d`; `false` when the run was cancelled first.
    pub async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(d) => !self.is_set(),
            _ = self.cancelled() => false,
        }
    }
}

impl std::fmt::Debug for Cancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cancel({})", self.is_set())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_sleep_returns_at_once() {
        let c = Cancel::default();
        assert!(c.sleep(Duration::from_secs(1)).await);
        let c2 = c.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(2)).await;
            c2.trigger();
        });
        let t0 = tokio::time::Instant::now();
        assert!(!c.sleep(Duration::from_secs(3600)).await);
        assert_eq!(t0.elapsed(), Duration::from_secs(2));
        c.cancelled().await;
    }
}
