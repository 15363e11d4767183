//! The emulator features disaster recovery needs (`localstack/rules.py`, `timing_server.py`),
//! each proven with raw SDK calls: region outages switched at run time, promotion of a read
//! replica, StopReplicationToReplica, renaming an instance, final snapshots, a stale writer.

use crate::common::{self, emulator_post_at, own_emulator, raw, raw_at, timing_endpoint};
use crate::verify;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::time::{Duration, Instant};
use tap::aws::Aws;

/// The emulator of the outage tests: its own, so that no other test meets a region that is down.
/// Each outage test takes a region of its own on it.
const OUTAGE_PORT: u16 = 4651;

fn one_attempt() -> aws_sdk_rds::config::Builder {
    aws_sdk_rds::config::Builder::default()
        .retry_config(aws_sdk_rds::config::retry::RetryConfig::standard().with_max_attempts(1))
}

async fn create_db(aws: &Aws, region: &str, id: &str, kms_key: Option<&str>) {
    let mut req = aws
        .rds(region)
        .create_db_instance()
        .db_instance_identifier(id)
        .engine("postgres")
        .db_instance_class("db.t3.micro")
        .allocated_storage(20)
        .master_username("tapuser")
        .master_user_password("not-a-secret-at-all-1234");
    if let Some(k) = kms_key {
        req = req.storage_encrypted(true).kms_key_id(k);
    }
    req.send().await.unwrap();
}

async fn create_replica(aws: &Aws, source: &str, region: &str, id: &str) {
    aws.rds(region)
        .create_db_instance_read_replica()
        .db_instance_identifier(id)
        .source_db_instance_identifier(format!("arn:aws:rds:us-east-1:{}:db:{source}", verify::ACCOUNT))
        .db_instance_class("db.t3.micro")
        .send()
        .await
        .unwrap();
}

async fn describe(aws: &Aws, region: &str, id: &str) -> aws_sdk_rds::types::DbInstance {
    aws.rds(region)
        .describe_db_instances()
        .db_instance_identifier(id)
        .send()
        .await
        .unwrap_or_else(|e| panic!("describe {id}: {:?}", e.code()))
        .db_instances()[0]
        .clone()
}

fn status(db: &aws_sdk_rds::types::DbInstance) -> String {
    db.db_instance_status().unwrap_or_default().to_string()
}

