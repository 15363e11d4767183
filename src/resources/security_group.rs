//! `sg-app` (80/443 from anywhere, all egress) and `sg-db` (5432 from `sg-app`, no egress).

use super::cx::StackCx;
use super::ec2::{self, Lookup};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Resource};
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, SecurityGroup as Sg, UserIdGroupPair};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct SecurityGroup(pub Arc<Aws>);

/// One rule, flattened: protocol, port range, and a CIDR or security group id as the peer.
fn rule(proto: &str, from: i32, to: i32, peer: &str) -> Value {
    json!({"proto": proto, "from": from, "to": to, "peer": peer})
}

fn flatten(perms: &[IpPermission]) -> Vec<Value> {
    let mut out = Vec::new();
    for p in perms {
        let proto = p.ip_protocol.clone().unwrap_or_default();
        let (from, to) = if proto == "-1" {
            (-1, -1)
        } else {
            (p.from_port.unwrap_or(-1), p.to_port.unwrap_or(-1))
        };
        for r in p.ip_ranges() {
            out.push(rule(&proto, from, to, r.cidr_ip.as_deref().unwrap_or_default()));
        }
        for g in p.user_id_group_pairs() {
            out.push(rule(&proto, from, to, g.group_id.as_deref().unwrap_or_default()));
        }
    }
    sorted(out)
}

fn sorted(mut v: Vec<Value>) -> Vec<Value> {
    v.sort_by_key(|x| x.to_string());
    v.dedup();
    v
}

fn permission(r: &Value) -> IpPermission {
    let peer = r["peer"].as_str().unwrap_or_default();
    let proto = r["proto"].as_str().unwrap_or_default();
    let mut p = IpPermission::builder().ip_protocol(proto);
    if proto != "-1" {
        p = p
            .from_port(r["from"].as_i64().unwrap_or(0) as i32)
            .to_port(r["to"].as_i64().unwrap_or(0) as i32);
    }
    if peer.starts_with("sg-") {
        p.user_id_group_pairs(UserIdGroupPair::builder().group_id(peer).build())
            .build()
    } else {
        p.ip_ranges(IpRange::builder().cidr_ip(peer).build()).build()
    }
}

fn to_live(g: Sg) -> Live {
    let id = g.group_id.clone().unwrap_or_default();
    Live::new(&id)
        .attr("id", &id)
        .attr("name", g.group_name.clone().unwrap_or_default())
        .prop("vpc", g.vpc_id.clone().unwrap_or_default())
        .prop("name", g.group_name.clone().unwrap_or_default())
        .prop("ingress", json!(flatten(g.ip_permissions())))
        .prop("egress", json!(flatten(g.ip_permissions_egress())))
        .tags(ec2::tag_map_of(g.tags()))
}

fn group_name(cx: &NodeCx) -> String {
    match cx.node.kind {
        "sg-app" => format!("tap-app-{}", cx.inputs().env),
        _ => format!("tap-db-{}", cx.inputs().env),
    }
}

