//! Exactly once under faults: throttling, 503, lost responses, eventual consistency and lingering
//! dependencies injected by the fault-mode emulator (`localstack/faults.py`), each test on an
//! emulator of its own.

use crate::common::{self, faults_injected, node_id, raw_at, run};
use crate::{stack, verify, verify_edge};
use std::collections::{BTreeMap, BTreeSet};
use tap::app::{self, Command};
use tap::aws::Aws;
use tap::config::Inputs;
use tap::engine::reconcile::Action;

/// 20 % of all requests faulted (throttled 6 %, 503 6 %, executed with the response lost 8 %),
/// plus fresh EC2 ids invisible for 2 s and deletes refused for 5 s after an owner goes.
fn spec(seed: u32) -> String {
    format!("seed={seed},throttle=0.06,unavailable=0.06,lost=0.08,consistency=2,linger=5")
}

/// Nodes whose objects EC2 finds by ownership tags (the kinds that can have twins).
fn ec2_kind(kind: &str) -> bool {
    matches!(
        kind,
        "vpc" | "internet-gateway" | "nat-eip" | "nat-gateway" | "sg-app" | "sg-db" | "launch-template"
    ) || kind.starts_with("subnet-")
        || kind.starts_with("route-table-")
}

/// Every object carrying `tap:stack=<env>` that can exist twice (EC2 kinds, KMS keys,
/// CloudFront distributions), counted by `tap:id`.
pub async fn tagged_objects(aws: &Aws, i: &Inputs) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    let mut others: Vec<(String, usize)> = Vec::new();
    let mut add = |tags: &[aws_sdk_ec2::types::Tag]| {
        let m: BTreeMap<_, _> = tags
            .iter()
            .map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default()))
            .collect();
        if m.get("tap:stack") == Some(&i.env.as_str()) {
            *n.entry(m.get("tap:id").unwrap_or(&"?").to_string()).or_insert(0) += 1;
        }
    };
    for region in i.topology.regions() {
        let ec2 = aws.ec2(region);
        let f = aws_sdk_ec2::types::Filter::builder()
            .name("tag:tap:stack")
            .values(&i.env)
            .build();
        for v in ec2.describe_vpcs().filters(f.clone()).send().await.unwrap().vpcs() {
            add(v.tags());
        }
        for s in ec2
            .describe_subnets()
            .filters(f.clone())
            .send()
            .await
            .unwrap()
            .subnets()
        {
            add(s.tags());
        }
        for g in ec2
            .describe_security_groups()
            .filters(f.clone())
            .send()
            .await
            .unwrap()
            .security_groups()
        {
            add(g.tags());
        }
        for t in ec2
            .describe_route_tables()
            .filters(f.clone())
            .send()
            .await
            .unwrap()
            .route_tables()
        {
            add(t.tags());
        }
        for g in ec2
            .describe_internet_gateways()
            .filters(f.clone())
            .send()
            .await
            .unwrap()
            .internet_gateways()
        {
            add(g.tags());
        }
        for a in ec2
            .describe_addresses()
            .filters(f.clone())
            .send()
            .await
            .unwrap()
            .addresses()
        {
            add(a.tags());
        }
        // moto ignores tag filters on DescribeNatGateways: every gateway is checked.
        for g in ec2.describe_nat_gateways().send().await.unwrap().nat_gateways() {
            if !matches!(g.state().map(|s| s.as_str()), Some("deleted" | "deleting" | "failed")) {
                add(g.tags());
            }
        }
        for t in ec2
            .describe_launch_templates()
            .filters(f.clone())
            .send()
            .await
            .unwrap()
            .launch_templates()
        {
            add(t.tags());
        }
        let keys = verify::owned_keys(aws, i, region).await;
        if keys > 0 {
            others.push((node_id(i, region, "kms-key"), keys));
        }
    }
    let home = i.topology.home();
    let cf = aws.cloudfront(home);
    let list = cf.list_distributions().send().await.unwrap().distribution_list.unwrap();
    let dists = list
        .items()
        .iter()
        .filter(|d| d.comment == format!("TAP CloudFront Distribution - {}", i.env))
        .count();
    if dists > 0 {
        others.push((node_id(i, home, "cloudfront"), dists));
    }
    n.extend(others);
    n
}

/// Exactly one object per node of those kinds, and no other.
async fn assert_exactly_once(aws: &Aws, i: &Inputs) {
    let found = tagged_objects(aws, i).await;
    let twins: Vec<_> = found.iter().filter(|(_, c)| **c > 1).collect();
    assert!(twins.is_empty(), "objects sharing a tap:id: {twins:?}");
    let want: BTreeSet<String> = app::graph()
        .nodes()
        .filter(|n| ec2_kind(n.kind) || n.kind == "kms-key" || n.kind == "cloudfront")
        .map(|n| n.id.clone())
        .collect();
    let have: BTreeSet<String> = found.keys().cloned().collect();
    assert_eq!(have, want, "one object per node");
}

