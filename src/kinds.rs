//! The registry of resource kinds: one row per kind with everything tap knows of it apart from
//! its implementation (one file in `resources/`). Adding a kind is that file and one row here.

use crate::aws::Aws;
use crate::engine::policy::WaitPolicy;
use crate::engine::resource::Resource;
use crate::resources::asg::Asg;
use crate::resources::by_role::ByRole;
use crate::resources::cf_oac::CfOriginAccessControl;
use crate::resources::cloudfront::CloudFront;
use crate::resources::db_secret::DbSecret;
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
use crate::resources::route_table::RouteTable;
use crate::resources::s3_bucket::{S3Bucket, Variant};
use crate::resources::s3_bucket_policy::S3BucketPolicy;
use crate::resources::s3_notification::S3Notification;
use crate::resources::s3_replication::S3Replication;
use crate::resources::secret_replica::SecretReplica;
use crate::resources::security_group::SecurityGroup;
use crate::resources::sns_topic::SnsTopic;
use crate::resources::subnet::Subnet;
use crate::resources::typed::Typed;
use crate::resources::vpc::Vpc;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What tap knows of one kind.
pub struct Kind {
    pub name: &'static str,
    /// Its implementation, over an AWS handle.
    pub make: fn(Arc<Aws>) -> Arc<dyn Resource>,
    /// How long the driver waits at most for an object of this kind to become ready or gone
    /// (`--max-wait KIND=MINUTES` overrides it).
    pub max_wait_minutes: u64,
    /// Typical time of a create on AWS, in seconds: the critical path of `tap graph` (no run yet)
    /// and the live view's "typically" hint.
    pub typical_seconds: f64,
    /// SPEC "Outputs" this kind gives in its own region: (output name, attr).
    pub outputs: &'static [(&'static str, &'static str)],
}

/// Most kinds answer within seconds.
const QUICK: f64 = 2.0;
/// The driver's default wait (generous for kinds that answer within seconds).
const WAIT: u64 = 10;

const fn kind(name: &'static str, make: fn(Arc<Aws>) -> Arc<dyn Resource>) -> Kind {
    Kind {
        name,
        make,
        max_wait_minutes: WAIT,
        typical_seconds: QUICK,
        outputs: &[],
    }
}

const fn slow(mut k: Kind, max_wait_minutes: u64, typical_seconds: f64) -> Kind {
    k.max_wait_minutes = max_wait_minutes;
    k.typical_seconds = typical_seconds;
    k
}

const fn outputs(mut k: Kind, outputs: &'static [(&'static str, &'static str)]) -> Kind {
    k.outputs = outputs;
    k
}

