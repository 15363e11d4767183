//! `tap dr check [--to R]`: is a failover to `R` possible right now? Read-only, and every call
//! goes to `R` (SPEC v3): what matters during an outage is what the surviving region can do on
//! its own (AWS's "static stability"). One line per check, naming the object and what is wrong.

use super::record;
use crate::app::{self, AppError};
use crate::aws::{Aws, Call, SendExt};
use crate::config::Inputs;
use crate::engine::reconcile::{Action, Driver};
use crate::engine::resource::{NodeCx, NodeError};
use crate::engine::state::State;
use crate::engine::store::StateStore;
use crate::kinds;
use crate::resources::{db_secret, names};
use crate::run::Options;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Serialize)]
pub struct Check {
    /// What is checked: `sts`, `db-instance`, `db-secret`, `kms-key`, `s3-bucket`,
    /// `s3-replication`, `asg`, `roles`.
    pub check: String,
    pub region: String,
    /// The object, by its AWS name.
    pub object: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub to: String,
    pub writer: String,
    pub ready: bool,
    pub checks: Vec<Check>,
    #[serde(skip)]
    pub calls: Vec<Call>,
}

fn line(check: &str, region: &str, object: impl Into<String>, r: Result<String, String>) -> Check {
    let (ok, detail) = match r {
        Ok(d) => (true, d),
        Err(d) => (false, d),
    };
    Check {
        check: check.into(),
        region: region.into(),
        object: object.into(),
        ok,
        detail,
    }
}

/// Loads the state (no lock: read-only) and evaluates a failover to `to` (default: the region
/// after the writer).
pub async fn execute(opts: &Options, to: Option<&str>) -> Result<Report, AppError> {
    let state = app::load_state(opts).await?;
    app::check_state_inputs(&state, opts)?;
    let inputs = super::recorded_inputs(opts, &state)?;
    let t = &inputs.topology;
    let to = to.map_or_else(|| t.next(t.writer()).to_string(), str::to_string);
    if t.index(&to).is_none() {
        return Err(AppError::Usage(format!(
            "--to {to}: not a region of this stack ({})",
            t.regions().collect::<Vec<_>>().join(", ")
        )));
    }
    let aws = Arc::new(Aws::connect(&opts.connection, &to).await);
    let opts = Options {
        inputs: inputs.clone(),
        ..opts.clone()
    };
    let checks = evaluate(&aws, &opts, &state, &to).await;
    Ok(Report {
        writer: t.writer().to_string(),
        ready: checks.iter().all(|c| c.ok),
        to,
        checks,
        calls: aws.log.calls(),
    })
}

/// Every check, calls to `to` only.
pub async fn evaluate(aws: &Arc<Aws>, opts: &Options, state: &State, to: &str) -> Vec<Check> {
    let inputs = &opts.inputs;
    let t = &inputs.topology;
    let writer = t.writer();
    let mut out = vec![];
    out.push(line("roles", to, format!("writer {writer}"), roles(state, to, writer)));
    let sts = tokio::time::timeout(Duration::from_secs(10), aws.sts(to).get_caller_identity().send()).await;
    out.push(line(
        "sts",
        to,
        "GetCallerIdentity",
        match sts {
            Ok(Ok(id)) => Ok(format!("credentials valid, account {}", id.account().unwrap_or("?"))),
            Ok(Err(e)) => Err(crate::aws::aws_err("GetCallerIdentity", e).to_string()),
            Err(_) => Err("no answer within 10s".into()),
        },
    ));
    if to == writer {
        return out;
    }
    let db = names::db_instance(inputs, to);
    out.push(line("db-instance", to, &db, replica(aws, inputs, to, &db).await));
    let secret = db_secret::secret_name(&inputs.env);
    out.push(line(
        "db-secret",
        to,
        &secret,
        secret_replica(aws, state, inputs, to, &secret).await,
    ));
    let key = state
        .nodes
        .get(&t.id(to, "kms-key"))
        .and_then(|n| n.physical_id.clone())
        .unwrap_or_default();
    out.push(line("kms-key", to, &key, kms_key(aws, to, &key).await));
    let store = Arc::new(StateStore::new(opts.state_path.clone(), state.clone(), true));
    for kind in ["s3-bucket", "s3-replication"] {
        out.push(line(
            kind,
            to,
            names::bucket(inputs, to),
            as_spec(aws, opts, &store, to, kind).await,
        ));
    }
    let asg = super::failover::asg_name(inputs, to);
    out.push(line("asg", to, &asg, asg_capacity(aws, to, &asg).await));
    out
}

