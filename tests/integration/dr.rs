//! Disaster recovery end to end (SPEC v3 "Disaster recovery"): `dr check`, an ungraceful
//! failover while the home region is down, `reprotect` once it answers, a graceful failover
//! back; with one secondary and with three. On the outage emulator (its own moto process): each
//! test takes home regions no other test there uses, so that an outage reaches only its stack.

use crate::common::{self, emulator_post_at, mutating, own_emulator, raw_at, run};
use crate::stack::check_everything;
use crate::verify;
use std::sync::Arc;
use std::time::Duration;
use tap::app::{Command, Options};
use tap::aws::Aws;
use tap::config::Inputs;
use tap::dr;

/// The outage emulator of `emulator_dr.rs` too (its tests take us-east-1 and ap-south-1 down and
/// keep ap-southeast-1 up).
pub const OUTAGE_PORT: u16 = 4651;
/// The timing emulator of the interruption test.
pub const TIMING_PORT: u16 = 4652;

pub fn options(env: &str, endpoint: &str, home: &str, secondaries: &[&str]) -> (Options, Inputs) {
    let mut o = common::options_at(env, endpoint);
    o.inputs = Inputs::with_secondaries(env, home, secondaries, Some("tap-tests".into()), Some("ci".into())).unwrap();
    let mut i = o.inputs.clone();
    i.account = verify::ACCOUNT.into();
    (o, i)
}

pub fn outage(endpoint: &str, region: &str, mode: &str) {
    emulator_post_at(endpoint, &format!("/_rules/outage?region={region}&mode={mode}"));
}

pub fn yes(_: &[String]) -> bool {
    true
}

/// A failover, confirmed (boxed: the run's future is large for a test thread's stack).
pub async fn failover(o: &Options, a: dr::failover::Args) -> Result<dr::failover::Report, tap::app::AppError> {
    Box::pin(dr::failover::execute(o, &a, &yes)).await
}

pub async fn reprotect(o: &Options) -> Result<dr::reprotect::Report, tap::app::AppError> {
    Box::pin(dr::reprotect::execute(o, &yes)).await
}

pub async fn check(o: &Options, to: &str) -> dr::check::Report {
    let r = dr::check::execute(o, Some(to)).await.unwrap();
    let elsewhere: Vec<_> = r.calls.iter().filter(|c| c.region != to).collect();
    assert!(elsewhere.is_empty(), "dr check calls {to} only: {elsewhere:?}");
    r
}

fn failed_checks(r: &dr::check::Report) -> Vec<String> {
    r.checks
        .iter()
        .filter(|c| !c.ok)
        .map(|c| format!("{} {} {}: {}", c.check, c.region, c.object, c.detail))
        .collect()
}

pub fn args(to: &str, graceful: bool) -> dr::failover::Args {
    dr::failover::Args {
        to: to.into(),
        graceful,
        since: None,
        dry_run: false,
        drain: Duration::from_secs(1),
    }
}

pub async fn db(aws: &Aws, region: &str, env: &str) -> Option<aws_sdk_rds::types::DbInstance> {
    aws.rds(region)
        .describe_db_instances()
        .db_instance_identifier(format!("tap-db-{}-{env}", common::r(region)))
        .send()
        .await
        .ok()
        .and_then(|o| o.db_instances().first().cloned())
}

/// The database of `region`: a replica of `writer`'s (by ARN or name), or the writer itself.
pub async fn assert_roles(aws: &Aws, i: &Inputs, writer: &str) {
    for region in i.topology.regions() {
        let d = db(aws, region, &i.env)
            .await
            .unwrap_or_else(|| panic!("{region}: no database"));
        let source = d.read_replica_source_db_instance_identifier();
        if region == writer {
            assert_eq!(source, None, "{region} is the writer");
        } else {
            let w = format!("tap-db-{}-{}", common::r(writer), i.env);
            assert!(
                source.is_some_and(|s| s == w || s.ends_with(&format!(":db:{w}"))),
                "{region} replicates {writer}: {source:?}"
            );
        }
        let secret = aws
            .secrets(region)
            .describe_secret()
            .secret_id(format!("tap-db-{}", i.env))
            .send()
            .await
            .unwrap();
        match region == writer {
            true => assert_eq!(secret.primary_region(), None, "{region}: the writer's secret"),
            false => assert_eq!(secret.primary_region(), Some(writer), "{region}: a replica"),
        }
    }
}

/// The DB instances of `region` whose name carries the env (renamed stale ones included).
pub async fn env_instances(aws: &Aws, region: &str, env: &str) -> Vec<String> {
    aws.rds(region)
        .describe_db_instances()
        .send()
        .await
        .unwrap()
        .db_instances()
        .iter()
        .filter_map(|d| d.db_instance_identifier())
        .filter(|d| d.contains(env))
        .map(str::to_string)
        .collect()
}

