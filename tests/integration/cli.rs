//! The binary: exit codes, input validation before any AWS call, the state lock.

use crate::common;
use std::process::{Command, Output};

pub(crate) fn tap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tap"))
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run tap")
}

pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Port 9 (discard) has no server: any AWS call would fail with a network error, not exit 2.
const DEAD: &str = "http://127.0.0.1:9";

#[test]
fn invalid_input_is_rejected_with_exit_2_before_any_aws_call() {
    let cases: &[(&[&str], &str)] = &[
        (&["--env", "Bad_Env", "plan"], "invalid environment suffix"),
        (&["--env", "dev-", "deploy"], "no trailing '-'"),
        (&["--env", "abcdefghijklmnopq", "deploy"], "1-16 characters"),
        (&["--primary-region", "eu-west-1", "deploy"], "must differ"),
        (&["--secondary-region", "mars", "deploy"], "invalid secondary region"),
        (
            &["--secondary-region", "cn-north-1", "deploy"],
            "outside the standard aws partition",
        ),
        (
            &["--primary-region", "us-gov-west-1", "plan"],
            "outside the standard aws partition",
        ),
        (&["--endpoint-url", "localhost:4566", "deploy"], "invalid endpoint URL"),
        // SPEC v3: 1-4 secondaries, all different, none the home region.
        (&["--secondary-region", "eu-west-1,eu-west-1", "plan"], "given twice"),
        (
            &[
                "--secondary-region",
                "eu-west-1",
                "--secondary-region",
                "us-east-1",
                "plan",
            ],
            "must differ",
        ),
        (
            &[
                "--secondary-region",
                "eu-west-1,eu-west-2,eu-west-3,eu-central-1,ap-south-1",
                "deploy",
            ],
            "1 to 4 are allowed",
        ),
        (
            &["--secondary-region", "eu-west-1,cn-north-1", "plan"],
            "outside the standard aws partition",
        ),
        (&["deploy", "--bogus"], "unexpected argument"),
    ];
    for (args, msg) in cases {
        let mut a = vec!["--endpoint-url", DEAD];
        if args.contains(&"--endpoint-url") {
            a.clear();
        }
        a.extend_from_slice(args);
        let out = tap(&a);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(msg), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn destroy_without_terminal_needs_yes() {
    let state = common::state_path("noyes");
    let out = Command::new(env!("CARGO_BIN_EXE_tap"))
        .args(["--endpoint-url", DEAD, "--state", state.to_str().unwrap(), "destroy"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
}

#[test]
fn second_run_on_a_locked_state_is_refused_naming_the_holder() {
    let env = common::unique_env("lock");
    let state = common::state_path(&env);
    let _held = tap::engine::state::StateLock::acquire(&state).unwrap();
    let out = tap(&[
        "--env",
        &env,
        "--endpoint-url",
        DEAD,
        "--state",
        state.to_str().unwrap(),
        "deploy",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("locked by another tap run"), "{err}");
    assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
}

#[test]
fn corrupt_state_is_an_error_naming_the_file_and_is_not_overwritten() {
    let env = common::unique_env("bad");
    let state = common::state_path(&env);
    std::fs::write(&state, "{ truncated").unwrap();
    let out = tap(&[
        "--env",
        &env,
        "--endpoint-url",
        DEAD,
        "--state",
        state.to_str().unwrap(),
        "deploy",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(state.to_str().unwrap()), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "{ truncated");
}

#[test]
fn deploy_status_and_destroy_through_the_binary() {
    let env = common::unique_env("bin");
    let state = common::state_path(&env);
    let ep = common::endpoint();
    let base = [
        "--env",
        env.as_str(),
        "--endpoint-url",
        ep.as_str(),
        "--state",
        state.to_str().unwrap(),
    ];
    let run = |extra: &[&str]| {
        let mut a = base.to_vec();
        a.extend_from_slice(extra);
        tap(&a)
    };
    let out = run(&["deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("Deploy these changes?"),
        "no prompt without a terminal"
    );
    let plan = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "no changes after deploy: {}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let status = run(&["status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    // The database password appears in no output and not in the state file.
    let password = {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let aws = common::raw().await;
            let v = aws
                .secrets("us-east-1")
                .get_secret_value()
                .secret_id(format!("tap-db-{env}"))
                .send()
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_str(v.secret_string().unwrap()).unwrap();
            v["password"].as_str().unwrap().to_string()
        })
    };
    let plan_json = run(&["--json", "plan"]);
    let status_json = run(&["--json", "status"]);
    for (what, o) in [
        ("deploy", &out),
        ("plan", &plan),
        ("status", &status),
        ("plan --json", &plan_json),
        ("status --json", &status_json),
    ] {
        assert!(!String::from_utf8_lossy(&o.stdout).contains(&password), "{what} stdout");
        assert!(!stderr(o).contains(&password), "{what} stderr");
    }
    assert!(
        !std::fs::read_to_string(&state).unwrap().contains(&password),
        "state file"
    );
    assert!(
        text.contains(&format!("us-east-1 BucketName = tap-bucket-useast1-{env}-123456789012")),
        "{text}"
    );
    let i = crate::verify::inputs(&env);
    let key = common::node_id(&i, i.topology.home(), "kms-key");
    assert!(text.contains(&key) && text.contains("ready"), "{text}");
    // One raw value for scripts; a name in both regions needs --region.
    let bucket = run(&["output", "BucketName", "--region", "us-east-1"]);
    assert_eq!(
        String::from_utf8_lossy(&bucket.stdout),
        format!("tap-bucket-useast1-{env}-123456789012\n")
    );
    let both = run(&["output", "BucketName"]);
    assert_eq!(both.status.code(), Some(2), "{}", stderr(&both));
    assert!(stderr(&both).contains("--region"), "{}", stderr(&both));
    // status --json: a node line per node, outputs, the summary.
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&status_json.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let nodes = lines.iter().filter(|l| l["type"] == "node").count();
    assert_eq!(nodes, tap::app::graph().len());
    assert_eq!(lines.last().unwrap()["type"], "summary");
    assert_eq!(lines.last().unwrap()["ready"], tap::app::graph().len());

    // AWS moves the primary to a later minor version (auto minor version upgrade): not drift.
    common::emulator_post(&format!("/_rules/upgrade?id=tap-db-useast1-{env}&version=16.10"));
    let plan = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "no changes after a minor upgrade: {}",
        String::from_utf8_lossy(&plan.stdout)
    );
    let again = run(&["-vv", "deploy"]);
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    let calls = stderr(&again);
    assert!(
        calls.contains("RDS.DescribeDBInstances"),
        "-vv lists the calls: {calls}"
    );
    assert!(
        !calls.contains("RDS.ModifyDBInstance"),
        "no downgrade attempted: {calls}"
    );

    let out = run(&["destroy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let plan = run(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(2), "everything to create again");
    // Destroy freed every name (the secret's too, in both regions): the same env deploys again.
    // With --json: NDJSON on stdout, a start and an end per node, the summary last.
    let out = run(&["--json", "deploy"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines = crate::operator::check_ndjson(&out, "deploy");
    let summary = lines.last().unwrap();
    assert_eq!(summary["created"], tap::app::graph().len(), "{summary}");
    assert!(lines.iter().any(|l| l["type"] == "plan"), "the plan comes first");
    assert!(
        lines.iter().any(|l| l["type"] == "output" && l["name"] == "BucketName"),
        "outputs"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(&password),
        "deploy --json"
    );
    let out = run(&["--json", "destroy", "--yes"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let summary = crate::operator::check_ndjson(&out, "destroy").pop().unwrap();
    assert_eq!(summary["deleted"], tap::app::graph().len(), "{summary}");
    crate::operator::assert_no_debug_dump(&out);
}
