//! One command run end to end: inputs → graph → lock and state → scheduler → report.

use crate::aws::Aws;
use crate::config::Inputs;
use crate::engine::backend::{Backend, LocalFile};
use crate::engine::events::Events;
use crate::engine::graph::Graph;
use crate::engine::reconcile::Action;
use crate::engine::state::{State, StateError};
use crate::engine::store::StateStore;
use crate::engine::timeline::Recorder;
use crate::passes::{orphan_pass, orphans, pass};
use crate::stack;
use crate::topology::Topology;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use tracing::Instrument;

pub use crate::run::{ApproveHook, Command, NodeLine, Options, Outcome, PlanHook, Report, counts, has_changes};

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
    /// Exit 1: what tap was doing (naming the object), and the error that stopped it, kept as
    /// its source (printed as one line: `context: cause: root`).
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl AppError {
    /// `source`, in the context of what tap was doing.
    pub fn context(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> AppError {
        AppError::Context {
            context: context.into(),
            source: Box::new(source),
        }
    }
}

/// Refuses a state file written for other inputs (env or regions) before anything runs.
pub(crate) fn check_state_inputs(state: &State, opts: &Options) -> Result<(), AppError> {
    if let Some(old) = &state.inputs {
        let old: Inputs = serde_json::from_value(old.clone()).map_err(|e| {
            AppError::context(
                format!(
                    "state file {}: its recorded inputs are unreadable",
                    opts.state_path.display()
                ),
                e,
            )
        })?;
        let i = &opts.inputs;
        // Secondaries may be added and removed; the env and the home region make the stack.
        if old.env != i.env || old.topology.home() != i.topology.home() {
            return Err(AppError::Usage(format!(
                "state file {} belongs to env {:?} with home region {}, not env {:?} with home region {}; \
                 pick another --state",
                opts.state_path.display(),
                old.env,
                old.topology.home(),
                i.env,
                i.topology.home(),
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
    let result = run_locked(command, opts, backend, aws, name).await;
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
    backend: Arc<dyn Backend>,
    aws: Option<Arc<Aws>>,
    name: &str,
) -> Result<Report, AppError> {
    let mut state = load_migrated(&*backend, opts, command != Command::Plan).await?;
    check_state_inputs(&state, opts)?;
    // The regions keep the indexes state recorded; the writer is the one state names.
    let inputs = with_recorded_topology(&opts.inputs, &state);
    let opts = &Options {
        // While a stale writer awaits reprotect, its region's database, secret and ASG (and
        // every replica that follows it) are left alone.
        held: match command {
            Command::Destroy => BTreeMap::new(),
            _ => crate::dr::record::held(&state, &inputs.topology),
        },
        inputs,
        ..opts.clone()
    };
    if command != Command::Destroy {
        for line in crate::dr::record::summary(&state, opts.inputs.topology.home()) {
            crate::render::err(&line);
        }
    }
    // The graph while the regions state records were all part of the stack: a removed region's
    // nodes are deleted in its reverse order.
    let previous = previous_graph(&opts.inputs, &state);
    state.regions = opts.inputs.topology.indexes();
    let graph = Arc::new(graph_of(&opts.inputs));
    graph
        .validate()
        .map_err(|e| AppError::context("checking the stack's graph", e))?;
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
        .account_id(opts.inputs.topology.home())
        .await
        .map_err(|e| AppError::context("resolving the account id", e))?;
    let opts = &Options {
        inputs: Inputs {
            account,
            ..opts.inputs.clone()
        },
        ..opts.clone()
    };
    state.inputs = Some(serde_json::to_value(&opts.inputs).expect("inputs serialize"));

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
                &orphans(&graph, &previous, &state),
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
    let orphans = orphans(&graph, &previous, &state);
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
    let outputs = stack::outputs(&graph, &opts.inputs.topology, &attrs);
    if command != Command::Plan && !store.conflicted() {
        store
            .set_outputs(outputs.clone())
            .await
            .map_err(|e| AppError::context("recording the outputs", e))?;
        store
            .set_last_run(timeline.clone())
            .await
            .map_err(|e| AppError::context("recording the run's timeline", e))?;
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
    let aws = Arc::new(Aws::connect(&opts.connection, opts.inputs.topology.home()).await);
    aws.preflight(&opts.inputs.topology.regions().collect::<Vec<_>>())
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
    let region = opts.state_region.as_deref().unwrap_or(opts.inputs.topology.home());
    let mut s3 = crate::aws::state_s3::S3State::open(aws, region, &bucket, &key).await?;
    s3.lock_timeout = opts.lock_timeout;
    Ok(Arc::new(s3))
}

/// The state for the commands that only read it (`status`, `output`, `timeline`), migrated in
/// memory when an older tap wrote it.
pub async fn load_state(opts: &Options) -> Result<State, AppError> {
    load_migrated(&*backend(opts, None).await?, opts, false).await
}

/// Loads the state and migrates a SPEC v2 state (SPEC v3 "Migration from v2"). With `keep`, a
/// local file's v2 text is kept beside it as `<state>.v2` before anything writes the new one
/// (an S3 state keeps it as the previous object version).
pub(crate) async fn load_migrated(backend: &dyn Backend, opts: &Options, keep: bool) -> Result<State, AppError> {
    let mut state = backend.load().await?;
    let migrated = crate::migrate::migrate(&mut state).map_err(|e| {
        AppError::Failed(format!(
            "state {} was written by SPEC v2's tap and cannot be migrated: {e}; it was left untouched",
            backend.location()
        ))
    })?;
    if migrated && keep {
        let kept = if opts.state_url.is_some() {
            format!("{} (its previous object version)", backend.location())
        } else {
            let v2 = PathBuf::from(format!("{}.v2", opts.state_path.display()));
            if !v2.exists() {
                std::fs::copy(&opts.state_path, &v2)
                    .map_err(|e| AppError::context(format!("keeping the v2 state as {}", v2.display()), e))?;
            }
            v2.display().to_string()
        };
        crate::render::err(&format!(
            "state {} migrated from SPEC v2 (ids {{region}}/{{node}}, region indexes); the v2 state is kept as {kept}",
            backend.location()
        ));
    }
    Ok(state)
}

/// The graph over the current regions and those that `state` records but the inputs no longer
/// name (removed from the stack). Without such regions, the current graph.
fn previous_graph(inputs: &Inputs, state: &State) -> Graph {
    let t = &inputs.topology;
    let mut secondaries: Vec<&str> = t.secondaries().collect();
    secondaries.extend(
        state
            .regions
            .keys()
            .map(String::as_str)
            .filter(|r| t.index(r).is_none() && *r != t.home()),
    );
    Topology::with_indexes(t.home(), &secondaries, &state.regions)
        .ok()
        .and_then(|p| stack::graph(&p.with_writer(Some(t.writer()))).ok())
        .unwrap_or_else(|| graph_of(inputs))
}

/// `inputs` with the region indexes and the writer that `state` recorded.
pub fn with_recorded_topology(inputs: &Inputs, state: &State) -> Inputs {
    let t = &inputs.topology;
    let secondaries: Vec<&str> = t.secondaries().collect();
    let topology = Topology::with_indexes(t.home(), &secondaries, &state.regions)
        .map(|t| t.with_writer(state.writer_region.as_deref()))
        .unwrap_or_else(|_| t.clone());
    Inputs {
        topology,
        ..inputs.clone()
    }
}

/// The graph of `inputs`' regions, for `status` and `graph`.
pub fn graph_of(inputs: &Inputs) -> Graph {
    stack::graph(&inputs.topology).expect("the stack graph is valid")
}

/// The graph of the default topology (one home region, one secondary), for tests that count
/// nodes: every topology of as many regions has as many nodes.
pub fn graph() -> Graph {
    graph_of(&Inputs::new("dev", "us-east-1", "eu-west-1", None, None).expect("valid inputs"))
}
