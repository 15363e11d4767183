//! The state of one run, shared by all node tasks: every transition is saved at once.

use crate::engine::resource::NodeError;
use crate::engine::state::{NodeState, NodeStatus, State};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

pub struct StateStore {
    path: PathBuf,
    /// Plan mode reads but never writes.
    read_only: bool,
    state: Mutex<State>,
}

impl StateStore {
    pub fn new(path: PathBuf, state: State, read_only: bool) -> StateStore {
        StateStore {
            path,
            read_only,
            state: Mutex::new(state),
        }
    }

    pub fn get(&self, id: &str) -> Option<NodeState> {
        self.state.lock().expect("state lock").nodes.get(id).cloned()
    }

    pub fn snapshot(&self) -> State {
        self.state.lock().expect("state lock").clone()
    }

    /// Applies `f` to the whole state and saves it when it changed.
    pub fn update(&self, f: impl FnOnce(&mut State)) -> Result<(), NodeError> {
        let mut g = self.state.lock().expect("state lock");
        let before = g.clone();
        f(&mut g);
        if self.read_only || *g == before {
            return Ok(());
        }
        g.save(&self.path)
            .map_err(|e| NodeError::fatal("save state", "StateWriteFailed", e.to_string()))
    }

    pub fn put(&self, id: &str, node: NodeState) -> Result<(), NodeError> {
        self.update(|s| {
            s.nodes.insert(id.to_string(), node);
        })
    }

    pub fn remove(&self, id: &str) -> Result<(), NodeError> {
        self.update(|s| {
            s.nodes.remove(id);
        })
    }

    /// Records a failure with its AWS error, keeping what was known of the object.
    pub fn mark_failed(&self, id: &str, kind: &str, region: &str, err: &NodeError) {
        let now = now();
        let _ = self.update(|s| {
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
        });
    }

    pub fn set_outputs(&self, outputs: BTreeMap<String, BTreeMap<String, String>>) -> Result<(), NodeError> {
        self.update(|s| s.outputs = outputs)
    }

    pub fn set_last_run(&self, t: crate::engine::timeline::Timeline) -> Result<(), NodeError> {
        self.update(|s| s.last_run = Some(t))
    }
}

pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}
