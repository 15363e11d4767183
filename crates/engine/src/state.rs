//! The state file: what tap last applied, per node, and the outputs.
//!
//! Written after every node transition with an atomic replace (temp file in the same directory,
//! fsync, rename, fsync of the directory); the previous version is kept as `<state>.backup`.
//! A run holds an exclusive OS lock on `<state>.lock` for its whole duration.

use crate::resource::Props;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The schema this tap writes. 2: SPEC v3 (region ids, region indexes, writer region).
pub const SCHEMA_VERSION: u32 = 2;
/// The oldest schema this tap reads; the stack migrates it (SPEC v3 "Migration from v2").
pub const OLDEST_SCHEMA_VERSION: u32 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeStatus {
    Creating,
    Updating,
    Ready,
    Failed,
    Deleting,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NodeState {
    pub kind: String,
    pub region: String,
    pub physical_id: Option<String>,
    pub arn: Option<String>,
    /// The properties last applied (never a secret value).
    pub props: Props,
    /// What dependents and outputs read from this node (ids, ARNs, names, endpoints).
    pub attrs: BTreeMap<String, String>,
    pub status: NodeStatus,
    /// The last error, with the AWS operation and code, when status is `failed`.
    pub error: Option<String>,
    pub updated_at: String,
    /// How many times tap has set out to create this node's object (the idempotency token is
    /// derived from it).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub generation: u32,
    /// The idempotency token of a create in progress, recorded before the create call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub schema_version: u32,
    pub lineage: String,
    pub serial: u64,
    /// The stack's inputs as it recorded them (opaque to the engine).
    pub inputs: Option<serde_json::Value>,
    pub nodes: BTreeMap<String, NodeState>,
    /// Per region name: output name → value.
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    /// The last create generation of every node, kept when destroy forgets the node: a later
    /// create gets a new idempotency token (EC2 and CloudFront remember tokens for a while, and
    /// would answer a reused one with the deleted object).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generations: BTreeMap<String, u32>,
    /// Where the time of the last deploy or destroy went (`tap timeline` draws it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<crate::timeline::Timeline>,
    /// Each region's fixed index (a region key to the engine), recorded when it is first
    /// deployed: adding or removing a region never renumbers the others.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub regions: BTreeMap<String, u32>,
    /// The region that writes, when another than the stack's home (after a failover).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer_region: Option<String>,
    /// The stack's disaster-recovery history (failovers and their reprotects), oldest first:
    /// opaque to the engine, like the inputs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failovers: Vec<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is not valid tap state ({reason}); it was left untouched")]
    Corrupt { path: PathBuf, reason: String },
    #[error(
        "state file {path} has schema version {found}, this tap understands {OLDEST_SCHEMA_VERSION} to {SCHEMA_VERSION}; it was left untouched (a newer tap wrote it)"
    )]
    Schema { path: PathBuf, found: u64 },
    #[error("state {path} is locked by another tap run: {holder}")]
    Locked { path: PathBuf, holder: String },
    /// A remote backend's refusal or failure (S3: the operation, the code, the message).
    #[error("state {location}: {message}")]
    Remote { location: String, message: String },
    /// The state changed since this run last read or wrote it: another writer.
    #[error(
        "state {location} was changed by another writer since this run read it; this run stopped \
         writing (its lock is kept). Check who else deploys this env, then run again"
    )]
    Conflict { location: String },
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StateError + 'a {
    move |source| StateError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

impl State {
    pub fn new() -> State {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("OS random source");
        State {
            schema_version: SCHEMA_VERSION,
            lineage: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            serial: 0,
            inputs: None,
            nodes: BTreeMap::new(),
            outputs: BTreeMap::new(),
            generations: BTreeMap::new(),
            last_run: None,
            regions: BTreeMap::new(),
            writer_region: None,
            failovers: Vec::new(),
        }
    }

    /// Reads `path`; a missing file is a new, empty state.
    pub fn load(path: &Path) -> Result<State, StateError> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::new()),
            Err(e) => return Err(io("reading", path)(e)),
        };
        State::parse(&text, path)
    }

    /// Parses state text read from `path` (a file, or `s3://bucket/key`), checking its schema.
    pub fn parse(text: &str, path: &Path) -> Result<State, StateError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if (u64::from(OLDEST_SCHEMA_VERSION)..=u64::from(SCHEMA_VERSION)).contains(&v) => {}
            Some(found) => {
                return Err(StateError::Schema {
                    path: path.to_path_buf(),
                    found,
                });
            }
            None => {
                return Err(StateError::Corrupt {
                    path: path.to_path_buf(),
                    reason: "no schema_version".into(),
                });
            }
        }
        serde_json::from_value(value).map_err(|e| StateError::Corrupt {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
    }

    /// The state as written: pretty JSON, one trailing newline.
    pub fn to_text(&self) -> String {
        serde_json::to_string_pretty(self).expect("state serializes") + "\n"
    }

    /// Bumps the serial and atomically replaces `path`, keeping the old file as `<path>.backup`.
    pub fn save(&mut self, path: &Path) -> Result<(), StateError> {
        self.serial += 1;
        let text = self.to_text();
        let dir = parent_dir(path);
        fs::create_dir_all(&dir).map_err(io("creating directory", &dir))?;
        if path.exists() {
            let backup = with_suffix(path, ".backup");
            let prev = fs::read(path).map_err(io("reading", path))?;
            write_atomic(&backup, &prev)?;
        }
        write_atomic(path, text.as_bytes())
    }
}

