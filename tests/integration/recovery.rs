//! Replace guard, failure isolation and resume, stale or lost state, objects deleted outside.

use crate::common::{self, first_secondary, mutating, node_id, raw, run};
use crate::{verify, verify_edge};
use tap::app::{self, AppError, Command, Outcome};
use tap::engine::reconcile::Action;
use tap::engine::state::{NodeStatus, State};

fn changed(r: &tap::app::Report) -> Vec<String> {
    r.nodes
        .iter()
        .filter(|n| !n.outcome_is(&Action::None))
        .map(|n| n.id.clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_is_refused_before_touching_anything_unless_allowed() {
    let env = common::unique_env("repl");
    let mut o = common::options(&env);
    let i = verify::inputs(&env);
    let home = i.topology.home();
    let home_id = |kind: &str| node_id(&i, home, kind);
    let aws = raw().await;
    // A VPC that carries this node's tags but an immutable property tap would not choose.
    let tags = tap::resources::ec2::tag_spec_for(&i, &home_id("vpc"), aws_sdk_ec2::types::ResourceType::Vpc);
    aws.ec2(home)
        .create_vpc()
        .cidr_block("10.9.0.0/16")
        .tag_specifications(tags)
        .send()
        .await
        .unwrap();

    let err = app::execute(Command::Deploy, &o)
        .await
        .expect_err("replace needs --allow-replace");
    let AppError::Failed(msg) = err else {
        panic!("unexpected error kind")
    };
    assert!(
        msg.contains(&format!("{} (cidr)", home_id("vpc"))) && msg.contains("--allow-replace"),
        "{msg}"
    );
    assert!(
        aws.s3(home)
            .head_bucket()
            .bucket(format!(
                "tap-bucket-{}-{env}-{}",
                common::r(home),
                crate::verify::ACCOUNT
            ))
            .send()
            .await
            .is_err(),
        "nothing was created"
    );
    assert!(
        !o.state_path.exists() || State::load(&o.state_path).unwrap().nodes.is_empty(),
        "nothing recorded"
    );

    o.allow_replace = true;
    let r = run(Command::Deploy, &o).await;
    assert!(
        r.action(&home_id("vpc"))
            .is_some_and(|a| matches!(a, Action::Replace { .. }))
    );
    crate::verify_stack::network(&aws, &i, home).await;
    run(Command::Destroy, &o).await;
    verify_edge::nothing_left(&aws, &i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_node_blocks_only_its_dependents_and_the_next_deploy_resumes() {
    let env = common::unique_env("iso");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let home = i.topology.home();
    let home_id = |kind: &str| node_id(&i, home, kind);
    let sec_id = |kind: &str| node_id(&i, first_secondary(&i), kind);
    let aws = raw().await;
    // Impossible for tap: the log bucket's name is taken by another stack's bucket.
    let s3 = aws.s3(home);
    let logs = format!("tap-cf-logs-{env}-{}", crate::verify::ACCOUNT);
    s3.create_bucket().bucket(&logs).send().await.unwrap();
    let foreign = aws_sdk_s3::types::Tag::builder()
        .key("tap:stack")
        .value("someone-else")
        .build()
        .unwrap();
    s3.put_bucket_tagging()
        .bucket(&logs)
        .tagging(aws_sdk_s3::types::Tagging::builder().tag_set(foreign).build().unwrap())
        .send()
        .await
        .unwrap();

    let first = app::execute(Command::Deploy, &o).await.unwrap();
    let outcome = |id: &str| first.nodes.iter().find(|n| n.id == id).unwrap().outcome.clone();
    assert!(matches!(outcome(&home_id("cf-log-bucket")), Outcome::Failed { code, .. } if code == "NotOwned"));
    for blocked in [
        home_id("cloudfront"),
        home_id("s3-bucket-policy"),
        sec_id("s3-bucket-policy"),
    ] {
        assert!(matches!(outcome(&blocked), Outcome::Blocked { .. }), "{blocked}");
    }
    assert_eq!(first.failures().len(), 4);
    assert_eq!(
        first.counts()["create"],
        tap::app::graph().len() - 4,
        "every independent node still ran"
    );
    let state = State::load(&o.state_path).unwrap();
    let failed = &state.nodes[&home_id("cf-log-bucket")];
    assert_eq!(failed.status, NodeStatus::Failed);
    assert!(
        failed.error.as_deref().unwrap().contains("NotOwned"),
        "{:?}",
        failed.error
    );

    // The cause goes away; the next deploy does only what is left.
    s3.delete_bucket().bucket(&logs).send().await.unwrap();
    let second = run(Command::Deploy, &o).await;
    let mut done = changed(&second);
    done.sort();
    let mut want = [
        home_id("cf-log-bucket"),
        home_id("cloudfront"),
        home_id("s3-bucket-policy"),
        sec_id("s3-bucket-policy"),
    ];
    want.sort();
    assert_eq!(done, want);
    assert_eq!(second.counts()["create"], 4);
    crate::stack::check_everything(&aws, &i).await;
    run(Command::Destroy, &o).await;
    verify_edge::nothing_left(&aws, &i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_state_file_adopts_the_current_objects() {
    let env = common::unique_env("stale");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let aws = raw().await;
    run(Command::Deploy, &o).await;
    let old = std::fs::read(&o.state_path).unwrap();
    run(Command::Destroy, &o).await;
    run(Command::Deploy, &o).await;
    let current = State::load(&o.state_path).unwrap();
    std::fs::write(&o.state_path, &old).unwrap();

    let r = run(Command::Deploy, &o).await;
    assert_eq!(r.counts()["create"], 0, "{:?}", changed(&r));
    let adopted = State::load(&o.state_path).unwrap();
    for (id, n) in &current.nodes {
        assert_eq!(
            adopted.nodes[id].physical_id, n.physical_id,
            "{id} points at the current object"
        );
    }
    run(Command::Destroy, &o).await;
    verify_edge::nothing_left(&aws, &i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_without_a_state_file_finds_everything_by_tag_or_name() {
    let env = common::unique_env("nost");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let aws = raw().await;
    run(Command::Deploy, &o).await;
    std::fs::remove_file(&o.state_path).unwrap();
    let r = run(Command::Destroy, &o).await;
    assert_eq!(r.counts()["delete"], tap::app::graph().len());
    verify_edge::nothing_left(&aws, &i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_deleted_outside_is_recreated_and_dependents_follow() {
    let env = common::unique_env("gone");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let home = i.topology.home();
    let home_id = |kind: &str| node_id(&i, home, kind);
    let aws = raw().await;
    run(Command::Deploy, &o).await;
    let state = State::load(&o.state_path).unwrap();
    // The internet gateway, detached and deleted by hand: the public route table must follow
    // the new one. (A NAT gateway would do too on AWS; moto never disassociates a deleted NAT
    // gateway's Elastic IP, so a new gateway cannot take it there.)
    let old = state.nodes[&home_id("internet-gateway")].physical_id.clone().unwrap();
    let vpc = state.nodes[&home_id("vpc")].physical_id.clone().unwrap();
    let ec2 = aws.ec2(home);
    ec2.detach_internet_gateway()
        .internet_gateway_id(&old)
        .vpc_id(&vpc)
        .send()
        .await
        .unwrap();
    ec2.delete_internet_gateway()
        .internet_gateway_id(&old)
        .send()
        .await
        .unwrap();

    let plan = run(Command::Plan, &o).await;
    assert!(plan.action(&home_id("internet-gateway")) == Some(&Action::Create));
    let r = run(Command::Deploy, &o).await;
    let mut done = changed(&r);
    done.sort();
    let mut want = [home_id("internet-gateway"), home_id("route-table-public")];
    want.sort();
    assert_eq!(done, want);
    let new = State::load(&o.state_path).unwrap().nodes[&home_id("internet-gateway")]
        .physical_id
        .clone()
        .unwrap();
    assert_ne!(new, old);
    crate::verify_stack::network(&aws, &i, home).await;
    let clean = run(Command::Plan, &o).await;
    assert!(changed(&clean).is_empty(), "{:?}", changed(&clean));
    let again = run(Command::Deploy, &o).await;
    assert_eq!(mutating(&again), Vec::<String>::new());
    run(Command::Destroy, &o).await;
    verify_edge::nothing_left(&aws, &i).await;
}

/// A node an older tap recorded, no longer in the graph: `plan` shows its deletion, `deploy`
/// deletes the recorded object (and nothing else) and forgets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_no_longer_in_the_graph_is_planned_and_deleted() {
    let env = common::unique_env("orph");
    let o = common::options(&env);
    let i = verify::inputs(&env);
    let home = i.topology.home();
    let home_id = |kind: &str| node_id(&i, home, kind);
    let aws = raw().await;
    run(Command::Deploy, &o).await;
    let sns = aws.sns(home);
    let legacy = sns
        .create_topic()
        .name(format!("tap-legacy-{env}"))
        .send()
        .await
        .unwrap()
        .topic_arn
        .unwrap();
    let mut state = State::load(&o.state_path).unwrap();
    let mut node = state.nodes[&home_id("sns-topic")].clone();
    node.physical_id = Some(legacy.clone());
    node.arn = Some(legacy.clone());
    state.nodes.insert(home_id("legacy-topic"), node);
    state.save(&o.state_path).unwrap();

    let plan = run(Command::Plan, &o).await;
    assert_eq!(changed(&plan), [home_id("legacy-topic")]);
    assert_eq!(plan.action(&home_id("legacy-topic")), Some(&Action::Delete));
    let r = run(Command::Deploy, &o).await;
    assert_eq!(changed(&r), [home_id("legacy-topic")]);
    assert!(
        sns.get_topic_attributes().topic_arn(&legacy).send().await.is_err(),
        "the legacy topic is deleted"
    );
    let current = State::load(&o.state_path).unwrap();
    assert!(!current.nodes.contains_key(&home_id("legacy-topic")));
    verify_edge::monitoring(&aws, &i, home, &verify::kms_key(&aws, &i, home).await).await;
    run(Command::Destroy, &o).await;
    verify_edge::nothing_left(&aws, &i).await;
}
