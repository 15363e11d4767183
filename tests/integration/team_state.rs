//! Team state: the state as an S3 object with a lock made of conditional writes.

use crate::cli::stderr;
use crate::common;
use crate::operator::assert_no_debug_dump;
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use tap::aws::Aws;

pub(crate) fn tap_at(endpoint: &str, env: &str, state: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tap"))
        .args(["--env", env, "--endpoint-url", endpoint, "--state", state])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("TAP_STATE")
        .output()
        .expect("run tap")
}

/// A bucket for state, versioned unless told otherwise.
pub(crate) async fn state_bucket(aws: &Aws, name: &str, versioned: bool) {
    let s3 = aws.s3("us-east-1");
    s3.create_bucket().bucket(name).send().await.unwrap();
    if versioned {
        s3.put_bucket_versioning()
            .bucket(name)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
    }
}

async fn versions(aws: &Aws, bucket: &str, key: &str) -> usize {
    let v = aws
        .s3("us-east-1")
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    v.versions().iter().filter(|o| o.key() == Some(key)).count()
}

pub(crate) async fn object(aws: &Aws, bucket: &str, key: &str) -> Option<String> {
    let o = aws
        .s3("us-east-1")
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(String::from_utf8_lossy(&o.body.collect().await.unwrap().into_bytes()).into_owned())
}

/// Deploy and destroy with the state in S3: every transition a new version; a second deploy
/// changes nothing in the stack; a missing or unversioned bucket is refused before anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_with_its_state_in_s3_keeps_every_version() {
    let env = common::unique_env("s3st");
    let ep = common::endpoint();
    let aws = common::raw().await;
    let bucket = format!("tap-state-{env}");
    let key = format!("tap/{env}.json");
    let url = format!("s3://{bucket}/{key}");

    let missing = tap_at(&ep, &env, &format!("s3://{bucket}-missing/{key}"), &["plan"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("does not exist"), "{}", stderr(&missing));
    state_bucket(&aws, &format!("{bucket}-plain"), false).await;
    let plain = tap_at(&ep, &env, &format!("s3://{bucket}-plain/{key}"), &["deploy"]);
    assert_eq!(plain.status.code(), Some(1));
    assert!(stderr(&plain).contains("versioning"), "{}", stderr(&plain));
    assert_no_debug_dump(&plain);

    state_bucket(&aws, &bucket, true).await;
    let mut o = common::options(&env);
    o.state_url = Some(url.clone());
    let first = common::run(tap::app::Command::Deploy, &o).await;
    let graph = tap::app::graph().len();
    assert!(versions(&aws, &bucket, &key).await > graph, "a version per transition");
    let state: serde_json::Value = serde_json::from_str(&object(&aws, &bucket, &key).await.unwrap()).unwrap();
    assert_eq!(state["nodes"].as_object().unwrap().len(), graph);
    assert!(!o.state_path.exists(), "no local state written");
    assert!(first.failures().is_empty());

    let before = versions(&aws, &bucket, &key).await;
    let second = common::run(tap::app::Command::Deploy, &o).await;
    let stack_calls: Vec<String> = common::mutating(&second)
        .into_iter()
        .filter(|c| !c.ends_with("PutObject") && !c.ends_with("DeleteObject"))
        .collect();
    assert_eq!(stack_calls, Vec::<String>::new(), "a second deploy changes nothing");
    assert!(
        versions(&aws, &bucket, &key).await <= before + 2,
        "no version per unchanged node"
    );
    assert!(
        object(&aws, &bucket, &format!("{key}.lock")).await.is_none(),
        "lock released"
    );

    common::run(tap::app::Command::Destroy, &o).await;
    let state: serde_json::Value = serde_json::from_str(&object(&aws, &bucket, &key).await.unwrap()).unwrap();
    assert!(state["nodes"].as_object().unwrap().is_empty());
}

/// A held lock refuses a second run at once, naming its holder, command, id and the way out;
/// force-unlock refuses another id and removes the named one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_refuses_a_second_run_naming_the_holder() {
    let env = common::unique_env("s3lk");
    let ep = common::endpoint();
    let aws = common::raw().await;
    let bucket = format!("tap-state-{env}");
    let key = format!("tap/{env}.json");
    let url = format!("s3://{bucket}/{key}");
    state_bucket(&aws, &bucket, true).await;
    let lock = serde_json::json!({"id": "0badc0ffee", "holder": "alice@laptop", "pid": 4242,
        "command": "deploy", "started_at": tap::engine::store::now()});
    aws.s3("us-east-1")
        .put_object()
        .bucket(&bucket)
        .key(format!("{key}.lock"))
        .body(lock.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();

    let t0 = Instant::now();
    let out = tap_at(&ep, &env, &url, &["deploy"]);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    for want in ["alice@laptop", "`deploy`", "0badc0ffee", "tap force-unlock 0badc0ffee"] {
        assert!(err.contains(want), "{want}: {err}");
    }
    assert!(object(&aws, &bucket, &key).await.is_none(), "nothing written");
    // --lock-timeout waits for the holder (here in vain) before giving up.
    let t0 = Instant::now();
    let patient = tap_at(&ep, &env, &url, &["--lock-timeout", "4s", "deploy"]);
    assert_eq!(patient.status.code(), Some(1));
    assert!(t0.elapsed() >= Duration::from_secs(2), "waited {:?}", t0.elapsed());
    assert!(stderr(&patient).contains("0badc0ffee"), "{}", stderr(&patient));

    let wrong = tap_at(&ep, &env, &url, &["force-unlock", "feedface", "--yes"]);
    assert_eq!(wrong.status.code(), Some(1), "{}", stderr(&wrong));
    assert!(object(&aws, &bucket, &format!("{key}.lock")).await.is_some());
    let right = tap_at(&ep, &env, &url, &["force-unlock", "0badc0ffee", "--yes"]);
    assert_eq!(right.status.code(), Some(0), "{}", stderr(&right));
    assert!(object(&aws, &bucket, &format!("{key}.lock")).await.is_none());
}

