//! `kms-alias`: `alias/tap-{r}-{env}` pointing at the region key.

use super::names;
use crate::aws::{Aws, SendExt};
use crate::engine::graph::node_id;
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Resource};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct KmsAlias(pub Arc<Aws>);

#[async_trait::async_trait]
impl Resource for KmsAlias {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        let key = cx.attr(&node_id(cx.node.side, "kms-key"), "id")?;
        Ok(Props::from([("target_key_id".into(), json!(key))]))
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("alias {}", names::kms_alias(&cx.inputs, cx.node.side))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let name = names::kms_alias(&cx.inputs, cx.node.side);
        let aliases = super::kms_key::list_aliases(&self.0, &cx.region).await?;
        Ok(aliases
            .into_iter()
            .find(|a| a.alias_name.as_deref() == Some(name.as_str()))
            .map(|a| {
                Live::new(&name)
                    .arn(a.alias_arn.unwrap_or_default())
                    .attr("name", &name)
                    .prop("target_key_id", a.target_key_id.unwrap_or_default())
            }))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        let name = names::kms_alias(&cx.inputs, cx.node.side);
        let key = d["target_key_id"].as_str().unwrap_or_default();
        self.0
            .kms(&cx.region)
            .create_alias()
            .alias_name(&name)
            .target_key_id(key)
            .send()
            .await
            .op("CreateAlias")?;
        self.read(cx)
            .await?
            .ok_or_else(|| NodeError::fatal("ListAliases", "NotFound", format!("{name} missing after CreateAlias")))
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, _: &BTreeSet<String>) -> Result<(), NodeError> {
        let key = d["target_key_id"].as_str().unwrap_or_default();
        self.0
            .kms(&cx.region)
            .update_alias()
            .alias_name(&live.physical_id)
            .target_key_id(key)
            .send()
            .await
            .op("UpdateAlias")
            .map(|_| ())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        self.0
            .kms(&cx.region)
            .delete_alias()
            .alias_name(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteAlias", &["NotFoundException"])
    }
}
