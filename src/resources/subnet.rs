//! `subnet-{public,private,database}-{a,b}`: six subnets in the first two available AZs.

use super::cx::StackCx;
use super::ec2::{self, Lookup};
use super::typed::{Kind, Observe, Tags};
use super::vpc::second_octet;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, Subnet as Ec2Subnet};
use std::sync::Arc;

pub struct Subnet(pub Arc<Aws>);

crate::spec! {
    /// In the VPC, its CIDR and AZ from the layout; public subnets map public IPs on launch.
    pub struct SubnetSpec, SubnetLive, SubnetChanged {
        vpc: String,
        cidr: String,
        az: String,
        map_public_ip: bool,
        tags: Tags,
    }
    immutable [vpc, cidr, az]
}

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
        .observed(&SubnetLive {
            vpc: Some(s.vpc_id.clone().unwrap_or_default()),
            cidr: Some(s.cidr_block.clone().unwrap_or_default()),
            az: Some(az),
            map_public_ip: Some(s.map_public_ip_on_launch.unwrap_or(false)),
            tags: None,
        })
        .tags(ec2::tag_map_of(s.tags()))
}

#[async_trait::async_trait]
impl Kind for Subnet {
    type Spec = SubnetSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<SubnetSpec, NodeError> {
        let (cidr, az_index, public) = layout(cx.node.kind, second_octet(cx));
        let azs = ec2::first_two_azs(&self.0, &cx.region).await?;
        Ok(SubnetSpec {
            vpc: cx.attr(&cx.local("vpc"), "id")?,
            cidr,
            az: azs[az_index].clone(),
            map_public_ip: public,
            tags: ec2::desired_tag_map(cx),
        })
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

    async fn create(&self, cx: &NodeCx, want: &SubnetSpec) -> Result<Live, NodeError> {
        // CreateSubnet takes no idempotency token: no SDK retry (the driver looks it up).
        let out = self
            .0
            .ec2(&cx.region)
            .create_subnet()
            .vpc_id(&want.vpc)
            .cidr_block(&want.cidr)
            .availability_zone(&want.az)
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

    async fn after_create(&self, cx: &NodeCx, live: &Live, want: &SubnetSpec) -> Result<(), NodeError> {
        if want.map_public_ip {
            let changed = SubnetChanged {
                map_public_ip: true,
                ..Default::default()
            };
            self.update(cx, live, want, &changed).await?;
        }
        Ok(())
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        want: &SubnetSpec,
        changed: &SubnetChanged,
    ) -> Result<(), NodeError> {
        if changed.map_public_ip {
            let v = AttributeBooleanValue::builder().value(want.map_public_ip).build();
            self.0
                .ec2(&cx.region)
                .modify_subnet_attribute()
                .subnet_id(&live.physical_id)
                .map_public_ip_on_launch(v)
                .send()
                .await
                .op("ModifySubnetAttribute")?;
        }
        if changed.tags {
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
