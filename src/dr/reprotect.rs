//! `tap reprotect`: after a failover, once the old writer's region answers, make the stack
//! protected again with the roles swapped (SPEC v3 "Disaster recovery", `tap reprotect`).
//!
//! 1. The stale writer is renamed `…-stale-{stamp}` (the endpoint changes: nothing keeps
//!    writing to it) and tagged `tap:stale=true`; so is every replica that still follows it
//!    (RDS cannot re-point a replica to a new source).
//! 2. The secret is re-homed: the stale primary's replicas are removed and it is deleted; the
//!    new writer's secret is replicated to every other region (ForceOverwriteReplicaSecret).
//! 3. At the same time: the stale replicas are deleted and gone, then the stale writer is
//!    deleted with a kept final snapshot; and a deploy pass creates the new replicas, puts the
//!    new writer's bucket first in the origin group and the old region's ASG back to SPEC.

use super::record::now_ms as now;
use super::record::{self, StaleDb};
use super::{Phase, Runner, StepLine};
use crate::app::AppError;
use crate::aws::{Aws, Call, SendExt};
use crate::engine::events::Events;
use crate::engine::resource::{NodeError, Readiness};
use crate::engine::store::StateStore;
use crate::engine::timeline::Recorder;
use crate::resources::{db_secret, names, secret_replica};
use crate::run::{Command, NodeLine, Options, Outcome};
use aws_sdk_secretsmanager::types::ReplicaRegionType;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug)]
pub struct Report {
    pub steps: Vec<StepLine>,
    /// The deploy pass that converged the swapped roles.
    pub nodes: Vec<NodeLine>,
    pub final_snapshot: Option<String>,
    pub calls: Vec<Call>,
}

/// `yyyymmddhhmm`, UTC.
fn stamp() -> String {
    chrono::Utc::now().format("%Y%m%d%H%M").to_string()
}

/// `tap reprotect`, with the state locked. `confirm` is asked with what will happen.
pub async fn execute(opts: &Options, confirm: &(dyn Fn(&[String]) -> bool + Sync)) -> Result<Report, AppError> {
    let home = opts.inputs.topology.home().to_string();
    let aws = Arc::new(Aws::connect(&opts.connection, &home).await);
    aws.preflight(&opts.inputs.topology.regions().collect::<Vec<_>>())
        .await
        .map_err(AppError::Failed)?;
    let (backend, lock, state) = super::locked(opts, &aws, "reprotect").await?;
    let result = async {
        let inputs = super::recorded_inputs(opts, &state)?;
        let Some(f) = record::open(&state).filter(|f| f.finished.is_some()) else {
            return Err(match record::open(&state) {
                Some(f) => AppError::Failed(format!(
                    "the failover to {} is unfinished: run `tap failover --to {}` again first",
                    f.to, f.to
                )),
                None => AppError::Failed("no failover is waiting for reprotect: nothing to do".into()),
            });
        };
        let preview = vec![
            format!(
                "{}: rename {} to …-stale-{{time}}, tag tap:stale=true, delete it with a final snapshot (kept)",
                f.from,
                f.stale_writer.as_deref().unwrap_or("the stale writer")
            ),
            "every other region whose replica follows the stale writer: rename, delete (before the stale writer)"
                .into(),
            format!(
                "secret: the stale primary in {} deleted; replicated from {} to every other region",
                f.from, f.to
            ),
            format!(
                "deploy: new replicas of {}'s writer, origin order, {}'s ASG back to SPEC",
                f.to, f.from
            ),
        ];
        if !confirm(&preview) {
            return Err(AppError::Failed("reprotect cancelled: nothing was changed".into()));
        }
        let opts = Options { inputs, ..opts.clone() };
        let store = Arc::new(StateStore::with_backend(backend.clone(), state, false));
        let recorder = Recorder::new();
        let started_at = now();
        let events = opts.events.clone().with(recorder.sink());
        let report = Box::pin(run(&store, &aws, &opts, &events)).await;
        let graph = crate::app::graph_of(&opts.inputs);
        let _ = store
            .set_last_run(recorder.finish("reprotect", started_at, &graph, false))
            .await;
        report
    }
    .await;
    super::release(lock, &result).await;
    let mut report = result?;
    report.calls = aws.log.calls();
    Ok(report)
}

