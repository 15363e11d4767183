//! Where the state lives. The engine reads, writes and locks it through [`Backend`] and does not
//! know which one it has: a local file ([`LocalFile`]), or an S3 object (`aws::state_s3`).

use crate::state::{State, StateError, StateLock};
use std::path::PathBuf;

/// Held for a run; `release` gives it up (a local lock also when dropped).
#[async_trait::async_trait]
pub trait LockGuard: Send + Sync {
    async fn release(self: Box<Self>);
}

#[async_trait::async_trait]
impl LockGuard for StateLock {
    async fn release(self: Box<Self>) {}
}

#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Where the state lives, as a user names it (`.tap/dev.json`, `s3://bucket/key`).
    fn location(&self) -> String;

    /// The state; none yet is a new, empty state.
    async fn load(&self) -> Result<State, StateError>;

    /// Bumps the serial and writes `state`. Never overwrites a version this run did not see.
    async fn save(&self, state: &mut State) -> Result<(), StateError>;

    /// The run's exclusive lock, or an error naming the holder.
    async fn lock(&self, command: &str) -> Result<Box<dyn LockGuard>, StateError>;

    /// Removes a lock left by a dead run, if its id is `id`.
    async fn force_unlock(&self, id: &str) -> Result<(), StateError>;
}

/// `.tap/<env>.json`: atomic replace, a `.backup` of the previous version, an flock'ed
/// `.lock` file (released by the OS when a killed run's process dies).
pub struct LocalFile(pub PathBuf);

#[async_trait::async_trait]
impl Backend for LocalFile {
    fn location(&self) -> String {
        self.0.display().to_string()
    }

    async fn load(&self) -> Result<State, StateError> {
        State::load(&self.0)
    }

    async fn save(&self, state: &mut State) -> Result<(), StateError> {
        state.save(&self.0)
    }

    async fn lock(&self, _command: &str) -> Result<Box<dyn LockGuard>, StateError> {
        Ok(Box::new(StateLock::acquire(&self.0)?))
    }

    /// The OS releases a local lock when its process dies: there is nothing to remove.
    async fn force_unlock(&self, _id: &str) -> Result<(), StateError> {
        Err(StateError::Remote {
            location: self.location(),
            message: "a local state's lock is released by the OS when its process ends; \
                      if a run holds it, it is alive (see the pid in the lock error)"
                .into(),
        })
    }
}
