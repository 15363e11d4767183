//! One command run end to end: inputs → graph → lock and state → scheduler → report.

use crate::aws::{Aws, Call, Connection};
use crate::config::Inputs;
use crate::engine::backend::{Backend, LocalFile};
use crate::engine::cancel::Cancel;
use crate::engine::events::Events;
use crate::engine::graph::Graph;
use crate::engine::reconcile::Action;
use crate::engine::state::{State, StateError};
use crate::engine::store::StateStore;
use crate::engine::timeline::{Recorder, Timeline};
use crate::passes::{orphan_pass, orphans, pass, region_of};
use crate::stack;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

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
    /// Subscribers of the run's events (default: the human lines on stderr).
    pub events: Events,
    /// Per-kind maximum waits.
    pub waits: stack::Waits,
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
            events: Events::new().with(crate::render::human()),
            waits: stack::Waits::default(),
            show_plan: None,
            approve: None,
            cancel: Cancel::default(),
            state_url: None,
            state_region: None,
            lock_timeout: Duration::ZERO,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Exit 2: bad input, refused before any AWS call.
    #[error("{0}")]
    Usage(String),
    /// Exit 1.
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Failed(String),
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

/// Refuses a state file written for other inputs (env or regions) before anything runs.
fn check_state_inputs(state: &State, opts: &Options) -> Result<(), AppError> {
    if let Some(old) = &state.inputs {
        let i = &opts.inputs;
        if old.env != i.env || old.primary_region != i.primary_region || old.secondary_region != i.secondary_region {
            return Err(AppError::Usage(format!(
                "state file {} belongs to env {:?} in {}/{}, not env {:?} in {}/{}; pick another --state",
                opts.state_path.display(),
                old.env,
                old.primary_region,
                old.secondary_region,
                i.env,
                i.primary_region,
                i.secondary_region
            )));
        }
    }
    Ok(())
}

pub async fn execute(command: Command, opts: &Options) -> Result<Report, AppError> {
    let span = tracing::info_span!("run", command = ?command, env = %opts.inputs.env);
    execute_in_span(command, opts).instrument(span).await
}

async fn execute_in_span(command: Command, opts: &Options) -> Result<Report, AppError> {
    let graph = Arc::new(stack::graph().map_err(|e| AppError::Failed(format!("internal: {e}")))?);
    graph
        .validate()
        .map_err(|e| AppError::Failed(format!("internal: {e}")))?;
    // A local state is locked and read before any AWS call (a held lock or a corrupt file is
    // the error, whatever the network); a state in S3 needs AWS first.
    let mut aws = None;
    if opts.state_url.is_some() {
        aws = Some(connect(opts).await?);
    }
    let backend = backend(opts, aws.as_ref()).await?;
    let name = match command {
        Command::Plan => "plan",
        Command::Deploy => "deploy",
        Command::Destroy => "destroy",
    };
    let lock = match command {
        Command::Plan => None,
        _ => Some(backend.lock(name).await?),
    };
    let result = run_locked(command, opts, graph, backend, aws, name).await;
    // Released after errors too (a Ctrl-C ends the run through the same path); kept when another
    // writer changed the state, so that nobody else writes until a person has looked.
    let conflict = matches!(&result, Ok(r) if r.state_conflict.is_some());
    if let Some(l) = lock
        && !conflict
    {
        l.release().await;
    }
    result
}

