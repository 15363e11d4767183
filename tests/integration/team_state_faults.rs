//! Team state under what S3 does that moto does not: a conditional write executed with its
//! response lost, 409 ConditionalRequestConflict, a lock that cannot be deleted, a bucket in
//! another region. The switches are in `localstack/faults.py` (POST /_fault/s3), per bucket or
//! object, on one fault-mode emulator with no random faults (port 4592) that these tests share.

use crate::cli::stderr;
use crate::common;
use crate::team_state::{object, state_bucket, tap_at};

/// The fault-mode emulator of these tests: no random faults, only the S3 switches they set.
fn endpoint() -> String {
    common::fault_endpoint(12, "")
}

/// Sets an S3 switch of the fault layer (`lost=B/K`, `conflict=B/K&n=N`, `deny_delete=B/K`,
/// `moved=B&region=R`).
fn switch(ep: &str, query: &str) {
    common::emulator_post_at(ep, &format!("/_fault/s3?{query}"));
}

/// How often the fault layer injected `fault` on a request to `bucket`.
fn injected(ep: &str, fault: &str, bucket: &str) -> usize {
    common::faults_injected(ep)
        .into_iter()
        .filter(|(f, a)| f == fault && a.contains(&format!("/{bucket}/")))
        .count()
}

/// A fresh env with an empty versioned state bucket on the fault emulator.
async fn team(prefix: &str) -> (String, String, std::sync::Arc<tap::aws::Aws>, String, String, String) {
    let ep = endpoint();
    let env = common::unique_env(prefix);
    let aws = common::raw_at(&ep).await;
    let bucket = format!("tap-state-{env}");
    let key = format!("tap/{env}.json");
    state_bucket(&aws, &bucket, true).await;
    let url = format!("s3://{bucket}/{key}");
    (ep, env, aws, bucket, key, url)
}

/// Item 1, the state: every state write (the first `If-None-Match: *`, the next `If-Match`) is
/// executed and its response lost; the SDK's resend gets 412. That is this run's own write, not
/// another writer: the run reads the object back, finds what it wrote, and goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_response_to_a_state_write_is_not_another_writer() {
    let (ep, env, aws, bucket, key, url) = team("s3ls").await;
    switch(&ep, &format!("lost={bucket}/{key}"));
    for run in ["first (If-None-Match)", "second (If-Match)"] {
        let out = tap_at(&ep, &env, &url, &["destroy", "--yes"]);
        assert_eq!(out.status.code(), Some(0), "{run}: {}", stderr(&out));
        assert!(!stderr(&out).contains("another writer"), "{run}: {}", stderr(&out));
    }
    assert!(
        injected(&ep, "lost-conditional", &bucket) >= 2,
        "{:?}",
        common::faults_injected(&ep)
    );
    assert!(object(&aws, &bucket, &key).await.is_some());
    assert!(
        object(&aws, &bucket, &format!("{key}.lock")).await.is_none(),
        "lock released"
    );
}