/// Final snapshots of the env (`tap-db-{r}-{env}-final-*`) in `region`.
pub async fn final_snapshots(aws: &Aws, region: &str, env: &str) -> Vec<String> {
    let prefix = format!("tap-db-{}-{env}-final-", common::r(region));
    aws.rds(region)
        .describe_db_snapshots()
        .send()
        .await
        .unwrap()
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier())
        .filter(|s| s.starts_with(&prefix))
        .map(str::to_string)
        .collect()
}

/// After destroy: no database, secret or bucket of the env; the final snapshots are kept, and
/// the keys that encrypt them; every other key of the env is pending deletion.
pub async fn nothing_left_but_snapshots(aws: &Aws, i: &Inputs, snapshot_regions: &[&str]) {
    for region in i.topology.regions() {
        let left = env_instances(aws, region, &i.env).await;
        assert!(left.is_empty(), "{region}: {left:?}");
        let bucket = format!("tap-bucket-{}-{}-{}", common::r(region), i.env, verify::ACCOUNT);
        assert!(
            aws.s3(region).head_bucket().bucket(&bucket).send().await.is_err(),
            "{bucket}"
        );
        let secrets = aws.secrets(region).list_secrets().send().await.unwrap();
        assert!(
            !secrets
                .secret_list()
                .iter()
                .any(|s| s.name() == Some(format!("tap-db-{}", i.env).as_str())),
            "{region}: secret"
        );
        let snaps = final_snapshots(aws, region, &i.env).await;
        let keys = verify::env_keys(aws, i, region).await;
        if snapshot_regions.contains(&region) {
            assert!(!snaps.is_empty(), "{region}: the final snapshot is kept");
            assert!(
                keys.iter()
                    .any(|(_, s)| *s == Some(aws_sdk_kms::types::KeyState::Enabled)),
                "{region}: the key of the final snapshot is kept: {keys:?}"
            );
        } else {
            assert!(snaps.is_empty(), "{region}: {snaps:?}");
            assert!(
                keys.iter()
                    .all(|(_, s)| *s == Some(aws_sdk_kms::types::KeyState::PendingDeletion)),
                "{region}: {keys:?}"
            );
        }
    }
}

