//! `sns-topic`: `tap-replication-alerts-{r}-{env}`, encrypted with the region key, no subscriptions.

use super::cx::StackCx;
use super::typed::{Kind, Observe, Tags};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_sns::types::Tag;
use std::sync::Arc;

pub struct SnsTopic(pub Arc<Aws>);

crate::spec! {
    /// SPEC: a display name naming the region, the region key, no subscriptions.
    pub struct TopicSpec, TopicLive, TopicChanged {
        display_name: String,
        kms_key: String,
        tags: Tags,
    }
    immutable []
}

pub fn topic_name(cx: &NodeCx) -> String {
    format!("tap-replication-alerts-{}-{}", cx.r(), cx.inputs().env)
}

fn sns_tags(tags: &Tags) -> Vec<Tag> {
    tags.clone()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value"))
        .collect()
}

#[async_trait::async_trait]
impl Kind for SnsTopic {
    type Spec = TopicSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<TopicSpec, NodeError> {
        Ok(TopicSpec {
            display_name: format!("TAP Replication Alerts - {}", cx.region),
            kms_key: cx.attr(&cx.local("kms-key"), "arn")?,
            tags: cx.tags(),
        })
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
                .observed(&TopicLive {
                    display_name: Some(attrs.get("DisplayName").cloned().unwrap_or_default()),
                    kms_key: Some(
                        super::kms_ref::KnownKeys::local(cx)
                            .observed(attrs.get("KmsMasterKeyId").map(String::as_str).unwrap_or_default()),
                    ),
                    tags: None,
                })
                .tags(tags),
        ))
    }

    async fn create(&self, cx: &NodeCx, want: &TopicSpec) -> Result<Live, NodeError> {
        let out = self
            .0
            .sns(&cx.region)
            .create_topic()
            .name(topic_name(cx))
            .attributes("DisplayName", &want.display_name)
            .attributes("KmsMasterKeyId", &want.kms_key)
            .set_tags(Some(sns_tags(&want.tags)))
            .send()
            .await
            .op("CreateTopic")?;
        let arn = out.topic_arn.unwrap_or_default();
        Ok(Live::new(&arn).arn(&arn).attr("name", topic_name(cx)))
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        want: &TopicSpec,
        changed: &TopicChanged,
    ) -> Result<(), NodeError> {
        let sns = self.0.sns(&cx.region);
        for (changed, attr, v) in [
            (changed.display_name, "DisplayName", &want.display_name),
            (changed.kms_key, "KmsMasterKeyId", &want.kms_key),
        ] {
            if changed {
                sns.set_topic_attributes()
                    .topic_arn(&live.physical_id)
                    .attribute_name(attr)
                    .attribute_value(v)
                    .send()
                    .await
                    .op("SetTopicAttributes")?;
            }
        }
        if changed.tags {
            sns.tag_resource()
                .resource_arn(&live.physical_id)
                .set_tags(Some(sns_tags(&want.tags)))
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
