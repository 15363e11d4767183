//! End to end on the whole stack: deploy, check every SPEC row in both regions, redeploy
//! without a mutating call, destroy, nothing left.

use crate::common::{self, mutating, node_id, r, raw, run};
use crate::{verify, verify_edge, verify_stack};
use std::collections::BTreeMap;
use tap::app::Command;
use tap::aws::Aws;
use tap::config::Inputs;
use tap::engine::reconcile::Action;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_check_redeploy_destroy() {
    let env = common::unique_env("e2e");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let aws = raw().await;

    let first = run(Command::Deploy, &o).await;
    // The call log sees mutations (so the "no mutating call" check below can fail).
    assert!(
        mutating(&first).len() >= tap::app::graph().len(),
        "{} mutating calls logged",
        mutating(&first).len()
    );
    assert!(
        first.nodes.iter().all(|n| n.outcome_is(&Action::Create)),
        "{:#?}",
        first.nodes
    );

    check_everything(&aws, &i).await;
    // No secret value anywhere: state file, outputs, the plan of a second run.
    let mut keys = std::collections::BTreeMap::new();
    for region in i.topology.regions() {
        keys.insert(region, verify::kms_key(&aws, &i, region).await);
    }
    let password = verify_stack::secret(&aws, &i, &keys).await;
    let state_text = std::fs::read_to_string(&o.state_path).unwrap();
    assert!(!state_text.contains(&password), "the password is in the state file");
    assert!(!format!("{:?}", first.outputs).contains(&password));
    assert!(first.outputs["eu-west-1"]["DbSecretArn"].contains(":eu-west-1:"));
    // SPEC v3: each region's database role, and the writer region in the home region.
    assert_eq!(first.outputs["us-east-1"]["DbRole"], "writer");
    assert_eq!(first.outputs["eu-west-1"]["DbRole"], "replica");
    assert_eq!(first.outputs["us-east-1"]["WriterRegion"], "us-east-1");
    assert_eq!(
        first.outputs["us-east-1"]["BucketName"],
        format!("tap-bucket-useast1-{env}-{}", verify::ACCOUNT)
    );
    assert_eq!(
        first.outputs["eu-west-1"]["BucketName"],
        format!("tap-bucket-euwest1-{env}-{}", verify::ACCOUNT)
    );

    let second = run(Command::Deploy, &o).await;
    assert_eq!(
        mutating(&second),
        Vec::<String>::new(),
        "a second deploy makes no mutating call"
    );
    assert!(second.nodes.iter().all(|n| n.outcome_is(&Action::None)));

    // AWS moves the primary to a later minor version (auto minor version upgrade): no drift,
    // and no downgrade attempted (the emulator's rules refuse one, as AWS does).
    let db = format!("tap-db-useast1-{env}");
    common::emulator_post(&format!("/_rules/upgrade?id={db}&version=16.10"));
    let downgrade = aws
        .rds("us-east-1")
        .modify_db_instance()
        .db_instance_identifier(&db)
        .engine_version("16.9")
        .apply_immediately(true)
        .send()
        .await;
    assert_eq!(
        downgrade
            .map_err(|e| e.into_service_error().meta().code().map(str::to_string))
            .err(),
        Some(Some("InvalidParameterCombination".into())),
        "the emulator refuses a downgrade"
    );
    let plan = run(Command::Plan, &o).await;
    assert!(
        plan.nodes.iter().all(|n| n.outcome_is(&Action::None)),
        "{:#?}",
        plan.counts()
    );
    let third = run(Command::Deploy, &o).await;
    assert!(
        !mutating(&third).iter().any(|c| c.contains("ModifyDBInstance")),
        "{:?}",
        mutating(&third)
    );

    // Several versions and a delete marker in each bucket. moto applies the bucket policy's
    // aws:SecureTransport deny to every object call over plain http, so the test lifts the
    // policy while it writes (on AWS over TLS the policy allows these calls).
    for region in i.topology.regions() {
        let s3 = aws.s3(region);
        let bucket = format!("tap-bucket-{}-{env}-{}", r(region), verify::ACCOUNT);
        s3.delete_bucket_policy().bucket(&bucket).send().await.unwrap();
        for v in 0..3 {
            for key in ["a.txt", "dir/b.txt"] {
                s3.put_object()
                    .bucket(&bucket)
                    .key(key)
                    .body(format!("v{v}").into_bytes().into())
                    .send()
                    .await
                    .unwrap();
            }
        }
        s3.delete_object().bucket(&bucket).key("a.txt").send().await.unwrap();
        let versions = s3.list_object_versions().bucket(&bucket).send().await.unwrap();
        assert_eq!(versions.versions().len(), 6);
        assert_eq!(versions.delete_markers().len(), 1);
    }

    let destroyed = run(Command::Destroy, &o).await;
    for n in &destroyed.nodes {
        // The test itself removed the bucket policies above: already gone counts as deleted.
        let want = if n.kind == "s3-bucket-policy" {
            Action::None
        } else {
            Action::Delete
        };
        assert!(n.outcome_is(&want), "{n:?}");
    }
    verify_edge::nothing_left(&aws, &i).await;

    let again = run(Command::Destroy, &o).await;
    assert!(
        again.nodes.iter().all(|n| n.outcome_is(&Action::None)),
        "a second destroy finds nothing"
    );
}