/// The reprotect steps (also the end of a graceful failover), on a locked store.
pub async fn run(store: &Arc<StateStore>, aws: &Arc<Aws>, opts: &Options, events: &Events) -> Result<Report, AppError> {
    // The roles as state records them now (a graceful failover has just moved the writer).
    let opts = &Options {
        inputs: crate::app::with_recorded_topology(&opts.inputs, &store.snapshot()),
        ..opts.clone()
    };
    let runner = Runner::new(store.clone(), aws.clone(), opts, events.clone(), Phase::Reprotect);
    let f = runner.failover();
    let stamp = f.reprotect.as_ref().map_or_else(stamp, |r| r.stamp.clone());
    if f.reprotect.is_none() {
        let s = stamp.clone();
        runner
            .update(move |f| {
                f.reprotect = Some(record::Reprotect {
                    started: now(),
                    stamp: s,
                    ..Default::default()
                })
            })
            .await
            .map_err(|e| AppError::context("recording the reprotect", e))?;
    }
    let res = Box::pin(steps(&runner, store, opts, events, &f.from, &f.to, &stamp)).await;
    let steps = runner.lines();
    let (nodes, final_snapshot) = res.map_err(|e| AppError::context("reprotect", e))?;
    Ok(Report {
        steps,
        nodes,
        final_snapshot,
        calls: vec![],
    })
}