/// The run once its state is locked: read it, plan, deploy or destroy, record the outputs.
async fn run_locked(
    command: Command,
    opts: &Options,
    graph: Arc<Graph>,
    backend: Arc<dyn Backend>,
    aws: Option<Arc<Aws>>,
    name: &str,
) -> Result<Report, AppError> {
    let mut state = backend.load().await?;
    check_state_inputs(&state, opts)?;
    if opts.state_url.is_some() && state.serial == 0 && opts.state_path.exists() {
        return Err(AppError::Failed(format!(
            "{} holds no state yet, but the local state {} does: nothing was deployed. Move it first \
             (aws s3 cp {} {}), then run again",
            backend.location(),
            opts.state_path.display(),
            opts.state_path.display(),
            backend.location()
        )));
    }
    let aws = match aws {
        Some(a) => a,
        None => connect(opts).await?,
    };
    // Bucket names end in the account id (SPEC v2: they are global across all accounts).
    let account = aws
        .account_id(&opts.inputs.primary_region)
        .await
        .map_err(|e| AppError::Failed(format!("resolving the account id: {e}")))?;
    let opts = &Options {
        inputs: Inputs {
            account,
            ..opts.inputs.clone()
        },
        ..opts.clone()
    };
    state.inputs = Some(opts.inputs.clone());

    let mut plan = None;
    if command == Command::Deploy {
        // The same plan `tap plan` shows, before anything is touched.
        let read_only = Arc::new(StateStore::new(opts.state_path.clone(), state.clone(), true));
        let mut lines = pass(
            Command::Plan,
            &graph,
            read_only.clone(),
            &aws,
            opts,
            &BTreeMap::new(),
            &Events::new(),
        )
        .await;
        lines.extend(
            orphan_pass(
                Command::Plan,
                &orphans(&graph, &state),
                read_only,
                &aws,
                opts,
                &Events::new(),
            )
            .await,
        );
        if let Some(show) = &opts.show_plan {
            show(&lines);
        }
        let replace: Vec<String> = lines
            .iter()
            .filter_map(|n| match &n.outcome {
                Outcome::Done(Action::Replace { because, .. }) => Some(format!("{} ({})", n.id, because.join(", "))),
                _ => None,
            })
            .collect();
        if !replace.is_empty() && !opts.allow_replace {
            return Err(AppError::Failed(format!(
                "deploy would replace {} (immutable properties differ); nothing was changed. \
                 Rerun with --allow-replace to delete and recreate.",
                replace.join("; ")
            )));
        }
        if let Some(approve) = &opts.approve
            && has_changes(&lines)
            && !approve(&lines)
        {
            return Err(AppError::Failed("deploy cancelled: nothing was changed".into()));
        }
        plan = Some(lines);
    }
    let planned: BTreeMap<String, String> = plan
        .iter()
        .flatten()
        .filter_map(|n| match &n.outcome {
            Outcome::Done(a) => Some((n.id.clone(), a.verb(false).to_string())),
            _ => None,
        })
        .collect();

    let recorder = Recorder::new();
    let started_at = crate::engine::store::now();
    let node_events = match command {
        Command::Plan => Events::new(),
        _ => opts.events.clone(),
    }
    .with(recorder.sink());
    let orphans = orphans(&graph, &state);
    let mut store = StateStore::with_backend(backend.clone(), state, command == Command::Plan);
    store.on_conflict = Some(opts.cancel.clone());
    let store = Arc::new(store);
    // Orphans are leaves: destroy removes them first, deploy once the graph has converged.
    let mut nodes = Vec::new();
    if command == Command::Destroy {
        nodes.extend(orphan_pass(command, &orphans, store.clone(), &aws, opts, &node_events).await);
    }
    nodes.extend(pass(command, &graph, store.clone(), &aws, opts, &planned, &node_events).await);
    if command != Command::Destroy && !opts.cancel.is_set() {
        nodes.extend(orphan_pass(command, &orphans, store.clone(), &aws, opts, &node_events).await);
    }
    let timeline = recorder.finish(name, started_at, &graph, command == Command::Destroy);
    let attrs: BTreeMap<_, _> = store.snapshot().nodes.into_iter().map(|(k, v)| (k, v.attrs)).collect();
    let outputs = stack::outputs(&attrs, |s| region_of(&opts.inputs, s));
    if command != Command::Plan && !store.conflicted() {
        store
            .set_outputs(outputs.clone())
            .await
            .map_err(|e| AppError::Failed(e.to_string()))?;
        store
            .set_last_run(timeline.clone())
            .await
            .map_err(|e| AppError::Failed(e.to_string()))?;
    }
    Ok(Report {
        command,
        plan,
        nodes,
        outputs,
        calls: aws.log.calls(),
        timeline,
        interrupted: opts.cancel.is_set() && !store.conflicted(),
        state_conflict: store.conflicted().then(|| {
            StateError::Conflict {
                location: backend.location(),
            }
            .to_string()
        }),
    })
}

/// AWS clients, after the preflight (credentials, endpoint, account).
async fn connect(opts: &Options) -> Result<Arc<Aws>, AppError> {
    let aws = Arc::new(Aws::connect(&opts.connection, &opts.inputs.primary_region).await);
    aws.preflight(&[&opts.inputs.primary_region, &opts.inputs.secondary_region])
        .await
        .map_err(AppError::Failed)?;
    Ok(aws)
}

/// Where the state lives: the S3 object of `--state s3://...`, else the local file.
pub async fn backend(opts: &Options, aws: Option<&Arc<Aws>>) -> Result<Arc<dyn Backend>, AppError> {
    let Some(url) = &opts.state_url else {
        return Ok(Arc::new(LocalFile(opts.state_path.clone())));
    };
    let (bucket, key) = crate::aws::state_s3::parse_url(url)
        .ok_or_else(|| AppError::Usage(format!("--state {url:?}: expected s3://BUCKET/KEY")))?;
    let aws = match aws {
        Some(a) => a.clone(),
        None => connect(opts).await?,
    };
    let region = opts.state_region.as_deref().unwrap_or(&opts.inputs.primary_region);
    let mut s3 = crate::aws::state_s3::S3State::open(aws, region, &bucket, &key).await?;
    s3.lock_timeout = opts.lock_timeout;
    Ok(Arc::new(s3))
}

/// The state for the commands that only read it (`status`, `output`, `timeline`).
pub async fn load_state(opts: &Options) -> Result<State, AppError> {
    Ok(backend(opts, None).await?.load().await?)
}

/// The graph, for `status` and tests.
pub fn graph() -> Graph {
    stack::graph().expect("the stack graph is valid")
}

impl NodeLine {
    /// Whether the node completed with `action` (changes inside updates are not compared).
    pub fn outcome_is(&self, action: &Action) -> bool {
        matches!(&self.outcome, Outcome::Done(a) if std::mem::discriminant(a) == std::mem::discriminant(action))
    }
}
