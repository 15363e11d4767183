//! `tap failover --to R`: makes `R` the writer (SPEC v3 "Disaster recovery").
//!
//! Ungraceful (the default) calls `R` only: the old writer's region may answer nothing at all.
//! The account id comes from state, STS is asked in `R` (its regional endpoint), and no
//! CloudFront, IAM or global call is on its path. The one call to another region is best
//! effort (the old writer region's Auto Scaling group to 0), bounded to a few seconds and
//! reported either way. Graceful fences writes first, waits a drain period, and re-protects in
//! the same run.

use super::record::now_ms as now;
use super::record::{self, Failover, Mode};
use super::{Phase, Runner, StepLine, reprotect};
use crate::app::AppError;
use crate::aws::{Aws, Call, SendExt};
use crate::engine::resource::{NodeError, Readiness};
use crate::engine::store::StateStore;
use crate::engine::timeline::{Recorder, Timeline};
use crate::resources::{db_secret, names};
use crate::run::Options;
use crate::topology::r;
use std::sync::Arc;
use std::time::Duration;

/// What the operator asked.
#[derive(Clone, Debug)]
pub struct Args {
    pub to: String,
    pub graceful: bool,
    /// When the outage began (RFC 3339, UTC), for the recovery time.
    pub since: Option<String>,
    pub dry_run: bool,
    /// Graceful: how long `R`'s replica must report replication normal before promotion.
    pub drain: Duration,
}

/// What a failover did.
#[derive(Debug)]
pub struct Report {
    pub from: String,
    pub to: String,
    pub steps: Vec<StepLine>,
    pub execution_seconds: Option<f64>,
    pub recovery_seconds: Option<f64>,
    /// Every AWS call, with its region.
    pub calls: Vec<Call>,
    pub timeline: Timeline,
    /// Graceful: the reprotect that followed.
    pub reprotect: Option<reprotect::Report>,
}

/// How long the best-effort call to the old writer region may take, in all.
pub const BEST_EFFORT: Duration = Duration::from_secs(5);

/// The calls a failover makes, per region, for the confirmation and `--dry-run`.
pub fn calls_preview(from: &str, to: &str, mode: Mode, inputs: &crate::config::Inputs) -> Vec<String> {
    let db = names::db_instance(inputs, to);
    let mut v = vec![];
    if mode == Mode::Graceful {
        v.push(format!(
            "{from}: UpdateAutoScalingGroup {} to 0, wait until its instances are gone (fence writes)",
            asg_name(inputs, from)
        ));
        v.push(format!(
            "{to}: wait until {db} reports replication normal for the drain period"
        ));
    }
    v.extend([
        format!("{to}: PromoteReadReplica {db} (backup retention 7), wait until available"),
        format!(
            "{to}: StopReplicationToReplica {} (the secret becomes the writer's)",
            db_secret::secret_name(&inputs.env)
        ),
        format!("state: writer_region = {to}"),
        format!("{to}: ModifyDBInstance {db} MultiAZ (not waited for)"),
        format!("{to}: Publish to {}", topic_name(inputs, to)),
    ]);
    if mode == Mode::Ungraceful {
        v.push(format!(
            "{from} (best effort, {}s): UpdateAutoScalingGroup {} to 0",
            BEST_EFFORT.as_secs(),
            asg_name(inputs, from)
        ));
    } else {
        v.push(format!(
            "then reprotect: {from}'s stale writer renamed, snapshotted and deleted; new replicas"
        ));
    }
    v
}

pub fn asg_name(inputs: &crate::config::Inputs, region: &str) -> String {
    format!("tap-asg-{}-{}", r(region), inputs.env)
}

fn topic_name(inputs: &crate::config::Inputs, region: &str) -> String {
    format!("tap-replication-alerts-{}-{}", r(region), inputs.env)
}