/// SPEC v3's drill with one secondary: deploy, `dr check` ready; the secondary's secret replica
/// and replication broken, `dr check` names them, deploy repairs; the home region down,
/// ungraceful failover calls the secondary only; the outage over, reprotect; graceful failover
/// back; every SPEC row with the original roles; destroy keeps only the final snapshots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_home_region_is_failed_over_reprotected_and_failed_back() {
    let ep = own_emulator(OUTAGE_PORT);
    let env = common::unique_env("dr");
    let (home, sec) = ("us-east-2", "eu-west-2");
    let (o, i) = options(&env, &ep, home, &[sec]);
    let aws = raw_at(&ep).await;
    run(Command::Deploy, &o).await;
    assert!(check(&o, sec).await.ready, "{:?}", failed_checks(&check(&o, sec).await));

    // Broken: the secondary's secret replica removed, its bucket's replication deleted.
    let name = format!("tap-db-{env}");
    aws.secrets(home)
        .remove_regions_from_replication()
        .secret_id(&name)
        .remove_replica_regions(sec)
        .send()
        .await
        .unwrap();
    let bucket = format!("tap-bucket-{}-{env}-{}", common::r(sec), verify::ACCOUNT);
    aws.s3(sec)
        .delete_bucket_replication()
        .bucket(&bucket)
        .send()
        .await
        .unwrap();
    let broken = check(&o, sec).await;
    assert!(!broken.ready);
    let failed = failed_checks(&broken);
    assert!(
        failed.iter().any(|f| f.starts_with(&format!("db-secret {sec} {name}"))),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|f| f.starts_with(&format!("s3-replication {sec} {bucket}"))),
        "{failed:?}"
    );
    run(Command::Deploy, &o).await;
    assert!(check(&o, sec).await.ready, "deploy repaired it");

    // The home region answers nothing: failover calls the secondary only (and, best effort,
    // the old writer's ASG, which fails and is reported).
    outage(&ep, home, "unavailable");
    let f = failover(&o, args(sec, false)).await.unwrap();
    let others: Vec<_> = f
        .calls
        .iter()
        .filter(|c| c.region != sec && c.operation != "UpdateAutoScalingGroup")
        .collect();
    assert!(others.is_empty(), "ungraceful failover calls {sec} only: {others:?}");
    assert!(f.execution_seconds.is_some_and(|s| s < 30.0), "{f:?}");
    let best_effort = f
        .steps
        .iter()
        .find(|s| s.id == format!("{home}/scale-in-old-asg"))
        .unwrap();
    assert!(best_effort.outcome.is_err(), "reported as failed: {best_effort:?}");
    let new_writer = db(&aws, sec, &env).await.unwrap();
    assert_eq!(new_writer.read_replica_source_db_instance_identifier(), None);
    let secret = aws
        .secrets(sec)
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(secret.primary_region(), None, "standalone");
    // A second failover to it is refused; to the old writer too (reprotect first).
    assert!(failover(&o, args(home, false)).await.is_err());

    outage(&ep, home, "off");
    // Before reprotect: plan holds the stale writer's region, and changes no database.
    let plan = run(Command::Plan, &o).await;
    for kind in ["db-instance", "db-secret", "asg"] {
        let id = format!("{home}/{kind}");
        assert!(
            matches!(plan.action(&id), Some(tap::engine::reconcile::Action::Skip { reason }) if reason.contains("reprotect pending")),
            "{id}: {:?}",
            plan.action(&id)
        );
    }
    assert!(!check(&o, home).await.ready, "a stale writer is pending reprotect");

    let rp = reprotect(&o).await.unwrap();
    let snapshot = rp.final_snapshot.clone().expect("a final snapshot");
    assert_eq!(final_snapshots(&aws, home, &env).await, [snapshot]);
    assert_roles(&aws, &i, sec).await;
    let in_sec = aws
        .secrets(sec)
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    assert!(
        in_sec
            .replication_status()
            .iter()
            .any(|s| s.region() == Some(home) && s.status().map(|s| s.as_str()) == Some("InSync")),
        "{in_sec:?}"
    );
    assert!(
        check(&o, home).await.ready,
        "{:?}",
        failed_checks(&check(&o, home).await)
    );
    let again = run(Command::Deploy, &o).await;
    assert!(mutating(&again).is_empty(), "{:?}", mutating(&again));
    assert_eq!(again.outputs[sec]["DbRole"], "writer");
    assert_eq!(again.outputs[home]["WriterRegion"], sec);

    // Back, gracefully (fence, drain, promote, reprotect in one run).
    let back = failover(&o, args(home, true)).await.unwrap();
    assert!(back.reprotect.as_ref().is_some_and(|r| r.final_snapshot.is_some()));
    assert_roles(&aws, &i, home).await;
    check_everything(&aws, &i).await;
    let again = run(Command::Deploy, &o).await;
    assert!(mutating(&again).is_empty(), "{:?}", mutating(&again));

    run(Command::Destroy, &o).await;
    nothing_left_but_snapshots(&aws, &i, &[home, sec]).await;
}

/// Three secondaries, failover to the second one: every other replica followed the stale
/// writer; reprotect renames and deletes those before the stale writer, and recreates them as
/// replicas of the new writer. Destroy with a stale writer pending takes its final snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_secondaries_fail_over_to_the_second_and_every_replica_follows_it() {
    let ep = own_emulator(OUTAGE_PORT);
    let env = common::unique_env("dr3");
    let (home, secs) = ("us-west-2", ["eu-north-1", "ap-northeast-1", "eu-west-3"]);
    let (o, i) = options(&env, &ep, home, &secs);
    let aws: Arc<Aws> = raw_at(&ep).await;
    run(Command::Deploy, &o).await;
    let to = secs[1];
    assert!(check(&o, to).await.ready);
    outage(&ep, home, "refuse");
    let f = failover(&o, args(to, false)).await.unwrap();
    assert!(
        f.calls.iter().all(|c| c.region == to || c.region == home),
        "{:?}",
        f.calls
    );
    outage(&ep, home, "off");

    let rp = reprotect(&o).await.unwrap();
    let ids: Vec<&str> = rp.steps.iter().map(|s| s.id.as_str()).collect();
    // The replicas that followed the stale writer went before it.
    let writer_delete = ids.iter().position(|s| s.ends_with("/delete-stale-writer")).unwrap();
    for r in [secs[0], secs[2]] {
        let p = ids
            .iter()
            .position(|s| *s == format!("{r}/delete-stale-replica"))
            .unwrap_or_else(|| panic!("{r}: {ids:?}"));
        assert!(p < writer_delete, "{ids:?}");
    }
    assert_roles(&aws, &i, to).await;
    assert!(check(&o, secs[2]).await.ready);
    let again = run(Command::Deploy, &o).await;
    assert!(mutating(&again).is_empty(), "{:?}", mutating(&again));

    // Another failover, to the first secondary, left unreprotected; destroy then snapshots
    // the stale writer (in the second secondary) and keeps it.
    outage(&ep, to, "unavailable");
    failover(&o, args(secs[0], false)).await.unwrap();
    outage(&ep, to, "off");
    run(Command::Destroy, &o).await;
    nothing_left_but_snapshots(&aws, &i, &[home, to]).await;
}