/// Losing the state file between two deploys adopts everything: no create, no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_state_file_yields_no_duplicate() {
    let env = common::unique_env("lost");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let aws = raw().await;
    run(Command::Deploy, &o).await;
    let before = tap::engine::state::State::load(&o.state_path).unwrap();
    std::fs::remove_file(&o.state_path).unwrap();
    // And the secret scheduled for deletion (a destroy of an older tool, say): restored, adopted.
    let secrets = aws.secrets("us-east-1");
    let secret = format!("tap-db-{env}");
    // AWS refuses to delete a secret that still has replicas: the replica goes first.
    secrets
        .remove_regions_from_replication()
        .secret_id(&secret)
        .remove_replica_regions("eu-west-1")
        .send()
        .await
        .unwrap();
    secrets
        .delete_secret()
        .secret_id(&secret)
        .recovery_window_in_days(7)
        .send()
        .await
        .unwrap();

    let second = run(Command::Deploy, &o).await;
    // Nothing created again but the secret's replica that was removed by hand (SPEC v3: the
    // replica is its region's db-secret node).
    let created: Vec<&str> = second
        .nodes
        .iter()
        .filter(|n| n.outcome_is(&Action::Create))
        .map(|n| n.id.as_str())
        .collect();
    assert_eq!(created, [node_id(&i, "eu-west-1", "db-secret")], "{:#?}", second.nodes);
    assert!(matches!(
        second.action(&node_id(&i, i.topology.writer(), "db-secret")),
        Some(Action::Update { .. })
    ));
    let d = secrets.describe_secret().secret_id(&secret).send().await.unwrap();
    assert!(d.deleted_date.is_none(), "the secret was restored");
    let replicas: Vec<_> = d.replication_status().iter().filter_map(|r| r.region()).collect();
    assert_eq!(replicas, ["eu-west-1"], "its replica added back");
    for region in i.topology.regions() {
        assert_eq!(verify::owned_keys(&aws, &i, region).await, 1, "one key in {region}");
    }
    let after = tap::engine::state::State::load(&o.state_path).unwrap();
    for (id, n) in &before.nodes {
        let m = &after.nodes[id];
        assert_eq!(
            (&n.physical_id, &n.arn, &n.attrs),
            (&m.physical_id, &m.arn, &m.attrs),
            "{id} adopted as it was"
        );
    }
    run(Command::Destroy, &o).await;
    verify_edge::nothing_left(&aws, &i).await;
}

/// Every row of SPEC's resource table, every region.
pub async fn check_everything(aws: &Aws, i: &Inputs) {
    let mut keys = BTreeMap::new();
    for region in i.topology.regions() {
        let key = verify::kms_key(aws, i, region).await;
        verify::bucket(aws, i, region, &key).await;
        keys.insert(region, key);
    }
    verify::replication(aws, i, &keys).await;
    for region in i.topology.regions() {
        let key = &keys[region];
        verify_stack::network(aws, i, region).await;
        verify_stack::database(aws, i, region, key).await;
        let topic = verify_edge::monitoring(aws, i, region, key).await;
        verify_stack::roles(aws, i, region, key, &topic).await;
        verify_edge::compute(aws, i, region, key).await;
    }
    verify_edge::cdn(aws, i).await;
    verify_stack::secret(aws, i, &keys).await;
}
