//! `vpc`: the region's VPC (CIDRs differ per region so they can be peered; defect 9).

use super::cx::StackCx;
use super::ec2::{self, Lookup};
use super::typed::{Kind, Observe, Tags};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_ec2::types::{AttributeBooleanValue, ResourceType, VpcAttributeName};
use std::sync::Arc;

pub struct Vpc(pub Arc<Aws>);

crate::spec! {
    /// The region's CIDR, DNS support and hostnames on.
    pub struct VpcSpec, VpcLive, VpcChanged {
        cidr: String,
        dns_support: bool,
        dns_hostnames: bool,
        tags: Tags,
    }
    immutable [cidr]
}

/// `10.{index}.0.0/16`: the region's fixed index in the topology (home 0, secondaries 1..).
pub fn second_octet(cx: &NodeCx) -> u8 {
    cx.topo().index(&cx.node.region).unwrap_or(0) as u8
}

impl Vpc {
    async fn describe(&self, cx: &NodeCx, vpc: aws_sdk_ec2::types::Vpc) -> Result<Live, NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let id = vpc.vpc_id.clone().unwrap_or_default();
        let attr = |a: VpcAttributeName| ec2.describe_vpc_attribute().vpc_id(&id).attribute(a).send();
        let dns_support = attr(VpcAttributeName::EnableDnsSupport)
            .await
            .op("DescribeVpcAttribute")?
            .enable_dns_support
            .and_then(|v| v.value);
        let dns_hostnames = attr(VpcAttributeName::EnableDnsHostnames)
            .await
            .op("DescribeVpcAttribute")?
            .enable_dns_hostnames
            .and_then(|v| v.value);
        Ok(Live::new(&id)
            .attr("id", &id)
            .observed(&VpcLive {
                cidr: Some(vpc.cidr_block.clone().unwrap_or_default()),
                dns_support: Some(dns_support.unwrap_or(false)),
                dns_hostnames: Some(dns_hostnames.unwrap_or(false)),
                tags: None,
            })
            .tags(ec2::tag_map_of(vpc.tags())))
    }
}

#[async_trait::async_trait]
impl Kind for Vpc {
    type Spec = VpcSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<VpcSpec, NodeError> {
        Ok(VpcSpec {
            cidr: format!("10.{}.0.0/16", second_octet(cx)),
            dns_support: true,
            dns_hostnames: true,
            tags: ec2::desired_tag_map(cx),
        })
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let found = ec2::find(
            cx,
            |v: &aws_sdk_ec2::types::Vpc| v.tags(),
            |v: &aws_sdk_ec2::types::Vpc| v.vpc_id(),
            |l| {
                let req = match l {
                    Lookup::Id(id) => ec2.describe_vpcs().vpc_ids(id),
                    Lookup::Tags(f) => ec2.describe_vpcs().set_filters(Some(f)),
                };
                async move {
                    Ok(req
                        .send()
                        .await
                        .absent_on("DescribeVpcs", &["InvalidVpcID.NotFound"])?
                        .and_then(|o| o.vpcs)
                        .unwrap_or_default())
                }
            },
        )
        .await?;
        match found {
            Some(f) => Ok(Some(self.describe(cx, f.object).await?.twins(f.twins))),
            None => Ok(None),
        }
    }

    async fn create(&self, cx: &NodeCx, want: &VpcSpec) -> Result<Live, NodeError> {
        // CreateVpc takes no idempotency token: no SDK retry; the driver looks it up by tags
        // after an unknown outcome.
        let out = self
            .0
            .ec2(&cx.region)
            .create_vpc()
            .cidr_block(&want.cidr)
            .tag_specifications(ec2::tag_spec(cx, ResourceType::Vpc))
            .customize()
            .config_override(crate::aws::no_retry_ec2())
            .send()
            .await
            .op("CreateVpc")?;
        let vpc = out
            .vpc
            .ok_or_else(|| NodeError::fatal("CreateVpc", "EmptyResponse", "no VPC returned"))?;
        let id = vpc.vpc_id.clone().unwrap_or_default();
        Ok(Live::new(&id).attr("id", &id).tags(ec2::tag_map_of(vpc.tags())))
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, want: &VpcSpec) -> Result<(), NodeError> {
        // A new VPC has DNS support on and hostnames off; set both as desired.
        let changed = VpcChanged {
            dns_support: true,
            dns_hostnames: true,
            ..Default::default()
        };
        self.update(cx, live, want, &changed).await
    }

    async fn update(&self, cx: &NodeCx, live: &Live, want: &VpcSpec, changed: &VpcChanged) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let on = |v: bool| AttributeBooleanValue::builder().value(v).build();
        // One attribute per ModifyVpcAttribute call; support before hostnames.
        if changed.dns_support {
            ec2.modify_vpc_attribute()
                .vpc_id(&live.physical_id)
                .enable_dns_support(on(want.dns_support))
                .send()
                .await
                .op("ModifyVpcAttribute")?;
        }
        if changed.dns_hostnames {
            ec2.modify_vpc_attribute()
                .vpc_id(&live.physical_id)
                .enable_dns_hostnames(on(want.dns_hostnames))
                .send()
                .await
                .op("ModifyVpcAttribute")?;
        }
        if changed.tags {
            ec2::retag(&self.0, cx, &live.physical_id).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        self.0
            .ec2(&cx.region)
            .delete_vpc()
            .vpc_id(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteVpc", &["InvalidVpcID.NotFound"])
    }
}
