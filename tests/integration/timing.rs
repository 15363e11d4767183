//! The whole stack on the emulator's timing mode: RDS, NAT and CloudFront take seconds, as on
//! AWS (minutes there). Waits, their order and their progress output are tested for real.

use crate::common::{self, db_kind, mutating, node_id, run, timing_config, timing_endpoint, timing_events};
use crate::stack::check_everything;
use crate::verify_edge;
use std::process::Command as Process;
use tap::app::{Command, Options};
use tap::aws::{Aws, Connection};
use tap::engine::state::State;

fn timing_options(env: &str) -> Options {
    let mut o = common::options(env);
    o.connection = Connection {
        endpoint_url: Some(timing_endpoint()),
        test_credentials_fallback: true,
        ..common::connection()
    };
    // Polls every 0.25 s at first (instead of 1 s): the durations here are seconds.
    o.wait_scale = 0.25;
    o
}

fn at(events: &[(f64, String, String, String)], action: &str, id: &str) -> f64 {
    events
        .iter()
        .find(|e| e.2 == action && e.3 == id)
        .unwrap_or_else(|| panic!("no {action} {id} in {events:?}"))
        .0
}

fn secs(key: &str) -> f64 {
    timing_config()[key].as_f64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_stack_waits_like_aws() {
    let env = common::unique_env("wait");
    let o = timing_options(&env);
    let i = crate::verify::inputs(&env);
    let aws = Aws::connect(&o.connection, "us-east-1").await;
    let slack = 0.05; // timestamps come from one clock; allow for rounding only

    let report = run(Command::Deploy, &o).await;
    let state = State::load(&o.state_path).unwrap();
    let nat = |region: &str| {
        state.nodes[&node_id(&i, region, "nat-gateway")]
            .physical_id
            .clone()
            .unwrap()
    };
    let ev = timing_events();
    // The replica only after the primary is available (it was `creating` for rds_create s).
    let primary_created = at(&ev, "CreateDBInstance", &format!("tap-db-useast1-{env}"));
    let replica_created = at(&ev, "CreateDBInstanceReadReplica", &format!("tap-db-euwest1-{env}"));
    assert!(
        replica_created - primary_created >= secs("rds_create") - slack,
        "replica {replica_created} vs primary {primary_created}"
    );
    // Private routes only after the NAT gateway is available.
    for region in i.topology.regions() {
        let n = nat(region);
        let created = at(&ev, "CreateNatGateway", &n);
        let routed = ev
            .iter()
            .filter(|e| e.2 == "CreateRoute" && e.3 == n)
            .map(|e| e.0)
            .fold(f64::INFINITY, f64::min);
        assert!(
            routed - created >= secs("nat_create") - slack,
            "{region} route to NAT at {routed}, NAT created {created}"
        );
    }
    // CloudFront edge propagation is not waited for: the node finished while it was InProgress.
    let home = i.topology.home();
    let cf = report
        .nodes
        .iter()
        .find(|n| n.id == node_id(&i, home, "cloudfront"))
        .unwrap();
    assert!(cf.seconds < secs("cf_deploy"), "cloudfront node took {}s", cf.seconds);

    check_everything(&aws, &i).await;
    let second = run(Command::Deploy, &o).await;
    assert_eq!(
        mutating(&second),
        Vec::<String>::new(),
        "a second deploy makes no mutating call"
    );

    run(Command::Destroy, &o).await;
    let ev = timing_events();
    let replica_deleted = at(&ev, "DeleteDBInstance", &format!("tap-db-euwest1-{env}"));
    let primary_deleted = at(&ev, "DeleteDBInstance", &format!("tap-db-useast1-{env}"));
    assert!(
        primary_deleted - replica_deleted >= secs("rds_delete") - slack,
        "primary deleted only after the replica is gone"
    );
    let dist = state.nodes[&node_id(&i, home, "cloudfront")]
        .physical_id
        .clone()
        .unwrap();
    let disabled = at(&ev, "UpdateDistribution", &dist);
    let deleted = at(&ev, "DeleteDistribution", &dist);
    assert!(
        deleted - disabled >= secs("cf_deploy") - slack,
        "distribution deleted only once Deployed after disabling"
    );
    for region in i.topology.regions() {
        let n = nat(region);
        let eip = state.nodes[&node_id(&i, region, "nat-eip")]
            .physical_id
            .clone()
            .unwrap();
        assert!(
            at(&ev, "ReleaseAddress", &eip) - at(&ev, "DeleteNatGateway", &n) >= secs("nat_delete") - slack,
            "EIP released after the NAT is deleted"
        );
    }
    verify_edge::nothing_left(&aws, &i).await;
}

/// While nodes wait, tap prints which are in flight, for how long, and how many are done.
#[test]
fn progress_lines_while_waiting() {
    let env = common::unique_env("prog");
    let state = common::state_path(&env);
    let ep = timing_endpoint();
    let tap = |cmd: &[&str]| {
        Process::new(env!("CARGO_BIN_EXE_tap"))
            .args([
                "--local",
                "--endpoint-url",
                &ep,
                "--env",
                &env,
                "--state",
                state.to_str().unwrap(),
            ])
            .args(cmd)
            .env("TAP_PROGRESS_SECS", "1")
            .output()
            .unwrap()
    };
    let out = tap(&["deploy"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("waiting for creation: creating"), "{err}");
    let i = crate::verify::inputs(&env);
    let writer = i.topology.writer();
    let db = format!("{} (", node_id(&i, writer, db_kind(&i, writer)));
    assert!(
        err.lines()
            .any(|l| l.contains(&format!("/{} done; in flight: ", tap::app::graph().len())) && l.contains(&db)),
        "{err}"
    );
    let status = tap(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    for output in [
        "BucketName",
        "KmsKeyId",
        "SnsTopicArn",
        "VpcId",
        "DbEndpoint",
        "CloudFrontDomainName",
        "CloudFrontDistributionId",
    ] {
        assert!(text.contains(&format!("us-east-1 {output} = ")), "{output} in {text}");
    }
    for output in ["BucketName", "KmsKeyId", "SnsTopicArn", "VpcId", "DbEndpoint"] {
        assert!(text.contains(&format!("eu-west-1 {output} = ")), "{output} in {text}");
    }
    let out = tap(&["destroy", "--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("waiting for deletion: deleting"), "{err}");
    assert!(err.contains("waiting for deletable state: InProgress"), "{err}");
}
