//! The state as an S3 object (`--state s3://BUCKET/KEY`), for teams: every write a new object
//! version, conditional on the version this run last read or wrote, and a lock object
//! `KEY.lock` created with a conditional write. Terraform's S3 backend (since 1.10,
//! `use_lockfile`) locks the same way. S3 User Guide, "Conditional requests": `If-None-Match: *`
//! creates only when no object has the key; `If-Match: <ETag>` writes only over that version;
//! both answer 412 PreconditionFailed otherwise.

use crate::aws::{Aws, SendExt};
use crate::engine::backend::{Backend, LockGuard};
use crate::engine::state::{State, StateError, hostname};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// `s3://bucket/key` → (bucket, key).
pub fn parse_url(url: &str) -> Option<(String, String)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, key) = rest.split_once('/')?;
    (!bucket.is_empty() && !key.is_empty() && !key.ends_with('/')).then(|| (bucket.to_string(), key.to_string()))
}

/// What the lock object holds: who runs what since when.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LockInfo {
    pub id: String,
    pub holder: String,
    pub pid: u32,
    pub command: String,
    pub started_at: String,
}

pub struct S3State {
    aws: Arc<Aws>,
    region: String,
    bucket: String,
    key: String,
    /// The ETag of the version this run last read or wrote; `None`: no object yet.
    etag: Mutex<Option<String>>,
    /// How long `lock` waits for a held lock (`--lock-timeout`); zero: fail at once.
    pub lock_timeout: std::time::Duration,
}

/// How often a held lock is tried again while `--lock-timeout` runs.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_secs(2);

fn is_412(e: &crate::engine::resource::NodeError) -> bool {
    e.code == "PreconditionFailed" || e.code == "HTTP412" || e.message.contains("412")
}

impl S3State {
    /// Checks the bucket before anything is deployed: it must exist (tap does not create it) and
    /// keep versions (the state's history and backup).
    pub async fn open(aws: Arc<Aws>, region: &str, bucket: &str, key: &str) -> Result<S3State, StateError> {
        let location = format!("s3://{bucket}/{key}");
        let remote = |message: String| StateError::Remote {
            location: location.clone(),
            message,
        };
        // (compat: moto answers GetBucketVersioning with a root element the SDK rejects.)
        let status = match crate::aws::compat::versioning_status(
            aws.s3(region).get_bucket_versioning().bucket(bucket).send().await,
        ) {
            Ok(s) => s,
            Err(e) if matches!(e.code.as_str(), "NoSuchBucket" | "NotFound") => {
                return Err(remote(format!(
                    "bucket {bucket} does not exist in {region}; create it (with versioning) first: tap \
                     does not create the bucket of its own state"
                )));
            }
            Err(e) => return Err(remote(format!("GetBucketVersioning: {}: {}", e.code, e.message))),
        };
        if status.as_deref() != Some("Enabled") {
            return Err(remote(format!(
                "bucket {bucket} does not keep versions; turn versioning on (it is the state's \
                 history and backup): aws s3api put-bucket-versioning --bucket {bucket} \
                 --versioning-configuration Status=Enabled"
            )));
        }
        Ok(S3State {
            aws,
            region: region.to_string(),
            bucket: bucket.to_string(),
            key: key.to_string(),
            etag: Mutex::default(),
            lock_timeout: std::time::Duration::ZERO,
        })
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    fn remote(&self, op: &str, e: crate::engine::resource::NodeError) -> StateError {
        StateError::Remote {
            location: self.location(),
            message: format!("{op}: {}: {}", e.code, e.message),
        }
    }

    async fn read_lock(&self) -> Result<Option<(LockInfo, Option<String>)>, StateError> {
        let got = self
            .aws
            .s3(&self.region)
            .get_object()
            .bucket(&self.bucket)
            .key(self.lock_key())
            .send()
            .await
            .absent_on("GetObject", &["NoSuchKey", "NotFound"])
            .map_err(|e| self.remote("GetObject (lock)", e))?;
        let Some(o) = got else {
            return Ok(None);
        };
        let etag = o.e_tag().map(str::to_string);
        let bytes = o.body.collect().await.map(|b| b.into_bytes()).unwrap_or_default();
        let info = serde_json::from_slice(&bytes).unwrap_or(LockInfo {
            id: "unknown".into(),
            holder: "unknown".into(),
            pid: 0,
            command: "unknown".into(),
            started_at: "unknown".into(),
        });
        Ok(Some((info, etag)))
    }
}

/// How long ago an RFC 3339 time was, as `3m12s`.
fn age(since: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(since)
        .map(|t| {
            let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
                .num_seconds()
                .max(0);
            crate::timeline_svg::duration(secs as f64)
        })
        .unwrap_or_else(|_| "unknown".into())
}

/// The run's lock: deleted when released (only if it is still ours: `If-Match` its ETag).
struct S3Lock {
    aws: Arc<Aws>,
    region: String,
    bucket: String,
    key: String,
    etag: Option<String>,
}

#[async_trait::async_trait]
impl LockGuard for S3Lock {
    async fn release(self: Box<Self>) {
        let mut req = self
            .aws
            .s3(&self.region)
            .delete_object()
            .bucket(&self.bucket)
            .key(&self.key);
        if let Some(e) = &self.etag {
            req = req.if_match(e);
        }
        let _ = req.send().await;
    }
}

#[async_trait::async_trait]
impl Backend for S3State {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn load(&self) -> Result<State, StateError> {
        let got = self
            .aws
            .s3(&self.region)
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .absent_on("GetObject", &["NoSuchKey", "NotFound"])
            .map_err(|e| self.remote("GetObject", e))?;
        let Some(o) = got else {
            *self.etag.lock().expect("etag") = None;
            return Ok(State::new());
        };
        *self.etag.lock().expect("etag") = o.e_tag().map(str::to_string);
        let bytes = o
            .body
            .collect()
            .await
            .map(|b| b.into_bytes())
            .map_err(|e| StateError::Remote {
                location: self.location(),
                message: format!("reading the state object: {e}"),
            })?;
        State::parse(&String::from_utf8_lossy(&bytes), &PathBuf::from(self.location()))
    }

