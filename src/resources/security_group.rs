//! `sg-app` (80/443 from anywhere, all egress) and `sg-db` (5432 from `sg-app`, no egress).

use super::cx::StackCx;
use super::ec2::{self, Lookup};
use super::typed::{Kind, Observe, Tags, observed_of};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_ec2::types::{IpPermission, IpRange, ResourceType, SecurityGroup as Sg, UserIdGroupPair};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct SecurityGroup(pub Arc<Aws>);

/// One rule, flattened: protocol, port range, and a CIDR or security group id as the peer.
/// Fields in the order of their names, so that [`key`] is the rule's JSON with sorted keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    from: i32,
    peer: String,
    proto: String,
    to: i32,
}

crate::spec! {
    /// Named in the VPC; rules sorted (by [`key`]) and without duplicates.
    pub struct SgSpec, SgLive, SgChanged {
        vpc: String,
        name: String,
        ingress: Vec<Rule>,
        egress: Vec<Rule>,
        tags: Tags,
    }
    immutable [vpc, name]
}

fn rule(proto: &str, from: i32, to: i32, peer: &str) -> Rule {
    Rule {
        from,
        peer: peer.into(),
        proto: proto.into(),
        to,
    }
}

/// A rule's JSON text: rules are ordered and compared by it (the order state files hold).
fn key(r: &Rule) -> String {
    serde_json::to_string(r).expect("a rule serializes")
}

fn flatten(perms: &[IpPermission]) -> Vec<Rule> {
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

fn sorted(mut v: Vec<Rule>) -> Vec<Rule> {
    v.sort_by_key(key);
    v.dedup();
    v
}

fn permission(r: &Rule) -> IpPermission {
    let peer = r.peer.as_str();
    let proto = r.proto.as_str();
    let mut p = IpPermission::builder().ip_protocol(proto);
    if proto != "-1" {
        p = p.from_port(r.from).to_port(r.to);
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
        .observed(&SgLive {
            vpc: Some(g.vpc_id.clone().unwrap_or_default()),
            name: Some(g.group_name.clone().unwrap_or_default()),
            ingress: Some(flatten(g.ip_permissions())),
            egress: Some(flatten(g.ip_permissions_egress())),
            tags: None,
        })
        .tags(ec2::tag_map_of(g.tags()))
}

fn group_name(cx: &NodeCx) -> String {
    match cx.node.kind {
        "sg-app" => format!("tap-app-{}", cx.inputs().env),
        _ => format!("tap-db-{}", cx.inputs().env),
    }
}

#[async_trait::async_trait]
impl Kind for SecurityGroup {
    type Spec = SgSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<SgSpec, NodeError> {
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
        Ok(SgSpec {
            vpc: cx.attr(&cx.local("vpc"), "id")?,
            name: group_name(cx),
            ingress: sorted(ingress),
            egress: sorted(egress),
            tags: ec2::desired_tag_map(cx),
        })
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

    async fn create(&self, cx: &NodeCx, want: &SgSpec) -> Result<Live, NodeError> {
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
            .vpc_id(&want.vpc)
            .tag_specifications(ec2::tag_spec(cx, ResourceType::SecurityGroup))
            .send()
            .await
            .op("CreateSecurityGroup")?;
        let id = out.group_id.unwrap_or_default();
        // A new group has the default allow-all egress rule and no ingress.
        Ok(Live::new(&id).attr("id", &id).observed(&SgLive {
            ingress: Some(vec![]),
            egress: Some(vec![rule("-1", -1, -1, "0.0.0.0/0")]),
            ..Default::default()
        }))
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, want: &SgSpec) -> Result<(), NodeError> {
        // Rules already present (a retry, an adopted group) are answered Duplicate: fine.
        let changed = SgChanged {
            ingress: true,
            egress: true,
            ..Default::default()
        };
        self.update(cx, live, want, &changed).await
    }

    async fn update(&self, cx: &NodeCx, live: &Live, want: &SgSpec, changed: &SgChanged) -> Result<(), NodeError> {
        let ec2 = self.0.ec2(&cx.region);
        let id = &live.physical_id;
        let observed = observed_of::<SgSpec>(live);
        let dirs = [
            (true, changed.ingress, observed.ingress, &want.ingress),
            (false, changed.egress, observed.egress, &want.egress),
        ];
        for (ingress, changed_dir, have, want) in dirs {
            if !changed_dir {
                continue;
            }
            // Rules by their JSON text: the sets are compared, and sent, in that order.
            let set = |v: &[Rule]| -> BTreeMap<String, Rule> { v.iter().map(|r| (key(r), r.clone())).collect() };
            let (have, want) = (set(&have.unwrap_or_default()), set(want));
            let perms = |s: Vec<&Rule>| -> Vec<IpPermission> { s.into_iter().map(permission).collect() };
            let add = perms(
                want.iter()
                    .filter(|(k, _)| !have.contains_key(*k))
                    .map(|(_, r)| r)
                    .collect(),
            );
            let remove = perms(
                have.iter()
                    .filter(|(k, _)| !want.contains_key(*k))
                    .map(|(_, r)| r)
                    .collect(),
            );
            if ingress {
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
        if changed.tags {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_the_json_objects_of_the_previous_release_in_the_same_order() {
        let before = |proto: &str, from: i32, to: i32, peer: &str| serde_json::json!({"proto": proto, "from": from, "to": to, "peer": peer});
        let rules = [
            ("tcp", 80, 80, "0.0.0.0/0"),
            ("tcp", 443, 443, "0.0.0.0/0"),
            ("-1", -1, -1, "0.0.0.0/0"),
            ("tcp", 5432, 5432, "sg-0123"),
            ("tcp", 80, 80, "0.0.0.0/0"),
        ];
        let mut old: Vec<serde_json::Value> = rules.iter().map(|&(p, f, t, x)| before(p, f, t, x)).collect();
        old.sort_by_key(|x| x.to_string());
        old.dedup();
        let new = sorted(rules.iter().map(|&(p, f, t, x)| rule(p, f, t, x)).collect());
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            serde_json::Value::Array(old.clone())
        );
        let keys: Vec<String> = new.iter().map(key).collect();
        assert_eq!(keys, old.iter().map(|x| x.to_string()).collect::<Vec<_>>());
    }
}