/// A full deploy and a full destroy, each in one run, under 20 % faults; every SPEC row after
/// deploy; exactly one object per node; a twin made outside tap is planned and removed;
/// nothing of the env after destroy.
async fn deploy_and_destroy_under_faults(seed: u16) {
    let ep = common::fault_endpoint(seed, &spec(u32::from(seed)));
    let env = common::unique_env(&format!("f{seed}x"));
    let o = common::options_at(&env, &ep);
    let i = verify::inputs(&env);
    let aws = raw_at(&ep).await;

    let deployed = run(Command::Deploy, &o).await;
    assert!(deployed.nodes.iter().all(|n| n.outcome_is(&Action::Create)));
    let injected = faults_injected(&ep);
    for kind in ["throttle", "unavailable", "lost-500", "lost-reset", "not-yet-visible"] {
        assert!(
            injected.iter().any(|(f, _)| f == kind),
            "the emulator injected no {kind}: the test would prove nothing"
        );
    }
    assert_exactly_once(&aws, &i).await;
    stack::check_everything(&aws, &i).await;

    // A twin made outside tap: a second route table carrying the same ownership tags.
    let home = i.topology.home();
    let twin_of = node_id(&i, home, "route-table-public");
    let vpc = deployed.outputs[home]["VpcId"].clone();
    let twin = aws
        .ec2(home)
        .create_route_table()
        .vpc_id(&vpc)
        .tag_specifications(tap::resources::ec2::tag_spec_for(
            &i,
            &twin_of,
            aws_sdk_ec2::types::ResourceType::RouteTable,
        ))
        .send()
        .await
        .unwrap()
        .route_table
        .unwrap()
        .route_table_id
        .unwrap();
    let plan = run(Command::Plan, &o).await;
    let line = plan.nodes.iter().find(|n| n.id == twin_of).unwrap();
    assert_eq!(line.twins, vec![twin.clone()], "plan lists the twin");
    assert_eq!(plan.counts()["delete"], 1, "the twin is the only deletion planned");
    let redeploy = run(Command::Deploy, &o).await;
    let line = redeploy.nodes.iter().find(|n| n.id == twin_of).unwrap();
    assert_eq!(line.twins, vec![twin], "deploy deleted the twin");
    assert_exactly_once(&aws, &i).await;

    let destroyed = run(Command::Destroy, &o).await;
    assert!(destroyed.nodes.iter().all(|n| n.outcome_is(&Action::Delete)));
    assert!(
        faults_injected(&ep).iter().any(|(f, _)| f == "dependency-violation"),
        "destroy met no lingering dependency"
    );
    assert!(tagged_objects(&aws, &i).await.is_empty());
    verify_edge::nothing_left(&aws, &i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_destroy_under_faults_seed_1() {
    deploy_and_destroy_under_faults(1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_destroy_under_faults_seed_2() {
    deploy_and_destroy_under_faults(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_and_destroy_under_faults_seed_3() {
    deploy_and_destroy_under_faults(3).await;
}

/// Creates without an idempotency token (and the named and token-carrying ones) whose first
/// response is lost, executed but unanswered: every node still has exactly one object. Tag
/// listings lag the token-less creates by 3 s (issue 17 item 10): the look-up after the lost
/// response went on for 1.5 s at this test's scale (6 s on AWS), missed, and sent CreateVpc,
/// CreateSubnet, AllocateAddress, CreateInternetGateway and CreateKey again (a twin each); it
/// now backs off for up to 2 minutes (30 s here) and finds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_create_responses_leave_no_twin_when_tag_listings_lag() {
    // Token-less creates first: the kinds the look-up protects. Then named creates (adopted when
    // "already exists" names an owned object) and token-carrying ones (replayed).
    const TOKENLESS: &[&str] = &[
        "CreateVpc",
        "CreateSubnet",
        "CreateInternetGateway",
        "AllocateAddress",
        "CreateKey",
    ];
    const OTHERS: &[&str] = &[
        "CreateSecurityGroup",
        "CreateRouteTable",
        "CreateNatGateway",
        "CreateLaunchTemplate",
        "CreateRole",
        "CreateInstanceProfile",
        "CreateDBSubnetGroup",
        "CreateDBInstance",
        "CreateDBInstanceReadReplica",
        "CreateTopic",
        "CreateLogGroup",
        // Token-less too, but no look-up by tags: the writer's replication status tells. The SDK
        // resent it after a lost response and the region was listed twice, once Failed.
        "ReplicateSecretToRegions",
        "CreateAlias",
        "CreateAutoScalingGroup",
        "POST /2015-03-31/functions",
        "POST /2020-05-31/distribution",
        "POST /2020-05-31/origin-access-control",
    ];
    let only: Vec<&str> = TOKENLESS.iter().chain(OTHERS).copied().collect();
    let ep = common::fault_endpoint(4, &format!("seed=4,first=1,listing=3,only={}", only.join("|")));
    let env = common::unique_env("lostc");
    let o = common::options_at(&env, &ep);
    let i = verify::inputs(&env);
    let aws = raw_at(&ep).await;

    run(Command::Deploy, &o).await;
    let injected = faults_injected(&ep);
    for action in only {
        assert!(
            injected.iter().any(|(f, a)| f.starts_with("lost") && a == action),
            "no response of {action} was lost"
        );
    }
    for listing in [
        "DescribeVpcs",
        "DescribeSubnets",
        "DescribeInternetGateways",
        "DescribeAddresses",
        "ListKeys",
    ] {
        assert!(
            injected.iter().any(|(f, a)| f == "listing-lag" && a == listing),
            "no {listing} lagged: the test would prove nothing"
        );
    }
    assert_exactly_once(&aws, &i).await;
    stack::check_everything(&aws, &i).await;
    run(Command::Destroy, &o).await;
    verify_edge::nothing_left(&aws, &i).await;
}