async fn steps(
    runner: &Runner,
    store: &Arc<StateStore>,
    opts: &Options,
    events: &Events,
    stale_region: &str,
    writer: &str,
    stamp: &str,
) -> Result<(Vec<NodeLine>, Option<String>), NodeError> {
    let inputs = &opts.inputs;
    let t = &inputs.topology;
    let writer_db = names::db_instance(inputs, writer);
    // 1. Rename the stale writer and every replica that follows it.
    let mut others: Vec<&str> = t.regions().filter(|r| *r != writer && *r != stale_region).collect();
    others.insert(0, stale_region);
    for region in others {
        let is_writer = region == stale_region;
        let name = if is_writer {
            "rename-stale-writer"
        } else {
            "rename-stale-replica"
        };
        runner
            .step(name, region, 30, |cx| {
                let (aws, writer_db) = (runner.aws.clone(), writer_db.clone());
                async move {
                    let db = names::db_instance(inputs, &cx.region);
                    let stale = format!("{db}-stale-{stamp}");
                    if super::describe_db(&aws, &cx.region, &stale).await?.is_none() {
                        let Some(d) = super::describe_db(&aws, &cx.region, &db).await? else {
                            return Ok(format!("no {db}: nothing stale"));
                        };
                        let source = d.read_replica_source_db_instance_identifier().unwrap_or_default();
                        let follows_writer = !source.is_empty()
                            && (source == writer_db || source.ends_with(&format!(":db:{writer_db}")));
                        if follows_writer {
                            return Ok(format!("{db} is a replica of {writer_db} already"));
                        }
                        // RDS User Guide, "Renaming a DB instance": the endpoint changes, the old
                        // name is free once the rename is applied (ApplyImmediately).
                        let rds = aws.rds(&cx.region);
                        runner
                            .send(&cx, "ModifyDBInstance", || {
                                rds.modify_db_instance()
                                    .db_instance_identifier(&db)
                                    .new_db_instance_identifier(&stale)
                                    .apply_immediately(true)
                                    .send()
                            })
                            .await?;
                    }
                    runner
                        .driver
                        .wait(&cx, cx.wait, "rename", || renamed(&aws, &cx.region, &stale))
                        .await?;
                    let d = super::describe_db(&aws, &cx.region, &stale)
                        .await?
                        .ok_or_else(|| NodeError::fatal("DescribeDBInstances", "DBInstanceNotFound", stale.clone()))?;
                    let arn = d.db_instance_arn().unwrap_or_default().to_string();
                    let rds = aws.rds(&cx.region);
                    runner
                        .send(&cx, "AddTagsToResource", || {
                            rds.add_tags_to_resource()
                                .resource_name(&arn)
                                .tags(
                                    aws_sdk_rds::types::Tag::builder()
                                        .key("tap:stale")
                                        .value("true")
                                        .build(),
                                )
                                .send()
                        })
                        .await?;
                    let entry = StaleDb {
                        region: cx.region.clone(),
                        id: stale.clone(),
                        writer: is_writer,
                        deleted: false,
                    };
                    runner
                        .update(move |f| {
                            let r = f.reprotect.get_or_insert_with(Default::default);
                            if !r.stale.iter().any(|s| s.id == entry.id) {
                                r.stale.push(entry);
                            }
                        })
                        .await?;
                    Ok(format!("{db} renamed {stale}, tagged tap:stale=true"))
                }
            })
            .await?;
    }
    // 2. The secret, re-homed to the writer.
    runner
        .step("rehome-secret", writer, 30, |cx| async move {
            rehome_secret(runner, &cx, stale_region).await
        })
        .await?;
    // 3. Stale instances deleted, beside a deploy pass that converges the swapped roles.
    let deletes = async {
        let stale = runner.failover().reprotect.map(|r| r.stale).unwrap_or_default();
        for s in stale.iter().filter(|s| !s.writer) {
            delete_stale(runner, s, None).await?;
        }
        let snapshot = format!(
            "tap-db-{}-{}-final-{stamp}",
            crate::topology::r(stale_region),
            inputs.env
        );
        match stale.iter().find(|s| s.writer) {
            Some(s) => {
                delete_stale(runner, s, Some(&snapshot)).await?;
                let snap = snapshot.clone();
                runner
                    .update(move |f| {
                        f.reprotect.get_or_insert_with(Default::default).final_snapshot = Some(snap);
                    })
                    .await?;
                Ok::<_, NodeError>(Some(snapshot))
            }
            None => Ok(None),
        }
    };
    let graph = Arc::new(crate::app::graph_of(inputs));
    let planned = BTreeMap::new();
    let deploy = crate::passes::pass(
        Command::Deploy,
        &graph,
        store.clone(),
        &runner.aws,
        opts,
        &planned,
        events,
    );
    let (deleted, nodes) = tokio::join!(Box::pin(deletes), Box::pin(deploy));
    let final_snapshot = deleted?;
    let failed: Vec<String> = nodes
        .iter()
        .filter_map(|n| match &n.outcome {
            Outcome::Done(_) => None,
            Outcome::Failed { error, .. } => Some(format!("{}: {error}", n.id)),
            Outcome::Blocked { by } => Some(format!("{}: blocked by {by}", n.id)),
            Outcome::Interrupted => Some(format!("{}: interrupted", n.id)),
        })
        .collect();
    if !failed.is_empty() {
        return Err(NodeError::fatal(
            "deploy",
            "NodesFailed",
            format!(
                "the swapped roles did not converge: {} (run `tap reprotect` again)",
                failed.join("; ")
            ),
        ));
    }
    let attrs: BTreeMap<_, _> = store.snapshot().nodes.into_iter().map(|(k, v)| (k, v.attrs)).collect();
    store.set_outputs(crate::stack::outputs(&graph, t, &attrs)).await?;
    let at = now();
    runner
        .update(move |f| {
            f.reprotect.get_or_insert_with(Default::default).finished = Some(at);
        })
        .await?;
    Ok((nodes, final_snapshot))
}

async fn renamed(aws: &Aws, region: &str, id: &str) -> Result<Readiness, NodeError> {
    Ok(match super::describe_db(aws, region, id).await? {
        None => Readiness::Pending("renaming".into()),
        Some(d) if d.db_instance_status() == Some("available") => Readiness::Ready,
        Some(d) => Readiness::Pending(d.db_instance_status().unwrap_or("renaming").to_string()),
    })
}

