//! The walks of one run: every node of the graph planned, deployed or destroyed in dependency
//! order, and the orphans (nodes an older tap recorded that the graph no longer has).

use crate::aws::Aws;
use crate::config::Inputs;
use crate::engine::events::{Event, Events};
use crate::engine::graph::Graph;
use crate::engine::reconcile::{Action, Driver};
use crate::engine::resource::{NodeCx, NodeError};
use crate::engine::scheduler::{self, Direction, NodeResult, Progress};
use crate::engine::state::State;
use crate::engine::store::StateStore;
use crate::kinds;
use crate::run::{Command, NodeLine, Options, Outcome};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The context every node of a run gets from the stack: its inputs (opaque to the engine).
fn stack_cx(inputs: &Inputs) -> Arc<dyn std::any::Any + Send + Sync> {
    Arc::new(inputs.clone())
}

/// Nodes in state that the graph no longer has: of a region removed from the stack, or of a
/// kind an older tap had. Those of a removed region keep the edges the graph gave them while
/// the region was part of the stack (`previous`: the graph over the current regions and the
/// removed ones), so that they are deleted in reverse dependency order (the ASG before its
/// subnets, the VPC last) and read what they need (a secret replica, its writer's secret).
pub(crate) struct Orphans {
    /// The orphans, with edges among themselves only: the order of their deletion.
    pub graph: Graph,
    /// Every dependency each orphan had (it reads their values).
    pub deps: BTreeMap<String, Vec<String>>,
}

impl Orphans {
    pub fn is_empty(&self) -> bool {
        self.graph.is_empty()
    }
}

pub(crate) fn orphans(graph: &Graph, previous: &Graph, state: &State) -> Orphans {
    let ids: Vec<&String> = state.nodes.keys().filter(|id| !graph.contains(id)).collect();
    let mut g = Graph::default();
    let mut deps = BTreeMap::new();
    for id in &ids {
        let n = &state.nodes[*id];
        let before = previous.get(id);
        // An unknown kind keeps its name; the registry then has no implementation.
        let kind = kinds::get(&n.kind).map_or("unknown", |k| k.name);
        let all: Vec<String> = before.map(|b| b.deps.clone()).unwrap_or_default();
        let among: Vec<String> = all.iter().filter(|d| ids.contains(d)).cloned().collect();
        g.add((*id).clone(), &n.region, kind, &among)
            .expect("state ids are unique");
        deps.insert((*id).clone(), all);
    }
    Orphans { graph: g, deps }
}

/// Orphans: planned as deletions, deleted by their recorded ids in reverse dependency order,
/// forgotten.
pub(crate) async fn orphan_pass(
    command: Command,
    orphans: &Orphans,
    store: Arc<StateStore>,
    aws: &Arc<Aws>,
    opts: &Options,
    events: &Events,
) -> Vec<NodeLine> {
    if orphans.is_empty() {
        return vec![];
    }
    let mut driver = Driver::new(store, opts.parallelism, Arc::default(), opts.allow_replace);
    driver.events = events.clone();
    driver.default_action = "delete";
    driver.wait_scale = opts.wait_scale;
    driver.cancel = opts.cancel.clone();
    let driver = Arc::new(driver);
    let graph = Arc::new(orphans.graph.clone());
    let all_deps = Arc::new(orphans.deps.clone());
    let stack = stack_cx(&opts.inputs);
    let work = {
        let (graph, driver, aws, events, env, waits) = (
            graph.clone(),
            driver.clone(),
            aws.clone(),
            events.clone(),
            opts.inputs.env.clone(),
            opts.waits.clone(),
        );
        move |id: String| {
            let (graph, driver, aws, events, env, waits, stack, all_deps) = (
                graph.clone(),
                driver.clone(),
                aws.clone(),
                events.clone(),
                env.clone(),
                waits.clone(),
                stack.clone(),
                all_deps.clone(),
            );
            async move {
                let mut node = graph.get(&id).expect("scheduled node exists").clone();
                node.deps = all_deps.get(&id).cloned().unwrap_or_default();
                let cx = NodeCx {
                    region: node.region.clone(),
                    prior: driver.store.get(&node.id),
                    deps: driver.dep_attrs(&node.deps),
                    planning: command == Command::Plan,
                    wait: waits.of(node.kind),
                    aliases: vec![],
                    node,
                    env,
                    stack,
                    token: None,
                };
                let t0 = tokio::time::Instant::now();
                events.emit(Event::NodeStart { at: driver.at(&cx) });
                let res = match kinds::get(cx.node.kind) {
                    Some(kind) => driver.remove_orphan((kind.make)(aws).as_ref(), &cx).await,
                    None => Err(NodeError::fatal(
                        "plan",
                        "UnknownKind",
                        format!("{} has a kind this tap does not know; remove it by hand", cx.node.id),
                    )),
                };
                emit_end(&events, driver.at(&cx), &res, t0.elapsed());
                res
            }
        }
    };
    let reports = scheduler::run(
        &graph,
        Direction::Reverse,
        Arc::new(Progress::new(Events::new())),
        Duration::ZERO,
        &opts.cancel,
        work,
    )
    .await;
    reports.into_iter().map(|r| node_line(&graph, r, vec![])).collect()
}

/// One walk of the graph: every node planned, deployed or destroyed.
pub(crate) async fn pass(
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
    driver.held = opts.held.clone();
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
        let stack = stack_cx(&opts.inputs);
        let topology = opts.inputs.topology.clone();
        let waits = Arc::new(opts.waits.clone());
        move |id: String| {
            let (graph, driver, aws, env, waits, node_events, stack, topology) = (
                graph.clone(),
                driver.clone(),
                aws.clone(),
                inputs.env.clone(),
                waits.clone(),
                node_events.clone(),
                stack.clone(),
                topology.clone(),
            );
            // A child of the run's span (the scheduler spawns each node as its own task).
            let span = graph.get(&id).map_or_else(
                tracing::Span::none,
                |n| tracing::info_span!("node", id = %id, kind = n.kind, region = %n.region),
            );
            async move {
                let node = graph.get(&id).expect("scheduled node exists").clone();
                let kind = kinds::get(node.kind).expect("every kind of the graph is registered");
                let cx = NodeCx {
                    region: node.region.clone(),
                    prior: driver.store.get(&id),
                    deps: driver.dep_attrs(&node.deps),
                    planning: command == Command::Plan,
                    wait: waits.of(node.kind),
                    aliases: topology.v2_id(&node.region, node.kind).into_iter().collect(),
                    node,
                    env,
                    stack,
                    token: None,
                };
                let r = (kind.make)(aws);
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
            let t = twins.get(&r.id).cloned().unwrap_or_default();
            node_line(graph, r, t)
        })
        .collect();
    nodes.sort_by(|a, b| a.id.cmp(&b.id));
    nodes
}

/// What became of a node the scheduler ran.
fn node_line(graph: &Graph, r: scheduler::NodeReport<Action>, twins: Vec<String>) -> NodeLine {
    let n = graph.get(&r.id).expect("reported node exists");
    NodeLine {
        kind: n.kind.to_string(),
        region: n.region.clone(),
        outcome: match r.result {
            NodeResult::Done(a) => Outcome::Done(a),
            NodeResult::Failed(e) if e.is_interrupted() => Outcome::Interrupted,
            NodeResult::Failed(e) => failed(&e),
            NodeResult::Blocked(by) => Outcome::Blocked { by },
            NodeResult::Interrupted => Outcome::Interrupted,
        },
        seconds: r.elapsed.as_secs_f64(),
        twins,
        id: r.id,
    }
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
