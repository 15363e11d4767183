//! `route-table-public`, `route-table-private-{a,b}`, `route-table-database-{a,b}`: the default
//! route (internet gateway, NAT gateway, or none) and the subnet associations.

use super::cx::StackCx;
use super::ec2::{self, Lookup};
use super::typed::{Kind, Observe, Tags, observed_of};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_ec2::types::{ResourceType, RouteTable as Rt};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub struct RouteTable(pub Arc<Aws>);

crate::spec! {
    /// In the VPC: routes by destination CIDR (to a gateway id), the associated subnets sorted.
    pub struct RtSpec, RtLive, RtChanged {
        vpc: String,
        routes: BTreeMap<String, String>,
        subnets: Vec<String>,
        tags: Tags,
    }
    immutable [vpc]
}

pub const KINDS: [&str; 5] = [
    "route-table-public",
    "route-table-private-a",
    "route-table-private-b",
    "route-table-database-a",
    "route-table-database-b",
];

/// (default-route target node and attr, associated subnet kinds) of a route table kind.
pub fn layout(kind: &str) -> (Option<(&'static str, &'static str)>, &'static [&'static str]) {
    match kind {
        "route-table-public" => (
            Some(("internet-gateway", "id")),
            &["subnet-public-a", "subnet-public-b"],
        ),
        "route-table-private-a" => (Some(("nat-gateway", "id")), &["subnet-private-a"]),
        "route-table-private-b" => (Some(("nat-gateway", "id")), &["subnet-private-b"]),
        "route-table-database-a" => (None, &["subnet-database-a"]),
        "route-table-database-b" => (None, &["subnet-database-b"]),
        other => panic!("not a route table kind: {other}"),
    }
}

const DEFAULT: &str = "0.0.0.0/0";

fn to_live(t: Rt) -> Live {
    let id = t.route_table_id.clone().unwrap_or_default();
    let mut routes = BTreeMap::new();
    for r in t.routes() {
        // The VPC's local route is implicit and not ours.
        if r.gateway_id.as_deref() == Some("local") {
            continue;
        }
        let (Some(dest), Some(target)) = (
            r.destination_cidr_block.clone(),
            r.gateway_id.clone().or(r.nat_gateway_id.clone()),
        ) else {
            continue;
        };
        routes.insert(dest, target);
    }
    let mut live = Live::new(&id).attr("id", &id);
    let mut subnets = Vec::new();
    for a in t.associations() {
        if let (Some(s), Some(aid)) = (&a.subnet_id, &a.route_table_association_id) {
            subnets.push(s.clone());
            live = live.attr(&format!("association:{s}"), aid);
        }
    }
    subnets.sort();
    live.observed(&RtLive {
        vpc: Some(t.vpc_id.clone().unwrap_or_default()),
        routes: Some(routes),
        subnets: Some(subnets),
        tags: None,
    })
    .tags(ec2::tag_map_of(t.tags()))
}

#[async_trait::async_trait]
impl Kind for RouteTable {
    type Spec = RtSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<RtSpec, NodeError> {
        let (target, subnet_kinds) = layout(cx.node.kind);
        let mut routes = BTreeMap::new();
        if let Some((kind, attr)) = target {
            routes.insert(DEFAULT.into(), cx.attr(&cx.local(kind), attr)?);
        }
        let mut subnets = subnet_kinds
            .iter()
            .map(|k| cx.attr(&cx.local(k), "id"))
            .collect::<Result<Vec<_>, _>>()?;
        subnets.sort();
        Ok(RtSpec {
            vpc: cx.attr(&cx.local("vpc"), "id")?,
            routes,
            subnets,
            tags: ec2::desired_tag_map(cx),
        })
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let found = ec2::find(
            cx,
            |t: &Rt| t.tags(),
            |t: &Rt| t.route_table_id(),
            |l| {
                let req = match l {
                    Lookup::Id(id) => ec2.describe_route_tables().route_table_ids(id),
                    Lookup::Tags(f) => ec2.describe_route_tables().set_filters(Some(f)),
                };
                async move {
                    let out = req
                        .send()
                        .await
                        .absent_on("DescribeRouteTables", &["InvalidRouteTableID.NotFound"])?;
                    Ok(out.and_then(|o| o.route_tables).unwrap_or_default())
                }
            },
        )
        .await?;
        Ok(found.map(|f| to_live(f.object).twins(f.twins)))
    }

