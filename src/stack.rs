//! The TAP stack of SPEC as a graph (fixed in code) and the resource kind behind each node.

use crate::aws::Aws;
use crate::config::Side::{self, Primary, Secondary};
use crate::engine::graph::{Graph, GraphError, node_id};
use crate::engine::policy::WaitPolicy;
use crate::engine::resource::Resource;
use crate::resources::asg::Asg;
use crate::resources::cf_oac::CfOriginAccessControl;
use crate::resources::cloudfront::CloudFront;
use crate::resources::db_subnet_group::DbSubnetGroup;
use crate::resources::iam_role::{IamRole, RoleKind};
use crate::resources::internet_gateway::InternetGateway;
use crate::resources::kms_alias::KmsAlias;
use crate::resources::kms_key::KmsKey;
use crate::resources::lambda_function::LambdaFunction;
use crate::resources::launch_template::LaunchTemplate;
use crate::resources::log_group::LogGroup;
use crate::resources::nat::{NatEip, NatGateway};
use crate::resources::rds_instance::{RdsInstance, Role as DbRole};
use crate::resources::route_table::{self, RouteTable};
use crate::resources::s3_bucket::{S3Bucket, Variant};
use crate::resources::s3_bucket_policy::S3BucketPolicy;
use crate::resources::s3_notification::S3Notification;
use crate::resources::s3_replication::S3Replication;
use crate::resources::security_group::SecurityGroup;
use crate::resources::sns_topic::SnsTopic;
use crate::resources::subnet::{self, Subnet};
use crate::resources::vpc::Vpc;
use std::collections::BTreeMap;
use std::sync::Arc;

fn id(side: Side, kind: &str) -> String {
    node_id(side, kind)
}

/// Every node of SPEC with its edges.
pub fn graph() -> Result<Graph, GraphError> {
    let mut g = Graph::default();
    for side in Side::BOTH {
        let key = g.add(side, "kms-key", &[])?;
        g.add(side, "kms-alias", std::slice::from_ref(&key))?;
        g.add(side, "s3-bucket", std::slice::from_ref(&key))?;
        network(&mut g, side)?;
        compute(&mut g, side)?;
    }
    // Cross-region. Defect 1 of the reference: the destination bucket exists and is versioned
    // before the replication rule names it.
    let buckets_and_keys = [
        id(Primary, "s3-bucket"),
        id(Secondary, "s3-bucket"),
        id(Primary, "kms-key"),
        id(Secondary, "kms-key"),
    ];
    let role = g.add(Primary, "iam-replication-role", &buckets_and_keys)?;
    let mut repl = buckets_and_keys.to_vec();
    repl.push(role);
    g.add(Primary, "s3-replication", &repl)?;

    // SPEC v2: the master password comes from a secret replicated to the secondary region.
    let secret = g.add(
        Primary,
        "db-secret",
        &[id(Primary, "kms-key"), id(Secondary, "kms-key")],
    )?;
    let primary_db = g.add(
        Primary,
        "rds-primary",
        &[
            id(Primary, "kms-key"),
            id(Primary, "db-subnet-group"),
            id(Primary, "sg-db"),
            secret,
        ],
    )?;
    g.add(
        Secondary,
        "rds-replica",
        &[
            id(Secondary, "kms-key"),
            id(Secondary, "db-subnet-group"),
            id(Secondary, "sg-db"),
            primary_db,
        ],
    )?;

    let logs = g.add(Primary, "cf-log-bucket", &[])?;
    let oac = g.add(Primary, "cf-origin-access-control", &[])?;
    let cf = g.add(
        Primary,
        "cloudfront",
        &[id(Primary, "s3-bucket"), id(Secondary, "s3-bucket"), oac, logs],
    )?;
    for side in Side::BOTH {
        g.add(side, "s3-bucket-policy", &[id(side, "s3-bucket"), cf.clone()])?;
    }
    Ok(g)
}

/// Database subnet group, instances' role and template, Auto Scaling, topic, function, events.
fn compute(g: &mut Graph, side: Side) -> Result<(), GraphError> {
    let key = id(side, "kms-key");
    g.add(
        side,
        "db-subnet-group",
        &[id(side, "subnet-database-a"), id(side, "subnet-database-b")],
    )?;
    let ec2_role = g.add(side, "iam-ec2-role", &[key.clone(), id(side, "s3-bucket")])?;
    let lt = g.add(side, "launch-template", &[ec2_role, id(side, "sg-app"), key.clone()])?;
    // After the private routes, so that instances have egress.
    g.add(
        side,
        "asg",
        &[
            lt,
            id(side, "subnet-private-a"),
            id(side, "subnet-private-b"),
            id(side, "route-table-private-a"),
            id(side, "route-table-private-b"),
        ],
    )?;
    let topic = g.add(side, "sns-topic", std::slice::from_ref(&key))?;
    let log_group = g.add(side, "log-group", &[])?;
    let lambda_role = g.add(side, "iam-lambda-role", &[key, topic.clone(), log_group.clone()])?;
    let function = g.add(side, "lambda-function", &[log_group, lambda_role, topic])?;
    g.add(side, "s3-notification", &[function, id(side, "s3-bucket")])?;
    Ok(())
}

