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
    // emulator keeps it "deleting" for 20 s (AWS: "a short delay"): long enough that the deploy
    // below meets it even on a loaded machine (5 s did not, under the whole suite on 2 cores).
    emulator_post(&format!("/_rules/secret-deleting?name={name}&seconds=20"));
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

/// Whether the writer's master password is its secret's current one (the emulator compares;
/// no secret value leaves it).
fn db_password_matches(db: &str, secret: &str) -> bool {
    let r = emulator_post(&format!("/_rules/db-password?id={db}&secret={secret}"));
    r["matches"].as_bool().unwrap_or_else(|| panic!("{r}"))
}

/// Regression (issue 17, item 9): a rotated (or recreated) secret left RDS with the old
/// password and plan showed nothing. The writer's db-instance now records the secret version
/// whose password it was given; a new current version is drift that deploy repairs with
/// ModifyDBInstance MasterUserPassword. A state of the previous release, without that record,
/// shows no drift and adopts the current version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_drift_that_deploy_gives_to_rds() {
    let env = common::unique_env("rot");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let home = i.topology.home();
    let aws = raw().await;
    let (name, db) = (format!("tap-db-{env}"), format!("tap-db-useast1-{env}"));
    let db_node = node_id(&i, home, "db-instance");
    common::run(Command::Deploy, &o).await;
    assert!(db_password_matches(&db, &name));

    // A rotation: a new AWSCURRENT version with another password.
    aws.secrets(home)
        .put_secret_value()
        .secret_id(&name)
        .secret_string(
            serde_json::json!({"username": "tapuser", "password": "rotated-by-hand-0123456789abcdef"}).to_string(),
        )
        .send()
        .await
        .unwrap();
    assert!(!db_password_matches(&db, &name), "RDS keeps the old password");
    let p = common::run(Command::Plan, &o).await;
    match p.action(&db_node) {
        Some(Action::Update { changes }) => {
            let keys: Vec<_> = changes.iter().map(|c| c.key.as_str()).collect();
            assert_eq!(keys, ["password_version"]);
            let shown = serde_json::to_string(changes).unwrap();
            assert!(!shown.contains("rotated-by-hand"), "{shown}");
        }
        other => panic!("the rotation is not drift: {other:?}"),
    }
    let r = common::run(Command::Deploy, &o).await;
    assert!(matches!(r.action(&db_node), Some(Action::Update { .. })));
    assert!(db_password_matches(&db, &name), "deploy gave RDS the current password");
    let p = common::run(Command::Plan, &o).await;
    assert_eq!(p.action(&db_node), Some(&Action::None));
    let state = std::fs::read_to_string(&o.state_path).unwrap();
    assert!(!state.contains("rotated-by-hand"), "no secret value in state");

    // A state written by the previous release has no record: no drift, and deploy adopts the
    // current version without touching RDS.
    let mut s: serde_json::Value = serde_json::from_str(&state).unwrap();
    let props = s["nodes"][&db_node]["props"].as_object_mut().unwrap();
    assert!(props.remove("password_version").is_some());
    std::fs::write(&o.state_path, serde_json::to_string_pretty(&s).unwrap()).unwrap();
    let p = common::run(Command::Plan, &o).await;
    assert_eq!(p.action(&db_node), Some(&Action::None));
    let r = common::run(Command::Deploy, &o).await;
    assert_eq!(common::mutating(&r), Vec::<String>::new());
    let state = std::fs::read_to_string(&o.state_path).unwrap();
    assert!(state.contains("password_version"));
    common::run(Command::Destroy, &o).await;
}