    async fn create(&self, cx: &NodeCx, want: &RtSpec) -> Result<Live, NodeError> {
        // ClientToken: a retry (the SDK's, or a rerun after a crash) returns the same table.
        let out = self
            .0
            .ec2(&cx.region)
            .create_route_table()
            .vpc_id(&want.vpc)
            .tag_specifications(ec2::tag_spec(cx, ResourceType::RouteTable))
            .client_token(cx.token(64))
            .send()
            .await
            .op("CreateRouteTable")?;
        Ok(to_live(out.route_table.ok_or_else(|| {
            NodeError::fatal("CreateRouteTable", "EmptyResponse", "no table")
        })?))
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, want: &RtSpec) -> Result<(), NodeError> {
        let changed = RtChanged {
            routes: true,
            subnets: true,
            ..Default::default()
        };
        self.update(cx, live, want, &changed).await
    }

    async fn update(&self, cx: &NodeCx, live: &Live, spec: &RtSpec, changed: &RtChanged) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let id = &live.physical_id;
        let observed = observed_of::<RtSpec>(live);
        if changed.routes {
            let have = observed.routes.unwrap_or_default();
            let want = &spec.routes;
            for (dest, target) in want {
                if have.get(dest) == Some(target) {
                    continue;
                }
                if have.contains_key(dest) {
                    self.delete_route(cx, id, dest).await?;
                }
                let mut req = ec2.create_route().route_table_id(id).destination_cidr_block(dest);
                req = if target.starts_with("nat-") {
                    req.nat_gateway_id(target)
                } else {
                    req.gateway_id(target)
                };
                // A retry after a lost response finds the route made by the first attempt.
                req.send().await.ok_on("CreateRoute", &["RouteAlreadyExists"])?;
            }
            for dest in have.keys().filter(|k| !want.contains_key(*k)) {
                self.delete_route(cx, id, dest).await?;
            }
        }
        if changed.subnets {
            let have: BTreeSet<String> = observed.subnets.unwrap_or_default().into_iter().collect();
            let want: BTreeSet<String> = spec.subnets.iter().cloned().collect();
            for s in want.difference(&have) {
                ec2.associate_route_table()
                    .route_table_id(id)
                    .subnet_id(s)
                    .send()
                    .await
                    .ok_on("AssociateRouteTable", &["Resource.AlreadyAssociated"])?;
            }
            for s in have.difference(&want) {
                if let Some(aid) = live.attrs.get(&format!("association:{s}")) {
                    self.disassociate(cx, aid).await?;
                }
            }
        }
        if changed.tags {
            ec2::retag(&self.0, cx, id).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        for (k, aid) in &live.attrs {
            if k.starts_with("association:") {
                self.disassociate(cx, aid).await?;
            }
        }
        ec2.delete_route_table()
            .route_table_id(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteRouteTable", &["InvalidRouteTableID.NotFound"])
    }
}

impl RouteTable {
    async fn delete_route(&self, cx: &NodeCx, table: &str, dest: &str) -> Result<(), NodeError> {
        let req = self
            .0
            .ec2(&cx.region)
            .delete_route()
            .route_table_id(table)
            .destination_cidr_block(dest);
        req.send().await.ok_on("DeleteRoute", &["InvalidRoute.NotFound"])
    }

    async fn disassociate(&self, cx: &NodeCx, association: &str) -> Result<(), NodeError> {
        let req = self
            .0
            .ec2(&cx.region)
            .disassociate_route_table()
            .association_id(association);
        req.send()
            .await
            .ok_on("DisassociateRouteTable", &["InvalidAssociationID.NotFound"])
    }
}
