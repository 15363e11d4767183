//! Disaster recovery (SPEC v3 "Disaster recovery"): `tap dr check`, `tap failover`,
//! `tap reprotect`. The anchor is AWS ARC Region switch: plans evaluated ahead of time
//! (`dr check`), graceful and ungraceful execution, the execution and recovery time of each.
//!
//! Each step is one event-stream "node" (`{region}/{step}`, kind `failover` or `reprotect`):
//! the human lines, NDJSON, the timeline and the state record all come from it. Steps are
//! recorded in state before and after ([`record`]), so a rerun resumes and never repeats one.

pub mod check;
pub mod failover;
pub mod record;
pub mod reprotect;

use crate::aws::Aws;
use crate::config::Inputs;
use crate::engine::events::{At, Event, Events};
use crate::engine::graph::Node;
use crate::engine::policy::WaitPolicy;
use crate::engine::reconcile::Driver;
use crate::engine::resource::{NodeCx, NodeError};
use crate::engine::store::StateStore;
use crate::run::Options;
use record::now_ms as now;
use record::{Failover, Step, StepStatus};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Which record a step belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Failover,
    Reprotect,
}

impl Phase {
    fn kind(self) -> &'static str {
        match self {
            Phase::Failover => "failover",
            Phase::Reprotect => "reprotect",
        }
    }
}

/// How a step ended, for the summary.
#[derive(Clone, Debug)]
pub struct StepLine {
    pub id: String,
    pub seconds: f64,
    pub outcome: Result<String, String>,
}

/// Runs the steps of one failover or reprotect: each recorded in state before and after, each
/// an event-stream node, each AWS call through the driver's retry policy (throttling, 5xx) and
/// its waits (progress, Ctrl-C).
pub struct Runner {
    pub store: Arc<StateStore>,
    pub driver: Arc<Driver>,
    pub events: Events,
    pub aws: Arc<Aws>,
    pub inputs: Inputs,
    pub phase: Phase,
    pub lines: std::sync::Mutex<Vec<StepLine>>,
}

impl Runner {
    pub fn new(store: Arc<StateStore>, aws: Arc<Aws>, opts: &Options, events: Events, phase: Phase) -> Runner {
        let mut driver = Driver::new(store.clone(), opts.parallelism, Arc::default(), false);
        driver.events = events.clone();
        driver.wait_scale = opts.wait_scale;
        driver.cancel = opts.cancel.clone();
        driver.default_action = phase.kind();
        Runner {
            store,
            driver: Arc::new(driver),
            events,
            aws,
            inputs: opts.inputs.clone(),
            phase,
            lines: Default::default(),
        }
    }

    /// The context of step `name` in `region` (its wait: `max_minutes`).
    pub fn cx(&self, name: &str, region: &str, max_minutes: u64) -> NodeCx {
        NodeCx {
            node: Node {
                id: format!("{region}/{name}"),
                kind: self.phase.kind(),
                region: region.to_string(),
                deps: vec![],
            },
            env: self.inputs.env.clone(),
            stack: Arc::new(self.inputs.clone()),
            region: region.to_string(),
            wait: WaitPolicy {
                max_wait: Duration::from_secs(max_minutes * 60),
                initial_delay: Duration::from_secs(2),
                max_delay: Duration::from_secs(15),
            },
            prior: None,
            deps: Default::default(),
            planning: false,
            aliases: vec![],
            token: None,
        }
    }

    fn at(&self, cx: &NodeCx, action: &str) -> At {
        At {
            node: cx.id().to_string(),
            kind: cx.node.kind.to_string(),
            region: cx.region.clone(),
            action: action.to_string(),
        }
    }

    /// The last failover as state records it now.
    pub fn failover(&self) -> Failover {
        record::failovers(&self.store.snapshot())
            .ok()
            .and_then(|mut v| v.pop())
            .expect("a failover is recorded before its steps run")
    }

