//! SPEC checks for compute, monitoring and CloudFront rows, and "nothing of the env remains".

use crate::common::{node_id, r};
use crate::verify::{ACCOUNT, assert_tags, statements};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tap::aws::Aws;
use tap::config::Inputs;

/// Launch template and Auto Scaling group of `region`.
pub async fn compute(aws: &Aws, i: &Inputs, region: &str, key_arn: &str) {
    let r = r(region);
    let ec2 = aws.ec2(region);
    let ami = aws
        .ssm(region)
        .get_parameter()
        .name("/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2")
        .send()
        .await
        .unwrap();
    let ami = ami.parameter.unwrap().value.unwrap();
    let name = format!("tap-lt-{r}-{}", i.env);
    let v = ec2
        .describe_launch_template_versions()
        .launch_template_name(&name)
        .versions("$Latest")
        .send()
        .await
        .unwrap();
    let d = v.launch_template_versions()[0].launch_template_data.clone().unwrap();
    assert_eq!(
        d.image_id.as_deref(),
        Some(ami.as_str()),
        "AMI from the SSM public parameter of {region}"
    );
    assert_eq!(d.instance_type.as_ref().map(|t| t.as_str()), Some("t3.micro"));
    assert!(
        d.iam_instance_profile
            .clone()
            .unwrap()
            .arn
            .unwrap()
            .ends_with(&format!("instance-profile/tap-ec2-{r}-{}", i.env))
    );
    assert_eq!(d.security_group_ids().len(), 1);
    let bd = &d.block_device_mappings()[0];
    assert_eq!(bd.device_name.as_deref(), Some("/dev/xvda"));
    let ebs = bd.ebs.clone().unwrap();
    assert_eq!(
        (
            ebs.volume_size,
            ebs.volume_type.map(|t| t.as_str().to_string()),
            ebs.encrypted
        ),
        (Some(8), Some("gp3".into()), Some(true))
    );
    assert_eq!(ebs.kms_key_id.as_deref(), Some(key_arn));
    assert_eq!(
        d.metadata_options
            .unwrap()
            .http_tokens
            .map(|t| t.as_str().to_string())
            .as_deref(),
        Some("required"),
        "IMDSv2 required"
    );

    let asg_name = format!("tap-asg-{r}-{}", i.env);
    let g = aws
        .autoscaling(region)
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(&asg_name)
        .send()
        .await
        .unwrap();
    let g = &g.auto_scaling_groups()[0];
    assert_eq!(
        (g.min_size, g.max_size, g.desired_capacity),
        (Some(1), Some(3), Some(1))
    );
    assert_eq!(
        g.launch_template
            .as_ref()
            .and_then(|l| l.launch_template_name.clone())
            .as_deref(),
        Some(name.as_str())
    );
    assert_eq!(
        g.vpc_zone_identifier.as_deref().unwrap_or_default().split(',').count(),
        2,
        "the two private subnets"
    );
    let tags: BTreeMap<String, String> = g
        .tags()
        .iter()
        .map(|t| (t.key.clone().unwrap(), t.value.clone().unwrap()))
        .collect();
    assert_tags(&asg_name, &tags, &i.env, &node_id(i, region, "asg"));
    assert!(
        g.tags().iter().all(|t| t.propagate_at_launch == Some(true)),
        "tags propagated at launch"
    );
}