#[async_trait::async_trait]
impl Resource for SecurityGroup {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        let (ingress, egress) = match cx.node.kind {
            "sg-app" => (
                vec![rule("tcp", 80, 80, "0.0.0.0/0"), rule("tcp", 443, 443, "0.0.0.0/0")],
                vec![rule("-1", -1, -1, "0.0.0.0/0")],
            ),
            _ => (
                vec![rule("tcp", 5432, 5432, &cx.attr(&cx.local("sg-app"), "id")?)],
                vec![],
            ),
        };
        Ok(Props::from([
            ("vpc".into(), json!(cx.attr(&cx.local("vpc"), "id")?)),
            ("name".into(), json!(group_name(cx))),
            ("ingress".into(), json!(sorted(ingress))),
            ("egress".into(), json!(sorted(egress))),
            ("tags".into(), ec2::desired_tags(cx)),
        ]))
    }

    fn immutable(&self) -> &'static [&'static str] {
        &["vpc", "name"]
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let found = ec2::find(
            cx,
            |g: &Sg| g.tags(),
            |g: &Sg| g.group_id(),
            |l| {
                let req = match l {
                    Lookup::Id(id) => ec2.describe_security_groups().group_ids(id),
                    Lookup::Tags(f) => ec2.describe_security_groups().set_filters(Some(f)),
                };
                async move {
                    let out = req.send().await.absent_on(
                        "DescribeSecurityGroups",
                        &["InvalidGroup.NotFound", "InvalidGroupId.NotFound"],
                    )?;
                    Ok(out.and_then(|o| o.security_groups).unwrap_or_default())
                }
            },
        )
        .await?;
        Ok(found.map(|f| to_live(f.object).twins(f.twins)))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        let description = match cx.node.kind {
            "sg-app" => "TAP application instances",
            _ => "TAP database, reachable from the application only",
        };
        // Named within its VPC: a retry after a lost response answers InvalidGroup.Duplicate,
        // and the driver adopts the group if it carries this node's tags.
        let out = self
            .0
            .ec2(&cx.region)
            .create_security_group()
            .group_name(group_name(cx))
            .description(description)
            .vpc_id(d["vpc"].as_str().unwrap_or_default())
            .tag_specifications(ec2::tag_spec(cx, ResourceType::SecurityGroup))
            .send()
            .await
            .op("CreateSecurityGroup")?;
        let id = out.group_id.unwrap_or_default();
        // A new group has the default allow-all egress rule and no ingress.
        Ok(Live::new(&id)
            .attr("id", &id)
            .prop("ingress", json!([]))
            .prop("egress", json!([rule("-1", -1, -1, "0.0.0.0/0")])))
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, d: &Props) -> Result<(), NodeError> {
        // Rules already present (a retry, an adopted group) are answered Duplicate: fine.
        self.update(cx, live, d, &["ingress", "egress"].map(String::from).into())
            .await
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, changed: &BTreeSet<String>) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let id = &live.physical_id;
        for dir in ["ingress", "egress"] {
            if !changed.contains(dir) {
                continue;
            }
            let set = |v: Option<&Value>| -> BTreeSet<String> {
                v.and_then(Value::as_array)
                    .map(|a| a.iter().map(Value::to_string).collect())
                    .unwrap_or_default()
            };
            let (have, want) = (set(live.props.get(dir)), set(d.get(dir)));
            let perms = |s: Vec<&String>| -> Vec<IpPermission> {
                s.into_iter()
                    .map(|r| permission(&serde_json::from_str(r).expect("rule is JSON")))
                    .collect()
            };
            let add = perms(want.difference(&have).collect());
            let remove = perms(have.difference(&want).collect());
            if dir == "ingress" {
                if !add.is_empty() {
                    ec2.authorize_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(add))
                        .send()
                        .await
                        .ok_on("AuthorizeSecurityGroupIngress", &["InvalidPermission.Duplicate"])?;
                }
                if !remove.is_empty() {
                    ec2.revoke_security_group_ingress()
                        .group_id(id)
                        .set_ip_permissions(Some(remove))
                        .send()
                        .await
                        .ok_on("RevokeSecurityGroupIngress", &["InvalidPermission.NotFound"])?;
                }
            } else {
                if !add.is_empty() {
                    ec2.authorize_security_group_egress()
                        .group_id(id)
                        .set_ip_permissions(Some(add))
                        .send()
                        .await
                        .ok_on("AuthorizeSecurityGroupEgress", &["InvalidPermission.Duplicate"])?;
                }
                if !remove.is_empty() {
                    ec2.revoke_security_group_egress()
                        .group_id(id)
                        .set_ip_permissions(Some(remove))
                        .send()
                        .await
                        .ok_on("RevokeSecurityGroupEgress", &["InvalidPermission.NotFound"])?;
                }
            }
        }
        if changed.contains("tags") {
            ec2::retag(&self.0, cx, id).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        ec2.delete_security_group()
            .group_id(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteSecurityGroup", &["InvalidGroup.NotFound"])
    }
}