/// Deletes a renamed stale instance and waits until it is gone: a replica without a snapshot
/// (its data is the writer's), the stale writer with `snapshot` (kept: it may hold writes that
/// never replicated) unless that snapshot exists already (SPEC "Destroy").
async fn delete_stale(runner: &Runner, s: &StaleDb, snapshot: Option<&str>) -> Result<(), NodeError> {
    let name = if s.writer {
        "delete-stale-writer"
    } else {
        "delete-stale-replica"
    };
    let id = s.id.clone();
    runner
        .step(name, &s.region, 60, |cx| async move {
            let aws = runner.aws.clone();
            let rds = aws.rds(&cx.region);
            if super::describe_db(&aws, &cx.region, &id).await?.is_some() {
                let have_snapshot = match snapshot {
                    Some(snap) => rds
                        .describe_db_snapshots()
                        .db_snapshot_identifier(snap)
                        .send()
                        .await
                        .absent_on(
                            "DescribeDBSnapshots",
                            &["DBSnapshotNotFound", "DBSnapshotNotFoundFault"],
                        )?
                        .is_some(),
                    None => false,
                };
                let sent = runner
                    .send(&cx, "DeleteDBInstance", || {
                        let req = rds
                            .delete_db_instance()
                            .db_instance_identifier(&id)
                            .delete_automated_backups(true);
                        match snapshot.filter(|_| !have_snapshot) {
                            Some(snap) => req.final_db_snapshot_identifier(snap).skip_final_snapshot(false),
                            None => req.skip_final_snapshot(true),
                        }
                        .send()
                    })
                    .await;
                match sent {
                    Ok(_) => {}
                    Err(e) if e.code.starts_with("DBInstanceNotFound") => {}
                    Err(e) if e.code == "InvalidDBInstanceState" && e.message.contains("already being deleted") => {}
                    Err(e) => return Err(e),
                }
            }
            runner
                .driver
                .wait(&cx, cx.wait, "deletion", || {
                    let (aws, region, id) = (aws.clone(), cx.region.clone(), id.clone());
                    async move {
                        Ok(match super::describe_db(&aws, &region, &id).await? {
                            None => Readiness::Ready,
                            Some(d) => Readiness::Pending(d.db_instance_status().unwrap_or("deleting").to_string()),
                        })
                    }
                })
                .await?;
            let sid = id.clone();
            runner
                .update(move |f| {
                    if let Some(x) = f
                        .reprotect
                        .get_or_insert_with(Default::default)
                        .stale
                        .iter_mut()
                        .find(|x| x.id == sid)
                    {
                        x.deleted = true;
                    }
                })
                .await?;
            Ok(match snapshot {
                Some(snap) => format!("{id} deleted; final snapshot {snap} kept"),
                None => format!("{id} deleted"),
            })
        })
        .await
}