/// Topic, log group, function and S3 events of `region`. Returns the topic ARN.
pub async fn monitoring(aws: &Aws, i: &Inputs, region: &str, key_arn: &str) -> String {
    let r = r(region);
    let topic = format!("arn:aws:sns:{region}:123456789012:tap-replication-alerts-{r}-{}", i.env);
    let attrs = aws
        .sns(region)
        .get_topic_attributes()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap();
    assert_eq!(attrs["DisplayName"], format!("TAP Replication Alerts - {region}"));
    assert_eq!(attrs["KmsMasterKeyId"], key_arn);
    let subs = aws
        .sns(region)
        .list_subscriptions_by_topic()
        .topic_arn(&topic)
        .send()
        .await
        .unwrap();
    assert!(subs.subscriptions().is_empty(), "no subscriptions");

    let group = format!("/aws/lambda/tap-replication-monitor-{r}-{}", i.env);
    let groups = aws
        .logs(region)
        .describe_log_groups()
        .log_group_name_prefix(&group)
        .send()
        .await
        .unwrap();
    let g = groups
        .log_groups()
        .iter()
        .find(|g| g.log_group_name.as_deref() == Some(group.as_str()))
        .expect("log group");
    assert_eq!(g.retention_in_days, Some(7));

    let fname = format!("tap-replication-monitor-{r}-{}", i.env);
    let f = aws
        .lambda(region)
        .get_function()
        .function_name(&fname)
        .send()
        .await
        .unwrap();
    let c = f.configuration.unwrap();
    assert_eq!(c.runtime.map(|r| r.as_str().to_string()).as_deref(), Some("python3.11"));
    assert_eq!(c.handler.as_deref(), Some("index.handler"));
    assert_eq!((c.timeout, c.memory_size), (Some(300), Some(128)));
    assert!(
        c.role
            .unwrap()
            .ends_with(&format!("role/tap-replication-monitor-{r}-{}", i.env))
    );
    assert_eq!(c.environment.unwrap().variables.unwrap()["SNS_TOPIC_ARN"], topic);
    assert_eq!(
        c.code_sha256.as_deref(),
        Some(tap::resources::lambda_function::code_sha256(&tap::resources::lambda_function::code_zip()).as_str())
    );
    let tags = f.tags.unwrap_or_default().into_iter().collect();
    assert_tags(&fname, &tags, &i.env, &node_id(i, region, "lambda-function"));

    let bucket = format!("tap-bucket-{r}-{}-{ACCOUNT}", i.env);
    let n = aws
        .s3(region)
        .get_bucket_notification_configuration()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let conf = &n.lambda_function_configurations()[0];
    assert_eq!(
        conf.lambda_function_arn,
        c.function_arn.unwrap(),
        "defect 4: the function is subscribed"
    );
    let mut events: Vec<&str> = conf.events().iter().map(|e| e.as_str()).collect();
    events.sort();
    assert_eq!(events, ["s3:ObjectCreated:*", "s3:Replication:*"]);
    let p = aws
        .lambda(region)
        .get_policy()
        .function_name(&fname)
        .send()
        .await
        .unwrap()
        .policy
        .unwrap();
    let p: Value = serde_json::from_str(&p).unwrap();
    let st = statements(&p);
    let s = st
        .iter()
        .find(|s| s["Principal"]["Service"] == "s3.amazonaws.com")
        .expect("S3 may invoke");
    assert!(
        s.to_string().contains(&format!("arn:aws:s3:::{bucket}")) && s.to_string().contains("123456789012"),
        "scoped to bucket and account: {s}"
    );
    topic
}