fn spawn_tap(
    endpoint: &str,
    env: &str,
    state: &std::path::Path,
    home: &str,
    sec: &str,
    args: &[&str],
) -> std::process::Child {
    std::process::Command::new(env!("CARGO_BIN_EXE_tap"))
        .args([
            "--endpoint-url",
            endpoint,
            "--env",
            env,
            "--primary-region",
            home,
            "--secondary-region",
            sec,
        ])
        .arg("--state")
        .arg(state)
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env_remove("AWS_ENDPOINT_URL")
        .env("REPOSITORY", "tap-tests")
        .env("COMMIT_AUTHOR", "ci")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn tap")
}

/// The recorded status of step `id` (`{region}/{step}`) of the last failover or its reprotect.
fn step_status(state: &std::path::Path, id: &str) -> Option<String> {
    let s = tap::engine::state::State::load(state).ok()?;
    let f = s.failovers.last()?;
    let step = f["steps"].get(id).or_else(|| f["reprotect"]["steps"].get(id))?;
    step["status"].as_str().map(str::to_string)
}

fn wait_for_step(state: &std::path::Path, id: &str, status: &str) {
    let t0 = std::time::Instant::now();
    while step_status(state, id).as_deref() != Some(status) {
        assert!(t0.elapsed() < Duration::from_secs(120), "{id} never {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn finish(child: std::process::Child) -> (i32, String) {
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// On the timing emulator (a promotion takes seconds): the home region's connections hang; the
/// ungraceful failover is killed (-9) as its promotion starts; run again, it finishes without a
/// second promotion within the promotion time + 30 s, the hanging best-effort call bounded.
/// Then reprotect is interrupted (Ctrl-C) while the stale writer is being deleted; run again,
/// it finishes: one database of the name, a replica, one final snapshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failover_and_a_reprotect_interrupted_anywhere_finish_when_run_again() {
    // A timing emulator of its own: its outage reaches no other test, and its RDS calls (served
    // one at a time) do not queue behind the other timing tests'.
    let ep = common::own_timing_emulator(TIMING_PORT);
    let env = common::unique_env("drk");
    let (home, sec) = ("us-west-1", "ap-northeast-2");
    let (mut o, i) = options(&env, &ep, home, &[sec]);
    o.state_path = common::state_path(&env);
    let state = o.state_path.clone();
    let aws = raw_at(&ep).await;
    run(Command::Deploy, &o).await;
    let promote = common::timing_config_at(&ep)["rds_promote"].as_f64().unwrap();

    outage(&ep, home, "hang");
    let child = spawn_tap(&ep, &env, &state, home, sec, &["failover", "--to", sec, "--yes"]);
    wait_for_step(&state, &format!("{sec}/promote-read-replica"), "started");
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    let _ = finish(child);
    let t0 = std::time::Instant::now();
    let (code, out) = finish(spawn_tap(
        &ep,
        &env,
        &state,
        home,
        sec,
        &["failover", "--to", sec, "--yes"],
    ));
    let took = t0.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{out}");
    assert!(took < promote + 30.0, "{took:.1}s for a {promote}s promotion\n{out}");
    assert!(out.contains("execution time: "), "{out}");
    assert!(
        out.contains(&format!("{home}/scale-in-old-asg")),
        "the best-effort step is reported: {out}"
    );
    let db_id = format!("tap-db-{}-{env}", common::r(sec));
    let promotions = common::timing_events_at(&ep)
        .into_iter()
        .filter(|(_, _, action, id)| action == "PromoteReadReplica" && *id == db_id)
        .count();
    assert_eq!(promotions, 1, "one promotion");
    outage(&ep, home, "off");

    let child = spawn_tap(&ep, &env, &state, home, sec, &["reprotect", "--yes"]);
    wait_for_step(&state, &format!("{home}/delete-stale-writer"), "started");
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let (code, out) = finish(child);
    assert_eq!(code, 130, "{out}");
    let (code, out) = finish(spawn_tap(&ep, &env, &state, home, sec, &["reprotect", "--yes"]));
    assert_eq!(code, 0, "{out}");
    assert_roles(&aws, &i, sec).await;
    assert_eq!(final_snapshots(&aws, home, &env).await.len(), 1);
    let named = env_instances(&aws, home, &env).await;
    assert_eq!(
        named,
        [format!("tap-db-{}-{env}", common::r(home))],
        "no twin, no stale left"
    );
    run(Command::Destroy, &o).await;
    nothing_left_but_snapshots(&aws, &i, &[home]).await;
}