fn roles(state: &State, to: &str, writer: &str) -> Result<String, String> {
    if let Some(f) = record::open(state) {
        if f.finished.is_none() {
            return Err(format!("a failover to {} is unfinished", f.to));
        }
        return Err(format!(
            "reprotect pending: {} in {} is a stale writer (run `tap reprotect`)",
            f.stale_writer.as_deref().unwrap_or("the old writer"),
            f.from
        ));
    }
    if to == writer {
        return Err(format!("{to} is the writer region already"));
    }
    Ok("no stale writer; no failover in progress".into())
}

/// `R`'s replica: available, a replica of the current writer, replication normal.
async fn replica(aws: &Aws, inputs: &Inputs, to: &str, db: &str) -> Result<String, String> {
    let d = super::describe_db(aws, to, db)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "does not exist".to_string())?;
    let status = d.db_instance_status().unwrap_or_default();
    let writer = names::db_instance(inputs, inputs.topology.writer());
    let source = d.read_replica_source_db_instance_identifier().unwrap_or_default();
    if source.is_empty() {
        return Err(format!(
            "{status}, not a replica (a standalone instance: a second writer?)"
        ));
    }
    // A cross-region replica names its source by ARN (`...:db:{id}`).
    if source != writer && !source.ends_with(&format!(":db:{writer}")) {
        return Err(format!("a replica of {source}, not of the writer {writer}"));
    }
    if status != "available" {
        return Err(format!("{status}, not available"));
    }
    let (normal, why) = replication_status(&d);
    match normal {
        true => Ok(format!("available replica of {writer}, replication {why}")),
        false => Err(format!("replication {why}")),
    }
}

/// Whether `db`'s read replication is normal (DescribeDBInstances StatusInfos, type
/// `read replication`: RDS API reference, DBInstanceStatusInfo). An instance that reports none
/// is taken as normal (the emulator reports none).
fn replication_status(d: &aws_sdk_rds::types::DbInstance) -> (bool, String) {
    match d
        .status_infos()
        .iter()
        .find(|s| s.status_type() == Some("read replication"))
    {
        None => (true, "reported normal".into()),
        Some(s) if s.normal() == Some(true) => (true, s.status().unwrap_or("replicating").to_string()),
        Some(s) => (
            false,
            format!(
                "{}{}",
                s.status().unwrap_or("abnormal"),
                s.message().map(|m| format!(": {m}")).unwrap_or_default()
            ),
        ),
    }
}

/// For the graceful drain: is `db`'s replication normal now?
pub async fn replication_normal(aws: &Aws, region: &str, db: &str) -> Result<(bool, String), NodeError> {
    Ok(match super::describe_db(aws, region, db).await? {
        None => (false, format!("{db} does not exist")),
        Some(d) if d.db_instance_status() != Some("available") => {
            (false, d.db_instance_status().unwrap_or_default().to_string())
        }
        Some(d) => replication_status(&d),
    })
}

/// `R`'s secret replica: a replica of the writer's secret, encrypted with `R`'s key, in sync.
async fn secret_replica(aws: &Aws, state: &State, inputs: &Inputs, to: &str, name: &str) -> Result<String, String> {
    let d = aws
        .secrets(to)
        .describe_secret()
        .secret_id(name)
        .send()
        .await
        .absent_on("DescribeSecret", &["ResourceNotFoundException"])
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no replica in {to}: a failover would have no credentials"))?;
    let writer = inputs.topology.writer();
    if d.deleted_date().is_some() {
        return Err("scheduled for deletion".into());
    }
    match d.primary_region() {
        Some(p) if p == writer => {}
        Some(p) => {
            return Err(format!(
                "a replica of the secret in {p}, not of the writer's in {writer}"
            ));
        }
        None => return Err("a standalone secret, not a replica of the writer's".into()),
    }
    // The replica's key, by key id (DescribeSecret may answer an id, an ARN or an alias).
    let key = state.nodes.get(&inputs.topology.id(to, "kms-key"));
    let want: Vec<String> = key
        .map(|n| {
            [n.physical_id.clone(), n.arn.clone(), Some(names::kms_alias(inputs, to))]
                .into_iter()
                .flatten()
                .collect()
        })
        .unwrap_or_default();
    let got = d.kms_key_id().unwrap_or("aws/secretsmanager");
    let same = want
        .iter()
        .any(|w| w == got || got.ends_with(&format!("/{w}")) || w.ends_with(&format!("/{got}")));
    if !same {
        return Err(format!("encrypted with {got}, not with {to}'s key"));
    }
    // The replica's own view of its replication, when the answer carries it.
    if let Some(s) = d.replication_status().iter().find(|s| s.region() == Some(to)) {
        let status = s.status().map(|s| s.as_str().to_string()).unwrap_or_default();
        if status != "InSync" {
            return Err(format!(
                "replica {status}{}",
                s.status_message().map(|m| format!(": {m}")).unwrap_or_default()
            ));
        }
    }
    Ok(format!("replica of the writer's secret in {writer}, {to}'s key"))
}

