//! Interruptions: Ctrl-C during a long wait, and kill -9 at several points of a deploy. The
//! binary runs against the timing emulator (RDS and NAT take seconds there); the next run
//! resumes with no duplicate.

use crate::common::{self, db_kind, first_secondary, node_id, run, timing_endpoint};
use crate::faults::tagged_objects;
use crate::verify;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tap::app::{self, Command as Cmd};
use tap::engine::state::{NodeStatus, State};

fn spawn_deploy(env: &str, state: &std::path::Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tap"))
        .args(["--endpoint-url", &timing_endpoint(), "--env", env, "--state"])
        .arg(state)
        .arg("deploy")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_ENDPOINT_URL")
        // The tags the in-process runs use (common::options).
        .env("REPOSITORY", "tap-tests")
        .env("COMMIT_AUTHOR", "ci")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tap")
}

/// Polls the state file (replaced atomically: always whole) until `cond` holds.
fn wait_for_state(state: &std::path::Path, what: &str, cond: impl Fn(&State) -> bool) {
    let t0 = Instant::now();
    loop {
        if let Ok(s) = State::load(state)
            && cond(&s)
        {
            return;
        }
        assert!(t0.elapsed() < Duration::from_secs(120), "state never reached: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn creating(s: &State, id: &str) -> bool {
    s.nodes
        .get(id)
        .is_some_and(|n| n.status == NodeStatus::Creating && n.physical_id.is_some())
}

/// After the interruptions: one more deploy converges everything, with exactly one object per
/// node; then destroy leaves nothing.
async fn resume_and_check(env: &str) {
    let mut o = common::options_at(env, &timing_endpoint());
    o.state_path = common::state_path(env);
    let i = verify::inputs(env);
    let aws = common::raw_at(&timing_endpoint()).await;
    let r = run(Cmd::Deploy, &o).await;
    assert_eq!(r.nodes.len(), app::graph().len());
    let found = tagged_objects(&aws, &i).await;
    assert!(found.values().all(|c| *c == 1), "duplicates after resume: {found:?}");
    assert_eq!(verify::owned_keys(&aws, &i, i.topology.home()).await, 1);
    let second = run(Cmd::Deploy, &o).await;
    assert_eq!(common::mutating(&second), Vec::<String>::new());
    run(Cmd::Destroy, &o).await;
    assert!(tagged_objects(&aws, &i).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_during_the_database_wait_exits_130_and_the_next_deploy_resumes() {
    let env = common::unique_env("int");
    let state = common::state_path(&env);
    let i = verify::inputs(&env);
    let writer = i.topology.writer();
    let db = node_id(&i, writer, db_kind(&i, writer));
    let mut child = spawn_deploy(&env, &state);
    wait_for_state(&state, &format!("{db} creating"), |s| creating(s, &db));
    let pid = child.id().to_string();
    let t0 = Instant::now();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "still running 10 s after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stdout.contains("Interrupted"), "{stdout}");
    assert!(stderr.contains(&db) && stderr.contains("interrupted"), "{stderr}");
    // Regression (issue 17, item 14): interrupted nodes were summed as failed and shown as
    // `FAILED: … Interrupted`; they are counted and shown as interrupted.
    assert!(!stderr.contains("FAILED"), "{stderr}");
    let summary = stdout.lines().find(|l| l.starts_with("Deploy:")).unwrap_or_default();
    assert!(
        summary.contains(" 0 failed, ") && summary.contains(" interrupted."),
        "{summary}"
    );
    // The state is whole, and the interrupted database is still recorded as being created.
    let s = State::load(&state).expect("valid state after SIGINT");
    assert!(creating(&s, &db), "{:?}", s.nodes.get(&db));
    resume_and_check(&env).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_several_points_then_deploy_leaves_no_duplicate() {
    let env = common::unique_env("kill");
    let state = common::state_path(&env);
    let i = verify::inputs(&env);
    let sec = first_secondary(&i);
    let nat = node_id(&i, i.topology.home(), "nat-gateway");
    let replica = node_id(&i, sec, db_kind(&i, sec));
    // Early (VPCs, keys being created), during the NAT gateway wait, during the replica's.
    type Point<'a> = (&'static str, Box<dyn Fn(&State) -> bool + 'a>);
    let points: [Point; 3] = [
        ("five transitions", Box::new(|s: &State| s.serial >= 5)),
        ("NAT gateway creating", Box::new(|s: &State| creating(s, &nat))),
        ("replica creating", Box::new(|s: &State| creating(s, &replica))),
    ];
    for (what, cond) in points {
        let mut child = spawn_deploy(&env, &state);
        wait_for_state(&state, what, cond);
        child.kill().unwrap();
        child.wait().unwrap();
        State::load(&state).unwrap_or_else(|e| panic!("state after kill -9 at {what}: {e}"));
    }
    resume_and_check(&env).await;
}