/// VPC, subnets, gateways, route tables and security groups of one region.
fn network(g: &mut Graph, side: Side) -> Result<(), GraphError> {
    let vpc = g.add(side, "vpc", &[])?;
    for kind in subnet::KINDS {
        g.add(side, kind, std::slice::from_ref(&vpc))?;
    }
    let igw = g.add(side, "internet-gateway", std::slice::from_ref(&vpc))?;
    let eip = g.add(side, "nat-eip", &[])?;
    let nat = g.add(side, "nat-gateway", &[igw.clone(), id(side, "subnet-public-a"), eip])?;
    for kind in route_table::KINDS {
        let (target, subnets) = route_table::layout(kind);
        let mut deps: Vec<String> = subnets.iter().map(|s| id(side, s)).collect();
        deps.push(vpc.clone());
        match target {
            Some(("internet-gateway", _)) => deps.push(igw.clone()),
            Some(_) => deps.push(nat.clone()),
            None => {}
        }
        g.add(side, kind, &deps)?;
    }
    let app = g.add(side, "sg-app", std::slice::from_ref(&vpc))?;
    g.add(side, "sg-db", &[vpc, app])?;
    Ok(())
}

/// How long each kind may take to become ready or gone (generous; `--max-wait` overrides).
#[derive(Clone, Debug, PartialEq)]
pub struct Waits(pub BTreeMap<String, WaitPolicy>);

impl Default for Waits {
    fn default() -> Self {
        Waits(BTreeMap::from([
            ("nat-gateway".to_string(), WaitPolicy::minutes(15)),
            ("rds-primary".to_string(), WaitPolicy::minutes(60)),
            ("rds-replica".to_string(), WaitPolicy::minutes(90)),
            ("cloudfront".to_string(), WaitPolicy::minutes(45)),
            ("asg".to_string(), WaitPolicy::minutes(20)),
        ]))
    }
}

impl Waits {
    pub fn of(&self, kind: &str) -> WaitPolicy {
        self.0.get(kind).copied().unwrap_or_default()
    }

