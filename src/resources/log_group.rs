//! `log-group`: the function's log group, created (or adopted) before the function so that
//! Lambda does not create it without retention (defect 7 of the reference).

use super::cx::StackCx;
use super::names;
use super::typed::{Kind, Observe, Spec, Tags};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use std::sync::Arc;

pub struct LogGroup(pub Arc<Aws>);

crate::spec! {
    /// SPEC: a week of retention.
    pub struct LogGroupSpec, LogGroupLive, LogGroupChanged {
        retention_days: i32,
        tags: Tags,
    }
    immutable []
}

#[async_trait::async_trait]
impl Kind for LogGroup {
    type Spec = LogGroupSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<LogGroupSpec, NodeError> {
        Ok(LogGroupSpec {
            retention_days: 7,
            tags: cx.tags(),
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("log group {}", names::log_group(cx.inputs(), &cx.region))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let name = names::log_group(cx.inputs(), &cx.region);
        let logs = self.0.logs(&cx.region);
        let out = logs
            .describe_log_groups()
            .log_group_name_prefix(&name)
            .send()
            .await
            .op("DescribeLogGroups")?;
        let Some(g) = out
            .log_groups()
            .iter()
            .find(|g| g.log_group_name.as_deref() == Some(name.as_str()))
            .cloned()
        else {
            return Ok(None);
        };
        // DescribeLogGroups returns the ARN with a trailing `:*`; tag APIs want it without.
        let arn = g.arn.clone().unwrap_or_default().trim_end_matches(":*").to_string();
        let tags = logs
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .op("ListTagsForResource")?;
        Ok(Some(
            Live::new(&name)
                .arn(&arn)
                .attr("name", &name)
                .observed(&LogGroupLive {
                    // No retention reads as null (never expire): a difference from 7.
                    retention_days: Some(g.retention_in_days.unwrap_or_default()),
                    ..Default::default()
                })
                .tags(tags.tags.unwrap_or_default().into_iter().collect()),
        ))
    }

    async fn create(&self, cx: &NodeCx, want: &LogGroupSpec) -> Result<Live, NodeError> {
        let name = names::log_group(cx.inputs(), &cx.region);
        self.0
            .logs(&cx.region)
            .create_log_group()
            .log_group_name(&name)
            .set_tags(Some(cx.tags().into_iter().collect()))
            .send()
            .await
            .ok_on("CreateLogGroup", &["ResourceAlreadyExistsException"])?;
        let live = Live::new(&name);
        self.update(cx, &live, want, &LogGroupSpec::all()).await?;
        self.read(cx)
            .await?
            .ok_or_else(|| NodeError::fatal("DescribeLogGroups", "NotFound", format!("{name} missing after create")))
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        want: &LogGroupSpec,
        changed: &LogGroupChanged,
    ) -> Result<(), NodeError> {
        let logs = self.0.logs(&cx.region);
        if changed.retention_days {
            logs.put_retention_policy()
                .log_group_name(&live.physical_id)
                .retention_in_days(want.retention_days)
                .send()
                .await
                .op("PutRetentionPolicy")?;
        }
        // After a create the ARN is not known yet: the create already tagged it.
        if changed.tags && live.arn.is_some() {
            let arn = live.arn.clone().unwrap_or_default();
            logs.tag_resource()
                .resource_arn(arn)
                .set_tags(Some(want.tags.clone().into_iter().collect()))
                .send()
                .await
                .op("TagResource")?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let logs = self.0.logs(&cx.region);
        logs.delete_log_group()
            .log_group_name(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteLogGroup", &["ResourceNotFoundException"])
    }
}
