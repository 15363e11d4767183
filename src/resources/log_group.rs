//! `log-group`: the function's log group, created (or adopted) before the function so that
//! Lambda does not create it without retention (defect 7 of the reference).

use super::names;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Resource};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct LogGroup(pub Arc<Aws>);

#[async_trait::async_trait]
impl Resource for LogGroup {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        Ok(Props::from([
            ("retention_days".into(), json!(7)),
            ("tags".into(), json!(cx.tags())),
        ]))
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("log group {}", names::log_group(&cx.inputs, cx.node.side))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let name = names::log_group(&cx.inputs, cx.node.side);
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
                .prop(
                    "retention_days",
                    g.retention_in_days.map(|d| json!(d)).unwrap_or(json!(null)),
                )
                .tags(tags.tags.unwrap_or_default().into_iter().collect()),
        ))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        let name = names::log_group(&cx.inputs, cx.node.side);
        self.0
            .logs(&cx.region)
            .create_log_group()
            .log_group_name(&name)
            .set_tags(Some(cx.tags().into_iter().collect()))
            .send()
            .await
            .ok_on("CreateLogGroup", &["ResourceAlreadyExistsException"])?;
        let live = Live::new(&name);
        self.update(cx, &live, d, &BTreeSet::from(["retention_days".to_string()]))
            .await?;
        self.read(cx)
            .await?
            .ok_or_else(|| NodeError::fatal("DescribeLogGroups", "NotFound", format!("{name} missing after create")))
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, changed: &BTreeSet<String>) -> Result<(), NodeError> {
        let logs = self.0.logs(&cx.region);
        if changed.contains("retention_days") {
            let days = d["retention_days"].as_i64().unwrap_or(7) as i32;
            logs.put_retention_policy()
                .log_group_name(&live.physical_id)
                .retention_in_days(days)
                .send()
                .await
                .op("PutRetentionPolicy")?;
        }
        if changed.contains("tags") {
            let arn = live.arn.clone().unwrap_or_default();
            logs.tag_resource()
                .resource_arn(arn)
                .set_tags(Some(cx.tags().into_iter().collect()))
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