    /// `KIND=MINUTES` from the command line.
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let kinds: Vec<&str> = graph().map(|g| g.nodes().map(|n| n.kind).collect()).unwrap_or_default();
        let (kind, minutes) = spec
            .split_once('=')
            .ok_or_else(|| format!("--max-wait {spec:?}: expected KIND=MINUTES"))?;
        if !kinds.contains(&kind) {
            return Err(format!(
                "--max-wait {spec:?}: no kind {kind:?}; kinds are {}",
                self.0.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        let minutes: u64 = minutes
            .parse()
            .ok()
            .filter(|m| *m > 0)
            .ok_or_else(|| format!("--max-wait {spec:?}: MINUTES must be a whole number above 0"))?;
        self.0.insert(kind.to_string(), WaitPolicy::minutes(minutes));
        Ok(())
    }
}

/// Typical time of a create on AWS, in seconds, for the critical path of `tap graph` (no run
/// yet). RDS: a Multi-AZ instance takes 15-20 minutes and a cross-region replica longer (RDS
/// User Guide, "Creating a read replica"); CloudFront deploys to its edge network in 5-15
/// minutes; a NAT gateway a minute or two. Everything else answers within seconds.
pub fn typical_seconds(kind: &str) -> f64 {
    match kind {
        "rds-primary" => 1200.0,
        "rds-replica" => 1500.0,
        "cloudfront" => 600.0,
        "nat-gateway" => 120.0,
        "asg" | "lambda-function" => 30.0,
        _ => 2.0,
    }
}

/// Whether `kind` has an implementation (orphans in state may carry kinds of older versions).
pub fn known_kind(kind: &str) -> bool {
    graph().is_ok_and(|g| g.nodes().any(|n| n.kind == kind))
}

/// The implementation of a node's kind.
pub fn resource(kind: &str, aws: &Arc<Aws>, waits: &Waits) -> Arc<dyn Resource> {
    let a = aws.clone();
    match kind {
        "vpc" => Arc::new(Vpc(a)),
        k if k.starts_with("subnet-") => Arc::new(Subnet(a)),
        "internet-gateway" => Arc::new(InternetGateway(a)),
        "nat-eip" => Arc::new(NatEip(a)),
        "nat-gateway" => Arc::new(NatGateway(a, waits.of(kind))),
        k if k.starts_with("route-table-") => Arc::new(RouteTable(a)),
        "sg-app" | "sg-db" => Arc::new(SecurityGroup(a)),
        "kms-key" => Arc::new(KmsKey(a)),
        "kms-alias" => Arc::new(KmsAlias(a)),
        "s3-bucket" => Arc::new(S3Bucket(a, Variant::Data)),
        "cf-log-bucket" => Arc::new(S3Bucket(a, Variant::CloudFrontLogs)),
        "s3-bucket-policy" => Arc::new(S3BucketPolicy(a)),
        "iam-replication-role" => Arc::new(IamRole(a, RoleKind::Replication)),
        "iam-ec2-role" => Arc::new(IamRole(a, RoleKind::Ec2)),
        "iam-lambda-role" => Arc::new(IamRole(a, RoleKind::Lambda)),
        "db-subnet-group" => Arc::new(DbSubnetGroup(a)),
        "db-secret" => Arc::new(crate::resources::db_secret::DbSecret(a)),
        "rds-primary" => Arc::new(RdsInstance(a, DbRole::Primary, waits.of(kind))),
        "rds-replica" => Arc::new(RdsInstance(a, DbRole::Replica, waits.of(kind))),
        "launch-template" => Arc::new(LaunchTemplate(a)),
        "asg" => Arc::new(Asg(a, waits.of(kind))),
        "sns-topic" => Arc::new(SnsTopic(a)),
        "log-group" => Arc::new(LogGroup(a)),
        "lambda-function" => Arc::new(LambdaFunction(a)),
        "s3-notification" => Arc::new(S3Notification(a)),
        "cf-origin-access-control" => Arc::new(CfOriginAccessControl(a)),
        "cloudfront" => Arc::new(CloudFront(a, waits.of(kind))),
        "s3-replication" => Arc::new(S3Replication(a)),
        other => panic!("no resource kind {other:?} (the graph and this table disagree)"),
    }
}

/// SPEC "Outputs", from the nodes' attrs: per region name, output name → value.
pub fn outputs(
    attrs: &BTreeMap<String, BTreeMap<String, String>>,
    region: impl Fn(Side) -> String,
) -> BTreeMap<String, BTreeMap<String, String>> {
    const TABLE: &[(&str, &str, &str)] = &[
        ("BucketName", "s3-bucket", "name"),
        ("KmsKeyId", "kms-key", "id"),
        ("SnsTopicArn", "sns-topic", "arn"),
        ("VpcId", "vpc", "id"),
        ("DbEndpoint", "rds-primary", "endpoint"),
        ("DbEndpoint", "rds-replica", "endpoint"),
        ("CloudFrontDomainName", "cloudfront", "domain_name"),
        ("CloudFrontDistributionId", "cloudfront", "id"),
    ];
    let mut out: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for side in Side::BOTH {
        for (name, kind, attr) in TABLE {
            if let Some(v) = attrs.get(&id(side, kind)).and_then(|a| a.get(*attr)) {
                out.entry(region(side)).or_default().insert(name.to_string(), v.clone());
            }
        }
    }
    // DbSecretArn: the secret in the primary region, its replica in the secondary.
    if let Some(a) = attrs.get(&id(Primary, "db-secret")) {
        for (side, attr) in [(Primary, "arn"), (Secondary, "replica_arn")] {
            if let Some(v) = a.get(attr) {
                out.entry(region(side))
                    .or_default()
                    .insert("DbSecretArn".into(), v.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn graph_is_acyclic_and_every_edge_names_a_node() {
        let g = graph().unwrap();
        let order = g.validate().unwrap();
        assert_eq!(order.len(), g.len());
    }

    #[test]
    fn max_wait_is_configurable_per_kind() {
        let mut w = Waits::default();
        w.set("rds-replica=120").unwrap();
        assert_eq!(w.of("rds-replica").max_wait, std::time::Duration::from_secs(7200));
        assert!(w.set("rds-replica").is_err());
        assert!(w.set("nope=3").is_err());
        assert!(w.set("asg=0").is_err());
    }

    #[test]
    fn every_node_has_an_implementation_and_region_prefix() {
        let g = graph().unwrap();
        for n in g.nodes() {
            assert!(n.id.starts_with(n.side.as_str()), "{}", n.id);
            assert!(n.id.ends_with(n.kind), "{}", n.id);
        }
    }
}