    /// Applies `f` to the last failover and saves the state.
    pub async fn update(&self, f: impl FnOnce(&mut Failover)) -> Result<(), NodeError> {
        self.store
            .update(|s| {
                if let Some(mut fo) = record::failovers(s).ok().and_then(|mut v| v.pop()) {
                    f(&mut fo);
                    record::put_last(s, &fo, false);
                }
            })
            .await
    }

    /// A step as recorded, by its id (`{region}/{step}`: a step runs once per region).
    fn recorded(&self, name: &str) -> Option<Step> {
        let f = self.failover();
        match self.phase {
            Phase::Failover => f.steps.get(name).cloned(),
            Phase::Reprotect => f.reprotect.and_then(|r| r.steps.get(name).cloned()),
        }
    }

    async fn put_step(&self, name: &str, step: Step) -> Result<(), NodeError> {
        let phase = self.phase;
        let name = name.to_string();
        self.update(move |f| {
            let steps = match phase {
                Phase::Failover => &mut f.steps,
                Phase::Reprotect => &mut f.reprotect.get_or_insert_with(Default::default).steps,
            };
            steps.insert(name, step);
        })
        .await
    }

    /// Runs step `name` in `region` unless state records it done. `f` answers what it did (a
    /// line for the output). Recorded `started` before, `done` or `failed` after.
    pub async fn step<F, Fut>(&self, name: &str, region: &str, max_minutes: u64, f: F) -> Result<(), NodeError>
    where
        F: FnOnce(Arc<NodeCx>) -> Fut,
        Fut: Future<Output = Result<String, NodeError>>,
    {
        let cx = Arc::new(self.cx(name, region, max_minutes));
        if let Some(s) = self.recorded(cx.id()).filter(|s| s.status == StepStatus::Done) {
            let detail = s.detail.unwrap_or_default();
            self.events.emit(Event::Note {
                at: self.at(&cx, "done"),
                message: format!("done before ({detail})"),
            });
            self.lines.lock().expect("lines").push(StepLine {
                id: cx.id().to_string(),
                seconds: s.seconds.unwrap_or(0.0),
                outcome: Ok(format!("{detail} (done before)")),
            });
            return Ok(());
        }
        if self.driver.cancel.is_set() {
            return Err(NodeError::interrupted("failover step"));
        }
        let started = now();
        self.put_step(
            cx.id(),
            Step {
                region: region.to_string(),
                status: StepStatus::Started,
                started: started.clone(),
                finished: None,
                seconds: None,
                detail: None,
            },
        )
        .await?;
        self.events.emit(Event::NodeStart { at: self.at(&cx, name) });
        let t0 = tokio::time::Instant::now();
        let res = f(cx.clone()).await;
        let seconds = t0.elapsed().as_secs_f64();
        let (status, detail) = match &res {
            Ok(d) => (StepStatus::Done, d.clone()),
            Err(e) => (StepStatus::Failed, e.to_string()),
        };
        // An interrupted step stays `started`: the rerun does it again (each step's AWS side
        // is idempotent: it reads before it acts).
        if !matches!(&res, Err(e) if e.is_interrupted()) {
            self.put_step(
                cx.id(),
                Step {
                    region: region.to_string(),
                    status,
                    started,
                    finished: Some(now()),
                    seconds: Some(seconds),
                    detail: Some(detail.clone()),
                },
            )
            .await?;
        }
        match &res {
            Ok(d) => {
                self.events.emit(Event::Note {
                    at: self.at(&cx, name),
                    message: d.clone(),
                });
                self.events.emit(Event::NodeDone {
                    at: self.at(&cx, "done"),
                    elapsed_s: seconds,
                });
            }
            Err(e) => self.events.emit(Event::NodeFailed {
                at: self.at(&cx, name),
                operation: e.op.clone(),
                code: e.code.clone(),
                message: e.to_string(),
                elapsed_s: seconds,
            }),
        }
        self.lines.lock().expect("lines").push(StepLine {
            id: cx.id().to_string(),
            seconds,
            outcome: res.clone().map_err(|e| e.to_string()),
        });
        res.map(|_| ())
    }

