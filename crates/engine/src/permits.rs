//! The AWS operations a run may have in flight, per region.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Semaphore;

/// At most `n` AWS operations in flight in each region: AWS throttles per account and region
/// (EC2 API reference, "Request throttling": "throttling is applied ... per account, per
/// Region"), so regions do not wait on each other's budget.
pub struct RegionPermits {
    n: usize,
    by_region: Mutex<BTreeMap<String, Arc<Semaphore>>>,
}

impl RegionPermits {
    pub fn new(n: usize) -> RegionPermits {
        RegionPermits {
            n: n.max(1),
            by_region: Mutex::default(),
        }
    }

    /// A permit of `region`'s budget, held while one operation runs.
    pub async fn acquire(&self, region: &str) -> tokio::sync::OwnedSemaphorePermit {
        let sem = {
            let mut m = self.by_region.lock().expect("permits lock");
            m.entry(region.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.n)))
                .clone()
        };
        sem.acquire_owned().await.expect("semaphore open")
    }
}

#[cfg(test)]
mod permit_tests {
    use super::RegionPermits;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// `--parallelism N` bounds the operations in flight per region, and one region's full budget
    /// does not hold up another's.
    #[tokio::test(start_paused = true)]
    async fn parallelism_is_per_region() {
        let permits = Arc::new(RegionPermits::new(2));
        let in_flight: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
        let peak: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
        let total_peak = Arc::new(AtomicUsize::new(0));
        let total = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..12 {
            let r = i % 2;
            let (permits, now, peak, total, total_peak) = (
                permits.clone(),
                in_flight[r].clone(),
                peak[r].clone(),
                total.clone(),
                total_peak.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let _p = permits.acquire(["us-east-1", "eu-west-1"][r]).await;
                let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                peak.fetch_max(n, Ordering::SeqCst);
                let t = total.fetch_add(1, Ordering::SeqCst) + 1;
                total_peak.fetch_max(t, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(1)).await;
                now.fetch_sub(1, Ordering::SeqCst);
                total.fetch_sub(1, Ordering::SeqCst);
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(peak[0].load(Ordering::SeqCst), 2);
        assert_eq!(peak[1].load(Ordering::SeqCst), 2);
        assert_eq!(total_peak.load(Ordering::SeqCst), 4, "the regions ran side by side");
    }
}