    async fn save(&self, state: &mut State) -> Result<(), StateError> {
        state.serial += 1;
        // Writes are serialized by the engine's store; the ETag chains each on the last.
        let current = self.etag.lock().expect("etag").clone();
        let mut req = self
            .aws
            .s3(&self.region)
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .content_type("application/json")
            .body(state.to_text().into_bytes().into());
        req = match current.as_deref() {
            Some(e) => req.if_match(e),
            None => req.if_none_match("*"),
        };
        match req.send().await.op("PutObject") {
            Ok(out) => {
                *self.etag.lock().expect("etag") = out.e_tag().map(str::to_string);
                Ok(())
            }
            Err(e) if is_412(&e) => Err(StateError::Conflict {
                location: self.location(),
            }),
            Err(e) => Err(self.remote("PutObject", e)),
        }
    }

    async fn lock(&self, command: &str) -> Result<Box<dyn LockGuard>, StateError> {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes).expect("OS random source");
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "unknown".into());
        let info = LockInfo {
            id: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            holder: format!("{user}@{}", hostname()),
            pid: std::process::id(),
            command: command.to_string(),
            started_at: crate::engine::store::now(),
        };
        let waited_since = std::time::Instant::now();
        let put = loop {
            let put = self
                .aws
                .s3(&self.region)
                .put_object()
                .bucket(&self.bucket)
                .key(self.lock_key())
                .if_none_match("*")
                .content_type("application/json")
                .body(serde_json::to_vec(&info).expect("lock serializes").into())
                .send()
                .await
                .op("PutObject");
            // `--lock-timeout`: a held lock is tried again every few seconds until then.
            match &put {
                Err(e) if is_412(e) && waited_since.elapsed() + LOCK_POLL <= self.lock_timeout => {
                    tracing::info!(state = %self.location(), "locked by another run; waiting");
                    tokio::time::sleep(LOCK_POLL).await;
                }
                _ => break put,
            }
        };
        match put {
            Ok(out) => Ok(Box::new(S3Lock {
                aws: self.aws.clone(),
                region: self.region.clone(),
                bucket: self.bucket.clone(),
                key: self.lock_key(),
                etag: out.e_tag().map(str::to_string),
            })),
            Err(e) if is_412(&e) => {
                let holder = match self.read_lock().await? {
                    Some((l, _)) => format!(
                        "{} running `{}` (pid {}) for {}, lock id {}. Wait for it to finish; if that run is dead: tap force-unlock {}",
                        l.holder,
                        l.command,
                        l.pid,
                        age(&l.started_at),
                        l.id,
                        l.id
                    ),
                    None => "the lock was released meanwhile; run again".into(),
                };
                Err(StateError::Locked {
                    path: PathBuf::from(self.location()),
                    holder,
                })
            }
            Err(e) => Err(self.remote("PutObject (lock)", e)),
        }
    }

    async fn force_unlock(&self, id: &str) -> Result<(), StateError> {
        let Some((info, etag)) = self.read_lock().await? else {
            return Err(StateError::Remote {
                location: self.location(),
                message: "is not locked".into(),
            });
        };
        if info.id != id {
            return Err(StateError::Remote {
                location: self.location(),
                message: format!(
                    "is locked with id {}, not {id} ({} running `{}`); nothing was removed",
                    info.id, info.holder, info.command
                ),
            });
        }
        let mut req = self
            .aws
            .s3(&self.region)
            .delete_object()
            .bucket(&self.bucket)
            .key(self.lock_key());
        if let Some(e) = &etag {
            req = req.if_match(e);
        }
        req.send()
            .await
            .op("DeleteObject")
            .map(|_| ())
            .map_err(|e| self.remote("DeleteObject (lock)", e))
    }
}
