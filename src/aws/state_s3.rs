//! The state as an S3 object (`--state s3://BUCKET/KEY`), for teams: every write a new object
//! version, conditional on the version this run last read or wrote, and a lock object
//! `KEY.lock` created with a conditional write. Terraform's S3 backend (since 1.10,
//! `use_lockfile`) locks the same way. S3 User Guide, "Conditional requests": `If-None-Match: *`
//! creates only when no object has the key; `If-Match: <ETag>` writes only over that version;
//! both answer 412 PreconditionFailed otherwise.

mod conditional;

use crate::aws::Aws;
use crate::engine::backend::{Backend, LockGuard};
use crate::engine::state::{State, StateError, hostname};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use conditional::{Outcome, S3Error, condition_failed, is_our_lock, is_our_write, retry_conflicts, wrong_region};
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

impl S3State {
    /// Checks the bucket before anything is deployed: it must exist (tap does not create it) and
    /// keep versions (the state's history and backup).
    pub async fn open(aws: Arc<Aws>, region: &str, bucket: &str, key: &str) -> Result<S3State, StateError> {
        let location = format!("s3://{bucket}/{key}");
        let remote = |message: String| StateError::Remote {
            location: location.clone(),
            message,
        };
        let got = aws.s3(region).get_bucket_versioning().bucket(bucket).send().await;
        if let Err(e) = &got {
            let status = e.raw_response().map(|r| r.status().as_u16());
            let code = e.code().unwrap_or_default().to_string();
            let header = conditional::bucket_region(e);
            if let Some(m) = wrong_region(bucket, region, "GetBucketVersioning", status, &code, header.as_deref()) {
                return Err(remote(m));
            }
        }
        // (compat: moto answers GetBucketVersioning with a root element the SDK rejects.)
        let status = match crate::aws::compat::versioning_status(got) {
            Ok(s) => s,
            Err(e) if matches!(e.code.as_str(), "NoSuchBucket" | "NotFound") => {
                return Err(remote(format!(
                    "bucket {bucket} does not exist in {region}; create it (with versioning) first: tap \
                     does not create the bucket of its own state"
                )));
            }
            Err(e) => {
                return Err(remote(format!(
                    "GetBucketVersioning on bucket {bucket}: {}: {}",
                    e.code, e.message
                )));
            }
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

    /// An S3 failure on `key`, naming the object, the operation and the AWS error code.
    fn remote(&self, key: &str, e: S3Error) -> StateError {
        let moved = wrong_region(
            &self.bucket,
            &self.region,
            &e.error.op,
            e.status,
            &e.error.code,
            e.bucket_region.as_deref(),
        );
        let e = e.error;
        StateError::Remote {
            location: self.location(),
            message: moved
                .unwrap_or_else(|| format!("{} on s3://{}/{key}: {}: {}", e.op, self.bucket, e.code, e.message)),
        }
    }

    /// The object's bytes and ETag; `None` when there is none.
    async fn get_raw(&self, key: &str) -> Result<Option<(Vec<u8>, Option<String>)>, StateError> {
        let got = self
            .aws
            .s3(&self.region)
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| S3Error::from_sdk("GetObject", e));
        let o = match got {
            Ok(o) => o,
            Err(e) if e.outcome() == Outcome::Absent || matches!(e.error.code.as_str(), "NoSuchKey" | "NotFound") => {
                return Ok(None);
            }
            Err(e) => return Err(self.remote(key, e)),
        };
        let etag = o.e_tag().map(str::to_string);
        let bytes = o.body.collect().await.map_err(|e| StateError::Remote {
            location: self.location(),
            message: format!("reading s3://{}/{key}: {}", self.bucket, crate::aws::errors::chain(&e)),
        })?;
        Ok(Some((bytes.into_bytes().to_vec(), etag)))
    }

    async fn read_lock(&self) -> Result<Option<(LockInfo, Option<String>)>, StateError> {
        let Some((bytes, etag)) = self.get_raw(&self.lock_key()).await? else {
            return Ok(None);
        };
        let info = serde_json::from_slice(&bytes).unwrap_or(LockInfo {
            id: "unknown".into(),
            holder: "unknown".into(),
            pid: 0,
            command: "unknown".into(),
            started_at: "unknown".into(),
        });
        Ok(Some((info, etag)))
    }

    /// `PutObject KEY.lock If-None-Match: *`, again after a 409.
    async fn put_lock(&self, body: &[u8]) -> Result<Option<String>, S3Error> {
        retry_conflicts(|| async {
            self.aws
                .s3(&self.region)
                .put_object()
                .bucket(&self.bucket)
                .key(self.lock_key())
                .if_none_match("*")
                .content_type("application/json")
                .body(body.to_vec().into())
                .send()
                .await
                .map(|o| o.e_tag().map(str::to_string))
                .map_err(|e| S3Error::from_sdk("PutObject", e))
        })
        .await
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
    id: String,
    etag: Option<String>,
}

impl S3Lock {
    async fn delete(&self) -> Result<(), S3Error> {
        match self.delete_if(self.etag.as_deref()).await {
            Err(e) if self.etag.is_some() && e.outcome() == Outcome::NotImplemented => self.delete_confirmed(e).await,
            other => other,
        }
    }

    /// `DeleteObject KEY.lock`, `If-Match` the ETag when given, again after a 409.
    async fn delete_if(&self, etag: Option<&str>) -> Result<(), S3Error> {
        retry_conflicts(|| async {
            let mut req = self
                .aws
                .s3(&self.region)
                .delete_object()
                .bucket(&self.bucket)
                .key(&self.key);
            if let Some(e) = etag {
                req = req.if_match(e);
            }
            req.send()
                .await
                .map(|_| ())
                .map_err(|e| S3Error::from_sdk("DeleteObject", e))
        })
        .await
    }

    /// The endpoint does not implement conditional deletes (501): re-read the lock, confirm it
    /// still holds this lock id, delete it without the condition, and say so. A lock gone
    /// meanwhile is success; another id is left alone (the 501 is returned).
    async fn delete_confirmed(&self, refused: S3Error) -> Result<(), S3Error> {
        let got = self
            .aws
            .s3(&self.region)
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| S3Error::from_sdk("GetObject", e));
        let body = match got {
            Ok(o) => o
                .body
                .collect()
                .await
                .map(|b| b.into_bytes().to_vec())
                .unwrap_or_default(),
            Err(e) if e.outcome() == Outcome::Absent => return Ok(()),
            Err(e) => return Err(e),
        };
        if !serde_json::from_slice::<LockInfo>(&body).is_ok_and(|l| is_our_lock(&self.id, &l.id)) {
            return Err(refused);
        }
        self.delete_if(None).await?;
        crate::render::err(&format!(
            "note: s3://{}/{}: this endpoint does not implement conditional deletes ({}: {}); \
             removed the lock after re-reading it (lock id {})",
            self.bucket, self.key, refused.error.code, refused.error.message, self.id
        ));
        Ok(())
    }
}

#[async_trait::async_trait]
impl LockGuard for S3Lock {
    /// A lock that cannot be removed blocks every later run: said on stderr, with the way out.
    async fn release(self: Box<Self>) {
        let Err(e) = self.delete().await else {
            return;
        };
        // A 412 or 404 after the SDK resent a delete whose response was lost: the lock is gone.
        if matches!(e.outcome(), Outcome::PreconditionFailed | Outcome::Absent) {
            let still = self
                .aws
                .s3(&self.region)
                .get_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .send()
                .await;
            let ours = match still {
                Ok(o) => match o.body.collect().await {
                    Ok(b) => {
                        serde_json::from_slice::<LockInfo>(&b.into_bytes()).is_ok_and(|l| is_our_lock(&self.id, &l.id))
                    }
                    Err(_) => true,
                },
                Err(g) => S3Error::from_sdk("GetObject", g).outcome() != Outcome::Absent,
            };
            if !ours {
                return;
            }
        }
        crate::render::err(&format!(
            "warning: the lock s3://{}/{} could not be removed ({}: {}: {}); later runs are refused \
             until it is: tap force-unlock {}",
            self.bucket, self.key, e.error.op, e.error.code, e.error.message, self.id
        ));
    }
}

#[async_trait::async_trait]
impl Backend for S3State {
    fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn load(&self) -> Result<State, StateError> {
        let Some((bytes, etag)) = self.get_raw(&self.key).await? else {
            *self.etag.lock().expect("etag") = None;
            return Ok(State::new());
        };
        *self.etag.lock().expect("etag") = etag;
        State::parse(&String::from_utf8_lossy(&bytes), &PathBuf::from(self.location()))
    }