/// CloudFront (home region): log bucket, OAC, distribution, and the grant in every bucket
/// policy. Its origins: the home region's bucket, then the first secondary's (the failover).
pub async fn cdn(aws: &Aws, i: &Inputs) {
    let home = i.topology.home();
    let s3 = aws.s3(home);
    let logs = format!("tap-cf-logs-{}-{ACCOUNT}", i.env);
    let enc = s3
        .get_bucket_encryption()
        .bucket(&logs)
        .send()
        .await
        .unwrap()
        .server_side_encryption_configuration
        .unwrap();
    assert_eq!(
        enc.rules[0]
            .apply_server_side_encryption_by_default
            .as_ref()
            .unwrap()
            .sse_algorithm
            .as_str(),
        "AES256"
    );
    let own = s3
        .get_bucket_ownership_controls()
        .bucket(&logs)
        .send()
        .await
        .unwrap()
        .ownership_controls
        .unwrap();
    assert_eq!(own.rules[0].object_ownership.as_str(), "BucketOwnerPreferred");
    let v = tap::aws::compat::versioning_status(s3.get_bucket_versioning().bucket(&logs).send().await).unwrap();
    assert_ne!(v.as_deref(), Some("Enabled"), "log bucket unversioned");
    let pab = s3
        .get_public_access_block()
        .bucket(&logs)
        .send()
        .await
        .unwrap()
        .public_access_block_configuration
        .unwrap();
    assert_eq!(pab.block_public_acls, Some(true));

    let cf = aws.cloudfront(home);
    let oacs = cf
        .list_origin_access_controls()
        .send()
        .await
        .unwrap()
        .origin_access_control_list
        .unwrap();
    let oac = oacs
        .items()
        .iter()
        .find(|o| o.name == format!("tap-oac-{}", i.env))
        .expect("OAC (defect 6)");
    assert_eq!(
        (
            oac.signing_protocol.as_str(),
            oac.signing_behavior.as_str(),
            oac.origin_access_control_origin_type.as_str()
        ),
        ("sigv4", "always", "s3")
    );

    let list = cf.list_distributions().send().await.unwrap().distribution_list.unwrap();
    let d = list
        .items()
        .iter()
        .find(|d| d.comment == format!("TAP CloudFront Distribution - {}", i.env))
        .expect("distribution");
    let c = cf
        .get_distribution_config()
        .id(&d.id)
        .send()
        .await
        .unwrap()
        .distribution_config
        .unwrap();
    assert!(c.enabled);
    let origins = c.origins.as_ref().unwrap().items();
    let domains: Vec<&str> = origins.iter().map(|o| o.domain_name.as_str()).collect();
    let origin = |region: &str| format!("tap-bucket-{}-{}-{ACCOUNT}.s3.{region}.amazonaws.com", r(region), i.env);
    let writer = i.topology.writer();
    assert_eq!(domains, [origin(writer), origin(i.topology.next(writer))]);
    for o in origins {
        // SPEC v3: a dead origin fails over in about 10 s.
        assert_eq!(o.connection_attempts, Some(2), "{}", o.id);
        assert_eq!(o.connection_timeout, Some(5), "{}", o.id);
        // moto omits S3OriginConfig on the way back; AWS returns it with an empty identity.
        let oai = o
            .s3_origin_config
            .as_ref()
            .map(|s| s.origin_access_identity.as_str())
            .unwrap_or_default();
        assert_eq!(oai, "", "no legacy OAI (defect 6)");
        // moto does not return OriginAccessControlId; AWS does, and then it must be the OAC.
        if let Some(id) = o.origin_access_control_id.as_deref().filter(|s| !s.is_empty()) {
            assert_eq!(id, oac.id);
        }
    }
    let g = &c.origin_groups.as_ref().expect("origin group (defect 5)").items()[0];
    assert_eq!(g.id, "tap-failover");
    let members: Vec<&str> = g
        .members
        .as_ref()
        .unwrap()
        .items()
        .iter()
        .map(|m| m.origin_id.as_str())
        .collect();
    // SPEC v3: the writer's bucket first, then the next region's; origins named by region.
    assert_eq!(members, [writer, i.topology.next(writer)]);
    let mut codes = g
        .failover_criteria
        .as_ref()
        .unwrap()
        .status_codes
        .as_ref()
        .unwrap()
        .items()
        .to_vec();
    codes.sort();
    assert_eq!(codes, [403, 404, 500, 502, 503, 504]);
    let b = c.default_cache_behavior.as_ref().unwrap();
    // moto refuses an origin group as the default behaviour's target (AWS accepts it); tap then
    // targets the primary origin. On any endpoint that accepts it, the target is the group.
    assert!(
        b.target_origin_id == "tap-failover" || b.target_origin_id == writer,
        "{}",
        b.target_origin_id
    );
    assert_eq!(b.viewer_protocol_policy.as_str(), "redirect-to-https");
    assert_eq!(
        b.cache_policy_id.as_deref(),
        Some("658327ea-f89d-4fab-a63d-7e88639e58f6")
    );
    let methods: Vec<&str> = b
        .allowed_methods
        .as_ref()
        .unwrap()
        .items()
        .iter()
        .map(|m| m.as_str())
        .collect();
    assert_eq!(methods, ["GET", "HEAD"]);
    assert_eq!(c.price_class.as_ref().map(|p| p.as_str()), Some("PriceClass_100"));
    assert_eq!(c.http_version.as_ref().map(|h| h.as_str()), Some("http2"));
    assert_eq!(c.is_ipv6_enabled, Some(true));
    let l = c.logging.as_ref().unwrap();
    assert!(l.enabled);
    assert_eq!(l.bucket, format!("{logs}.s3.amazonaws.com"));
    assert_eq!(l.prefix, "cloudfront/");
    let tags = cf
        .list_tags_for_resource()
        .resource(&d.arn)
        .send()
        .await
        .unwrap()
        .tags
        .unwrap();
    let tags = tags
        .items()
        .iter()
        .map(|t| (t.key.clone(), t.value.clone().unwrap_or_default()))
        .collect();
    assert_tags("distribution", &tags, &i.env, &node_id(i, home, "cloudfront"));

    for region in i.topology.regions() {
        let bucket = format!("tap-bucket-{}-{}-{ACCOUNT}", r(region), i.env);
        let p: Value = serde_json::from_str(
            &aws.s3(region)
                .get_bucket_policy()
                .bucket(&bucket)
                .send()
                .await
                .unwrap()
                .policy
                .unwrap(),
        )
        .unwrap();
        let grant = statements(&p)
            .into_iter()
            .find(|s| s["Effect"] == "Allow")
            .expect("CloudFront grant");
        assert_eq!(grant["Principal"]["Service"], json!("cloudfront.amazonaws.com"));
        assert_eq!(grant["Action"], json!("s3:GetObject"));
        assert_eq!(grant["Condition"]["StringEquals"]["AWS:SourceArn"], json!(d.arn));
    }
}

