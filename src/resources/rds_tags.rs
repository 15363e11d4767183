//! Tags of RDS objects (subnet groups, instances): same API for both.

use super::cx::StackCx;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{NodeCx, NodeError};
use aws_sdk_rds::types::Tag;
use std::collections::BTreeMap;

pub fn tags(cx: &NodeCx) -> Vec<Tag> {
    cx.tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

pub fn map(t: &[Tag]) -> BTreeMap<String, String> {
    super::tag_map(t.iter().map(|t| (t.key.clone(), t.value.clone())))
}

pub async fn list(aws: &Aws, region: &str, arn: &str) -> Result<BTreeMap<String, String>, NodeError> {
    let out = aws
        .rds(region)
        .list_tags_for_resource()
        .resource_name(arn)
        .send()
        .await
        .op("ListTagsForResource")?;
    Ok(map(out.tag_list()))
}

pub async fn retag(aws: &Aws, cx: &NodeCx, arn: &str) -> Result<(), NodeError> {
    aws.rds(&cx.region)
        .add_tags_to_resource()
        .resource_name(arn)
        .set_tags(Some(tags(cx)))
        .send()
        .await
        .op("AddTagsToResource")
        .map(|_| ())
}
