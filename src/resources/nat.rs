//! `nat-eip` and `nat-gateway`: one Elastic IP and one NAT gateway in `subnet-public-a`.
//! The gateway is waited for (`available` before its routes, `deleted` before the EIP goes).

use super::cx::StackCx;
use super::ec2::{self, Lookup};
use super::typed::{Kind, Observe, Tags};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Readiness};
use aws_sdk_ec2::types::{Address, DomainType, NatGateway as Ngw, NatGatewayState, ResourceType};
use std::sync::Arc;

pub struct NatEip(pub Arc<Aws>);
pub struct NatGateway(pub Arc<Aws>);

crate::spec! {
    /// An Elastic IP for the VPC: only its tags.
    pub struct EipSpec, EipLive, EipChanged {
        tags: Tags,
    }
    immutable []
}

crate::spec! {
    /// In `subnet-public-a`, with the `nat-eip` allocation.
    pub struct NatSpec, NatLive, NatChanged {
        subnet: String,
        allocation: String,
        tags: Tags,
    }
    immutable [subnet, allocation]
}

fn eip_live(a: Address) -> Live {
    let id = a.allocation_id.clone().unwrap_or_default();
    Live::new(&id)
        .attr("allocation_id", &id)
        .attr("public_ip", a.public_ip.clone().unwrap_or_default())
        .tags(ec2::tag_map_of(a.tags()))
}

#[async_trait::async_trait]
impl Kind for NatEip {
    type Spec = EipSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<EipSpec, NodeError> {
        Ok(EipSpec {
            tags: ec2::desired_tag_map(cx),
        })
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let found = ec2::find(
            cx,
            |a: &Address| a.tags(),
            |a: &Address| a.allocation_id(),
            |l| {
                let req = match l {
                    Lookup::Id(id) => ec2.describe_addresses().allocation_ids(id),
                    Lookup::Tags(f) => ec2.describe_addresses().set_filters(Some(f)),
                };
                async move {
                    let out = req
                        .send()
                        .await
                        .absent_on("DescribeAddresses", &["InvalidAllocationID.NotFound"])?;
                    Ok(out.and_then(|o| o.addresses).unwrap_or_default())
                }
            },
        )
        .await?;
        Ok(found.map(|f| eip_live(f.object).twins(f.twins)))
    }

    async fn create(&self, cx: &NodeCx, _: &EipSpec) -> Result<Live, NodeError> {
        let out = self
            .0
            .ec2(&cx.region)
            .allocate_address()
            .domain(DomainType::Vpc)
            .tag_specifications(ec2::tag_spec(cx, ResourceType::ElasticIp))
            // No idempotency token: no SDK retry (the driver looks it up by tags).
            .customize()
            .config_override(crate::aws::no_retry_ec2())
            .send()
            .await
            .op("AllocateAddress")?;
        let id = out.allocation_id.unwrap_or_default();
        Ok(Live::new(&id)
            .attr("allocation_id", &id)
            .attr("public_ip", out.public_ip.unwrap_or_default())
            .tags(cx.tags()))
    }

    async fn update(&self, cx: &NodeCx, live: &Live, _: &EipSpec, _: &EipChanged) -> Result<(), NodeError> {
        ec2::retag(&self.0, cx, &live.physical_id).await
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        ec2.release_address()
            .allocation_id(&live.physical_id)
            .send()
            .await
            .ok_on("ReleaseAddress", &["InvalidAllocationID.NotFound"])
    }
}

fn nat_live(g: Ngw) -> Live {
    let id = g.nat_gateway_id.clone().unwrap_or_default();
    let alloc = g
        .nat_gateway_addresses()
        .iter()
        .find_map(|a| a.allocation_id.clone())
        .unwrap_or_default();
    let state = g.state.as_ref().map(|s| s.as_str().to_string()).unwrap_or_default();
    Live::new(&id)
        .attr("id", &id)
        .attr("status", state)
        .observed(&NatLive {
            subnet: Some(g.subnet_id.clone().unwrap_or_default()),
            allocation: Some(alloc),
            tags: None,
        })
        .tags(ec2::tag_map_of(g.tags()))
}

