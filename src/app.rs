//! One command run end to end: inputs → graph → lock and state → scheduler → report.

use crate::aws::{Aws, Call, Connection};
use crate::config::{Inputs, Side};
use crate::engine::cancel::Cancel;
use crate::engine::events::{Event, Events};
use crate::engine::graph::{Graph, Node};
use crate::engine::reconcile::{Action, Driver};
use crate::engine::resource::{NodeCx, NodeError};
use crate::engine::scheduler::{self, Direction, NodeResult, Progress};
use crate::engine::state::{State, StateError, StateLock};
use crate::engine::store::StateStore;
use crate::engine::timeline::{Recorder, Timeline};
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
            events: Events::new().with(crate::render::human(0)),
            waits: stack::Waits::default(),
            show_plan: None,
            approve: None,
            cancel: Cancel::default(),
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

fn region_of(inputs: &Inputs, side: Side) -> String {
    inputs.region(side).to_string()
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
    let _lock = match command {
        Command::Plan => None,
        _ => Some(StateLock::acquire(&opts.state_path)?),
    };
    let mut state = State::load(&opts.state_path)?;
    check_state_inputs(&state, opts)?;
    let aws = Arc::new(Aws::connect(&opts.connection, &opts.inputs.primary_region).await);
    aws.preflight(&[&opts.inputs.primary_region, &opts.inputs.secondary_region])
        .await
        .map_err(AppError::Failed)?;
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
    let store = Arc::new(StateStore::new(
        opts.state_path.clone(),
        state,
        command == Command::Plan,
    ));
    // Orphans are leaves: destroy removes them first, deploy once the graph has converged.
    let mut nodes = Vec::new();
    if command == Command::Destroy {
        nodes.extend(orphan_pass(command, &orphans, store.clone(), &aws, opts, &node_events).await);
    }
    nodes.extend(pass(command, &graph, store.clone(), &aws, opts, &planned, &node_events).await);
    if command != Command::Destroy && !opts.cancel.is_set() {
        nodes.extend(orphan_pass(command, &orphans, store.clone(), &aws, opts, &node_events).await);
    }
    let name = match command {
        Command::Plan => "plan",
        Command::Deploy => "deploy",
        Command::Destroy => "destroy",
    };
    let timeline = recorder.finish(name, started_at, &graph, command == Command::Destroy);
    let attrs: BTreeMap<_, _> = store.snapshot().nodes.into_iter().map(|(k, v)| (k, v.attrs)).collect();
    let outputs = stack::outputs(&attrs, |s| region_of(&opts.inputs, s));
    if command != Command::Plan {
        store
            .set_outputs(outputs.clone())
            .and_then(|_| store.set_last_run(timeline.clone()))
            .map_err(|e| AppError::Failed(e.to_string()))?;
    }
    Ok(Report {
        command,
        plan,
        nodes,
        outputs,
        calls: aws.log.calls(),
        timeline,
        interrupted: opts.cancel.is_set(),
    })
}

/// Nodes in state that the graph no longer has (written by an older tap), as graph nodes.
fn orphans(graph: &Graph, state: &State) -> Vec<Node> {
    let kinds: Vec<&'static str> = graph.nodes().map(|n| n.kind).collect();
    state
        .nodes
        .iter()
        .filter(|(id, _)| !graph.contains(id))
        .map(|(id, n)| Node {
            id: id.clone(),
            // An unknown kind keeps its name; `stack::resource` then has no implementation.
            kind: kinds.iter().copied().find(|k| *k == n.kind).unwrap_or("unknown"),
            side: if id.starts_with("secondary/") {
                Side::Secondary
            } else {
                Side::Primary
            },
            deps: vec![],
        })
        .collect()
}

/// Orphans: planned as deletions, deleted by their recorded ids, forgotten.
async fn orphan_pass(
    command: Command,
    orphans: &[Node],
    store: Arc<StateStore>,
    aws: &Arc<Aws>,
    opts: &Options,
    events: &Events,
) -> Vec<NodeLine> {
    let mut driver = Driver::new(store, opts.parallelism, Arc::default(), opts.allow_replace);
    driver.events = events.clone();
    driver.default_action = "delete";
    driver.wait_scale = opts.wait_scale;
    driver.cancel = opts.cancel.clone();
    let runs = orphans.iter().map(|node| {
        let driver = &driver;
        async move {
            let cx = NodeCx {
                region: region_of(&opts.inputs, node.side),
                prior: driver.store.get(&node.id),
                deps: BTreeMap::new(),
                planning: command == Command::Plan,
                node: node.clone(),
                inputs: opts.inputs.clone(),
                token: None,
            };
            let t0 = tokio::time::Instant::now();
            events.emit(Event::NodeStart { at: driver.at(&cx) });
            let res = match stack::known_kind(node.kind) {
                true => {
                    driver
                        .remove_orphan(stack::resource(node.kind, aws, &opts.waits).as_ref(), &cx)
                        .await
                }
                false => Err(NodeError::fatal(
                    "plan",
                    "UnknownKind",
                    format!("{} has a kind this tap does not know; remove it by hand", node.id),
                )),
            };
            emit_end(events, driver.at(&cx), &res, t0.elapsed());
            NodeLine {
                id: node.id.clone(),
                kind: node.kind.to_string(),
                region: cx.region.clone(),
                outcome: match res {
                    Ok(a) => Outcome::Done(a),
                    Err(e) => failed(&e),
                },
                seconds: t0.elapsed().as_secs_f64(),
                twins: vec![],
            }
        }
    });
    futures::future::join_all(runs).await
}

