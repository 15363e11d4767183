//! Drift: a property changed outside tap shows in `plan` as exactly that change, `deploy`
//! repairs it, and the next `plan` is clean. One raw SDK change per case.

use crate::common::{self, first_secondary, node_id, raw, run};
use std::collections::BTreeSet;
use tap::app::{Command, Options, Outcome};
use tap::aws::Aws;
use tap::engine::reconcile::Action;
use tap::engine::state::State;

/// `plan` shows `node` alone, with exactly `keys` changed (or created when `keys` is empty);
/// `deploy` repairs it; the next `plan` is clean.
async fn drift_is_repaired(o: &Options, case: &str, node: &str, keys: &[&str]) {
    let plan = run(Command::Plan, o).await;
    let changed: Vec<_> = plan.nodes.iter().filter(|n| !n.outcome_is(&Action::None)).collect();
    assert_eq!(changed.len(), 1, "{case}: plan shows one node, got {changed:#?}");
    assert_eq!(changed[0].id, node, "{case}");
    match &changed[0].outcome {
        Outcome::Done(Action::Update { changes }) => {
            let got: BTreeSet<&str> = changes.iter().map(|c| c.key.as_str()).collect();
            assert_eq!(got, keys.iter().copied().collect(), "{case}: changed properties");
        }
        Outcome::Done(Action::Create) => assert!(keys.is_empty(), "{case}: expected an update of {keys:?}"),
        other => panic!("{case}: unexpected {other:?}"),
    }
    let deploy = run(Command::Deploy, o).await;
    assert!(
        !deploy
            .nodes
            .iter()
            .find(|n| n.id == node)
            .unwrap()
            .outcome_is(&Action::None),
        "{case}: repaired"
    );
    let clean = run(Command::Plan, o).await;
    let left: Vec<_> = clean
        .nodes
        .iter()
        .filter(|n| !n.outcome_is(&Action::None))
        .map(|n| &n.id)
        .collect();
    assert!(left.is_empty(), "{case}: plan after repair shows {left:?}");
}

async fn deployed(prefix: &str) -> (Options, State, std::sync::Arc<Aws>) {
    let env = common::unique_env(prefix);
    let o = common::options(&env);
    run(Command::Deploy, &o).await;
    let state = State::load(&o.state_path).unwrap();
    (o, state, raw().await)
}