/// The failover, with the state locked. `confirm` is asked with the calls per region (false:
/// nothing is done).
pub async fn execute(
    opts: &Options,
    args: &Args,
    confirm: &(dyn Fn(&[String]) -> bool + Sync),
) -> Result<Report, AppError> {
    let mode = if args.graceful {
        Mode::Graceful
    } else {
        Mode::Ungraceful
    };
    let to = args.to.clone();
    if opts.inputs.topology.index(&to).is_none() {
        return Err(AppError::Usage(format!(
            "--to {to}: not a region of this stack ({})",
            opts.inputs.topology.regions().collect::<Vec<_>>().join(", ")
        )));
    }
    // Ungraceful: credentials and STS in the target region only (its regional endpoint).
    let aws = Arc::new(Aws::connect(&opts.connection, &to).await);
    let regions: Vec<&str> = match mode {
        Mode::Ungraceful => vec![to.as_str()],
        Mode::Graceful => opts.inputs.topology.regions().collect(),
    };
    aws.preflight(&regions).await.map_err(AppError::Failed)?;
    let (backend, lock, state) = super::locked(opts, &aws, "failover").await?;
    let result = async {
        let inputs = super::recorded_inputs(opts, &state)?;
        let writer = inputs.topology.writer().to_string();
        let open = record::open(&state);
        let resume = match &open {
            Some(f) if f.finished.is_none() && f.to != to => {
                return Err(AppError::Failed(format!(
                    "a failover to {} is unfinished; run `tap failover --to {}` again to finish it first",
                    f.to, f.to
                )));
            }
            Some(f) if f.finished.is_none() => Some(f.clone()),
            Some(f) => {
                return Err(AppError::Failed(format!(
                    "reprotect pending: {} in {} is a stale writer since the failover to {}; run `tap reprotect` \
                     before another failover",
                    f.stale_writer.as_deref().unwrap_or("the old writer"),
                    f.from,
                    f.to
                )));
            }
            None if writer == to => {
                return Err(AppError::Usage(format!(
                    "{to} is already the writer region; nothing to fail over"
                )));
            }
            None => None,
        };
        let from = resume.as_ref().map_or(writer.clone(), |f| f.from.clone());
        let preview = calls_preview(&from, &to, mode, &inputs);
        if args.dry_run || !confirm(&preview) {
            return Err(AppError::Failed("failover cancelled: nothing was changed".into()));
        }
        let opts = Options {
            inputs: inputs.clone(),
            ..opts.clone()
        };
        let store = Arc::new(StateStore::with_backend(backend.clone(), state, false));
        if resume.is_none() {
            let f = Failover {
                from: from.clone(),
                to: to.clone(),
                mode,
                started: now(),
                promoted: None,
                finished: None,
                execution_seconds: None,
                since: args.since.clone(),
                recovery_seconds: None,
                stale_writer: Some(names::db_instance(&inputs, &from)),
                steps: Default::default(),
                reprotect: None,
            };
            store
                .update(|s| record::put_last(s, &f, true))
                .await
                .map_err(|e| AppError::context("recording the failover", e))?;
        }
        let recorder = Recorder::new();
        let started_at = now();
        let events = opts.events.clone().with(recorder.sink());
        let runner = Runner::new(store.clone(), aws.clone(), &opts, events.clone(), Phase::Failover);
        let res = Box::pin(steps(&runner, &opts, &from, &to, mode, args)).await;
        let timeline = recorder.finish("failover", started_at, &crate::engine::graph::Graph::default(), false);
        let _ = store.set_last_run(timeline.clone()).await;
        res.map_err(|e| AppError::context(format!("failover to {to}"), e))?;
        let f = runner.failover();
        let mut report = Report {
            from: from.clone(),
            to: to.clone(),
            steps: runner.lines(),
            execution_seconds: f.execution_seconds,
            recovery_seconds: f.recovery_seconds,
            calls: vec![],
            timeline,
            reprotect: None,
        };
        if mode == Mode::Graceful {
            report.reprotect = Some(Box::pin(reprotect::run(&store, &aws, &opts, &events)).await?);
        }
        Ok(report)
    }
    .await;
    super::release(lock, &result).await;
    let mut report = result?;
    report.calls = aws.log.calls();
    Ok(report)
}