impl NatGateway {
    async fn describe(&self, cx: &NodeCx, l: Lookup) -> Result<Vec<Ngw>, NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let req = match l {
            Lookup::Id(id) => ec2.describe_nat_gateways().nat_gateway_ids(id),
            // moto ignores tag filters here; `ec2::find` checks the tags client-side anyway.
            Lookup::Tags(f) => ec2.describe_nat_gateways().set_filter(Some(f)),
        };
        let out = req.send().await.absent_on(
            "DescribeNatGateways",
            &["NatGatewayNotFound", "InvalidNatGatewayID.NotFound"],
        )?;
        Ok(out.and_then(|o| o.nat_gateways).unwrap_or_default())
    }
}

#[async_trait::async_trait]
impl Kind for NatGateway {
    type Spec = NatSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<NatSpec, NodeError> {
        Ok(NatSpec {
            subnet: cx.attr(&cx.local("subnet-public-a"), "id")?,
            allocation: cx.attr(&cx.local("nat-eip"), "allocation_id")?,
            tags: ec2::desired_tag_map(cx),
        })
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        // A gateway that is deleted (or failed) is no gateway; one still deleting is returned
        // so that destroy waits for it.
        let found = ec2::find(
            cx,
            |g: &Ngw| g.tags(),
            |g: &Ngw| g.nat_gateway_id(),
            |l| async move {
                let all = self.describe(cx, l).await?;
                Ok(all
                    .into_iter()
                    .filter(|g| !matches!(g.state, Some(NatGatewayState::Deleted) | Some(NatGatewayState::Failed)))
                    .collect())
            },
        )
        .await?;
        Ok(found.map(|f| nat_live(f.object).twins(f.twins)))
    }

    async fn create(&self, cx: &NodeCx, want: &NatSpec) -> Result<Live, NodeError> {
        let out = self
            .0
            .ec2(&cx.region)
            .create_nat_gateway()
            .subnet_id(&want.subnet)
            .allocation_id(&want.allocation)
            .tag_specifications(ec2::tag_spec(cx, ResourceType::Natgateway))
            .client_token(cx.token(64))
            .send()
            .await
            .op("CreateNatGateway")?;
        Ok(nat_live(out.nat_gateway.ok_or_else(|| {
            NodeError::fatal("CreateNatGateway", "EmptyResponse", "no gateway")
        })?))
    }

    async fn update(&self, cx: &NodeCx, live: &Live, _: &NatSpec, _: &NatChanged) -> Result<(), NodeError> {
        ec2::retag(&self.0, cx, &live.physical_id).await
    }

    async fn ready(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        let g = self
            .describe(cx, Lookup::Id(live.physical_id.clone()))
            .await?
            .into_iter()
            .next();
        Ok(match g.and_then(|g| g.state) {
            Some(NatGatewayState::Available) => Readiness::Ready,
            Some(NatGatewayState::Failed) => Readiness::Failed(format!("NAT gateway {} failed", live.physical_id)),
            Some(s) => Readiness::Pending(s.as_str().to_string()),
            None => Readiness::Pending("not visible yet".into()),
        })
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        ec2.delete_nat_gateway()
            .nat_gateway_id(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteNatGateway", &["NatGatewayNotFound"])
    }

    async fn gone(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        let g = self
            .describe(cx, Lookup::Id(live.physical_id.clone()))
            .await?
            .into_iter()
            .next();
        Ok(match g.and_then(|g| g.state) {
            None | Some(NatGatewayState::Deleted) => Readiness::Ready,
            Some(s) => Readiness::Pending(s.as_str().to_string()),
        })
    }

    fn waits_for_deletion(&self) -> bool {
        true
    }
}