/// Item 1, the lock: the lock put is executed and its response lost; the resend's 412 is the
/// run's own lock (its id), not another run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_response_to_the_lock_put_is_not_a_lock_held_by_another_run() {
    let (ep, env, aws, bucket, key, url) = team("s3ll").await;
    switch(&ep, &format!("lost={bucket}/{key}.lock"));
    let out = tap_at(&ep, &env, &url, &["destroy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("locked"), "{}", stderr(&out));
    assert_eq!(injected(&ep, "lost-conditional", &bucket), 1);
    assert!(
        object(&aws, &bucket, &format!("{key}.lock")).await.is_none(),
        "lock released"
    );
}

/// Item 2: 409 ConditionalRequestConflict (a concurrent conditional write or delete on the key;
/// AWS: retry the request) on the lock put, the lock delete and a state write is retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_409_conditional_request_conflict_is_retried() {
    let (ep, env, aws, bucket, key, url) = team("s3cc").await;
    switch(&ep, &format!("conflict={bucket}/{key}.lock&n=2"));
    switch(&ep, &format!("conflict={bucket}/{key}&n=1"));
    let out = tap_at(&ep, &env, &url, &["destroy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        injected(&ep, "conflict-409", &bucket),
        3,
        "{:?}",
        common::faults_injected(&ep)
    );
    assert!(object(&aws, &bucket, &key).await.is_some(), "state written");
    assert!(
        object(&aws, &bucket, &format!("{key}.lock")).await.is_none(),
        "lock released"
    );
}

/// Item 3: a lock that cannot be deleted (403) is said on stderr, naming the lock object, the
/// AWS error code and `tap force-unlock ID` with the lock's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_that_could_not_be_removed_is_reported_with_force_unlock() {
    let (ep, env, aws, bucket, key, url) = team("s3rl").await;
    switch(&ep, &format!("deny_delete={bucket}/{key}.lock"));
    let out = tap_at(&ep, &env, &url, &["destroy", "--yes"]);
    let err = stderr(&out);
    let lock: serde_json::Value =
        serde_json::from_str(&object(&aws, &bucket, &format!("{key}.lock")).await.expect("lock kept")).unwrap();
    let id = lock["id"].as_str().unwrap();
    for want in [
        format!("s3://{bucket}/{key}.lock"),
        "AccessDenied".to_string(),
        format!("tap force-unlock {id}"),
    ] {
        assert!(err.contains(&want), "{want}: {err}");
    }
    crate::operator::assert_no_debug_dump(&out);
}

/// Item 4: the state bucket is in another region than `--state-region` (default the primary
/// region): S3 answers 301 PermanentRedirect with `x-amz-bucket-region`, which the SDK does not
/// follow; the error names the region to pass. With it, the run goes through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_bucket_in_another_region_names_the_state_region() {
    let (ep, env, _aws, bucket, _key, url) = team("s3rg").await;
    switch(&ep, &format!("moved={bucket}&region=eu-central-1"));
    let out = tap_at(&ep, &env, &url, &["plan"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    for want in [bucket.as_str(), "301 PermanentRedirect", "--state-region eu-central-1"] {
        assert!(err.contains(want), "{want}: {err}");
    }
    crate::operator::assert_no_debug_dump(&out);
    let moved = tap_at(&ep, &env, &url, &["--state-region", "eu-central-1", "destroy", "--yes"]);
    assert_eq!(moved.status.code(), Some(0), "{}", stderr(&moved));
}

/// Issue 17 item 13: an S3-compatible store without conditional deletes (LocalStack answers
/// `DeleteObject If-Match` 501 NotImplemented). The lock was left behind after every run, and
/// force-unlock failed the same way; both now re-read the lock, confirm its id, delete it
/// plainly and say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_is_released_where_conditional_deletes_are_not_implemented() {
    let (ep, env, aws, bucket, key, url) = team("s3ni").await;
    switch(&ep, &format!("s3compat={bucket}"));
    let lock_key = format!("{key}.lock");
    let out = tap_at(&ep, &env, &url, &["destroy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        object(&aws, &bucket, &lock_key).await.is_none(),
        "lock released: {}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("does not implement conditional deletes"),
        "{}",
        stderr(&out)
    );
    assert!(injected(&ep, "not-implemented", &bucket) >= 1);

    // A lock a killed run left: force-unlock removes it the same way.
    let lock = serde_json::json!({"id": "0badc0ffee", "holder": "alice@laptop", "pid": 4242,
        "command": "deploy", "started_at": tap::engine::store::now()});
    let s3 = aws.s3("us-east-1");
    s3.put_object()
        .bucket(&bucket)
        .key(&lock_key)
        .body(lock.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    let unlocked = tap_at(&ep, &env, &url, &["force-unlock", "0badc0ffee", "--yes"]);
    assert_eq!(unlocked.status.code(), Some(0), "{}", stderr(&unlocked));
    assert!(object(&aws, &bucket, &lock_key).await.is_none());

    // And PutObject If-Match on a missing key answers 404 there, which tap reads as a failed
    // condition (`conditional::condition_failed`).
    let put = s3
        .put_object()
        .bucket(&bucket)
        .key(format!("{key}.missing"))
        .if_match("\"0123\"")
        .body(b"{}".to_vec().into())
        .send()
        .await;
    let status = put.err().and_then(|e| e.raw_response().map(|r| r.status().as_u16()));
    assert_eq!(status, Some(404));
}