/// Regression (issue 17, item 8): a key reference was compared as a string. DescribeSecret
/// reports a secret's key as "the key ID or alias ARN" (the emulator's key-form rule, for this
/// test's secret: moto echoes the ARN it was given), and S3 and SNS report the form they were
/// given, e.g. by hand or by another tool. The same key in another form showed as drift on every
/// plan (and a replica's was replicated again on every deploy); keys are now compared by the key
/// they name. Launch templates and RDS go through the same helper (its unit tests: every form).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_named_by_id_or_alias_is_not_drift() {
    use aws_sdk_s3::types::{
        EncryptionConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
        ServerSideEncryptionConfiguration, ServerSideEncryptionRule,
    };
    let env = common::unique_env("kref");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let (home, sec) = (i.topology.home(), first_secondary(&i));
    let aws = raw().await;
    common::run(Command::Deploy, &o).await;
    emulator_post(&format!("/_rules/secret-key-form?name=tap-db-{env}"));
    let (home_key, sec_key) = (key_of(&aws, home, &env).await, key_of(&aws, sec, &env).await);
    let d = aws
        .secrets(home)
        .describe_secret()
        .secret_id(format!("tap-db-{env}"))
        .send()
        .await
        .unwrap();
    assert_eq!(d.kms_key_id(), Some(home_key.as_str()), "reported as a key id");
    assert_eq!(d.replication_status()[0].kms_key_id(), Some(sec_key.as_str()));

    // The home bucket's key by key id, the secondary's by alias ARN; the topic's by alias name;
    // the home bucket's replication rule names its destination key by alias ARN.
    let alias_arn = |region: &str| {
        format!(
            "arn:aws:kms:{region}:{}:alias/tap-{}-{env}",
            verify::ACCOUNT,
            common::r(region)
        )
    };
    for (region, key) in [(home, home_key.clone()), (sec, alias_arn(sec))] {
        let bucket = format!("tap-bucket-{}-{env}-{}", common::r(region), verify::ACCOUNT);
        let by_default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::AwsKms)
            .kms_master_key_id(key)
            .build()
            .unwrap();
        let rule = ServerSideEncryptionRule::builder()
            .apply_server_side_encryption_by_default(by_default)
            .bucket_key_enabled(true)
            .build();
        aws.s3(region)
            .put_bucket_encryption()
            .bucket(&bucket)
            .server_side_encryption_configuration(
                ServerSideEncryptionConfiguration::builder()
                    .rules(rule)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }
    let topic = format!(
        "arn:aws:sns:{home}:{}:tap-replication-alerts-{}-{env}",
        verify::ACCOUNT,
        common::r(home)
    );
    aws.sns(home)
        .set_topic_attributes()
        .topic_arn(&topic)
        .attribute_name("KmsMasterKeyId")
        .attribute_value(format!("alias/tap-{}-{env}", common::r(home)))
        .send()
        .await
        .unwrap();
    let home_bucket = format!("tap-bucket-{}-{env}-{}", common::r(home), verify::ACCOUNT);
    let mut conf = aws
        .s3(home)
        .get_bucket_replication()
        .bucket(&home_bucket)
        .send()
        .await
        .unwrap()
        .replication_configuration
        .unwrap();
    for rule in &mut conf.rules {
        let dest = rule.destination.as_mut().unwrap();
        dest.encryption_configuration = Some(
            EncryptionConfiguration::builder()
                .replica_kms_key_id(alias_arn(sec))
                .build(),
        );
    }
    aws.s3(home)
        .put_bucket_replication()
        .bucket(&home_bucket)
        .replication_configuration(conf)
        .send()
        .await
        .unwrap();

    let p = common::run(Command::Plan, &o).await;
    let changed: Vec<String> = p
        .nodes
        .iter()
        .filter(|n| !matches!(n.outcome, tap::app::Outcome::Done(Action::None)))
        .map(|n| format!("{} {:?}", n.id, n.outcome))
        .collect();
    assert!(
        changed.is_empty(),
        "the same keys in other forms show as drift: {changed:#?}"
    );
    let r = common::run(Command::Deploy, &o).await;
    assert_eq!(common::mutating(&r), Vec::<String>::new());
    common::run(Command::Destroy, &o).await;
}

/// The id of the key the env's alias names in `region`.
async fn key_of(aws: &tap::aws::Aws, region: &str, env: &str) -> String {
    let alias = format!("alias/tap-{}-{env}", common::r(region));
    let k = aws.kms(region).describe_key().key_id(alias).send().await.unwrap();
    k.key_metadata.unwrap().key_id
}