async fn kms_key(aws: &Aws, to: &str, key: &str) -> Result<String, String> {
    if key.is_empty() {
        return Err("the state records no key".into());
    }
    let d = aws
        .kms(to)
        .describe_key()
        .key_id(key)
        .send()
        .await
        .op("DescribeKey")
        .map_err(|e| e.to_string())?;
    let m = d.key_metadata().ok_or("no key metadata")?;
    let state = m.key_state().map(|s| s.as_str().to_string()).unwrap_or_default();
    match (m.enabled(), state.as_str()) {
        (true, "Enabled") => Ok("enabled".into()),
        _ => Err(format!("{state}: not usable")),
    }
}

/// The node `{to}/{kind}` as SPEC: its kind's read and desired properties compared, as `plan`
/// does (those kinds read `R`'s objects only).
async fn as_spec(
    aws: &Arc<Aws>,
    opts: &Options,
    store: &Arc<StateStore>,
    to: &str,
    kind: &str,
) -> Result<String, String> {
    let graph = app::graph_of(&opts.inputs);
    let id = opts.inputs.topology.id(to, kind);
    let node = graph
        .get(&id)
        .ok_or_else(|| format!("{id} is not in the graph"))?
        .clone();
    let k = kinds::get(kind).ok_or("unknown kind")?;
    let driver = Driver::new(store.clone(), opts.parallelism, Arc::default(), false);
    let cx = NodeCx {
        region: node.region.clone(),
        prior: store.get(&id),
        deps: driver.dep_attrs(&node.deps),
        planning: true,
        wait: opts.waits.of(node.kind),
        aliases: vec![],
        node,
        env: opts.inputs.env.clone(),
        stack: Arc::new(opts.inputs.clone()),
        token: None,
    };
    match driver.plan((k.make)(aws.clone()).as_ref(), &cx).await {
        Ok(Action::None) => Ok("as SPEC".into()),
        Ok(Action::Create) => Err("missing".into()),
        Ok(Action::Update { changes } | Action::Replace { changes, .. }) => Err(format!(
            "differs from SPEC: {} (deploy repairs it)",
            changes.iter().map(|c| c.key.as_str()).collect::<Vec<_>>().join(", ")
        )),
        Ok(other) => Err(other.verb(false).to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn asg_capacity(aws: &Aws, to: &str, name: &str) -> Result<String, String> {
    let out = aws
        .autoscaling(to)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(name)
        .send()
        .await
        .op("DescribeAutoScalingGroups")
        .map_err(|e| e.to_string())?;
    let g = out.auto_scaling_groups().first().ok_or("does not exist")?;
    let desired = g.desired_capacity().unwrap_or(0);
    let in_service = g
        .instances()
        .iter()
        .filter(|i| i.lifecycle_state().map(|s| s.as_str()) == Some("InService"))
        .count() as i32;
    match (desired >= 1, in_service >= desired) {
        (true, true) => Ok(format!("{in_service} of {desired} in service")),
        (false, _) => Err(format!("desired capacity {desired}: no compute to fail over to")),
        (true, false) => Err(format!("{in_service} of {desired} in service")),
    }
}

/// One line per check.
pub fn print(report: &Report) {
    let elsewhere: std::collections::BTreeSet<&str> = report
        .calls
        .iter()
        .map(|c| c.region.as_str())
        .filter(|r| *r != report.to)
        .collect();
    let calls = match elsewhere.is_empty() {
        true => format!("{} calls, all to {}", report.calls.len(), report.to),
        false => format!(
            "{} calls, also to {}",
            report.calls.len(),
            elsewhere.into_iter().collect::<Vec<_>>().join(", ")
        ),
    };
    crate::render::err(&format!(
        "dr check: failover {} -> {} ({calls}):",
        report.writer, report.to
    ));
    for c in &report.checks {
        crate::render::out(&format!(
            "{} {:<15} {} {}: {}",
            if c.ok { "ok  " } else { "FAIL" },
            c.check,
            c.region,
            c.object,
            c.detail
        ));
    }
    crate::render::err(match report.ready {
        true => "ready",
        false => "NOT READY",
    });
}

pub fn json(report: &Report) {
    for c in &report.checks {
        let mut v = serde_json::to_value(c).expect("a check serializes");
        v["type"] = "dr_check".into();
        crate::render::json_line(v);
    }
    crate::render::json_line(serde_json::json!({
        "type": "dr_summary",
        "to": report.to,
        "writer": report.writer,
        "ready": report.ready,
        "failed": report.checks.iter().filter(|c| !c.ok).count(),
        "checks": report.checks.len(),
    }));
}
