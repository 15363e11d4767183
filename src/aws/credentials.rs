//! Credentials resolved once and shared: the preflight's resolution is the one every client
//! uses. The SDK's identity cache sits inside the clients; a call to the provider outside it (the
//! preflight's "are there credentials?") resolved them a second time: one more SSO, AssumeRole
//! or IMDS call, and a `credential_process` that prompts (an MFA code) prompted twice. This
//! provider keeps what it resolved until shortly before it expires; the identity cache in front
//! of it then asks it again, and it resolves again.

use aws_credential_types::Credentials;
use aws_credential_types::provider::{self, ProvideCredentials, SharedCredentialsProvider, future};
use std::time::{Duration, SystemTime};
use tokio::sync::Mutex;

/// Credentials expiring within this are resolved again (more than the SDK identity cache's own
/// buffer, 10 s, so that its refresh gets fresh ones).
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
pub struct ResolveOnce {
    inner: SharedCredentialsProvider,
    /// The last credentials resolved; the lock also makes concurrent first calls wait for one
    /// resolution instead of starting several.
    last: Mutex<Option<Credentials>>,
}

impl ResolveOnce {
    pub fn new(inner: SharedCredentialsProvider) -> ResolveOnce {
        ResolveOnce {
            inner,
            last: Mutex::new(None),
        }
    }

    async fn resolve(&self) -> provider::Result {
        let mut last = self.last.lock().await;
        if let Some(c) = last.as_ref()
            && c.expiry().is_none_or(|e| e > SystemTime::now() + REFRESH_BEFORE)
        {
            return Ok(c.clone());
        }
        let fresh = self.inner.provide_credentials().await?;
        *last = Some(fresh.clone());
        Ok(fresh)
    }
}

impl ProvideCredentials for ResolveOnce {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.resolve())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Counting(Arc<AtomicU32>, Option<SystemTime>);

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            self.0.fetch_add(1, Ordering::SeqCst);
            future::ProvideCredentials::ready(Ok(Credentials::new("a", "s", None, self.1, "test")))
        }
    }

    #[tokio::test]
    async fn resolves_once_until_the_credentials_near_expiry() {
        let n = Arc::new(AtomicU32::new(0));
        let once = ResolveOnce::new(SharedCredentialsProvider::new(Counting(n.clone(), None)));
        for _ in 0..3 {
            once.provide_credentials().await.unwrap();
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
        let soon = Some(SystemTime::now() + Duration::from_secs(60));
        let once = ResolveOnce::new(SharedCredentialsProvider::new(Counting(n.clone(), soon)));
        once.provide_credentials().await.unwrap();
        once.provide_credentials().await.unwrap();
        assert_eq!(n.load(Ordering::SeqCst), 3, "expiring within 5 minutes: resolved again");
    }
}