    /// A best-effort step: bounded to `limit`, reported either way, never failing the run.
    pub async fn best_effort<F, Fut>(&self, name: &str, region: &str, limit: Duration, f: F)
    where
        F: FnOnce(Arc<NodeCx>) -> Fut,
        Fut: Future<Output = Result<String, NodeError>>,
    {
        let r = self
            .step(name, region, 1, |cx| async move {
                match tokio::time::timeout(limit, f(cx)).await {
                    Ok(r) => r,
                    Err(_) => Err(NodeError::fatal(
                        "best effort",
                        "TimedOut",
                        format!("no answer within {}s; left as it is", limit.as_secs()),
                    )),
                }
            })
            .await;
        // Reported by the step's own event and line; never the run's failure.
        let _ = r;
    }

    /// One AWS call of a step, through the driver's retry policy, its error named `op`.
    pub async fn send<T, E, F, Fut>(&self, cx: &NodeCx, op: &str, f: F) -> Result<T, NodeError>
    where
        F: Fn() -> Fut,
        Fut: Future<
            Output = Result<
                T,
                aws_smithy_runtime_api::client::result::SdkError<
                    E,
                    aws_smithy_runtime_api::client::orchestrator::HttpResponse,
                >,
            >,
        >,
        E: aws_smithy_types::error::metadata::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        self.driver.call(cx, || async { f().await.op(op) }).await
    }

    /// Tags the secret `secret_id` in the step's region as that region's `db-secret` node: a
    /// replica carries its primary's tags, so a promoted one still says it is the old writer's.
    pub async fn retag_secret(&self, cx: &NodeCx, secret_id: &str) -> Result<(), NodeError> {
        let id = self.inputs.topology.id(&cx.region, "db-secret");
        let sm = self.aws.secrets(&cx.region);
        self.send(cx, "TagResource", || {
            sm.tag_resource()
                .secret_id(secret_id)
                .tags(
                    aws_sdk_secretsmanager::types::Tag::builder()
                        .key(crate::engine::resource::ID_TAG)
                        .value(&id)
                        .build(),
                )
                .send()
        })
        .await
        .map(|_| ())
    }

    pub fn lines(&self) -> Vec<StepLine> {
        self.lines.lock().expect("lines").clone()
    }
}

/// The human lines of a finished run's steps.
pub fn print_steps(lines: &[StepLine]) {
    for l in lines {
        let s = match &l.outcome {
            Ok(d) => format!("  {:<44} {:>7.1}s  {d}", l.id, l.seconds),
            Err(e) => format!("  {:<44} {:>7.1}s  FAILED: {e}", l.id, l.seconds),
        };
        crate::render::err(&s);
    }
}

/// The state, locked and loaded (migrated from v2 if need be), checked against the inputs.
pub(crate) async fn locked(
    opts: &Options,
    aws: &Arc<Aws>,
    command: &str,
) -> Result<
    (
        Arc<dyn crate::engine::backend::Backend>,
        Box<dyn crate::engine::backend::LockGuard>,
        crate::engine::state::State,
    ),
    AppError,
> {
    let backend = crate::app::backend(opts, Some(aws)).await?;
    let lock = backend.lock(command).await?;
    let state = match crate::app::load_migrated(&*backend, opts, true).await {
        Ok(s) => s,
        Err(e) => {
            lock.release().await;
            return Err(e);
        }
    };
    if let Err(e) = crate::app::check_state_inputs(&state, opts) {
        lock.release().await;
        return Err(e);
    }
    if state.nodes.is_empty() {
        lock.release().await;
        return Err(AppError::Failed(format!(
            "state {} records no deployed stack: deploy first",
            backend.location()
        )));
    }
    Ok((backend, lock, state))
}

/// Gives the lock up (also after an error).
pub(crate) async fn release<T>(lock: Box<dyn crate::engine::backend::LockGuard>, _result: &Result<T, AppError>) {
    lock.release().await;
}