/// Every kind. Typical times: RDS, a Multi-AZ instance takes 15-20 minutes and a cross-region
/// replica longer (RDS User Guide, "Creating a read replica"); CloudFront deploys to its edge
/// network in 5-15 minutes; a NAT gateway a minute or two; an Auto Scaling group and a function
/// half a minute; everything else answers within seconds.
pub static KINDS: &[Kind] = &[
    outputs(kind("vpc", |a| Arc::new(Typed(Vpc(a)))), &[("VpcId", "id")]),
    kind("subnet-public-a", |a| Arc::new(Typed(Subnet(a)))),
    kind("subnet-public-b", |a| Arc::new(Typed(Subnet(a)))),
    kind("subnet-private-a", |a| Arc::new(Typed(Subnet(a)))),
    kind("subnet-private-b", |a| Arc::new(Typed(Subnet(a)))),
    kind("subnet-database-a", |a| Arc::new(Typed(Subnet(a)))),
    kind("subnet-database-b", |a| Arc::new(Typed(Subnet(a)))),
    kind("internet-gateway", |a| Arc::new(Typed(InternetGateway(a)))),
    kind("nat-eip", |a| Arc::new(Typed(NatEip(a)))),
    slow(kind("nat-gateway", |a| Arc::new(Typed(NatGateway(a)))), 15, 120.0),
    kind("route-table-public", |a| Arc::new(Typed(RouteTable(a)))),
    kind("route-table-private-a", |a| Arc::new(Typed(RouteTable(a)))),
    kind("route-table-private-b", |a| Arc::new(Typed(RouteTable(a)))),
    kind("route-table-database-a", |a| Arc::new(Typed(RouteTable(a)))),
    kind("route-table-database-b", |a| Arc::new(Typed(RouteTable(a)))),
    kind("sg-app", |a| Arc::new(Typed(SecurityGroup(a)))),
    kind("sg-db", |a| Arc::new(Typed(SecurityGroup(a)))),
    outputs(kind("kms-key", |a| Arc::new(Typed(KmsKey(a)))), &[("KmsKeyId", "id")]),
    kind("kms-alias", |a| Arc::new(Typed(KmsAlias(a)))),
    outputs(
        kind("s3-bucket", |a| Arc::new(Typed(S3Bucket(a, Variant::Data)))),
        &[("BucketName", "name")],
    ),
    kind("cf-log-bucket", |a| {
        Arc::new(Typed(S3Bucket(a, Variant::CloudFrontLogs)))
    }),
    kind("s3-bucket-policy", |a| Arc::new(Typed(S3BucketPolicy(a)))),
    kind("iam-replication-role", |a| {
        Arc::new(Typed(IamRole(a, RoleKind::Replication)))
    }),
    kind("iam-ec2-role", |a| Arc::new(Typed(IamRole(a, RoleKind::Ec2)))),
    kind("iam-lambda-role", |a| Arc::new(Typed(IamRole(a, RoleKind::Lambda)))),
    kind("db-subnet-group", |a| Arc::new(Typed(DbSubnetGroup(a)))),
    // The writer region's secret, and its replica in every other region.
    outputs(
        kind("db-secret", |a| {
            Arc::new(ByRole {
                writer: Arc::new(Typed(DbSecret(a.clone()))),
                replica: Arc::new(Typed(SecretReplica(a))),
            })
        }),
        &[("DbSecretArn", "arn")],
    ),
    // The writer, and a cross-region read replica of it in every other region: a replica takes
    // longer (RDS User Guide, "Creating a read replica"), and waits up to 90 minutes.
    outputs(
        slow(
            kind("db-instance", |a| {
                Arc::new(ByRole {
                    writer: Arc::new(Typed(RdsInstance(a.clone(), DbRole::Primary))),
                    replica: Arc::new(Typed(RdsInstance(a, DbRole::Replica))),
                })
            }),
            90,
            1500.0,
        ),
        &[("DbEndpoint", "endpoint")],
    ),
    kind("launch-template", |a| Arc::new(Typed(LaunchTemplate(a)))),
    slow(kind("asg", |a| Arc::new(Typed(Asg(a)))), 20, 30.0),
    outputs(
        kind("sns-topic", |a| Arc::new(Typed(SnsTopic(a)))),
        &[("SnsTopicArn", "arn")],
    ),
    kind("log-group", |a| Arc::new(Typed(LogGroup(a)))),
    slow(
        kind("lambda-function", |a| Arc::new(Typed(LambdaFunction(a)))),
        WAIT,
        30.0,
    ),
    kind("s3-notification", |a| Arc::new(Typed(S3Notification(a)))),
    kind("cf-origin-access-control", |a| {
        Arc::new(Typed(CfOriginAccessControl(a)))
    }),
    outputs(
        slow(kind("cloudfront", |a| Arc::new(Typed(CloudFront(a)))), 45, 600.0),
        &[
            ("CloudFrontDomainName", "domain_name"),
            ("CloudFrontDistributionId", "id"),
        ],
    ),
    kind("s3-replication", |a| Arc::new(Typed(S3Replication(a)))),
];

/// The row of `name`, if tap knows the kind (state may carry kinds of older versions).
pub fn get(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// Typical create time of `kind` on AWS (see [`Kind::typical_seconds`]).
pub fn typical_seconds(kind: &str) -> f64 {
    get(kind).map_or(QUICK, |k| k.typical_seconds)
}

/// How long the driver waits for each kind: the registry's value unless `--max-wait` set one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Waits(BTreeMap<String, WaitPolicy>);

impl Waits {
    pub fn of(&self, kind: &str) -> WaitPolicy {
        match self.0.get(kind) {
            Some(w) => *w,
            None => WaitPolicy::minutes(get(kind).map_or(WAIT, |k| k.max_wait_minutes)),
        }
    }

    /// `KIND=MINUTES` from the command line; every kind of the registry may be named.
    pub fn set(&mut self, spec: &str) -> Result<(), String> {
        let (kind, minutes) = spec
            .split_once('=')
            .ok_or_else(|| format!("--max-wait {spec:?}: expected KIND=MINUTES"))?;
        if get(kind).is_none() {
            return Err(format!(
                "--max-wait {spec:?}: no kind {kind:?}; kinds are {}",
                KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn kinds_are_registered_once() {
        let mut names: Vec<&str> = KINDS.iter().map(|k| k.name).collect();
        names.sort();
        let n = names.len();
        names.dedup();
        assert_eq!(names.len(), n, "a kind is registered twice");
    }

    /// Regression: `--max-wait KIND=MINUTES` was accepted for every kind but applied to only the
    /// four kinds whose implementation carried a wait policy. The driver now takes the wait of
    /// every node from `Waits` (engine test `the_wait_is_the_one_the_stack_gives`); here every
    /// kind, of every family, can be given one.
    #[test]
    fn max_wait_applies_to_every_kind() {
        for k in KINDS {
            let mut w = Waits::default();
            assert_eq!(w.of(k.name).max_wait, Duration::from_secs(k.max_wait_minutes * 60));
            w.set(&format!("{}=3", k.name)).unwrap();
            assert_eq!(w.of(k.name).max_wait, Duration::from_secs(180), "{}", k.name);
        }
        let mut w = Waits::default();
        w.set("db-instance=120").unwrap();
        assert_eq!(w.of("db-instance").max_wait, Duration::from_secs(7200));
        assert!(w.set("db-instance").is_err());
        assert!(w.set("nope=3").unwrap_err().contains("vpc"));
        assert!(w.set("asg=0").is_err());
    }
}
