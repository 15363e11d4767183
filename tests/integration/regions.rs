//! SPEC v3 with three secondary regions: every row in all four regions, a second deploy without a
//! mutating call; a fourth secondary added and removed again, each touching only what SPEC
//! says (the region's own nodes, every bucket's replication rules and the replication role);
//! destroy leaves nothing in any of them.

use crate::common::{self, mutating, raw, run};
use crate::stack::check_everything;
use crate::{verify, verify_edge};
use std::collections::BTreeSet;
use tap::app::{Command, Options, Report};
use tap::config::Inputs;
use tap::engine::reconcile::Action;

const THREE: [&str; 3] = ["eu-west-1", "ap-southeast-2", "sa-east-1"];
const FOUR: [&str; 4] = ["eu-west-1", "ap-southeast-2", "sa-east-1", "ca-central-1"];

fn options(env: &str, secondaries: &[&str]) -> (Options, Inputs) {
    let mut o = common::options(env);
    o.inputs = Inputs::with_secondaries(
        env,
        "us-east-1",
        secondaries,
        Some("tap-tests".into()),
        Some("ci".into()),
    )
    .unwrap();
    let mut i = o.inputs.clone();
    i.account = verify::ACCOUNT.into();
    (o, i)
}

/// The ids whose node took `action` (by kind of action).
fn took(r: &Report, action: &Action) -> BTreeSet<String> {
    r.nodes
        .iter()
        .filter(|n| n.outcome_is(action))
        .map(|n| n.id.clone())
        .collect()
}

/// Every node of `region` in the graph of `i`.
fn region_nodes(i: &Inputs, region: &str) -> BTreeSet<String> {
    tap::app::graph_of(i)
        .nodes()
        .filter(|n| n.region == region)
        .map(|n| n.id.clone())
        .collect()
}

/// What adding or removing a region changes besides its own nodes (SPEC v3): every remaining
/// bucket's replication rules, and the one replication role.
fn replication_of(i: &Inputs) -> BTreeSet<String> {
    let mut s: BTreeSet<String> = i.topology.regions().map(|r| format!("{r}/s3-replication")).collect();
    s.insert("us-east-1/iam-replication-role".into());
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_secondaries_then_a_fourth_added_and_removed() {
    let env = common::unique_env("reg");
    let aws = raw().await;
    let (o3, i3) = options(&env, &THREE);
    let (o4, i4) = options(&env, &FOUR);

    let first = run(Command::Deploy, &o3).await;
    assert_eq!(took(&first, &Action::Create).len(), tap::app::graph_of(&i3).len());
    check_everything(&aws, &i3).await;
    let again = run(Command::Deploy, &o3).await;
    assert!(mutating(&again).is_empty(), "{:?}", mutating(&again));
    // Outputs per region: the database's role, the writer region at home.
    assert_eq!(again.outputs["us-east-1"]["WriterRegion"], "us-east-1");
    for r in THREE {
        assert_eq!(again.outputs[r]["DbRole"], "replica", "{r}");
        assert!(again.outputs[r]["DbSecretArn"].contains(&format!(":{r}:")), "{r}");
    }

    // A fourth: its own nodes are created; the replication of every bucket and the role change.
    let added = run(Command::Deploy, &o4).await;
    assert_eq!(took(&added, &Action::Create), region_nodes(&i4, "ca-central-1"));
    let updated: BTreeSet<String> = added
        .nodes
        .iter()
        .filter(|n| n.outcome_is(&Action::Update { changes: vec![] }))
        .map(|n| n.id.clone())
        .collect();
    assert_eq!(updated, &replication_of(&i4) - &region_nodes(&i4, "ca-central-1"));
    assert!(took(&added, &Action::Delete).is_empty());
    // Indexes never renumber: the new region takes the lowest free one.
    let state = tap::engine::state::State::load(&o4.state_path).unwrap();
    assert_eq!(state.regions["ca-central-1"], 4);
    assert_eq!(state.regions["sa-east-1"], 3);
    check_everything(&aws, &i4).await;

    // Removed again: its nodes are deleted, the others' replication and the role updated.
    let removed = run(Command::Deploy, &o3).await;
    assert_eq!(took(&removed, &Action::Delete), region_nodes(&i4, "ca-central-1"));
    assert!(took(&removed, &Action::Create).is_empty());
    let updated: BTreeSet<String> = removed
        .nodes
        .iter()
        .filter(|n| n.outcome_is(&Action::Update { changes: vec![] }))
        .map(|n| n.id.clone())
        .collect();
    assert_eq!(updated, replication_of(&i3));
    check_everything(&aws, &i3).await;

    run(Command::Destroy, &o3).await;
    // Nothing of the env in any of the five regions it used.
    verify_edge::nothing_left(&aws, &i4).await;
}
