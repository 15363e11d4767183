//! `kms-alias`: `alias/tap-{r}-{env}` pointing at the region key.

use super::cx::StackCx;
use super::names;
use super::typed::{Kind, Observe, observed_of};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use std::sync::Arc;

pub struct KmsAlias(pub Arc<Aws>);

crate::spec! {
    /// The alias points at the region key.
    pub struct AliasSpec, AliasLive, AliasChanged {
        target_key_id: String,
    }
    immutable []
}

#[async_trait::async_trait]
impl Kind for KmsAlias {
    type Spec = AliasSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<AliasSpec, NodeError> {
        Ok(AliasSpec {
            target_key_id: cx.attr(&cx.local("kms-key"), "id")?,
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("alias {}", names::kms_alias(cx.inputs(), &cx.region))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let name = names::kms_alias(cx.inputs(), &cx.region);
        let aliases = super::kms_key::list_aliases(&self.0, &cx.region).await?;
        Ok(aliases
            .into_iter()
            .find(|a| a.alias_name.as_deref() == Some(name.as_str()))
            .map(|a| {
                Live::new(&name)
                    .arn(a.alias_arn.unwrap_or_default())
                    .attr("name", &name)
                    .observed(&AliasLive {
                        target_key_id: Some(a.target_key_id.unwrap_or_default()),
                    })
            }))
    }

    async fn create(&self, cx: &NodeCx, want: &AliasSpec) -> Result<Live, NodeError> {
        let name = names::kms_alias(cx.inputs(), &cx.region);
        let key = &want.target_key_id;
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

    async fn update(&self, cx: &NodeCx, live: &Live, want: &AliasSpec, _: &AliasChanged) -> Result<(), NodeError> {
        let key = &want.target_key_id;
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
        // SPEC v3: the alias of a key kept for a final snapshot is kept too.
        let key = observed_of::<AliasSpec>(live).target_key_id.unwrap_or_default();
        if !key.is_empty() {
            let snapshots = super::final_snapshots::encrypted_with(&self.0, cx, &key).await?;
            if !snapshots.is_empty() {
                return Err(super::final_snapshots::kept(
                    "DeleteAlias",
                    &format!("alias {}", live.physical_id),
                    &snapshots,
                ));
            }
        }
        self.0
            .kms(&cx.region)
            .delete_alias()
            .alias_name(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteAlias", &["NotFoundException"])
    }
}