/// The stale primary secret (in the old writer's region) and its replicas removed; the
/// writer's secret replicated to every other region with that region's key.
async fn rehome_secret(
    runner: &Runner,
    cx: &crate::engine::resource::NodeCx,
    stale_region: &str,
) -> Result<String, NodeError> {
    let aws = runner.aws.clone();
    let inputs = &runner.inputs;
    let t = &inputs.topology;
    let name = db_secret::secret_name(&inputs.env);
    let writer = cx.region.clone();
    // The stale primary: a standalone secret of the name in the old writer's region.
    let old = aws.secrets(stale_region);
    if let Some(d) = runner
        .send(cx, "DescribeSecret", || old.describe_secret().secret_id(&name).send())
        .await
        .map(Some)
        .or_else(|e| match e.code.as_str() {
            "ResourceNotFoundException" => Ok(None),
            _ => Err(e),
        })?
        // DescribeSecret's PrimaryRegion is "the Region the secret is in": a primary may carry
        // its own region (AWS), or none (moto).
        && d.primary_region().is_none_or(|p| p == stale_region)
        && d.deleted_date().is_none()
    {
        let arn = d.arn().unwrap_or_default().to_string();
        let regions: Vec<String> = d
            .replication_status()
            .iter()
            .filter_map(|s| s.region().map(str::to_string))
            .collect();
        if !regions.is_empty() {
            runner
                .send(cx, "RemoveRegionsFromReplication", || {
                    old.remove_regions_from_replication()
                        .secret_id(&arn)
                        .set_remove_replica_regions(Some(regions.clone()))
                        .send()
                })
                .await?;
        }
        runner
            .send(cx, "DeleteSecret", || {
                old.delete_secret()
                    .secret_id(&arn)
                    .force_delete_without_recovery(true)
                    .send()
            })
            .await?;
    }
    // The writer's secret: retagged as its region's node (it carried the old writer's tap:id),
    // then replicated where it is not yet.
    let sm = aws.secrets(&writer);
    let d = runner
        .send(cx, "DescribeSecret", || sm.describe_secret().secret_id(&name).send())
        .await?;
    let arn = d.arn().unwrap_or_default().to_string();
    runner.retag_secret(cx, &arn).await?;
    // A replica that failed (e.g. the stale primary's name not yet free in its region: a forced
    // delete completes asynchronously) is removed and added again.
    let failed: Vec<String> = d
        .replication_status()
        .iter()
        .filter(|s| s.status().map(|s| s.as_str()) == Some("Failed"))
        .filter_map(|s| s.region().map(str::to_string))
        .collect();
    if !failed.is_empty() {
        runner
            .send(cx, "RemoveRegionsFromReplication", || {
                sm.remove_regions_from_replication()
                    .secret_id(&arn)
                    .set_remove_replica_regions(Some(failed.clone()))
                    .send()
            })
            .await?;
    }
    let have: Vec<String> = d
        .replication_status()
        .iter()
        .filter_map(|s| s.region().map(str::to_string))
        .filter(|r| !failed.contains(r))
        .collect();
    let missing: Vec<ReplicaRegionType> = t
        .regions()
        .filter(|r| *r != writer && !have.iter().any(|h| h == r))
        .map(|r| {
            let key = runner
                .store
                .get(&t.id(r, "kms-key"))
                .and_then(|n| n.arn.or(n.physical_id))
                .unwrap_or_default();
            ReplicaRegionType::builder().region(r).kms_key_id(key).build()
        })
        .collect();
    if !missing.is_empty() {
        // Overwriting a secret of the same name in the destination Region: the stale primary's
        // name may still be taken while its forced deletion completes. Each try sends the call
        // once (see `replicate_once`) after re-reading which regions the secret already lists.
        runner
            .driver
            .call(cx, || {
                let (sm, arn, missing) = (sm.clone(), arn.clone(), missing.clone());
                async move {
                    let d = sm.describe_secret().secret_id(&arn).send().await.op("DescribeSecret")?;
                    let listed: Vec<&str> = d.replication_status().iter().filter_map(|s| s.region()).collect();
                    let still: Vec<ReplicaRegionType> = missing
                        .into_iter()
                        .filter(|r| !r.region().is_some_and(|r| listed.contains(&r)))
                        .collect();
                    if still.is_empty() {
                        return Ok(());
                    }
                    secret_replica::replicate_once(&sm, &arn, still, true).await
                }
            })
            .await?;
    }
    runner
        .driver
        .wait(cx, cx.wait, "secret replicas in sync", || {
            let (sm, arn) = (sm.clone(), arn.clone());
            let want = t.regions().filter(|r| *r != writer).count();
            async move {
                let d = sm.describe_secret().secret_id(&arn).send().await.op("DescribeSecret")?;
                let statuses: Vec<(String, String)> = d
                    .replication_status()
                    .iter()
                    .map(|s| {
                        (
                            s.region().unwrap_or_default().to_string(),
                            s.status().map(|s| s.as_str().to_string()).unwrap_or_default(),
                        )
                    })
                    .collect();
                if let Some((r, _)) = statuses.iter().find(|(_, s)| s == "Failed") {
                    return Ok(Readiness::Failed(format!("the replica in {r} failed")));
                }
                Ok(match statuses.iter().filter(|(_, s)| s == "InSync").count() >= want {
                    true => Readiness::Ready,
                    false => Readiness::Pending(format!("{statuses:?}")),
                })
            }
        })
        .await?;
    Ok(format!(
        "{name}: the writer's in {writer}, replicas in {}",
        t.regions().filter(|r| *r != writer).collect::<Vec<_>>().join(", ")
    ))
}

pub fn print(report: &Report) {
    crate::render::err("reprotect:");
    super::print_steps(&report.steps);
    let changed = report
        .nodes
        .iter()
        .filter(|n| !matches!(&n.outcome, Outcome::Done(a) if matches!(a, crate::engine::reconcile::Action::None)))
        .count();
    crate::render::err(&format!(
        "deploy pass: {changed} of {} nodes changed",
        report.nodes.len()
    ));
    if let Some(s) = &report.final_snapshot {
        crate::render::err(&format!(
            "final snapshot kept: {s} (it may hold writes that never replicated; tap never deletes it)"
        ));
    }
}

pub fn json(report: &Report) -> serde_json::Value {
    serde_json::json!({
        "type": "reprotect",
        "steps": super::steps_json(&report.steps),
        "final_snapshot": report.final_snapshot,
        "nodes": report.nodes.iter().map(|n| crate::render::node_value("node", n)).collect::<Vec<_>>(),
    })
}
