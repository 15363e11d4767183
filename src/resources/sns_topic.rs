//! `sns-topic`: `tap-replication-alerts-{r}-{env}`, encrypted with the region key, no subscriptions.

use crate::aws::{Aws, SendExt};
use crate::engine::graph::node_id;
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Resource};
use aws_sdk_sns::types::Tag;
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct SnsTopic(pub Arc<Aws>);

pub fn topic_name(cx: &NodeCx) -> String {
    format!("tap-replication-alerts-{}-{}", cx.inputs.r(cx.node.side), cx.inputs.env)
}

fn sns_tags(cx: &NodeCx) -> Vec<Tag> {
    cx.tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value"))
        .collect()
}

#[async_trait::async_trait]
impl Resource for SnsTopic {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        Ok(Props::from([
            (
                "display_name".into(),
                json!(format!("TAP Replication Alerts - {}", cx.region)),
            ),
            (
                "kms_key".into(),
                json!(cx.attr(&node_id(cx.node.side, "kms-key"), "arn")?),
            ),
            ("tags".into(), json!(cx.tags())),
        ]))
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("topic {}", topic_name(cx))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let account = self.0.account_id(&cx.region).await?;
        let arn = format!("arn:aws:sns:{}:{account}:{}", cx.region, topic_name(cx));
        let sns = self.0.sns(&cx.region);
        let Some(out) = sns
            .get_topic_attributes()
            .topic_arn(&arn)
            .send()
            .await
            .absent_on("GetTopicAttributes", &["NotFound", "NotFoundException"])?
        else {
            return Ok(None);
        };
        let attrs = out.attributes.unwrap_or_default();
        let tags = sns
            .list_tags_for_resource()
            .resource_arn(&arn)
            .send()
            .await
            .op("ListTagsForResource")?;
        let tags = super::tag_map(tags.tags().iter().map(|t| (t.key.clone(), t.value.clone())));
        Ok(Some(
            Live::new(&arn)
                .arn(&arn)
                .attr("name", topic_name(cx))
                .prop("display_name", attrs.get("DisplayName").cloned().unwrap_or_default())
                .prop("kms_key", attrs.get("KmsMasterKeyId").cloned().unwrap_or_default())
                .tags(tags),
        ))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        let out = self
            .0
            .sns(&cx.region)
            .create_topic()
            .name(topic_name(cx))
            .attributes("DisplayName", s("display_name"))
            .attributes("KmsMasterKeyId", s("kms_key"))
            .set_tags(Some(sns_tags(cx)))
            .send()
            .await
            .op("CreateTopic")?;
        let arn = out.topic_arn.unwrap_or_default();
        Ok(Live::new(&arn).arn(&arn).attr("name", topic_name(cx)))
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, changed: &BTreeSet<String>) -> Result<(), NodeError> {
        let sns = self.0.sns(&cx.region);
        for (key, attr) in [("display_name", "DisplayName"), ("kms_key", "KmsMasterKeyId")] {
            if changed.contains(key) {
                let v = d[key].as_str().unwrap_or_default();
                sns.set_topic_attributes()
                    .topic_arn(&live.physical_id)
                    .attribute_name(attr)
                    .attribute_value(v)
                    .send()
                    .await
                    .op("SetTopicAttributes")?;
            }
        }
        if changed.contains("tags") {
            sns.tag_resource()
                .resource_arn(&live.physical_id)
                .set_tags(Some(sns_tags(cx)))
                .send()
                .await
                .op("TagResource")?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        self.0
            .sns(&cx.region)
            .delete_topic()
            .topic_arn(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteTopic", &["NotFound"])
    }
}
