//! `subnet-{public,private,database}-{a,b}`: six subnets in the first two available AZs.

use super::cx::StackCx;
use super::ec2::{self, Lookup};
use super::vpc::second_octet;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Resource};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Subnet as Ec2Subnet};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct Subnet(pub Arc<Aws>);

pub const KINDS: [&str; 6] = [
    "subnet-public-a",
    "subnet-public-b",
    "subnet-private-a",
    "subnet-private-b",
    "subnet-database-a",
    "subnet-database-b",
];

/// (CIDR, AZ index 0/1, public) of a subnet kind in the VPC with second octet `x`.
pub fn layout(kind: &str, x: u8) -> (String, usize, bool) {
    match kind {
        "subnet-public-a" => (format!("10.{x}.0.0/24"), 0, true),
        "subnet-public-b" => (format!("10.{x}.1.0/24"), 1, true),
        "subnet-private-a" => (format!("10.{x}.2.0/24"), 0, false),
        "subnet-private-b" => (format!("10.{x}.3.0/24"), 1, false),
        "subnet-database-a" => (format!("10.{x}.4.0/28"), 0, false),
        "subnet-database-b" => (format!("10.{x}.4.16/28"), 1, false),
        other => panic!("not a subnet kind: {other}"),
    }
}

fn to_live(s: Ec2Subnet) -> Live {
    let id = s.subnet_id.clone().unwrap_or_default();
    let az = s.availability_zone.clone().unwrap_or_default();
    Live::new(&id)
        .attr("id", &id)
        .attr("az", &az)
        .prop("vpc", s.vpc_id.clone().unwrap_or_default())
        .prop("cidr", s.cidr_block.clone().unwrap_or_default())
        .prop("az", az)
        .prop("map_public_ip", s.map_public_ip_on_launch.unwrap_or(false))
        .tags(ec2::tag_map_of(s.tags()))
}

#[async_trait::async_trait]
impl Resource for Subnet {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        let (cidr, az_index, public) = layout(cx.node.kind, second_octet(cx));
        let azs = ec2::first_two_azs(&self.0, &cx.region).await?;
        Ok(Props::from([
            ("vpc".into(), json!(cx.attr(&cx.local("vpc"), "id")?)),
            ("cidr".into(), json!(cidr)),
            ("az".into(), json!(azs[az_index])),
            ("map_public_ip".into(), json!(public)),
            ("tags".into(), ec2::desired_tags(cx)),
        ]))
    }

    fn immutable(&self) -> &'static [&'static str] {
        &["vpc", "cidr", "az"]
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let found = ec2::find(
            cx,
            |s: &Ec2Subnet| s.tags(),
            |s: &Ec2Subnet| s.subnet_id(),
            |l| {
                let req = match l {
                    Lookup::Id(id) => ec2.describe_subnets().subnet_ids(id),
                    Lookup::Tags(f) => ec2.describe_subnets().set_filters(Some(f)),
                };
                async move {
                    Ok(req
                        .send()
                        .await
                        .absent_on("DescribeSubnets", &["InvalidSubnetID.NotFound"])?
                        .and_then(|o| o.subnets)
                        .unwrap_or_default())
                }
            },
        )
        .await?;
        Ok(found.map(|f| to_live(f.object).twins(f.twins)))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        // CreateSubnet takes no idempotency token: no SDK retry (the driver looks it up).
        let out = self
            .0
            .ec2(&cx.region)
            .create_subnet()
            .vpc_id(s("vpc"))
            .cidr_block(s("cidr"))
            .availability_zone(s("az"))
            .tag_specifications(ec2::tag_spec(cx, ResourceType::Subnet))
            .customize()
            .config_override(crate::aws::no_retry_ec2())
            .send()
            .await
            .op("CreateSubnet")?;
        Ok(to_live(out.subnet.ok_or_else(|| {
            NodeError::fatal("CreateSubnet", "EmptyResponse", "no subnet returned")
        })?))
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, d: &Props) -> Result<(), NodeError> {
        if d["map_public_ip"] == true {
            self.update(cx, live, d, &BTreeSet::from(["map_public_ip".to_string()]))
                .await?;
        }
        Ok(())
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, changed: &BTreeSet<String>) -> Result<(), NodeError> {
        if changed.contains("map_public_ip") {
            let v = AttributeBooleanValue::builder()
                .value(d["map_public_ip"] == true)
                .build();
            self.0
                .ec2(&cx.region)
                .modify_subnet_attribute()
                .subnet_id(&live.physical_id)
                .map_public_ip_on_launch(v)
                .send()
                .await
                .op("ModifySubnetAttribute")?;
        }
        if changed.contains("tags") {
            ec2::retag(&self.0, cx, &live.physical_id).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        ec2.delete_subnet()
            .subnet_id(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteSubnet", &["InvalidSubnetID.NotFound"])
    }
}
