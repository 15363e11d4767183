//! The state of one run, shared by all node tasks: every transition is saved at once.

use crate::backend::{Backend, LocalFile};
use crate::resource::NodeError;
use crate::state::{NodeState, NodeStatus, State, StateError};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The code of a state write refused because another writer changed the state.
pub const STATE_CONFLICT: &str = "StateChangedByAnotherWriter";

pub struct StateStore {
    backend: Arc<dyn Backend>,
    /// Plan mode reads but never writes.
    read_only: bool,
    state: Mutex<State>,
    /// Set once a write met another writer's version: nothing more is written.
    conflict: std::sync::atomic::AtomicBool,
    /// Triggered on such a conflict: the run starts no more nodes.
    pub on_conflict: Option<crate::cancel::Cancel>,
    writer: tokio::sync::Mutex<()>,
}

impl StateStore {
    /// A local state file.
    pub fn new(path: PathBuf, state: State, read_only: bool) -> StateStore {
        StateStore::with_backend(Arc::new(LocalFile(path)), state, read_only)
    }

    pub fn with_backend(backend: Arc<dyn Backend>, state: State, read_only: bool) -> StateStore {
        StateStore {
            backend,
            read_only,
            state: Mutex::new(state),
            conflict: Default::default(),
            on_conflict: None,
            writer: tokio::sync::Mutex::new(()),
        }
    }

    /// Whether a write found the state changed by another writer.
    pub fn conflicted(&self) -> bool {
        self.conflict.load(std::sync::atomic::Ordering::SeqCst)
    }

    pub fn get(&self, id: &str) -> Option<NodeState> {
        self.state.lock().expect("state lock").nodes.get(id).cloned()
    }

    pub fn snapshot(&self) -> State {
        self.state.lock().expect("state lock").clone()
    }

    /// Applies `f` to the whole state and saves it when it changed. Writes are one at a time,
    /// in the order they were applied (a remote backend chains each on the last).
    pub async fn update(&self, f: impl FnOnce(&mut State)) -> Result<(), NodeError> {
        let _one_writer = self.writer.lock().await;
        let mut next = {
            let mut g = self.state.lock().expect("state lock");
            let before = g.clone();
            f(&mut g);
            if self.read_only || *g == before {
                return Ok(());
            }
            g.clone()
        };
        if self.conflicted() {
            return Err(NodeError::fatal(
                "save state",
                STATE_CONFLICT,
                format!("state {} was changed by another writer", self.backend.location()),
            ));
        }
        match self.backend.save(&mut next).await {
            Ok(()) => {
                self.state.lock().expect("state lock").serial = next.serial;
                Ok(())
            }
            Err(e @ StateError::Conflict { .. }) => {
                self.conflict.store(true, std::sync::atomic::Ordering::SeqCst);
                if let Some(c) = &self.on_conflict {
                    c.trigger();
                }
                Err(NodeError::fatal("save state", STATE_CONFLICT, e.to_string()))
            }
            Err(e) => Err(NodeError::fatal("save state", "StateWriteFailed", e.to_string())),
        }
    }

    /// Records a node. Unchanged but for its timestamp (a deploy that found it as desired), it
    /// is not written again: a no-op deploy does not add a state version per node.
    pub async fn put(&self, id: &str, node: NodeState) -> Result<(), NodeError> {
        self.update(|s| {
            let same = s.nodes.get(id).is_some_and(|old| {
                NodeState {
                    updated_at: node.updated_at.clone(),
                    ..old.clone()
                } == node
            });
            if !same {
                s.nodes.insert(id.to_string(), node);
            }
        })
        .await
    }

    pub async fn remove(&self, id: &str) -> Result<(), NodeError> {
        self.update(|s| {
            s.nodes.remove(id);
        })
        .await
    }

    /// Records a failure with its AWS error, keeping what was known of the object.
    pub async fn mark_failed(&self, id: &str, kind: &str, region: &str, err: &NodeError) {
        let now = now();
        let _ = self
            .update(|s| {
                let e = s.nodes.entry(id.to_string()).or_insert_with(|| NodeState {
                    kind: kind.to_string(),
                    region: region.to_string(),
                    physical_id: None,
                    arn: None,
                    props: Default::default(),
                    attrs: BTreeMap::new(),
                    status: NodeStatus::Failed,
                    error: None,
                    updated_at: now.clone(),
                    generation: 0,
                    token: None,
                });
                e.status = NodeStatus::Failed;
                e.error = Some(err.to_string());
                e.updated_at = now;
            })
            .await;
    }

    pub async fn set_outputs(&self, outputs: BTreeMap<String, BTreeMap<String, String>>) -> Result<(), NodeError> {
        self.update(|s| s.outputs = outputs).await
    }

    pub async fn set_last_run(&self, t: crate::timeline::Timeline) -> Result<(), NodeError> {
        self.update(|s| s.last_run = Some(t)).await
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