async fn steps(
    runner: &Runner,
    opts: &Options,
    from: &str,
    to: &str,
    mode: Mode,
    args: &Args,
) -> Result<(), NodeError> {
    let inputs = &opts.inputs;
    let aws = runner.aws.clone();
    let db = names::db_instance(inputs, to);
    if mode == Mode::Graceful {
        runner
            .step("fence-writes", from, 30, |cx| {
                let (aws, runner, name) = (aws.clone(), runner, asg_name(inputs, from));
                async move {
                    super::scale_asg(&aws, &cx.region, &name, 0, 0).await?;
                    runner
                        .driver
                        .wait(&cx, cx.wait, "instances to terminate", || {
                            super::asg_instances_gone(&aws, &cx.region, &name)
                        })
                        .await?;
                    Ok(format!("{name} scaled to 0, its instances are gone"))
                }
            })
            .await?;
        runner
            .step("drain", to, 30, |cx| {
                let (aws, runner, db) = (aws.clone(), runner, db.clone());
                async move {
                    let drain = args.drain.mul_f64(opts.wait_scale.min(1.0));
                    let normal_since: std::sync::Mutex<Option<tokio::time::Instant>> = Default::default();
                    runner
                        .driver
                        .wait(&cx, cx.wait, "replication to drain", || {
                            let (aws, db, region) = (aws.clone(), db.clone(), cx.region.clone());
                            let normal_since = &normal_since;
                            async move {
                                let (ok, why) = super::check::replication_normal(&aws, &region, &db).await?;
                                let mut since = normal_since.lock().expect("drain clock");
                                Ok(match ok {
                                    false => {
                                        *since = None;
                                        Readiness::Pending(why)
                                    }
                                    true => {
                                        let t = *since.get_or_insert_with(tokio::time::Instant::now);
                                        match t.elapsed() >= drain {
                                            true => Readiness::Ready,
                                            false => Readiness::Pending("replicating".into()),
                                        }
                                    }
                                })
                            }
                        })
                        .await?;
                    Ok(format!(
                        "replication normal for {}s: the data-loss window (tap cannot read the replication position)",
                        drain.as_secs()
                    ))
                }
            })
            .await?;
    }
    runner
        .step("promote-read-replica", to, 60, |cx| {
            let (aws, runner, db) = (aws.clone(), runner, db.clone());
            async move {
                let rds = aws.rds(&cx.region);
                let Some(live) = super::describe_db(&aws, &cx.region, &db).await? else {
                    return Err(NodeError::fatal(
                        "DescribeDBInstances",
                        "DBInstanceNotFound",
                        format!("{db} does not exist in {}: no replica to promote", cx.region),
                    ));
                };
                let mut what = "already a standalone instance".to_string();
                if live.read_replica_source_db_instance_identifier.is_some() {
                    // RDS API reference, PromoteReadReplica: BackupRetentionPeriod and
                    // PreferredBackupWindow apply to the promoted instance (backups start then).
                    let window = runner
                        .store
                        .get(&inputs.topology.id(from, "db-instance"))
                        .and_then(|n| n.attrs.get("backup_window").cloned());
                    let (rds, db, cx) = (&rds, &db, &cx);
                    let promote = |window: Option<String>| {
                        runner.send(cx, "PromoteReadReplica", move || {
                            rds.promote_read_replica()
                                .db_instance_identifier(db)
                                .backup_retention_period(7)
                                .set_preferred_backup_window(window.clone())
                                .send()
                        })
                    };
                    let sent = match promote(window.clone()).await {
                        // "Must not conflict with the preferred maintenance window" (RDS API
                        // reference, PromoteReadReplica): the replica's own window, picked in
                        // its region, may overlap the writer's backup window. RDS picks one then.
                        Err(e) if window.is_some() && e.code.starts_with("InvalidParameter") => promote(None).await,
                        other => other,
                    };
                    match sent {
                        Ok(_) => what = format!("promoted {db}"),
                        // A rerun after the call went out (the promotion is under way), or a
                        // replica that cannot be promoted yet (`backing-up`): the wait below
                        // sends it again once the replica is available and still a replica.
                        Err(e) if e.code == "InvalidDBInstanceState" => what = format!("{db} was being promoted"),
                        Err(e) => return Err(e),
                    }
                }
                let sent_again = std::sync::atomic::AtomicBool::new(false);
                runner
                    .driver
                    .wait(&cx, cx.wait, "promotion", || async {
                        let r = super::promoted(&aws, &cx.region, &db).await?;
                        if matches!(&r, Readiness::Pending(s) if s.starts_with("available, still a replica"))
                            && !sent_again.swap(true, std::sync::atomic::Ordering::SeqCst)
                        {
                            let rds = aws.rds(&cx.region);
                            let again = rds
                                .promote_read_replica()
                                .db_instance_identifier(&db)
                                .backup_retention_period(7)
                                .send()
                                .await;
                            if let Err(e) = again.op("PromoteReadReplica")
                                && e.code != "InvalidDBInstanceState"
                            {
                                return Err(e);
                            }
                        }
                        Ok(r)
                    })
                    .await?;
                Ok(what)
            }
        })
        .await?;
    runner
        .step("stop-secret-replication", to, 10, |cx| {
            let (aws, runner, name) = (aws.clone(), runner, db_secret::secret_name(&inputs.env));
            async move {
                let sm = aws.secrets(&cx.region);
                let d = runner
                    .send(&cx, "DescribeSecret", || sm.describe_secret().secret_id(&name).send())
                    .await?;
                let mut what = format!("{name} is already the writer's secret in {}", cx.region);
                if d.primary_region().is_some_and(|p| p != cx.region) {
                    // Secrets Manager API reference, StopReplicationToReplica: called in the
                    // replica's Region, it promotes the replica to a standalone primary there.
                    let sent = runner
                        .send(&cx, "StopReplicationToReplica", || {
                            sm.stop_replication_to_replica().secret_id(&name).send()
                        })
                        .await;
                    what = match sent {
                        Ok(_) => format!("{name} in {} is standalone", cx.region),
                        Err(e) if e.code == "InvalidRequestException" => {
                            format!("{name} in {} was already standalone", cx.region)
                        }
                        Err(e) => return Err(e),
                    };
                }
                runner.retag_secret(&cx, &name).await?;
                Ok(what)
            }
        })
        .await?;
    runner
        .step("record-writer", to, 1, |_cx| async move {
            let home = inputs.topology.home().to_string();
            let to = to.to_string();
            let at = now();
            runner
                .store
                .update(|s| {
                    s.writer_region = (to != home).then(|| to.clone());
                    if let Some(mut f) = record::failovers(s).ok().and_then(|mut v| v.pop()) {
                        f.promoted.get_or_insert(at);
                        record::put_last(s, &f, false);
                    }
                })
                .await?;
            Ok(format!("writer_region = {to} in state"))
        })
        .await?;
    runner
        .step("multi-az", to, 5, |cx| {
            let (aws, runner, db) = (aws.clone(), runner, db.clone());
            async move {
                let live = super::describe_db(&aws, &cx.region, &db).await?;
                let l =
                    live.ok_or_else(|| NodeError::fatal("DescribeDBInstances", "DBInstanceNotFound", db.clone()))?;
                if l.multi_az == Some(true) && l.copy_tags_to_snapshot == Some(true) {
                    return Ok(format!("{db} is Multi-AZ already"));
                }
                let rds = aws.rds(&cx.region);
                let sent = runner
                    .send(&cx, "ModifyDBInstance", || {
                        rds.modify_db_instance()
                            .db_instance_identifier(&db)
                            .multi_az(true)
                            .copy_tags_to_snapshot(true)
                            .apply_immediately(true)
                            .send()
                    })
                    .await;
                match sent {
                    Ok(_) => Ok(format!("{db}: Multi-AZ requested (not waited for)")),
                    // Still `backing-up` or `modifying` after the promotion: the writer takes
                    // it later; `deploy` converges Multi-AZ (the writer's SPEC).
                    Err(e) if e.code == "InvalidDBInstanceState" => Ok(format!(
                        "{db}: not modifiable yet ({}); the next deploy makes it Multi-AZ",
                        e.message
                    )),
                    Err(e) => Err(e),
                }
            }
        })
        .await?;
    runner
        .step("notify", to, 1, |cx| {
            let (aws, runner) = (aws.clone(), runner);
            let topic = format!("arn:aws:sns:{to}:{}:{}", inputs.account, topic_name(inputs, to));
            let message = format!(
                "tap failover of env {}: the writer region is now {to} (was {from}), mode {}",
                inputs.env,
                mode.name()
            );
            async move {
                let sns = aws.sns(&cx.region);
                runner
                    .send(&cx, "Publish", || {
                        sns.publish()
                            .topic_arn(&topic)
                            .subject(format!("TAP failover to {to}"))
                            .message(&message)
                            .send()
                    })
                    .await?;
                Ok(format!("published to {topic}"))
            }
        })
        .await?;
    if mode == Mode::Ungraceful {
        let name = asg_name(inputs, from);
        runner
            .best_effort("scale-in-old-asg", from, BEST_EFFORT, |cx| {
                let aws = aws.clone();
                async move {
                    super::scale_asg_once(&aws, &cx.region, &name, 0, 0).await?;
                    Ok(format!("{name} scaled to 0"))
                }
            })
            .await;
    }
    let finished = now();
    runner
        .update(|f| {
            f.execution_seconds = Some(record::seconds_between(&f.started, &finished));
            f.recovery_seconds = f.since.as_deref().map(|s| record::seconds_between(s, &finished));
            f.finished = Some(finished);
        })
        .await?;
    Ok(())
}

/// The failover's summary lines (human).
pub fn print(report: &Report) {
    crate::render::err(&format!("failover {} -> {}:", report.from, report.to));
    super::print_steps(&report.steps);
    if let Some(s) = report.execution_seconds {
        crate::render::err(&format!("execution time: {s:.1}s"));
    }
    if let Some(s) = report.recovery_seconds {
        crate::render::err(&format!("recovery time (since the outage began): {s:.1}s"));
    }
    match &report.reprotect {
        Some(r) => reprotect::print(r),
        None => crate::render::err(&format!(
            "writer region: {}. Run `tap reprotect` once {} answers again.",
            report.to, report.from
        )),
    }
}

/// The failover's result as one JSON object.
pub fn json(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "type": "failover",
        "from": report.from,
        "to": report.to,
        "steps": super::steps_json(&report.steps),
        "execution_seconds": report.execution_seconds,
        "recovery_seconds": report.recovery_seconds,
        "reprotect": report.reprotect.as_ref().map(reprotect::json),
    })
}
