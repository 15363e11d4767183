//! `internet-gateway`: created with its tags, attached to the VPC.

use super::ec2::{self, Lookup};
use crate::aws::{Aws, SendExt};
use crate::engine::graph::node_id;
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Resource};
use aws_sdk_ec2::types::{InternetGateway as Igw, ResourceType};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct InternetGateway(pub Arc<Aws>);

fn to_live(g: Igw) -> Live {
    let id = g.internet_gateway_id.clone().unwrap_or_default();
    let vpc = g
        .attachments()
        .iter()
        .find_map(|a| a.vpc_id.clone())
        .unwrap_or_default();
    Live::new(&id)
        .attr("id", &id)
        .prop("vpc", vpc)
        .tags(ec2::tag_map_of(g.tags()))
}

#[async_trait::async_trait]
impl Resource for InternetGateway {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        Ok(Props::from([
            ("vpc".into(), json!(cx.attr(&node_id(cx.node.side, "vpc"), "id")?)),
            ("tags".into(), ec2::desired_tags(cx)),
        ]))
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

    async fn create(&self, cx: &NodeCx, _: &Props) -> Result<Live, NodeError> {
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

    async fn after_create(&self, cx: &NodeCx, live: &Live, d: &Props) -> Result<(), NodeError> {
        self.update(cx, live, d, &BTreeSet::from(["vpc".to_string()])).await
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, changed: &BTreeSet<String>) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        if changed.contains("vpc") {
            if let Some(old) = live.props.get("vpc").and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
                ec2.detach_internet_gateway()
                    .internet_gateway_id(&live.physical_id)
                    .vpc_id(old)
                    .send()
                    .await
                    .ok_on("DetachInternetGateway", &["Gateway.NotAttached"])?;
            }
            ec2.attach_internet_gateway()
                .internet_gateway_id(&live.physical_id)
                .vpc_id(d["vpc"].as_str().unwrap_or_default())
                .send()
                .await
                .ok_on("AttachInternetGateway", &["Resource.AlreadyAssociated"])?;
        }
        if changed.contains("tags") {
            ec2::retag(&self.0, cx, &live.physical_id).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        const GONE: &[&str] = &["InvalidInternetGatewayID.NotFound", "Gateway.NotAttached"];
        if let Some(vpc) = live.props.get("vpc").and_then(|v| v.as_str()).filter(|v| !v.is_empty()) {
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