/// A test's env with its state in a fresh versioned bucket of the emulator at `ep`.
struct Team {
    env: String,
    ep: String,
    aws: std::sync::Arc<Aws>,
    bucket: String,
    key: String,
    url: String,
}

impl Team {
    async fn new(prefix: &str, ep: String) -> Team {
        let env = common::unique_env(prefix);
        let aws = common::raw_at(&ep).await;
        let bucket = format!("tap-state-{env}");
        let key = format!("tap/{env}.json");
        let url = format!("s3://{bucket}/{key}");
        state_bucket(&aws, &bucket, true).await;
        Team {
            env,
            ep,
            aws,
            bucket,
            key,
            url,
        }
    }

    /// A deploy in the background, once it has recorded the database in the state (the timing
    /// emulator keeps RDS `creating` for seconds); returns it and the state it saw.
    /// The caller waits for the child (kill + wait, or wait_with_output).
    #[allow(clippy::zombie_processes)]
    async fn deploy_until_database(&self) -> (std::process::Child, String) {
        let child = Command::new(env!("CARGO_BIN_EXE_tap"))
            .args([
                "--env",
                &self.env,
                "--endpoint-url",
                &self.ep,
                "--state",
                &self.url,
                "deploy",
            ])
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let i = crate::verify::inputs(&self.env);
        let db = common::db_kind(&i, i.topology.writer());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(s) = object(&self.aws, &self.bucket, &self.key).await
                && s.contains(db)
            {
                return (child, s);
            }
            if Instant::now() >= deadline {
                let mut child = child;
                let _ = child.kill();
                let _ = child.wait();
                panic!("the deploy never reached the database");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A deploy killed with kill -9 leaves its lock; the next run is refused naming its id;
/// force-unlock removes it; the run after resumes with no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_run_leaves_its_lock_until_force_unlock_then_resumes() {
    let t = Team::new("s3k9", common::timing_endpoint()).await;
    let (env, ep, aws, url) = (&t.env, &t.ep, &t.aws, &t.url);
    let (mut child, _) = t.deploy_until_database().await;
    // A second deploy while the first runs: refused at once, naming the first.
    let t0 = Instant::now();
    let second = tap_at(ep, env, url, &["deploy"]);
    assert!(t0.elapsed() < Duration::from_secs(10));
    assert_eq!(second.status.code(), Some(1));
    let err = stderr(&second);
    let me = format!("pid {}", child.id());
    assert!(err.contains("running `deploy`") && err.contains(&me), "{err}");
    child.kill().unwrap();
    child.wait().unwrap();

    let refused = tap_at(ep, env, url, &["deploy"]);
    assert_eq!(refused.status.code(), Some(1));
    let err = stderr(&refused);
    let id = err
        .split("tap force-unlock ")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_hexdigit()).next())
        .unwrap_or_else(|| panic!("names the lock id: {err}"))
        .to_string();
    let unlocked = tap_at(ep, env, url, &["force-unlock", &id, "--yes"]);
    assert_eq!(unlocked.status.code(), Some(0), "{}", stderr(&unlocked));
    let resumed = tap_at(ep, env, url, &["deploy"]);
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    let i = crate::verify::inputs(env);
    for region in i.topology.regions() {
        let vpcs = aws
            .ec2(region)
            .describe_vpcs()
            .filters(
                aws_sdk_ec2::types::Filter::builder()
                    .name("tag:tap:stack")
                    .values(env.as_str())
                    .build(),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(vpcs.vpcs().len(), 1, "one VPC in {region}");
    }
    let out = tap_at(ep, env, url, &["destroy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A new version of the state written behind the run's back: the run's next write is refused
/// (412), it stops with a clear error and keeps its lock, and the other version stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_changed_by_another_writer_is_never_overwritten() {
    let t = Team::new("s3cw", common::timing_endpoint()).await;
    let (aws, bucket, key) = (&t.aws, &t.bucket, &t.key);
    let (child, seen) = t.deploy_until_database().await;
    let mut v: serde_json::Value = serde_json::from_str(&seen).unwrap();
    v["serial"] = serde_json::json!(999_999);
    let theirs = v.to_string();
    aws.s3("us-east-1")
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(theirs.clone().into_bytes().into())
        .send()
        .await
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("changed by another writer"), "{}", stderr(&out));
    assert_eq!(
        object(aws, bucket, key).await.as_deref(),
        Some(theirs.as_str()),
        "not overwritten"
    );
    assert!(object(aws, bucket, &format!("{key}.lock")).await.is_some(), "lock kept");
}
