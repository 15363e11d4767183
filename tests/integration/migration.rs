//! SPEC v3 "Migration from v2", against a stack that the previous release really deployed: the
//! binary of the last SPEC v2 release (built from git history by tests/v2/build.sh, or
//! `TAP_V2_BIN`) deploys an env on the emulator; this tap then plans it with no create of
//! anything that exists and no replace, deploys it, keeps the v2 state beside the new one, and
//! plans nothing more.

use crate::common;
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The previous release's binary.
fn v2_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(b) = std::env::var("TAP_V2_BIN") {
            return PathBuf::from(b);
        }
        // Not in `target`: the `cargo test` running this holds that directory's lock until it
        // ends, so a build there would wait forever. A directory of its own costs one cold
        // build of the dependencies, once (`.ci/run` builds it into `target` before the tests).
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let script = root.join("tests/v2/build.sh");
        let out = Command::new("bash")
            .arg(&script)
            .env("CARGO_TARGET_DIR", root.join("target/v2"))
            .output()
            .expect("run tests/v2/build.sh");
        assert!(
            out.status.success(),
            "tests/v2/build.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        PathBuf::from(String::from_utf8_lossy(&out.stdout).trim().to_string())
    })
    .clone()
}

fn run(bin: &std::path::Path, env: &str, state: &std::path::Path, ep: &str, args: &[&str]) -> Output {
    Command::new(bin)
        .args(["--env", env, "--state", state.to_str().unwrap(), "--endpoint-url", ep])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run tap")
}

fn ok(what: &str, o: &Output) {
    assert!(
        o.status.success(),
        "{what}: exit {:?}\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// NDJSON plan lines: node id → action.
fn planned(o: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "plan")
        .map(|v| {
            (
                v["node"].as_str().unwrap_or_default().to_string(),
                v["action"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_stack_deployed_by_the_v2_release_migrates_without_creating_or_replacing_anything() {
    let v2 = v2_bin();
    let new = PathBuf::from(env!("CARGO_BIN_EXE_tap"));
    let env = common::unique_env("mig");
    let ep = common::endpoint();
    let state = common::state_path(&env);

    ok("v2 deploy", &run(&v2, &env, &state, &ep, &["deploy", "--yes"]));
    let v2_text = std::fs::read_to_string(&state).unwrap();
    let v2_state: Value = serde_json::from_str(&v2_text).unwrap();
    assert_eq!(v2_state["schema_version"], 1, "the v2 release writes schema 1");

    // Plan: reads only, writes nothing (not even the migrated state).
    let plan = run(&new, &env, &state, &ep, &["--json", "plan"]);
    ok("plan after v2", &plan);
    assert_eq!(
        std::fs::read_to_string(&state).unwrap(),
        v2_text,
        "plan rewrote the state"
    );
    let lines = planned(&plan);
    assert!(
        !lines.is_empty(),
        "no plan lines: {}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let creates: Vec<&String> = lines.iter().filter(|(_, a)| a == "create").map(|(n, _)| n).collect();
    let replaces: Vec<&String> = lines.iter().filter(|(_, a)| a == "replace").map(|(n, _)| n).collect();
    let deletes: Vec<&String> = lines.iter().filter(|(_, a)| a == "delete").map(|(n, _)| n).collect();
    // SPEC: the secondary bucket's replication configuration (new in v3) is the only create.
    assert_eq!(creates, ["eu-west-1/s3-replication"], "{lines:?}");
    assert!(replaces.is_empty(), "replaced: {replaces:?}");
    assert!(deletes.is_empty(), "deleted: {deletes:?}");
    // The new tap:id values, the role's wider policy, the primary bucket's v3 rules: updates.
    for id in [
        "us-east-1/vpc",
        "eu-west-1/vpc",
        "us-east-1/iam-replication-role",
        "us-east-1/s3-replication",
    ] {
        assert!(
            lines.contains(&(id.to_string(), "update".to_string())),
            "{id} not updated: {lines:?}"
        );
    }

    ok("deploy after v2", &run(&new, &env, &state, &ep, &["deploy", "--yes"]));
    let kept = PathBuf::from(format!("{}.v2", state.display()));
    assert_eq!(
        std::fs::read_to_string(&kept).unwrap(),
        v2_text,
        "the v2 state is kept beside"
    );
    let v3: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(v3["schema_version"], 2);
    assert_eq!(v3["regions"]["us-east-1"], 0);
    assert_eq!(v3["regions"]["eu-west-1"], 1);
    // Every object kept its physical id: nothing was created again.
    for (old, new) in [
        ("primary/vpc", "us-east-1/vpc"),
        ("secondary/vpc", "eu-west-1/vpc"),
        ("primary/rds-primary", "us-east-1/db-instance"),
        ("secondary/rds-replica", "eu-west-1/db-instance"),
        ("primary/kms-key", "us-east-1/kms-key"),
        ("primary/cloudfront", "us-east-1/cloudfront"),
    ] {
        assert_eq!(
            v3["nodes"][new]["physical_id"], v2_state["nodes"][old]["physical_id"],
            "{old} -> {new}"
        );
    }
    assert_eq!(
        v3["nodes"]["eu-west-1/db-secret"]["physical_id"],
        v2_state["nodes"]["primary/db-secret"]["attrs"]["replica_arn"]
    );

    let again = run(&new, &env, &state, &ep, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "plan after the migration deploy: {}",
        String::from_utf8_lossy(&again.stdout)
    );
    // The v2 release refuses the migrated state instead of deploying a second stack beside it.
    let old = run(&v2, &env, &state, &ep, &["plan"]);
    assert_eq!(old.status.code(), Some(1), "{}", String::from_utf8_lossy(&old.stderr));
    assert!(String::from_utf8_lossy(&old.stderr).contains("schema version 2"));

    ok("destroy", &run(&new, &env, &state, &ep, &["destroy", "--yes"]));
}

/// Until the first deploy of the new release retags them, objects carry SPEC v2's `tap:id`
/// values: with the state lost, adoption (look-ups by ownership tags, twin scans) accepts them as
/// this node's, so nothing is created twice.
#[test]
fn a_v2_stack_whose_state_is_lost_is_adopted_by_its_v2_tags() {
    let v2 = v2_bin();
    let new = PathBuf::from(env!("CARGO_BIN_EXE_tap"));
    let env = common::unique_env("mgl");
    let ep = common::endpoint();
    let state = common::state_path(&env);
    ok("v2 deploy", &run(&v2, &env, &state, &ep, &["deploy", "--yes"]));
    std::fs::remove_file(&state).unwrap();

    let plan = run(&new, &env, &state, &ep, &["--json", "plan"]);
    ok("plan without state", &plan);
    let creates: Vec<String> = planned(&plan)
        .into_iter()
        .filter(|(_, a)| a == "create")
        .map(|(n, _)| n)
        .collect();
    // Only what v2 never had: the secondary bucket's replication configuration.
    assert_eq!(
        creates,
        ["eu-west-1/s3-replication"],
        "{}",
        String::from_utf8_lossy(&plan.stdout)
    );
    ok(
        "deploy without state",
        &run(&new, &env, &state, &ep, &["deploy", "--yes"]),
    );
    let again = run(&new, &env, &state, &ep, &["plan", "--detailed-exitcode"]);
    assert_eq!(
        again.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    ok("destroy", &run(&new, &env, &state, &ep, &["destroy", "--yes"]));
}