/// The run's inputs with the regions, writer and account that state recorded: disaster
/// recovery makes no call to learn the account (STS's global endpoint may be down).
pub(crate) fn recorded_inputs(opts: &Options, state: &crate::engine::state::State) -> Result<Inputs, AppError> {
    let inputs = crate::app::with_recorded_topology(&opts.inputs, state);
    let account = state
        .inputs
        .as_ref()
        .and_then(|v| serde_json::from_value::<Inputs>(v.clone()).ok())
        .map(|i| i.account)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| AppError::Failed("the state records no account id: deploy first".into()))?;
    Ok(Inputs { account, ..inputs })
}

use crate::app::AppError;
use crate::aws::SendExt;
use crate::engine::resource::Readiness;

pub(crate) async fn describe_db(
    aws: &Aws,
    region: &str,
    id: &str,
) -> Result<Option<aws_sdk_rds::types::DbInstance>, NodeError> {
    let out = aws
        .rds(region)
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .absent_on(
            "DescribeDBInstances",
            &["DBInstanceNotFound", "DBInstanceNotFoundFault"],
        )?;
    Ok(out.and_then(|o| o.db_instances.and_then(|v| v.into_iter().next())))
}

/// Promoted: `available` with no source (RDS API reference, PromoteReadReplica).
pub(crate) async fn promoted(aws: &Aws, region: &str, id: &str) -> Result<Readiness, NodeError> {
    Ok(match describe_db(aws, region, id).await? {
        None => Readiness::Failed(format!("{id} is gone")),
        Some(d) => {
            let status = d.db_instance_status().unwrap_or_default().to_string();
            match (status.as_str(), d.read_replica_source_db_instance_identifier()) {
                ("available", None) => Readiness::Ready,
                ("available", Some(src)) => Readiness::Pending(format!("available, still a replica of {src}")),
                (s, _) => Readiness::Pending(s.to_string()),
            }
        }
    })
}

/// UpdateAutoScalingGroup MinSize/DesiredCapacity (MaxSize unchanged).
pub(crate) async fn scale_asg(aws: &Aws, region: &str, name: &str, min: i32, desired: i32) -> Result<(), NodeError> {
    aws.autoscaling(region)
        .update_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(min)
        .desired_capacity(desired)
        .send()
        .await
        .op("UpdateAutoScalingGroup")?;
    Ok(())
}

/// The same, one attempt only (best effort towards a region that may be down).
pub(crate) async fn scale_asg_once(
    aws: &Aws,
    region: &str,
    name: &str,
    min: i32,
    desired: i32,
) -> Result<(), NodeError> {
    aws.autoscaling(region)
        .update_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(min)
        .desired_capacity(desired)
        .customize()
        .config_override(
            aws_sdk_autoscaling::config::Builder::default()
                .retry_config(aws_smithy_types::retry::RetryConfig::disabled()),
        )
        .send()
        .await
        .op("UpdateAutoScalingGroup")?;
    Ok(())
}

pub(crate) async fn asg_instances_gone(aws: &Aws, region: &str, name: &str) -> Result<Readiness, NodeError> {
    let out = aws
        .autoscaling(region)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .op("DescribeAutoScalingGroups")?;
    let n = out.auto_scaling_groups().first().map_or(0, |g| g.instances().len());
    Ok(match n {
        0 => Readiness::Ready,
        n => Readiness::Pending(format!("{n} instances")),
    })
}

/// Steps as JSON.
pub fn steps_json(lines: &[StepLine]) -> serde_json::Value {
    serde_json::Value::Array(
        lines
            .iter()
            .map(|l| match &l.outcome {
                Ok(d) => serde_json::json!({"step": l.id, "seconds": l.seconds, "result": "done", "detail": d}),
                Err(e) => serde_json::json!({"step": l.id, "seconds": l.seconds, "result": "failed", "error": e}),
            })
            .collect(),
    )
}
