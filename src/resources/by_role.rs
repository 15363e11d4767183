//! A kind whose object plays a role that follows the writer region (SPEC v3 "Roles"): the
//! database and its secret are the writer's in the writer region and replicas everywhere else.
//! One node kind, two implementations; which one runs is read from the topology at each call,
//! so that a failover (which moves the writer) never renames a node.

use super::cx::StackCx;
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Readiness, Resource};
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct ByRole {
    pub writer: Arc<dyn Resource>,
    pub replica: Arc<dyn Resource>,
}

impl ByRole {
    fn of(&self, cx: &NodeCx) -> &dyn Resource {
        match cx.topo().is_writer(&cx.node.region) {
            true => self.writer.as_ref(),
            false => self.replica.as_ref(),
        }
    }
}

#[async_trait::async_trait]
impl Resource for ByRole {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        self.of(cx).desired(cx).await
    }

    fn immutable(&self, cx: &NodeCx) -> &'static [&'static str] {
        self.of(cx).immutable(cx)
    }

    fn object(&self, cx: &NodeCx) -> String {
        self.of(cx).object(cx)
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        self.of(cx).read(cx).await
    }

    async fn create(&self, cx: &NodeCx, desired: &Props) -> Result<Live, NodeError> {
        self.of(cx).create(cx, desired).await
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, desired: &Props) -> Result<(), NodeError> {
        self.of(cx).after_create(cx, live, desired).await
    }

    async fn delete_twin(&self, cx: &NodeCx, physical_id: &str) -> Result<(), NodeError> {
        self.of(cx).delete_twin(cx, physical_id).await
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        desired: &Props,
        changed: &BTreeSet<String>,
    ) -> Result<(), NodeError> {
        self.of(cx).update(cx, live, desired, changed).await
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        self.of(cx).delete(cx, live).await
    }

    async fn ready(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        self.of(cx).ready(cx, live).await
    }

    async fn gone(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        self.of(cx).gone(cx, live).await
    }

    async fn prepare_delete(&self, cx: &NodeCx, live: &Live) -> Result<bool, NodeError> {
        self.of(cx).prepare_delete(cx, live).await
    }

    async fn deletable(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        self.of(cx).deletable(cx, live).await
    }

    fn waits_for_deletion(&self) -> bool {
        self.writer.waits_for_deletion() || self.replica.waits_for_deletion()
    }
}