/// Every kind, every region and IAM: nothing carrying this env remains (keys pending deletion
/// count as gone).
pub async fn nothing_left(aws: &Aws, i: &Inputs) {
    crate::verify::slice_gone(aws, i).await;
    // The secret, in every region (deleted without a recovery window).
    for region in i.topology.regions() {
        let list = aws.secrets(region).list_secrets().send().await.unwrap();
        let name = format!("tap-db-{}", i.env);
        assert!(
            !list.secret_list().iter().any(|s| s.name() == Some(name.as_str())),
            "secret {name} in {region}"
        );
    }
    for region in i.topology.regions() {
        let r = r(region);
        let ec2 = aws.ec2(region);
        let stack = aws_sdk_ec2::types::Filter::builder()
            .name("tag:tap:stack")
            .values(&i.env)
            .build();
        assert!(
            ec2.describe_vpcs()
                .filters(stack.clone())
                .send()
                .await
                .unwrap()
                .vpcs()
                .is_empty(),
            "VPC in {region}"
        );
        assert!(
            ec2.describe_subnets()
                .filters(stack.clone())
                .send()
                .await
                .unwrap()
                .subnets()
                .is_empty(),
            "subnets"
        );
        assert!(
            ec2.describe_internet_gateways()
                .filters(stack.clone())
                .send()
                .await
                .unwrap()
                .internet_gateways()
                .is_empty()
        );
        assert!(
            ec2.describe_route_tables()
                .filters(stack.clone())
                .send()
                .await
                .unwrap()
                .route_tables()
                .is_empty()
        );
        assert!(
            ec2.describe_security_groups()
                .filters(stack.clone())
                .send()
                .await
                .unwrap()
                .security_groups()
                .is_empty()
        );
        assert!(
            ec2.describe_addresses()
                .filters(stack.clone())
                .send()
                .await
                .unwrap()
                .addresses()
                .is_empty(),
            "EIP"
        );
        assert!(
            ec2.describe_launch_templates()
                .filters(stack.clone())
                .send()
                .await
                .unwrap()
                .launch_templates()
                .is_empty()
        );
        let nats = ec2.describe_nat_gateways().send().await.unwrap();
        assert!(
            nats.nat_gateways()
                .iter()
                .all(|n| !n.tags().iter().any(|t| t.value.as_deref() == Some(i.env.as_str()))
                    || n.state.as_ref().map(|s| s.as_str()) == Some("deleted")),
            "NAT gateways deleted"
        );
        let rds = aws.rds(region);
        for id in i
            .topology
            .regions()
            .map(|db| format!("tap-db-{}-{}", crate::common::r(db), i.env))
        {
            assert!(
                rds.describe_db_instances()
                    .db_instance_identifier(&id)
                    .send()
                    .await
                    .is_err(),
                "{id}"
            );
        }
        assert!(
            rds.describe_db_subnet_groups()
                .db_subnet_group_name(format!("tap-db-subnets-{}", i.env))
                .send()
                .await
                .is_err()
        );
        let asg = aws
            .autoscaling(region)
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(format!("tap-asg-{r}-{}", i.env))
            .send()
            .await
            .unwrap();
        assert!(asg.auto_scaling_groups().is_empty(), "ASG");
        let topic = format!("arn:aws:sns:{region}:123456789012:tap-replication-alerts-{r}-{}", i.env);
        assert!(
            aws.sns(region)
                .get_topic_attributes()
                .topic_arn(&topic)
                .send()
                .await
                .is_err(),
            "topic"
        );
        let group = format!("/aws/lambda/tap-replication-monitor-{r}-{}", i.env);
        let groups = aws
            .logs(region)
            .describe_log_groups()
            .log_group_name_prefix(&group)
            .send()
            .await
            .unwrap();
        assert!(groups.log_groups().is_empty(), "log group");
        assert!(
            aws.lambda(region)
                .get_function()
                .function_name(format!("tap-replication-monitor-{r}-{}", i.env))
                .send()
                .await
                .is_err(),
            "function"
        );
        let iam = aws.iam(region);
        for role in [
            format!("tap-ec2-{r}-{}", i.env),
            format!("tap-replication-monitor-{r}-{}", i.env),
        ] {
            assert!(iam.get_role().role_name(&role).send().await.is_err(), "role {role}");
        }
        assert!(
            iam.get_instance_profile()
                .instance_profile_name(format!("tap-ec2-{r}-{}", i.env))
                .send()
                .await
                .is_err(),
            "instance profile"
        );
    }
    let home = i.topology.home();
    let s3 = aws.s3(home);
    assert!(
        s3.head_bucket()
            .bucket(format!("tap-cf-logs-{}-{ACCOUNT}", i.env))
            .send()
            .await
            .is_err(),
        "log bucket"
    );
    let cf = aws.cloudfront(home);
    let oacs = cf
        .list_origin_access_controls()
        .send()
        .await
        .unwrap()
        .origin_access_control_list
        .unwrap();
    assert!(
        !oacs.items().iter().any(|o| o.name == format!("tap-oac-{}", i.env)),
        "OAC"
    );
    let list = cf.list_distributions().send().await.unwrap().distribution_list.unwrap();
    assert!(
        !list
            .items()
            .iter()
            .any(|d| d.comment == format!("TAP CloudFront Distribution - {}", i.env)),
        "distribution"
    );
}
