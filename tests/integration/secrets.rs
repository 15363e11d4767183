//! The database secret and what depends on it (issue 17, items 7 to 9), against the emulator's
//! rules for them (`localstack/rules_secrets.py`).

use crate::common::{self, emulator_post, first_secondary, node_id, raw};
use crate::verify;
use tap::app::Command;
use tap::engine::reconcile::Action;

/// Regression (issue 17, item 7): a forced delete is asynchronous. Right after it (a destroy
/// interrupted while it waited for the name to be free), DescribeSecret still shows the secret
/// with a DeletedDate, RestoreSecret answers "... because it was deleted" and CreateSecret
/// "... already scheduled for deletion". Deploy failed on the first RestoreSecret; it now waits
/// that out (a bounded retry) and creates the secret again, with its replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_right_after_a_forced_secret_delete_creates_the_secret_again() {
    let env = common::unique_env("sfd");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let (home, sec) = (i.topology.home(), first_secondary(&i));
    let aws = raw().await;
    let name = format!("tap-db-{env}");
    common::run(Command::Deploy, &o).await;
    let old = aws
        .secrets(home)
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    let old_arn = old.arn().unwrap().to_string();

    // What destroy does to the secret before its wait for the name to be free, where it was
    // interrupted: the replica regions removed, the secret deleted without recovery. The
    // emulator keeps it "deleting" for 5 s (AWS: "a short delay").
    emulator_post(&format!("/_rules/secret-deleting?name={name}&seconds=5"));
    aws.secrets(home)
        .remove_regions_from_replication()
        .secret_id(&old_arn)
        .remove_replica_regions(sec)
        .send()
        .await
        .unwrap();
    aws.secrets(home)
        .delete_secret()
        .secret_id(&old_arn)
        .force_delete_without_recovery(true)
        .send()
        .await
        .unwrap();
    let deleting = aws
        .secrets(home)
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    assert!(
        deleting.deleted_date().is_some(),
        "the emulator shows the delete in progress"
    );

    let r = common::run(Command::Deploy, &o).await;
    assert!(
        matches!(r.action(&node_id(&i, home, "db-secret")), Some(Action::Update { .. })),
        "{:?}",
        r.action(&node_id(&i, home, "db-secret"))
    );
    let new = aws
        .secrets(home)
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    assert!(new.deleted_date().is_none());
    assert_ne!(new.arn(), Some(old_arn.as_str()), "a new secret");
    let status: Vec<_> = new
        .replication_status()
        .iter()
        .map(|s| (s.region(), s.status().map(|s| s.as_str().to_string())))
        .collect();
    assert_eq!(status, [(Some(sec), Some("InSync".to_string()))]);
    // The state follows the new secret: a plan shows nothing to do for it.
    let p = common::run(Command::Plan, &o).await;
    assert_eq!(p.action(&node_id(&i, home, "db-secret")), Some(&Action::None));
    common::run(Command::Destroy, &o).await;
}