fn pid(s: &State, id: &str) -> String {
    s.nodes[id].physical_id.clone().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_in_storage_keys_and_tags() {
    let (o, st, aws) = deployed("dst").await;
    let (home, sec) = (o.inputs.topology.home(), first_secondary(&o.inputs));
    let home_id = |kind: &str| node_id(&o.inputs, home, kind);
    let sec_id = |kind: &str| node_id(&o.inputs, sec, kind);
    let s3 = aws.s3(home);
    let bucket = pid(&st, &home_id("s3-bucket"));
    use aws_sdk_s3::types::*;

    let off = VersioningConfiguration::builder()
        .status(BucketVersioningStatus::Suspended)
        .build();
    s3.put_bucket_versioning()
        .bucket(&bucket)
        .versioning_configuration(off)
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "versioning suspended", &home_id("s3-bucket"), &["versioning"]).await;

    let aes = ServerSideEncryptionByDefault::builder()
        .sse_algorithm(ServerSideEncryption::Aes256)
        .build()
        .unwrap();
    let rule = ServerSideEncryptionRule::builder()
        .apply_server_side_encryption_by_default(aes)
        .bucket_key_enabled(true)
        .build();
    let conf = ServerSideEncryptionConfiguration::builder()
        .rules(rule)
        .build()
        .unwrap();
    s3.put_bucket_encryption()
        .bucket(&bucket)
        .server_side_encryption_configuration(conf)
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "encryption changed", &home_id("s3-bucket"), &["sse_algorithm"]).await;

    let loose = PublicAccessBlockConfiguration::builder()
        .block_public_acls(false)
        .ignore_public_acls(true)
        .block_public_policy(true)
        .restrict_public_buckets(true)
        .build();
    s3.put_public_access_block()
        .bucket(&bucket)
        .public_access_block_configuration(loose)
        .send()
        .await
        .unwrap();
    drift_is_repaired(
        &o,
        "public access block loosened",
        &home_id("s3-bucket"),
        &["public_access_block"],
    )
    .await;

    s3.delete_bucket_policy().bucket(&bucket).send().await.unwrap();
    drift_is_repaired(&o, "bucket policy deleted", &home_id("s3-bucket-policy"), &[]).await;

    s3.delete_bucket_replication().bucket(&bucket).send().await.unwrap();
    drift_is_repaired(&o, "replication rule removed", &home_id("s3-replication"), &[]).await;

    // moto: key rotation calls need the key id (an ARN is a 500 there).
    aws.kms(sec)
        .disable_key_rotation()
        .key_id(pid(&st, &sec_id("kms-key")))
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "key rotation disabled", &sec_id("kms-key"), &["rotation"]).await;

    aws.ec2(sec)
        .delete_tags()
        .resources(pid(&st, &sec_id("vpc")))
        .tags(aws_sdk_ec2::types::Tag::builder().key("Project").build())
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "a tag removed", &sec_id("vpc"), &["tags"]).await;
    run(Command::Destroy, &o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_in_network() {
    let (o, st, aws) = deployed("dnet").await;
    let home = o.inputs.topology.home();
    let home_id = |kind: &str| node_id(&o.inputs, home, kind);
    let ec2 = aws.ec2(home);
    use aws_sdk_ec2::types::{IpPermission, IpRange};
    let anywhere = |port: i32| {
        IpPermission::builder()
            .ip_protocol("tcp")
            .from_port(port)
            .to_port(port)
            .ip_ranges(IpRange::builder().cidr_ip("0.0.0.0/0").build())
            .build()
    };

    ec2.authorize_security_group_ingress()
        .group_id(pid(&st, &home_id("sg-app")))
        .ip_permissions(anywhere(22))
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "extra ingress rule", &home_id("sg-app"), &["ingress"]).await;

    ec2.authorize_security_group_egress()
        .group_id(pid(&st, &home_id("sg-db")))
        .ip_permissions(anywhere(443))
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "extra egress rule", &home_id("sg-db"), &["egress"]).await;

    ec2.delete_route()
        .route_table_id(pid(&st, &home_id("route-table-private-a")))
        .destination_cidr_block("0.0.0.0/0")
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "route deleted", &home_id("route-table-private-a"), &["routes"]).await;
    run(Command::Destroy, &o).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_in_compute_monitoring_and_cdn() {
    let (o, st, aws) = deployed("dcmp").await;
    let (home, sec) = (o.inputs.topology.home(), first_secondary(&o.inputs));
    let home_id = |kind: &str| node_id(&o.inputs, home, kind);
    let sec_id = |kind: &str| node_id(&o.inputs, sec, kind);
    let asg = pid(&st, &home_id("asg"));
    aws.autoscaling(home)
        .update_auto_scaling_group()
        .auto_scaling_group_name(&asg)
        .min_size(2)
        .max_size(4)
        .desired_capacity(2)
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "ASG sizes changed", &home_id("asg"), &["min", "max", "desired"]).await;

    aws.logs(sec)
        .put_retention_policy()
        .log_group_name(pid(&st, &sec_id("log-group")))
        .retention_in_days(30)
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "log retention changed", &sec_id("log-group"), &["retention_days"]).await;

    let sns = aws.sns(home);
    let topic = pid(&st, &home_id("sns-topic"));
    sns.set_topic_attributes()
        .topic_arn(&topic)
        .attribute_name("DisplayName")
        .attribute_value("renamed")
        .send()
        .await
        .unwrap();
    drift_is_repaired(
        &o,
        "topic display name changed",
        &home_id("sns-topic"),
        &["display_name"],
    )
    .await;
    sns.set_topic_attributes()
        .topic_arn(&topic)
        .attribute_name("KmsMasterKeyId")
        .attribute_value("alias/aws/sns")
        .send()
        .await
        .unwrap();
    drift_is_repaired(&o, "topic KMS key changed", &home_id("sns-topic"), &["kms_key"]).await;

    let lambda = aws.lambda(home);
    let f = pid(&st, &home_id("lambda-function"));
    lambda
        .update_function_configuration()
        .function_name(&f)
        .timeout(60)
        .send()
        .await
        .unwrap();
    drift_is_repaired(
        &o,
        "function timeout changed",
        &home_id("lambda-function"),
        &["timeout"],
    )
    .await;
    let env = aws_sdk_lambda::types::Environment::builder()
        .variables("SNS_TOPIC_ARN", "arn:aws:sns:us-east-1:123456789012:other")
        .build();
    lambda
        .update_function_configuration()
        .function_name(&f)
        .environment(env)
        .send()
        .await
        .unwrap();
    drift_is_repaired(
        &o,
        "function environment changed",
        &home_id("lambda-function"),
        &["environment"],
    )
    .await;

    let cf = aws.cloudfront(home);
    let dist = pid(&st, &home_id("cloudfront"));
    for (case, key) in [
        ("price class changed", "price_class"),
        ("viewer protocol policy changed", "viewer_protocol_policy"),
    ] {
        let cur = cf.get_distribution_config().id(&dist).send().await.unwrap();
        let mut c = cur.distribution_config.unwrap();
        if key == "price_class" {
            c.price_class = Some(aws_sdk_cloudfront::types::PriceClass::PriceClassAll);
        } else if let Some(b) = c.default_cache_behavior.as_mut() {
            b.viewer_protocol_policy = aws_sdk_cloudfront::types::ViewerProtocolPolicy::AllowAll;
        }
        cf.update_distribution()
            .id(&dist)
            .set_if_match(cur.e_tag)
            .distribution_config(c)
            .send()
            .await
            .unwrap();
        drift_is_repaired(&o, case, &home_id("cloudfront"), &[key]).await;
    }
    run(Command::Destroy, &o).await;
}
