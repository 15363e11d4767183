//! SPEC checks for the rows beyond the first slice, by raw describe/get calls, both regions.

use crate::common::{db_kind, node_id, r};
use crate::verify::{assert_tags, statements};
use aws_sdk_ec2::types::Filter;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use tap::aws::Aws;
use tap::config::Inputs;

fn f(name: &str, v: &str) -> Filter {
    Filter::builder().name(name).values(v).build()
}

fn ec2_tags(t: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    t.iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone()?)))
        .collect()
}

/// The network of `region`: VPC, six subnets, gateways, routes, security groups. Returns the VPC
/// id.
pub async fn network(aws: &Aws, i: &Inputs, region: &str) -> String {
    let ec2 = aws.ec2(region);
    // The second octet of the VPC's CIDR: the region's index (home 0, secondaries 1, 2, ...).
    let x = i.topology.index(region).unwrap();
    let vpcs = ec2
        .describe_vpcs()
        .filters(f("tag:tap:id", &node_id(i, region, "vpc")))
        .filters(f("tag:tap:stack", &i.env))
        .send()
        .await
        .unwrap();
    let vpcs = vpcs.vpcs();
    assert_eq!(vpcs.len(), 1, "one VPC in {region}");
    let vpc = &vpcs[0];
    let vpc_id = vpc.vpc_id.clone().unwrap();
    assert_eq!(
        vpc.cidr_block.as_deref(),
        Some(format!("10.{x}.0.0/16").as_str()),
        "defect 9: CIDRs differ"
    );
    let tags = ec2_tags(vpc.tags());
    assert_eq!(tags["Name"], format!("tap-vpc-{}-{}", r(region), i.env));
    assert_tags("vpc", &tags, &i.env, &node_id(i, region, "vpc"));
    for (attr, name) in [
        (aws_sdk_ec2::types::VpcAttributeName::EnableDnsSupport, "support"),
        (aws_sdk_ec2::types::VpcAttributeName::EnableDnsHostnames, "hostnames"),
    ] {
        let a = ec2
            .describe_vpc_attribute()
            .vpc_id(&vpc_id)
            .attribute(attr)
            .send()
            .await
            .unwrap();
        let on = a.enable_dns_support.or(a.enable_dns_hostnames).and_then(|v| v.value);
        assert_eq!(on, Some(true), "DNS {name}");
    }
    let azs = tap::resources::ec2::first_two_azs(aws, region).await.unwrap();
    let subnets = ec2
        .describe_subnets()
        .filters(f("vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    let by_id: BTreeMap<String, &aws_sdk_ec2::types::Subnet> = subnets
        .subnets()
        .iter()
        .map(|s| (ec2_tags(s.tags()).get("tap:id").cloned().unwrap_or_default(), s))
        .collect();
    let mut subnet_ids = BTreeMap::new();
    for (kind, cidr, az, public) in [
        ("subnet-public-a", format!("10.{x}.0.0/24"), 0, true),
        ("subnet-public-b", format!("10.{x}.1.0/24"), 1, true),
        ("subnet-private-a", format!("10.{x}.2.0/24"), 0, false),
        ("subnet-private-b", format!("10.{x}.3.0/24"), 1, false),
        ("subnet-database-a", format!("10.{x}.4.0/28"), 0, false),
        ("subnet-database-b", format!("10.{x}.4.16/28"), 1, false),
    ] {
        let s = by_id
            .get(&node_id(i, region, kind))
            .unwrap_or_else(|| panic!("{kind} in {region}"));
        assert_eq!(s.cidr_block.as_deref(), Some(cidr.as_str()), "{kind}");
        assert_eq!(s.availability_zone.as_deref(), Some(azs[az].as_str()), "{kind}");
        assert_eq!(s.map_public_ip_on_launch, Some(public), "{kind} map public IP");
        assert_tags(kind, &ec2_tags(s.tags()), &i.env, &node_id(i, region, kind));
        subnet_ids.insert(kind, s.subnet_id.clone().unwrap());
    }
    let igws = ec2
        .describe_internet_gateways()
        .filters(f("attachment.vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    assert_eq!(igws.internet_gateways().len(), 1, "one internet gateway attached");
    let igw = igws.internet_gateways()[0].internet_gateway_id.clone().unwrap();
    let nats = ec2.describe_nat_gateways().send().await.unwrap();
    let nats: Vec<_> = nats
        .nat_gateways()
        .iter()
        .filter(|n| {
            n.vpc_id.as_deref() == Some(vpc_id.as_str()) && n.state.as_ref().map(|s| s.as_str()) == Some("available")
        })
        .collect();
    assert_eq!(nats.len(), 1, "one NAT gateway");
    assert_eq!(
        nats[0].subnet_id.as_deref(),
        Some(subnet_ids["subnet-public-a"].as_str()),
        "NAT in subnet-public-a"
    );
    let eip = nats[0].nat_gateway_addresses()[0].allocation_id.clone().unwrap();
    let addr = ec2.describe_addresses().allocation_ids(&eip).send().await.unwrap();
    assert_tags(
        "nat-eip",
        &ec2_tags(addr.addresses()[0].tags()),
        &i.env,
        &node_id(i, region, "nat-eip"),
    );
    let nat = nats[0].nat_gateway_id.clone().unwrap();
    let tables = ec2
        .describe_route_tables()
        .filters(f("vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    for (kind, target, subnets) in [
        (
            "route-table-public",
            Some(igw.as_str()),
            vec!["subnet-public-a", "subnet-public-b"],
        ),
        ("route-table-private-a", Some(nat.as_str()), vec!["subnet-private-a"]),
        ("route-table-private-b", Some(nat.as_str()), vec!["subnet-private-b"]),
        ("route-table-database-a", None, vec!["subnet-database-a"]),
        ("route-table-database-b", None, vec!["subnet-database-b"]),
    ] {
        let t = tables
            .route_tables()
            .iter()
            .find(|t| ec2_tags(t.tags()).get("tap:id") == Some(&node_id(i, region, kind)))
            .unwrap_or_else(|| panic!("{kind}"));
        let default = t
            .routes()
            .iter()
            .find(|r| r.destination_cidr_block.as_deref() == Some("0.0.0.0/0"));
        let got = default.and_then(|r| r.gateway_id.clone().or(r.nat_gateway_id.clone()));
        assert_eq!(got.as_deref(), target, "{kind} default route");
        let mut assoc: Vec<String> = t.associations().iter().filter_map(|a| a.subnet_id.clone()).collect();
        assoc.sort();
        let mut want: Vec<String> = subnets.iter().map(|s| subnet_ids[s].clone()).collect();
        want.sort();
        assert_eq!(assoc, want, "{kind} associations");
    }
    let sgs = ec2
        .describe_security_groups()
        .filters(f("vpc-id", &vpc_id))
        .send()
        .await
        .unwrap();
    let sg = |name: String| {
        sgs.security_groups()
            .iter()
            .find(|g| g.group_name.as_deref() == Some(name.as_str()))
            .cloned()
            .unwrap_or_else(|| panic!("{name}"))
    };
    let app = sg(format!("tap-app-{}", i.env));
    let db = sg(format!("tap-db-{}", i.env));
    let mut ports: Vec<(i32, String)> = app
        .ip_permissions()
        .iter()
        .flat_map(|p| {
            p.ip_ranges()
                .iter()
                .map(move |r| (p.from_port.unwrap(), r.cidr_ip.clone().unwrap()))
        })
        .collect();
    ports.sort();
    assert_eq!(
        ports,
        vec![(80, "0.0.0.0/0".to_string()), (443, "0.0.0.0/0".to_string())],
        "sg-app ingress"
    );
    assert!(
        app.ip_permissions_egress()
            .iter()
            .any(|p| p.ip_protocol.as_deref() == Some("-1")),
        "sg-app egress all"
    );
    let db_in = db.ip_permissions();
    assert_eq!(db_in.len(), 1);
    assert_eq!((db_in[0].from_port, db_in[0].to_port), (Some(5432), Some(5432)));
    assert_eq!(
        db_in[0].user_id_group_pairs()[0].group_id,
        app.group_id,
        "5432 from sg-app only"
    );
    assert!(db_in[0].ip_ranges().is_empty());
    assert!(db.ip_permissions_egress().is_empty(), "sg-db has no egress rule at all");
    assert_tags("sg-db", &ec2_tags(db.tags()), &i.env, &node_id(i, region, "sg-db"));
    vpc_id
}

/// RDS: the subnet group, the primary (writer region) or a replica (the others). Returns the
/// instance.
pub async fn database(aws: &Aws, i: &Inputs, region: &str, key_arn: &str) -> aws_sdk_rds::types::DbInstance {
    let rds = aws.rds(region);
    let group = rds
        .describe_db_subnet_groups()
        .db_subnet_group_name(format!("tap-db-subnets-{}", i.env))
        .send()
        .await
        .unwrap();
    let group = &group.db_subnet_groups()[0];
    assert_eq!(group.subnets().len(), 2, "the two database subnets");
    let (name, kind) = (format!("tap-db-{}-{}", r(region), i.env), db_kind(i, region));
    let db = rds
        .describe_db_instances()
        .db_instance_identifier(&name)
        .send()
        .await
        .unwrap()
        .db_instances()[0]
        .clone();
    assert_eq!(db.db_instance_class.as_deref(), Some("db.t3.micro"));
    assert_eq!(db.storage_encrypted, Some(true));
    assert_eq!(
        db.kms_key_id.as_deref(),
        Some(key_arn),
        "{name} encrypted with the region key"
    );
    assert_eq!(db.publicly_accessible, Some(false));
    assert_eq!(
        db.db_subnet_group.as_ref().and_then(|g| g.db_subnet_group_name.clone()),
        Some(format!("tap-db-subnets-{}", i.env))
    );
    assert_eq!(db.vpc_security_groups().len(), 1, "sg-db only");
    let tags = db
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone()?)))
        .collect();
    assert_tags(&name, &tags, &i.env, &node_id(i, region, kind));
    if region == i.topology.writer() {
        assert_eq!(db.engine.as_deref(), Some("postgres"));
        assert_eq!(db.engine_version.as_deref(), Some("16.9"));
        assert_eq!(db.allocated_storage, Some(20));
        assert_eq!(db.storage_type.as_deref(), Some("gp3"));
        assert_eq!(db.multi_az, Some(true));
        assert_eq!(db.backup_retention_period, Some(7));
        assert_eq!(db.db_name.as_deref(), Some("tapdb"));
        assert_eq!(db.master_username.as_deref(), Some("tapuser"));
        assert!(
            db.master_user_secret.is_none(),
            "SPEC v2: the password comes from db-secret, never ManageMasterUserPassword"
        );
        assert_eq!(db.deletion_protection, Some(false));
        assert_eq!(db.copy_tags_to_snapshot, Some(true));
    }
    db
}

/// IAM roles of `region` (EC2 role + instance profile, Lambda role).
pub async fn roles(aws: &Aws, i: &Inputs, region: &str, key_arn: &str, topic_arn: &str) {
    let iam = aws.iam(region);
    let r = r(region);
    let ec2_role = format!("tap-ec2-{r}-{}", i.env);
    let role = iam.get_role().role_name(&ec2_role).send().await.unwrap().role.unwrap();
    assert!(role.assume_role_policy_document.unwrap().contains("ec2.amazonaws.com"));
    let attached = iam
        .list_attached_role_policies()
        .role_name(&ec2_role)
        .send()
        .await
        .unwrap();
    let arns: Vec<_> = attached
        .attached_policies()
        .iter()
        .filter_map(|p| p.policy_arn.clone())
        .collect();
    assert_eq!(arns, ["arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"]);
    let doc = iam
        .get_role_policy()
        .role_name(&ec2_role)
        .policy_name("tap-ec2-access")
        .send()
        .await
        .unwrap();
    let doc = tap::resources::policy::parse(&doc.policy_document);
    let st = statements(&doc);
    assert!(st.iter().any(|s| s["Resource"]
        == json!([format!(
            "arn:aws:s3:::tap-bucket-{r}-{}-{}/*",
            i.env,
            crate::verify::ACCOUNT
        )])
        && s["Action"] == json!(["s3:GetObject", "s3:PutObject"])));
    assert!(
        st.iter()
            .any(|s| s["Resource"] == json!([key_arn]) && s["Action"] == json!(["kms:Decrypt", "kms:GenerateDataKey"]))
    );
    let profile = iam
        .get_instance_profile()
        .instance_profile_name(&ec2_role)
        .send()
        .await
        .unwrap()
        .instance_profile
        .unwrap();
    assert_eq!(
        profile.roles()[0].role_name,
        ec2_role,
        "instance profile of the same name holds the role"
    );

    let lambda_role = format!("tap-replication-monitor-{r}-{}", i.env);
    let role = iam
        .get_role()
        .role_name(&lambda_role)
        .send()
        .await
        .unwrap()
        .role
        .unwrap();
    assert!(
        role.assume_role_policy_document
            .unwrap()
            .contains("lambda.amazonaws.com")
    );
    let doc = iam
        .get_role_policy()
        .role_name(&lambda_role)
        .policy_name("tap-replication-monitor")
        .send()
        .await
        .unwrap();
    let doc = tap::resources::policy::parse(&doc.policy_document);
    let st = statements(&doc);
    let actions = |a: Value| {
        st.iter()
            .find(|s| s["Action"] == a)
            .cloned()
            .unwrap_or_else(|| panic!("{a} in lambda role"))
    };
    let logs = actions(json!(["logs:CreateLogStream", "logs:PutLogEvents"]));
    assert!(
        logs["Resource"]
            .to_string()
            .contains(&format!("log-group:/aws/lambda/tap-replication-monitor-{r}-{}", i.env))
    );
    assert_eq!(actions(json!(["sns:Publish"]))["Resource"], json!([topic_arn]));
    assert_eq!(
        actions(json!(["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]))["Resource"],
        json!([key_arn])
    );
}

/// SPEC v3 `db-secret`: the writer's secret under its region's key, tags, and a SecretString
/// RDS accepts; in every other region its replica under that region's key, `InSync`. `keys`:
/// region → its key's ARN. Returns the password, for tests that look for leaks.
pub async fn secret(aws: &Aws, i: &Inputs, keys: &BTreeMap<&str, String>) -> String {
    let writer = i.topology.writer();
    let sm = aws.secrets(writer);
    let name = format!("tap-db-{}", i.env);
    let d = sm.describe_secret().secret_id(&name).send().await.unwrap();
    assert_eq!(
        d.kms_key_id.as_deref(),
        Some(keys[writer].as_str()),
        "{name} encrypted with the region key"
    );
    assert!(d.deleted_date.is_none());
    let replicas = d.replication_status();
    let others: Vec<&str> = i.topology.regions().filter(|r| *r != writer).collect();
    assert_eq!(replicas.len(), others.len(), "{replicas:?}");
    for region in &others {
        let rep = replicas
            .iter()
            .find(|r| r.region.as_deref() == Some(*region))
            .unwrap_or_else(|| panic!("no replica in {region}: {replicas:?}"));
        assert_eq!(
            rep.kms_key_id.as_deref(),
            Some(keys[region].as_str()),
            "replica under {region}'s key"
        );
        assert_eq!(rep.status.as_ref().map(|s| s.as_str()), Some("InSync"), "{region}");
    }
    let tags = d
        .tags()
        .iter()
        .filter_map(|t| Some((t.key.clone()?, t.value.clone()?)))
        .collect();
    assert_tags(&name, &tags, &i.env, &node_id(i, writer, "db-secret"));
    let v = sm.get_secret_value().secret_id(&name).send().await.unwrap();
    let v: serde_json::Value = serde_json::from_str(v.secret_string().unwrap()).unwrap();
    assert_eq!(v["username"], "tapuser");
    let password = v["password"].as_str().unwrap().to_string();
    assert_eq!(password.len(), 32);
    assert!(!password.contains(['/', '"', '@', '\\', ' ']), "characters RDS refuses");
    // Each replica is readable in its region (by ARN: moto finds replicas by ARN only).
    for region in others {
        let replica_arn = d
            .arn()
            .unwrap()
            .replacen(&format!(":{writer}:"), &format!(":{region}:"), 1);
        let replica = aws
            .secrets(region)
            .describe_secret()
            .secret_id(&replica_arn)
            .send()
            .await
            .unwrap_or_else(|e| panic!("replica {replica_arn}: {e:?}"));
        assert_eq!(replica.kms_key_id.as_deref(), Some(keys[region].as_str()), "{region}");
    }
    password
}