impl Default for State {
    fn default() -> Self {
        State::new()
    }
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Temp file in the same directory, fsync, rename over `path`, fsync the directory. Mode 0600.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = parent_dir(path);
    let tmp = with_suffix(path, &format!(".tmp.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io("creating", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("renaming into place", path))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", &dir))?;
    Ok(())
}

/// An exclusive lock on `<state>.lock`, held until dropped. The file says who holds it.
#[derive(Debug)]
pub struct StateLock {
    file: File,
    path: PathBuf,
}

impl StateLock {
    pub fn acquire(state_path: &Path) -> Result<StateLock, StateError> {
        let path = with_suffix(state_path, ".lock");
        let dir = parent_dir(&path);
        fs::create_dir_all(&dir).map_err(io("creating directory", &dir))?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io("opening lock file", &path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(StateError::Locked {
                    path: state_path.to_path_buf(),
                    holder: if holder.is_empty() {
                        "holder unknown".into()
                    } else {
                        holder.to_string()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", &path)(e)),
        }
        let who = format!(
            "pid {}, host {}, started {}; wait for it to finish",
            std::process::id(),
            hostname(),
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
        file.set_len(0).map_err(io("writing lock file", &path))?;
        file.write_all(who.as_bytes()).map_err(io("writing lock file", &path))?;
        file.sync_all().map_err(io("syncing lock file", &path))?;
        Ok(StateLock { file, path })
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
        let _ = &self.path;
    }
}

pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tap-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn sample() -> State {
        let mut s = State::new();
        s.inputs = Some(serde_json::json!({"env": "dev", "primary_region": "us-east-1"}));
        s.nodes.insert(
            "primary/kms-key".into(),
            NodeState {
                kind: "kms-key".into(),
                region: "us-east-1".into(),
                physical_id: Some("k-1".into()),
                arn: Some("arn:aws:kms:us-east-1:123456789012:key/k-1".into()),
                props: Props::from([("rotation".into(), serde_json::json!(true))]),
                attrs: BTreeMap::from([("id".into(), "k-1".into())]),
                status: NodeStatus::Ready,
                error: None,
                updated_at: "2026-01-01T00:00:00Z".into(),
                generation: 0,
                token: None,
            },
        );
        s
    }

    #[test]
    fn round_trip_serial_backup_and_mode() {
        let d = tmpdir("rt");
        let p = d.join("dev.json");
        let mut s = sample();
        s.save(&p).unwrap();
        assert_eq!(State::load(&p).unwrap(), s);
        assert_eq!(s.serial, 1);
        s.save(&p).unwrap();
        let back = State::load(&with_suffix(&p, ".backup")).unwrap();
        assert_eq!(back.serial, 1);
        assert_eq!(State::load(&p).unwrap().serial, 2);
        assert_eq!(State::load(&p).unwrap().lineage, back.lineage);
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(State::load(&d.join("missing.json")).unwrap().nodes.is_empty());
    }

    #[test]
    fn reader_never_sees_a_partial_file() {
        let d = tmpdir("atomic");
        let p = d.join("dev.json");
        let mut s = sample();
        // A large state so that a non-atomic write would be observable half-written.
        for i in 0..300 {
            let mut n = s.nodes["primary/kms-key"].clone();
            n.props.insert("blob".into(), serde_json::json!("x".repeat(200)));
            s.nodes.insert(format!("primary/n{i}"), n);
        }
        s.save(&p).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (p, stop) = (p.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    State::load(&p).expect("every read parses");
                    reads += 1;
                }
                reads
            })
        };
        for _ in 0..100 {
            s.save(&p).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        let leftovers: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp."))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn lock_contention_names_the_holder() {
        let d = tmpdir("lock");
        let p = d.join("dev.json");
        let held = StateLock::acquire(&p).unwrap();
        let err = StateLock::acquire(&p).unwrap_err().to_string();
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        assert!(err.contains("host ") && err.contains("started "), "{err}");
        drop(held);
        StateLock::acquire(&p).expect("free again after drop");
    }

    #[test]
    fn corrupt_or_unknown_schema_is_an_error_and_untouched() {
        let d = tmpdir("corrupt");
        let p = d.join("dev.json");
        fs::write(&p, "{ not json").unwrap();
        let err = State::load(&p).unwrap_err().to_string();
        assert!(err.contains(p.to_str().unwrap()), "{err}");
        fs::write(&p, r#"{"schema_version": 99}"#).unwrap();
        let err = State::load(&p).unwrap_err();
        assert!(matches!(err, StateError::Schema { found: 99, .. }), "{err}");
        assert_eq!(fs::read_to_string(&p).unwrap(), r#"{"schema_version": 99}"#);
    }
}
