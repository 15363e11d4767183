//! `internet-gateway`: created with its tags, attached to the VPC.

use super::cx::StackCx;
use super::ec2::{self, Lookup};
use super::typed::{Kind, Observe, Tags, observed_of};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_ec2::types::{InternetGateway as Igw, ResourceType};
use std::sync::Arc;

pub struct InternetGateway(pub Arc<Aws>);

crate::spec! {
    /// Attached to the region's VPC.
    pub struct IgwSpec, IgwLive, IgwChanged {
        vpc: String,
        tags: Tags,
    }
    immutable []
}

fn to_live(g: Igw) -> Live {
    let id = g.internet_gateway_id.clone().unwrap_or_default();
    let vpc = g
        .attachments()
        .iter()
        .find_map(|a| a.vpc_id.clone())
        .unwrap_or_default();
    Live::new(&id)
        .attr("id", &id)
        .observed(&IgwLive {
            vpc: Some(vpc),
            tags: None,
        })
        .tags(ec2::tag_map_of(g.tags()))
}

/// The VPC the gateway is attached to, as read (empty: none).
fn attached_vpc(live: &Live) -> Option<String> {
    observed_of::<IgwSpec>(live).vpc.filter(|v| !v.is_empty())
}

#[async_trait::async_trait]
impl Kind for InternetGateway {
    type Spec = IgwSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<IgwSpec, NodeError> {
        Ok(IgwSpec {
            vpc: cx.attr(&cx.local("vpc"), "id")?,
            tags: ec2::desired_tag_map(cx),
        })
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let found = ec2::find(
            cx,
            |g: &Igw| g.tags(),
            |g: &Igw| g.internet_gateway_id(),
            |l| {
                let req = match l {
                    Lookup::Id(id) => ec2.describe_internet_gateways().internet_gateway_ids(id),
                    Lookup::Tags(f) => ec2.describe_internet_gateways().set_filters(Some(f)),
                };
                async move {
                    let out = req
                        .send()
                        .await
                        .absent_on("DescribeInternetGateways", &["InvalidInternetGatewayID.NotFound"])?;
                    Ok(out.and_then(|o| o.internet_gateways).unwrap_or_default())
                }
            },
        )
        .await?;
        Ok(found.map(|f| to_live(f.object).twins(f.twins)))
    }

    async fn create(&self, cx: &NodeCx, _: &IgwSpec) -> Result<Live, NodeError> {
        // No idempotency token: no SDK retry (the driver looks it up by tags).
        let out = self
            .0
            .ec2(&cx.region)
            .create_internet_gateway()
            .tag_specifications(ec2::tag_spec(cx, ResourceType::InternetGateway))
            .customize()
            .config_override(crate::aws::no_retry_ec2())
            .send()
            .await
            .op("CreateInternetGateway")?;
        Ok(to_live(out.internet_gateway.ok_or_else(|| {
            NodeError::fatal("CreateInternetGateway", "EmptyResponse", "no gateway")
        })?))
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, want: &IgwSpec) -> Result<(), NodeError> {
        let changed = IgwChanged {
            vpc: true,
            ..Default::default()
        };
        self.update(cx, live, want, &changed).await
    }

    async fn update(&self, cx: &NodeCx, live: &Live, want: &IgwSpec, changed: &IgwChanged) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        if changed.vpc {
            if let Some(old) = attached_vpc(live) {
                ec2.detach_internet_gateway()
                    .internet_gateway_id(&live.physical_id)
                    .vpc_id(old)
                    .send()
                    .await
                    .ok_on("DetachInternetGateway", &["Gateway.NotAttached"])?;
            }
            ec2.attach_internet_gateway()
                .internet_gateway_id(&live.physical_id)
                .vpc_id(&want.vpc)
                .send()
                .await
                .ok_on("AttachInternetGateway", &["Resource.AlreadyAssociated"])?;
        }
        if changed.tags {
            ec2::retag(&self.0, cx, &live.physical_id).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        const GONE: &[&str] = &["InvalidInternetGatewayID.NotFound", "Gateway.NotAttached"];
        if let Some(vpc) = attached_vpc(live) {
            ec2.detach_internet_gateway()
                .internet_gateway_id(&live.physical_id)
                .vpc_id(vpc)
                .send()
                .await
                .ok_on("DetachInternetGateway", GONE)?;
        }
        ec2.delete_internet_gateway()
            .internet_gateway_id(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteInternetGateway", GONE)
    }
}