    async fn save(&self, state: &mut State) -> Result<(), StateError> {
        state.serial += 1;
        // Writes are serialized by the engine's store; the ETag chains each on the last.
        let current = self.etag.lock().expect("etag").clone();
        let text = state.to_text().into_bytes();
        let put = retry_conflicts(|| async {
            let req = self
                .aws
                .s3(&self.region)
                .put_object()
                .bucket(&self.bucket)
                .key(&self.key)
                .content_type("application/json")
                .body(text.clone().into());
            let req = match current.as_deref() {
                Some(e) => req.if_match(e),
                None => req.if_none_match("*"),
            };
            req.send().await.map_err(|e| S3Error::from_sdk("PutObject", e))
        })
        .await;
        match put {
            Ok(out) => {
                *self.etag.lock().expect("etag") = out.e_tag().map(str::to_string);
                Ok(())
            }
            // A 412 is another writer's version, or this very write: executed, its response
            // lost, and the SDK's resend refused because the condition no longer held.
            Err(e) if condition_failed(&e.outcome(), current.is_some()) => match self.get_raw(&self.key).await? {
                Some((found, etag)) if is_our_write(&text, &found) => {
                    tracing::info!(state = %self.location(), "a state write's response was lost; the object is ours");
                    *self.etag.lock().expect("etag") = etag;
                    Ok(())
                }
                _ => Err(StateError::Conflict {
                    location: self.location(),
                }),
            },
            Err(e) => Err(self.remote(&self.key, e)),
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
        let body = serde_json::to_vec(&info).expect("lock serializes");
        let waited_since = std::time::Instant::now();
        let mut released_meanwhile = 0;
        let (held, etag) = loop {
            match self.put_lock(&body).await {
                Ok(etag) => break (None, etag),
                Err(e) if e.outcome() == Outcome::PreconditionFailed => {}
                Err(e) => return Err(self.remote(&self.lock_key(), e)),
            }
            // 412: held by another run, or by this one (the put executed, its response lost,
            // the SDK's resend refused): the lock object's id tells.
            let found = self.read_lock().await?;
            match found {
                Some((l, etag)) if is_our_lock(&info.id, &l.id) => break (None, etag),
                None if released_meanwhile < 3 => {
                    released_meanwhile += 1;
                    continue;
                }
                // `--lock-timeout`: a held lock is tried again every few seconds until then.
                _ if waited_since.elapsed() + LOCK_POLL <= self.lock_timeout => {
                    tracing::info!(state = %self.location(), "locked by another run; waiting");
                    tokio::time::sleep(LOCK_POLL).await;
                }
                other => break (Some(other.map(|(l, _)| l)), None),
            }
        };
        let Some(held) = held else {
            return Ok(Box::new(S3Lock {
                aws: self.aws.clone(),
                region: self.region.clone(),
                bucket: self.bucket.clone(),
                key: self.lock_key(),
                id: info.id,
                etag,
            }));
        };
        let holder = match held {
            Some(l) => format!(
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
        let lock = S3Lock {
            aws: self.aws.clone(),
            region: self.region.clone(),
            bucket: self.bucket.clone(),
            key: self.lock_key(),
            id: info.id,
            etag,
        };
        lock.delete().await.map_err(|e| self.remote(&self.lock_key(), e))
    }
}