/// One walk of the graph: every node planned, deployed or destroyed.
async fn pass(
    command: Command,
    graph: &Arc<Graph>,
    store: Arc<StateStore>,
    aws: &Arc<Aws>,
    opts: &Options,
    planned: &BTreeMap<String, String>,
    node_events: &Events,
) -> Vec<NodeLine> {
    let progress = Arc::new(Progress::new(opts.events.clone()));
    let mut driver = Driver::new(store, opts.parallelism, progress.clone(), opts.allow_replace);
    driver.wait_scale = opts.wait_scale;
    // Plan passes only read: their retries show as usual, their nodes only in the timeline.
    driver.events = match command {
        Command::Plan => opts.events.clone(),
        _ => node_events.clone(),
    };
    driver.planned = planned.clone();
    driver.default_action = match command {
        Command::Plan => "plan",
        Command::Deploy => "deploy",
        Command::Destroy => "delete",
    };
    driver.cancel = opts.cancel.clone();
    let driver = Arc::new(driver);
    let direction = if command == Command::Destroy {
        Direction::Reverse
    } else {
        Direction::Forward
    };
    let node_events = node_events.clone();
    let work = {
        let (graph, driver, aws, inputs) = (graph.clone(), driver.clone(), aws.clone(), opts.inputs.clone());
        let waits = Arc::new(opts.waits.clone());
        move |id: String| {
            let (graph, driver, aws, inputs, waits, node_events) = (
                graph.clone(),
                driver.clone(),
                aws.clone(),
                inputs.clone(),
                waits.clone(),
                node_events.clone(),
            );
            // A child of the run's span (the scheduler spawns each node as its own task).
            let span = graph.get(&id).map_or_else(
                tracing::Span::none,
                |n| tracing::info_span!("node", id = %id, kind = n.kind, region = %region_of(&inputs, n.side)),
            );
            async move {
                let node = graph.get(&id).expect("scheduled node exists").clone();
                let cx = NodeCx {
                    region: region_of(&inputs, node.side),
                    prior: driver.store.get(&id),
                    deps: driver.dep_attrs(&node.deps),
                    planning: command == Command::Plan,
                    node,
                    inputs,
                    token: None,
                };
                let r = stack::resource(cx.node.kind, &aws, &waits);
                let t0 = tokio::time::Instant::now();
                node_events.emit(Event::NodeStart { at: driver.at(&cx) });
                let res = match command {
                    Command::Plan => driver.plan(r.as_ref(), &cx).await,
                    Command::Deploy => driver.deploy(r.as_ref(), &cx).await,
                    Command::Destroy => driver.destroy(r.as_ref(), &cx).await,
                };
                emit_end(&node_events, driver.at(&cx), &res, t0.elapsed());
                res
            }
            .instrument(span)
        }
    };
    // Plan passes print no progress: they only read.
    let every = if command == Command::Plan {
        Duration::ZERO
    } else {
        opts.progress_every
    };
    let reports = scheduler::run(graph, direction, progress, every, &opts.cancel, work).await;
    let twins = driver.twins();
    let mut nodes: Vec<NodeLine> = reports
        .into_iter()
        .map(|r| {
            let n = graph.get(&r.id).expect("reported node exists");
            NodeLine {
                kind: n.kind.to_string(),
                region: region_of(&opts.inputs, n.side),
                outcome: match r.result {
                    NodeResult::Done(a) => Outcome::Done(a),
                    NodeResult::Failed(e) if e.is_interrupted() => Outcome::Interrupted,
                    NodeResult::Failed(e) => failed(&e),
                    NodeResult::Blocked(by) => Outcome::Blocked { by },
                    NodeResult::Interrupted => Outcome::Interrupted,
                },
                seconds: r.elapsed.as_secs_f64(),
                twins: twins.get(&r.id).cloned().unwrap_or_default(),
                id: r.id,
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes
}

/// A node's last event: done with the action it took, or failed with the AWS error.
fn emit_end(events: &Events, mut at: crate::engine::events::At, res: &Result<Action, NodeError>, t: Duration) {
    let elapsed_s = t.as_secs_f64();
    match res {
        Ok(a) => {
            at.action = a.verb(false).to_string();
            if let Action::Skip { reason } = a {
                events.emit(Event::Note {
                    at: at.clone(),
                    message: format!("skipped: {reason}"),
                });
            }
            events.emit(Event::NodeDone { at, elapsed_s });
        }
        Err(e) => events.emit(Event::NodeFailed {
            at,
            operation: e.op.clone(),
            code: e.code.clone(),
            message: e.to_string(),
            elapsed_s,
        }),
    }
}

fn failed(e: &NodeError) -> Outcome {
    Outcome::Failed {
        error: e.to_string(),
        code: e.code.clone(),
        operation: e.op.clone(),
    }
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
