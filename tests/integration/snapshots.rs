//! SPEC v3 "Destroy": final snapshots (`tap-db-{r}-{env}-final-*`, left by the deletion of a
//! stale writer after a failover) are the user's data. Destroy never deletes them, and keeps
//! the KMS key that encrypts one (not scheduled for deletion, its alias and tags kept), naming
//! both; every other key goes as usual.

use crate::common::{self, node_id, raw, run};
use crate::verify;
use aws_sdk_kms::types::KeyState;
use tap::app::Command;
use tap::engine::reconcile::Action;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_keeps_final_snapshots_and_the_keys_that_encrypt_them() {
    let env = common::unique_env("snap");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let aws = raw().await;
    let (home, sec) = (i.topology.home(), common::first_secondary(&i));
    run(Command::Deploy, &o).await;
    let home_key = verify::kms_key(&aws, &i, home).await;
    let sec_key = verify::kms_key(&aws, &i, sec).await;

    // A final snapshot of the home region's database, as reprotect leaves it.
    let snapshot = format!("tap-db-{}-{env}-final-202612070000", common::r(home));
    let rds = aws.rds(home);
    let out = rds
        .create_db_snapshot()
        .db_instance_identifier(format!("tap-db-{}-{env}", common::r(home)))
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .unwrap();
    assert_eq!(
        out.db_snapshot().and_then(|s| s.kms_key_id()),
        Some(home_key.as_str()),
        "the snapshot is encrypted with the region key"
    );

    let r = run(Command::Destroy, &o).await;
    for kind in ["kms-key", "kms-alias"] {
        let id = node_id(&i, home, kind);
        match r.action(&id) {
            Some(Action::Skip { reason }) => assert!(reason.contains(&snapshot), "{id}: {reason}"),
            other => panic!("{id}: {other:?}"),
        }
    }
    assert!(
        r.action(&node_id(&i, sec, "kms-key"))
            .is_some_and(|a| matches!(a, Action::Delete))
    );
    // Kept: the snapshot, its key (enabled, tagged), the key's alias.
    let snaps = rds
        .describe_db_snapshots()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .unwrap();
    assert_eq!(snaps.db_snapshots().len(), 1, "the final snapshot is never deleted");
    let kms = aws.kms(home);
    let key = kms
        .describe_key()
        .key_id(&home_key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(key.key_state, Some(KeyState::Enabled));
    let aliases = tap::resources::kms_key::list_aliases(&aws, home).await.unwrap();
    assert!(
        aliases
            .iter()
            .any(|a| a.alias_name.as_deref() == Some(format!("alias/tap-{}-{env}", common::r(home)).as_str()))
    );
    // The other region's key, which encrypts no final snapshot, is pending deletion.
    let other = aws
        .kms(sec)
        .describe_key()
        .key_id(&sec_key)
        .send()
        .await
        .unwrap()
        .key_metadata
        .unwrap();
    assert_eq!(other.key_state, Some(KeyState::PendingDeletion));
    // The state forgot everything: a second destroy has nothing to do.
    let again = run(Command::Destroy, &o).await;
    assert!(again.nodes.iter().all(|n| !n.outcome_is(&Action::Delete)));

    // Cleanup by hand, as the user would once the data is no longer needed.
    rds.delete_db_snapshot()
        .db_snapshot_identifier(&snapshot)
        .send()
        .await
        .unwrap();
    kms.delete_alias()
        .alias_name(format!("alias/tap-{}-{env}", common::r(home)))
        .send()
        .await
        .unwrap();
    kms.schedule_key_deletion()
        .key_id(key.key_id)
        .pending_window_in_days(7)
        .send()
        .await
        .unwrap();
}
