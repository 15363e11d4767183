//! Shared by the EC2 kinds: tag specifications, ownership filters, tag maps, retagging.

use super::cx::StackCx;
use super::tag_map;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{NodeCx, NodeError};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use std::collections::BTreeMap;

pub fn tags(cx: &NodeCx) -> Vec<Tag> {
    let mut t: Vec<Tag> = cx
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    if let Some(name) = name_tag(cx) {
        t.push(Tag::builder().key("Name").value(name).build());
    }
    t
}

/// The `Name` tag: SPEC's VPC name, else the env and logical id (what the console shows).
pub fn name_tag(cx: &NodeCx) -> Option<String> {
    match cx.node.kind {
        "vpc" => Some(format!("tap-vpc-{}-{}", cx.r(), cx.inputs().env)),
        _ => Some(format!("tap-{}-{}", cx.inputs().env, cx.id())),
    }
}

/// The tags a node wants, as a map (with `Name`).
pub fn desired_tags(cx: &NodeCx) -> serde_json::Value {
    serde_json::json!(desired_tag_map(cx))
}

/// The tags an EC2 object of this node carries (SPEC's, ownership, and its `Name`).
pub fn desired_tag_map(cx: &NodeCx) -> BTreeMap<String, String> {
    tags(cx).into_iter().filter_map(|t| Some((t.key?, t.value?))).collect()
}

pub fn tag_spec(cx: &NodeCx, rt: ResourceType) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(tags(cx)))
        .build()
}

/// Filters that find the object of this node by its ownership tags.
pub fn owner_filters(cx: &NodeCx) -> Vec<Filter> {
    vec![
        Filter::builder()
            .name(format!("tag:{}", crate::config::STACK_TAG))
            .values(&cx.inputs().env)
            .build(),
        // Its id, or an id an earlier release tagged it with (several values: any matches).
        Filter::builder()
            .name(format!("tag:{}", crate::config::ID_TAG))
            .set_values(Some(cx.ids()))
            .build(),
    ]
}

pub fn filter(name: &str, value: &str) -> Filter {
    Filter::builder().name(name).values(value).build()
}

pub fn tag_map_of(t: &[Tag]) -> BTreeMap<String, String> {
    tag_map(t.iter().map(|t| (t.key.clone(), t.value.clone())))
}

/// Whether EC2 tags say this node owns the object (client-side check; moto ignores some tag
/// filters, e.g. on DescribeNatGateways).
pub fn owns(cx: &NodeCx, t: &[Tag]) -> bool {
    let m = tag_map_of(t);
    m.get(crate::config::STACK_TAG) == Some(&cx.inputs().env)
        && m.get(crate::config::ID_TAG).is_some_and(|id| cx.ids().contains(id))
}

pub async fn retag(aws: &Aws, cx: &NodeCx, resource_id: &str) -> Result<(), NodeError> {
    aws.ec2(&cx.region)
        .create_tags()
        .resources(resource_id)
        .set_tags(Some(tags(cx)))
        .send()
        .await
        .op("CreateTags")
        .map(|_| ())
}

/// The first two available AZs (zone type `availability-zone`) of the region, sorted by name.
/// Looked up once per region and run (six subnets ask).
pub async fn first_two_azs(aws: &Aws, region: &str) -> Result<[String; 2], NodeError> {
    let cell = aws
        .azs
        .lock()
        .expect("az cache")
        .entry(region.to_string())
        .or_default()
        .clone();
    cell.get_or_try_init(|| lookup_azs(aws, region)).await.cloned()
}

async fn lookup_azs(aws: &Aws, region: &str) -> Result<[String; 2], NodeError> {
    let out = aws
        .ec2(region)
        .describe_availability_zones()
        .filters(filter("state", "available"))
        // SPEC: never a Local or Wavelength Zone (an opted-in `us-east-1-bos-1a` sorts first).
        .filters(filter("zone-type", "availability-zone"))
        .send()
        .await
        .op("DescribeAvailabilityZones")?;
    let mut zones: Vec<String> = out
        .availability_zones()
        .iter()
        // Checked here too: an endpoint that ignores the filter must not slip one through.
        .filter(|z| z.zone_type().is_none_or(|t| t == "availability-zone"))
        .filter_map(|z| z.zone_name.clone())
        .collect();
    zones.sort();
    match zones.as_slice() {
        [a, b, ..] => Ok([a.clone(), b.clone()]),
        _ => Err(NodeError::fatal(
            "DescribeAvailabilityZones",
            "NotEnoughZones",
            format!("{region} has fewer than two available AZs"),
        )),
    }
}

/// How to look an object up: by the id in state, or by ownership tags.
pub enum Lookup {
    Id(String),
    Tags(Vec<Filter>),
}

/// The node's object and its twins (other objects carrying its ownership tags).
pub struct Found<T> {
    pub object: T,
    pub twins: Vec<String>,
}

/// Finds the node's object: the one with the id in state if it is still ours, else one found by
/// ownership tags. Every other object carrying the tags is a twin (a create sent twice, by an
/// older tap or by hand); when state names none of them, the one with the lowest id is kept
/// (EC2 gives most kinds no creation time, so the choice is deterministic rather than oldest).
/// Candidates are checked client-side with [`owns`].
pub async fn find<T, F, Fut>(
    cx: &NodeCx,
    tags_of: fn(&T) -> &[Tag],
    id_of: fn(&T) -> Option<&str>,
    describe: F,
) -> Result<Option<Found<T>>, NodeError>
where
    F: Fn(Lookup) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>, NodeError>>,
{
    let mut kept = None;
    if let Some(id) = cx.known_id() {
        kept = describe(Lookup::Id(id.to_string()))
            .await?
            .into_iter()
            .find(|o| owns(cx, tags_of(o)));
    }
    let mut tagged: Vec<T> = describe(Lookup::Tags(owner_filters(cx)))
        .await?
        .into_iter()
        .filter(|o| owns(cx, tags_of(o)))
        .collect();
    tagged.sort_by(|a, b| id_of(a).cmp(&id_of(b)));
    let object = match kept {
        Some(o) => o,
        None if tagged.is_empty() => return Ok(None),
        None => tagged.remove(0),
    };
    let keep = id_of(&object).map(str::to_string);
    let twins = tagged
        .iter()
        .filter_map(|o| id_of(o).map(str::to_string))
        .filter(|i| Some(i) != keep.as_ref())
        .collect();
    Ok(Some(Found { object, twins }))
}

/// The tag specification tap would send for logical id `id` (tests create look-alikes with it).
pub fn tag_spec_for(inputs: &crate::config::Inputs, id: &str, rt: ResourceType) -> TagSpecification {
    let tags = inputs
        .tags(id)
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect();
    TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(tags))
        .build()
}