/// Polls until `id` is `available`; the statuses seen on the way, in order, without repeats.
async fn until_available(aws: &Aws, region: &str, id: &str) -> Vec<String> {
    let start = Instant::now();
    let mut seen: Vec<String> = Vec::new();
    loop {
        let s = status(&describe(aws, region, id).await);
        if seen.last() != Some(&s) {
            seen.push(s.clone());
        }
        if s == "available" {
            return seen;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{id}: {seen:?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn delete_db(aws: &Aws, region: &str, id: &str) {
    let _ = aws
        .rds(region)
        .delete_db_instance()
        .db_instance_identifier(id)
        .skip_final_snapshot(true)
        .send()
        .await;
}

/// POST /_rules/outage on the outage emulator.
fn outage(endpoint: &str, region: &str, mode: &str) {
    let v = emulator_post_at(endpoint, &format!("/_rules/outage?region={region}&mode={mode}"));
    let now = v["outages"][region].as_str();
    assert_eq!(now, (mode != "off").then_some(mode), "{v}");
}

/// A region down: `unavailable` answers 503 ServiceUnavailable, `refuse` drops the connection
/// without an answer, `hang` holds the request until the client gives up; every service of that
/// region, none of another region; `off` ends it.
#[tokio::test]
async fn a_region_outage_answers_503_drops_or_hangs_until_switched_off() {
    let ep = own_emulator(OUTAGE_PORT);
    let aws = raw_at(&ep).await;
    let down = "ap-south-1";
    // A region no test on the outage emulator ever puts down (us-east-1 is the stale-writer
    // test's and went down beside this one: CI run of stop 19).
    let up = "ap-southeast-1";
    let describe_once = |region: &str| {
        aws.rds(region)
            .describe_db_instances()
            .customize()
            .config_override(one_attempt())
            .send()
    };

    outage(&ep, down, "unavailable");
    let e = describe_once(down).await.unwrap_err();
    assert_eq!(e.code(), Some("ServiceUnavailable"));
    assert_eq!(e.raw_response().map(|r| r.status().as_u16()), Some(503));
    // Every service of the region: Secrets Manager too (JSON protocol).
    let e = aws.secrets(down).list_secrets().send().await.unwrap_err();
    assert_eq!(e.code(), Some("ServiceUnavailable"));
    describe_once(up).await.expect("another region is untouched");

    outage(&ep, down, "refuse");
    let e = describe_once(down).await.unwrap_err();
    assert!(
        matches!(e, SdkError::DispatchFailure(_) | SdkError::ResponseError(_)),
        "a transport error, no answer: {e:?}"
    );
    describe_once(up).await.expect("another region is untouched");

    outage(&ep, down, "hang");
    let t = Instant::now();
    let r = tokio::time::timeout(Duration::from_secs(2), describe_once(down)).await;
    assert!(r.is_err(), "held, no answer within 2 s: {r:?}");
    assert!(t.elapsed() >= Duration::from_secs(2));
    describe_once(up).await.expect("another region is untouched");

    outage(&ep, down, "off");
    describe_once(down).await.expect("the region answers again");
    aws.secrets(down).list_secrets().send().await.unwrap();
}

/// The old writer's region goes down, the replica in another region is promoted meanwhile;
/// when the outage ends the old writer is still there, `available` and no replica: a second
/// writer (what reprotect must deal with). moto keeps it as it was: nothing to emulate. RDS User
/// Guide, "Promoting a read replica to be a standalone DB instance", "Implementing failure
/// recovery": promote the replica, direct traffic to it, create a replacement replica; nothing
/// there touches the old source, which stays a writer of its own
/// (https://docs.aws.amazon.com/AmazonRDS/latest/UserGuide/USER_ReadRepl.Promote.html).
#[tokio::test]
async fn a_stale_writer_is_available_and_writable_when_its_region_comes_back() {
    let ep = own_emulator(OUTAGE_PORT);
    let aws = raw_at(&ep).await;
    let env = common::unique_env("stale");
    let (writer, replica) = (format!("{env}-w"), format!("{env}-r"));
    // us-east-1 is this test's region on the outage emulator (the other test takes ap-south-1).
    create_db(&aws, "us-east-1", &writer, None).await;
    create_replica(&aws, &writer, "eu-west-1", &replica).await;

    outage(&ep, "us-east-1", "unavailable");
    let down = aws
        .rds("us-east-1")
        .describe_db_instances()
        .db_instance_identifier(&writer)
        .customize()
        .config_override(one_attempt())
        .send()
        .await;
    assert_eq!(down.unwrap_err().code(), Some("ServiceUnavailable"));
    aws.rds("eu-west-1")
        .promote_read_replica()
        .db_instance_identifier(&replica)
        .send()
        .await
        .unwrap();
    outage(&ep, "us-east-1", "off");

    let old = describe(&aws, "us-east-1", &writer).await;
    assert_eq!(status(&old), "available");
    assert_eq!(old.read_replica_source_db_instance_identifier(), None);
    let new = describe(&aws, "eu-west-1", &replica).await;
    assert_eq!(new.read_replica_source_db_instance_identifier(), None);
    // Writable: it takes a modification as a primary does.
    aws.rds("us-east-1")
        .modify_db_instance()
        .db_instance_identifier(&writer)
        .backup_retention_period(3)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    delete_db(&aws, "eu-west-1", &replica).await;
    delete_db(&aws, "us-east-1", &writer).await;
}

/// PromoteReadReplica on the timing emulator: `modifying` for TAP_TIMING_RDS_PROMOTE seconds,
/// then `available` with no source, and the source no longer lists it.
#[tokio::test]
async fn a_promoted_replica_is_modifying_then_a_standalone_instance() {
    let aws = raw_at(&timing_endpoint()).await;
    let env = common::unique_env("prom");
    let (source, replica) = (format!("{env}-s"), format!("{env}-r"));
    create_db(&aws, "us-east-1", &source, None).await;
    create_replica(&aws, &source, "eu-west-1", &replica).await;
    until_available(&aws, "eu-west-1", &replica).await;
    let before = describe(&aws, "eu-west-1", &replica).await;
    assert!(before.read_replica_source_db_instance_identifier().is_some());
    let src = describe(&aws, "us-east-1", &source).await;
    assert_eq!(src.read_replica_db_instance_identifiers().len(), 1, "{src:?}");

    let t = Instant::now();
    let r = aws
        .rds("eu-west-1")
        .promote_read_replica()
        .db_instance_identifier(&replica)
        .send()
        .await
        .unwrap();
    assert_eq!(r.db_instance().and_then(|d| d.db_instance_status()), Some("modifying"));
    let seen = until_available(&aws, "eu-west-1", &replica).await;
    let promote = common::timing_config()["rds_promote"].as_f64().unwrap();
    assert_eq!(seen, ["modifying", "available"]);
    assert!(t.elapsed().as_secs_f64() >= promote - 0.5, "{:?}", t.elapsed());

    let after = describe(&aws, "eu-west-1", &replica).await;
    assert_eq!(after.read_replica_source_db_instance_identifier(), None);
    let src = describe(&aws, "us-east-1", &source).await;
    assert!(src.read_replica_db_instance_identifiers().is_empty(), "{src:?}");
    delete_db(&aws, "eu-west-1", &replica).await;
    delete_db(&aws, "us-east-1", &source).await;
}

/// StopReplicationToReplica, in the replica's region, by ARN or by name: the replica becomes a
/// standalone secret there (same ARN and value, its own key, no replication, writable) and the
/// former primary no longer replicates to that region.
#[tokio::test]
async fn stop_replication_to_replica_makes_the_replica_a_standalone_secret() {
    let aws = raw().await;
    let env = common::unique_env("srr");
    let key = aws
        .kms("eu-west-1")
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let (home, other) = (aws.secrets("us-east-1"), aws.secrets("eu-west-1"));
    for by_arn in [true, false] {
        let name = format!("tap/{env}/{by_arn}");
        home.create_secret()
            .name(&name)
            .secret_string("first")
            .add_replica_regions(
                aws_sdk_secretsmanager::types::ReplicaRegionType::builder()
                    .region("eu-west-1")
                    .kms_key_id(&key)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let replica = other.describe_secret().secret_id(&name).send().await.unwrap();
        assert_eq!(replica.primary_region(), Some("us-east-1"));
        let arn = replica.arn().unwrap().to_string();

        // Not on the primary.
        let e = home
            .stop_replication_to_replica()
            .secret_id(&name)
            .send()
            .await
            .unwrap_err();
        assert_eq!(e.code(), Some("InvalidRequestException"));

        let id = if by_arn { arn.clone() } else { name.clone() };
        let r = other.stop_replication_to_replica().secret_id(&id).send().await.unwrap();
        assert_eq!(r.arn(), Some(arn.as_str()));

        let standalone = other.describe_secret().secret_id(&name).send().await.unwrap();
        assert_eq!(standalone.arn(), Some(arn.as_str()));
        assert_eq!(standalone.primary_region(), None);
        assert_eq!(standalone.kms_key_id(), Some(key.as_str()));
        assert!(standalone.replication_status().is_empty());
        let value = other.get_secret_value().secret_id(&name).send().await.unwrap();
        assert_eq!(value.secret_string(), Some("first"));
        let primary = home.describe_secret().secret_id(&name).send().await.unwrap();
        assert!(
            primary
                .replication_status()
                .iter()
                .all(|s| s.region() != Some("eu-west-1")),
            "{primary:?}"
        );
        // A primary of its own now: written without touching the former primary.
        other
            .put_secret_value()
            .secret_id(&name)
            .secret_string("second")
            .send()
            .await
            .unwrap();
        let mine = other.get_secret_value().secret_id(&name).send().await.unwrap();
        assert_eq!(mine.secret_string(), Some("second"));
        let theirs = home.get_secret_value().secret_id(&name).send().await.unwrap();
        assert_eq!(theirs.secret_string(), Some("first"));

        for c in [&home, &other] {
            c.delete_secret()
                .secret_id(&name)
                .force_delete_without_recovery(true)
                .send()
                .await
                .unwrap();
        }
    }
}

/// ModifyDBInstance NewDBInstanceIdentifier + ApplyImmediately: the instance answers to its new
/// name with a new endpoint, and the old name is free at once (moto did the rename; the
/// automated snapshots follow it now).
#[tokio::test]
async fn a_renamed_instance_has_a_new_name_and_endpoint_and_frees_the_old_name() {
    let aws = raw().await;
    let env = common::unique_env("ren");
    let (old, new) = (format!("{env}-db"), format!("{env}-db-old"));
    create_db(&aws, "us-east-1", &old, None).await;
    let before = describe(&aws, "us-east-1", &old).await;
    let r = aws
        .rds("us-east-1")
        .modify_db_instance()
        .db_instance_identifier(&old)
        .new_db_instance_identifier(&new)
        .apply_immediately(true)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.db_instance().and_then(|d| d.db_instance_identifier()),
        Some(new.as_str())
    );
    let after = describe(&aws, "us-east-1", &new).await;
    let address =
        |d: &aws_sdk_rds::types::DbInstance| d.endpoint().and_then(|e| e.address()).unwrap_or_default().to_string();
    assert_ne!(address(&after), address(&before));
    assert!(address(&after).starts_with(&format!("{new}.")), "{}", address(&after));
    assert_eq!(
        after.db_instance_arn().map(|a| a.ends_with(&format!(":db:{new}"))),
        Some(true)
    );
    let gone = aws
        .rds("us-east-1")
        .describe_db_instances()
        .db_instance_identifier(&old)
        .send()
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Some("DBInstanceNotFound"));
    // The old name is free: a new instance takes it.
    create_db(&aws, "us-east-1", &old, None).await;
    delete_db(&aws, "us-east-1", &old).await;
    delete_db(&aws, "us-east-1", &new).await;
}

/// DeleteDBInstance with FinalDBSnapshotIdentifier (SkipFinalSnapshot false) keeps a manual
/// snapshot of that name, encrypted with the instance's key (moto does it already). RDS API
/// reference, DeleteDBInstance: FinalDBSnapshotIdentifier, "The DBSnapshotIdentifier of the new
/// DBSnapshot created when the SkipFinalSnapshot parameter is disabled"
/// (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_DeleteDBInstance.html).
#[tokio::test]
async fn a_final_snapshot_is_kept_encrypted_with_the_instances_key() {
    let aws = raw().await;
    let env = common::unique_env("fin");
    let key = aws
        .kms("us-east-1")
        .create_key()
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .key_id()
        .to_string();
    let (db, snap) = (format!("{env}-db"), format!("{env}-final"));
    create_db(&aws, "us-east-1", &db, Some(&key)).await;
    let instance_key = describe(&aws, "us-east-1", &db).await.kms_key_id().unwrap().to_string();
    assert!(instance_key.contains(&key), "{instance_key}");
    aws.rds("us-east-1")
        .delete_db_instance()
        .db_instance_identifier(&db)
        .skip_final_snapshot(false)
        .final_db_snapshot_identifier(&snap)
        .send()
        .await
        .unwrap();
    let s = aws
        .rds("us-east-1")
        .describe_db_snapshots()
        .db_snapshot_identifier(&snap)
        .send()
        .await
        .unwrap()
        .db_snapshots()[0]
        .clone();
    assert_eq!(s.snapshot_type(), Some("manual"));
    assert_eq!(s.encrypted(), Some(true));
    assert_eq!(s.kms_key_id(), Some(instance_key.as_str()));
    assert_eq!(s.db_instance_identifier(), Some(db.as_str()));
    aws.rds("us-east-1")
        .delete_db_snapshot()
        .db_snapshot_identifier(&snap)
        .send()
        .await
        .unwrap();
}
