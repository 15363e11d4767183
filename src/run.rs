//! What a run is asked to do and what it reports: the data the command line, the run, its
//! passes and the renderers share (no behaviour here, so that none of them imports another in a
//! circle).

use crate::aws::{Call, Connection};
use crate::config::Inputs;
use crate::engine::cancel::Cancel;
use crate::engine::events::Events;
use crate::engine::reconcile::Action;
use crate::engine::timeline::Timeline;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    Plan,
    Deploy,
    Destroy,
}

#[derive(Clone)]
pub struct Options {
    pub inputs: Inputs,
    pub state_path: PathBuf,
    pub connection: Connection,
    pub parallelism: usize,
    pub allow_replace: bool,
    /// Multiplies every wait policy (1.0 in real use).
    pub wait_scale: f64,
    /// Interval of progress lines while nodes are in flight (zero: none).
    pub progress_every: Duration,
    /// Subscribers of the run's events (default: none; the command line adds its renderers).
    pub events: Events,
    /// Per-kind maximum waits.
    pub waits: crate::kinds::Waits,
    /// Deploy: called with the plan before anything is changed.
    pub show_plan: Option<PlanHook>,
    /// Deploy: asked with a plan that changes something; `false` changes nothing (exit 1).
    pub approve: Option<ApproveHook>,
    /// Set on Ctrl-C (SIGINT, SIGTERM): no node starts, in-flight nodes stop at their next wait.
    pub cancel: Cancel,
    /// The state in S3 (`s3://bucket/key`) instead of the local file `state_path`.
    pub state_url: Option<String>,
    /// The region of the state bucket (default: the primary region).
    pub state_region: Option<String>,
    /// How long to wait for a state lock another run holds (S3 state); zero: fail at once.
    pub lock_timeout: Duration,
    /// Nodes plan and deploy leave as they are, with the reason (a failover's roles awaiting
    /// reprotect: `dr::record::held`). Set by the run from the state.
    pub held: BTreeMap<String, String>,
}

pub type PlanHook = Arc<dyn Fn(&[NodeLine]) + Send + Sync>;
pub type ApproveHook = Arc<dyn Fn(&[NodeLine]) -> bool + Send + Sync>;

impl Options {
    pub fn new(inputs: Inputs, state_path: PathBuf, connection: Connection) -> Options {
        Options {
            inputs,
            state_path,
            connection,
            parallelism: 10,
            allow_replace: false,
            wait_scale: 1.0,
            progress_every: Duration::from_secs(15),
            events: Events::new(),
            waits: crate::kinds::Waits::default(),
            show_plan: None,
            approve: None,
            cancel: Cancel::default(),
            state_url: None,
            state_region: None,
            lock_timeout: Duration::ZERO,
            held: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    Done(Action),
    Failed {
        error: String,
        code: String,
        operation: String,
    },
    Blocked {
        by: String,
    },
    /// The run was interrupted before or while this node ran; the next run resumes it.
    Interrupted,
}

#[derive(Clone, Debug, Serialize)]
pub struct NodeLine {
    pub id: String,
    pub kind: String,
    pub region: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub seconds: f64,
    /// Other objects carrying this node's ownership tags: planned for deletion (plan) or deleted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub twins: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub command: Command,
    /// Deploy: the plan shown before acting.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<Vec<NodeLine>>,
    pub nodes: Vec<NodeLine>,
    pub outputs: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(skip)]
    pub calls: Vec<Call>,
    /// Where the time went, node by node.
    pub timeline: Timeline,
    /// Ctrl-C stopped the run (exit 130).
    pub interrupted: bool,
    /// Another writer changed the state during the run: it stopped (exit 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_conflict: Option<String>,
}

impl Report {
    pub fn failures(&self) -> Vec<&NodeLine> {
        self.nodes
            .iter()
            .filter(|n| !matches!(n.outcome, Outcome::Done(_)))
            .collect()
    }

    pub fn action(&self, id: &str) -> Option<&Action> {
        self.nodes.iter().find(|n| n.id == id).and_then(|n| match &n.outcome {
            Outcome::Done(a) => Some(a),
            _ => None,
        })
    }

    /// Nodes by what happened to them.
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        counts(&self.nodes)
    }
}

/// Whether a plan would change anything (a twin to delete counts).
pub fn has_changes(lines: &[NodeLine]) -> bool {
    lines
        .iter()
        .any(|n| !n.twins.is_empty() || !matches!(n.outcome, Outcome::Done(Action::None | Action::Skip { .. })))
}

/// `create`, `update`, `replace`, `delete`, `unchanged`, `failed` → how many nodes.
pub fn counts(nodes: &[NodeLine]) -> BTreeMap<&'static str, usize> {
    let mut c = BTreeMap::from([
        ("create", 0),
        ("update", 0),
        ("replace", 0),
        ("delete", 0),
        ("unchanged", 0),
        ("failed", 0),
    ]);
    for n in nodes {
        let k = match &n.outcome {
            Outcome::Done(Action::Create) => "create",
            Outcome::Done(Action::Update { .. }) => "update",
            Outcome::Done(Action::Replace { .. }) => "replace",
            Outcome::Done(Action::Delete) => "delete",
            Outcome::Done(Action::None | Action::Skip { .. }) => "unchanged",
            Outcome::Interrupted => "interrupted",
            _ => "failed",
        };
        *c.entry(k).or_default() += 1;
        *c.get_mut("delete").expect("known key") += n.twins.len();
    }
    c
}

impl NodeLine {
    /// Whether the node completed with `action` (changes inside updates are not compared).
    pub fn outcome_is(&self, action: &Action) -> bool {
        matches!(&self.outcome, Outcome::Done(a) if std::mem::discriminant(a) == std::mem::discriminant(action))
    }
}
