//! Tests of the reconcile driver: waits follow the node's policy; ownership in plain words.

#[cfg(test)]
mod wait_tests {
    use crate::reconcile::*;
    use crate::resource::{Live, NodeCx, NodeError, Props, Readiness, Resource, test_cx};
    use crate::state::State;
    use crate::store::StateStore;
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::time::Instant;

    /// A kind that never becomes ready.
    struct Forever;

    #[async_trait::async_trait]
    impl Resource for Forever {
        async fn desired(&self, _: &NodeCx) -> Result<Props, NodeError> {
            Ok(Props::new())
        }
        async fn read(&self, _: &NodeCx) -> Result<Option<Live>, NodeError> {
            Ok(None)
        }
        async fn create(&self, _: &NodeCx, _: &Props) -> Result<Live, NodeError> {
            Ok(Live::new("x-1"))
        }
        async fn update(&self, _: &NodeCx, _: &Live, _: &Props, _: &BTreeSet<String>) -> Result<(), NodeError> {
            Ok(())
        }
        async fn delete(&self, _: &NodeCx, _: &Live) -> Result<(), NodeError> {
            Ok(())
        }
        async fn ready(&self, _: &NodeCx, _: &Live) -> Result<Readiness, NodeError> {
            Ok(Readiness::Pending("creating".into()))
        }
    }

    /// Regression: `--max-wait` reached only the kinds that carried a wait policy of their own.
    /// The driver now waits as long as the node's context says, whatever the kind.
    #[tokio::test(start_paused = true)]
    async fn the_wait_is_the_one_the_stack_gives() {
        let dir = std::env::temp_dir().join(format!("tap-wait-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = Arc::new(StateStore::new(dir.join("state.json"), State::new(), false));
        let driver = Driver::new(store, 2, Arc::default(), false);
        for minutes in [1, 3] {
            let mut cx = test_cx(&format!("primary/forever-{minutes}"), "forever");
            cx.wait = crate::policy::WaitPolicy::minutes(minutes);
            let t0 = Instant::now();
            let e = driver.deploy(&Forever, &cx).await.unwrap_err();
            assert_eq!(e.code, "WaitTimeout", "{e}");
            let waited = t0.elapsed();
            assert!(
                waited >= Duration::from_secs(minutes * 60) && waited < Duration::from_secs(minutes * 60 + 31),
                "waited {waited:?} for a {minutes}-minute policy"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A node the stack holds (a failover's roles not yet re-protected) is neither read nor
    /// changed by plan or deploy: skipped with the stack's reason.
    #[tokio::test(start_paused = true)]
    async fn a_held_node_is_skipped_with_its_reason_and_never_touched() {
        let store = Arc::new(StateStore::new(
            std::env::temp_dir().join("tap-unused-held.json"),
            State::new(),
            true,
        ));
        let mut driver = Driver::new(store, 2, Arc::default(), false);
        let cx = test_cx("primary/forever", "forever");
        driver.held.insert(cx.id().to_string(), "reprotect pending".into());
        for r in [driver.plan(&Forever, &cx).await, driver.deploy(&Forever, &cx).await] {
            assert_eq!(
                r.unwrap(),
                Action::Skip {
                    reason: "reprotect pending".into()
                },
                "Forever would have created (plan) or waited forever (deploy)"
            );
        }
    }
}

#[cfg(test)]
mod ownership_tests {
    use crate::reconcile::ownership_tags;
    use std::collections::BTreeMap;

    /// Regression: the refusal printed Rust's debug form (`tap:stack=Some("x") tap:id=None`).
    #[test]
    fn a_foreign_objects_tags_read_as_plain_words() {
        let t = BTreeMap::from([("tap:stack".to_string(), "someone-else".to_string())]);
        assert_eq!(ownership_tags(&t), "tap:stack=someone-else, no tap:id tag");
        assert_eq!(ownership_tags(&BTreeMap::new()), "no tap:stack tag, no tap:id tag");
    }
}
