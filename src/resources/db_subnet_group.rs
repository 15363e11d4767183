//! `db-subnet-group`: `tap-db-subnets-{env}` over the two database subnets.

use super::cx::StackCx;
use super::rds_tags;
use super::typed::{Kind, Observe, Tags};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use std::sync::Arc;

pub struct DbSubnetGroup(pub Arc<Aws>);

crate::spec! {
    /// The two database subnets, sorted.
    pub struct DbSubnetGroupSpec, DbSubnetGroupLive, DbSubnetGroupChanged {
        subnets: Vec<String>,
        tags: Tags,
    }
    immutable []
}

pub fn name(env: &str) -> String {
    format!("tap-db-subnets-{env}")
}

#[async_trait::async_trait]
impl Kind for DbSubnetGroup {
    type Spec = DbSubnetGroupSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<DbSubnetGroupSpec, NodeError> {
        let mut subnets = vec![
            cx.attr(&cx.local("subnet-database-a"), "id")?,
            cx.attr(&cx.local("subnet-database-b"), "id")?,
        ];
        subnets.sort();
        Ok(DbSubnetGroupSpec {
            subnets,
            tags: cx.tags(),
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("DB subnet group {}", name(&cx.inputs().env))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let n = name(&cx.inputs().env);
        let out = self
            .0
            .rds(&cx.region)
            .describe_db_subnet_groups()
            .db_subnet_group_name(&n)
            .send()
            .await;
        let Some(g) = out
            .absent_on("DescribeDBSubnetGroups", &["DBSubnetGroupNotFoundFault"])?
            .and_then(|o| o.db_subnet_groups.and_then(|v| v.into_iter().next()))
        else {
            return Ok(None);
        };
        let arn = g.db_subnet_group_arn.clone().unwrap_or_default();
        let mut subnets: Vec<String> = g.subnets().iter().filter_map(|s| s.subnet_identifier.clone()).collect();
        subnets.sort();
        let tags = rds_tags::list(&self.0, &cx.region, &arn).await?;
        Ok(Some(
            Live::new(&n)
                .arn(arn)
                .attr("name", &n)
                .observed(&DbSubnetGroupLive {
                    subnets: Some(subnets),
                    tags: None,
                })
                .tags(tags),
        ))
    }

    async fn create(&self, cx: &NodeCx, want: &DbSubnetGroupSpec) -> Result<Live, NodeError> {
        let n = name(&cx.inputs().env);
        self.0
            .rds(&cx.region)
            .create_db_subnet_group()
            .db_subnet_group_name(&n)
            .db_subnet_group_description(format!("TAP database subnets ({})", cx.inputs().env))
            .set_subnet_ids(Some(want.subnets.clone()))
            .set_tags(Some(rds_tags::tags(cx)))
            .send()
            .await
            .op("CreateDBSubnetGroup")?;
        self.read(cx).await?.ok_or_else(|| {
            NodeError::fatal(
                "DescribeDBSubnetGroups",
                "NotFound",
                format!("{n} missing after create"),
            )
        })
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        want: &DbSubnetGroupSpec,
        changed: &DbSubnetGroupChanged,
    ) -> Result<(), NodeError> {
        if changed.subnets {
            self.0
                .rds(&cx.region)
                .modify_db_subnet_group()
                .db_subnet_group_name(&live.physical_id)
                .set_subnet_ids(Some(want.subnets.clone()))
                .send()
                .await
                .op("ModifyDBSubnetGroup")?;
        }
        if changed.tags {
            rds_tags::retag(&self.0, cx, live.arn.as_deref().unwrap_or_default()).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let rds = self.0.rds(&cx.region);
        rds.delete_db_subnet_group()
            .db_subnet_group_name(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteDBSubnetGroup", &["DBSubnetGroupNotFoundFault"])
    }
}
