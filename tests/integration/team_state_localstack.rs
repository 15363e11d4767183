//! Team state against LocalStack community (issue 17 item 13), as a new user tries it: its S3
//! answers `DeleteObject If-Match` with 501 NotImplemented, so the lock must be released and
//! force-unlocked by the fallback. LocalStack (PyPI, no Docker) needs a Python >= 3.12: without
//! one the test says so on the terminal and passes (a visible skip). The endpoint is
//! `TAP_TEST_LOCALSTACK_ENDPOINT`, else `localstack/emulator.sh start --localstack` on port 4596.
//! Only S3 and STS are used: LocalStack community has no RDS, CloudFront or Auto Scaling.

use crate::cli::stderr;
use crate::common;
use crate::team_state::{object, state_bucket, tap_at};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// LocalStack's endpoint, or why there is none here.
fn localstack() -> Result<String, String> {
    if let Ok(e) = std::env::var("TAP_TEST_LOCALSTACK_ENDPOINT") {
        return Ok(e);
    }
    let port = "4596";
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("localstack/emulator.sh");
    let out = Command::new("bash")
        .arg(&script)
        .args(["start", "--localstack"])
        .env("TAP_EMULATOR_PORT", port)
        .output()
        .expect("run localstack/emulator.sh");
    match out.status.code() {
        Some(0) => Ok(format!("http://127.0.0.1:{port}")),
        Some(3) => Err(String::from_utf8_lossy(&out.stderr)
            .trim()
            .trim_start_matches("skip: ")
            .to_string()),
        _ => panic!(
            "localstack/emulator.sh start --localstack failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn team_state_lock_on_localstack_community() {
    let ep = match localstack() {
        Ok(ep) => ep,
        Err(why) => {
            // Straight to the terminal: libtest captures eprintln! of a passing test.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED team_state_lock_on_localstack_community: {why}"
            );
            return;
        }
    };
    let env = common::unique_env("lsst");
    let aws = common::raw_at(&ep).await;
    let bucket = format!("tap-state-{env}");
    let key = format!("tap/{env}.json");
    let lock_key = format!("{key}.lock");
    let url = format!("s3://{bucket}/{key}");
    state_bucket(&aws, &bucket, true).await;
    let lock = serde_json::json!({"id": "0badc0ffee", "holder": "alice@laptop", "pid": 4242,
        "command": "deploy", "started_at": tap::engine::store::now()});
    aws.s3("us-east-1")
        .put_object()
        .bucket(&bucket)
        .key(&lock_key)
        .body(lock.to_string().into_bytes().into())
        .send()
        .await
        .unwrap();
    // A held lock refuses a run, naming its holder.
    let held = tap_at(&ep, &env, &url, &["deploy", "--yes"]);
    assert_eq!(held.status.code(), Some(1), "{}", stderr(&held));
    assert!(
        stderr(&held).contains("tap force-unlock 0badc0ffee"),
        "{}",
        stderr(&held)
    );
    // force-unlock removes it despite the 501 to the conditional delete, and says how.
    let unlocked = tap_at(&ep, &env, &url, &["force-unlock", "0badc0ffee", "--yes"]);
    assert_eq!(unlocked.status.code(), Some(0), "{}", stderr(&unlocked));
    assert!(
        object(&aws, &bucket, &lock_key).await.is_none(),
        "{}",
        stderr(&unlocked)
    );
}
