//! IAM roles: `iam-replication-role`, `iam-ec2-role` (+ instance profile), `iam-lambda-role`.
//! One implementation; the kinds differ only in their [`RoleSpec`].

use super::cx::StackCx;
use super::typed::{Kind, Observe, Tags, observed_of};
use super::{names, policy, tag_map};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_iam::types::Tag;
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleKind {
    Replication,
    Ec2,
    Lambda,
}

pub struct IamRole(pub Arc<Aws>, pub RoleKind);

crate::spec! {
    /// A role's properties (the same set for every role kind): its trust and inline policy
    /// documents (normalized), the managed policies (sorted), whether it has an instance profile.
    pub struct IamRoleSpec, IamRoleLive, IamRoleChanged {
        trust: Value,
        /// Null when the role has no such inline policy.
        inline: Value,
        managed: Vec<String>,
        instance_profile: bool,
        tags: Tags,
    }
    immutable []
}

/// What distinguishes one role from another.
pub struct RoleSpec {
    pub name: String,
    pub service: &'static str,
    pub inline_name: &'static str,
    pub inline: Value,
    pub managed: Vec<String>,
    pub instance_profile: bool,
}

pub fn role_name(cx: &NodeCx, kind: RoleKind) -> String {
    let (i, r) = (cx.inputs(), cx.r());
    match kind {
        RoleKind::Replication => names::replication_role(i),
        RoleKind::Ec2 => format!("tap-ec2-{r}-{}", i.env),
        RoleKind::Lambda => format!("tap-replication-monitor-{r}-{}", i.env),
    }
}

/// The name of a role's inline policy.
pub fn inline_name(kind: RoleKind) -> &'static str {
    match kind {
        RoleKind::Replication => "tap-s3-replication",
        RoleKind::Ec2 => "tap-ec2-access",
        RoleKind::Lambda => "tap-replication-monitor",
    }
}

impl IamRole {
    async fn spec(&self, cx: &NodeCx) -> Result<RoleSpec, NodeError> {
        let name = role_name(cx, self.1);
        let t = cx.topo();
        let key = |region: &str| cx.attr(&t.id(region, "kms-key"), "arn");
        let here = cx.node.region.as_str();
        Ok(match self.1 {
            // SPEC v3: one role replicates every region's bucket to every other: each bucket
            // is a source and a destination, each key decrypts and encrypts.
            RoleKind::Replication => {
                let buckets: Vec<String> = t.regions().map(|r| names::bucket_arn(cx.inputs(), r)).collect();
                let objects: Vec<String> = buckets.iter().map(|b| format!("{b}/*")).collect();
                let keys = t.regions().map(key).collect::<Result<Vec<_>, _>>()?;
                RoleSpec {
                    name,
                    service: "s3.amazonaws.com",
                    inline_name: inline_name(RoleKind::Replication),
                    inline: policy::document(vec![
                        policy::allow(&["s3:GetReplicationConfiguration", "s3:ListBucket"], &buckets),
                        policy::allow(
                            &[
                                "s3:GetObjectVersionForReplication",
                                "s3:GetObjectVersionAcl",
                                "s3:GetObjectVersionTagging",
                            ],
                            &objects,
                        ),
                        policy::allow(
                            &["s3:ReplicateObject", "s3:ReplicateDelete", "s3:ReplicateTags"],
                            &objects,
                        ),
                        policy::allow(&["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"], &keys),
                    ]),
                    managed: vec![],
                    instance_profile: false,
                }
            }
            RoleKind::Ec2 => RoleSpec {
                name,
                service: "ec2.amazonaws.com",
                inline_name: inline_name(RoleKind::Ec2),
                inline: policy::document(vec![
                    policy::allow(
                        &["s3:GetObject", "s3:PutObject"],
                        &[format!("{}/*", names::bucket_arn(cx.inputs(), here))],
                    ),
                    policy::allow(&["kms:Decrypt", "kms:GenerateDataKey"], &[key(here)?]),
                ]),
                managed: vec!["arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy".into()],
                instance_profile: true,
            },
            RoleKind::Lambda => {
                let account = self.0.account_id(&cx.region).await?;
                let log_group = format!(
                    "arn:aws:logs:{}:{account}:log-group:{}",
                    cx.region,
                    names::log_group(cx.inputs(), here)
                );
                RoleSpec {
                    name,
                    service: "lambda.amazonaws.com",
                    inline_name: inline_name(RoleKind::Lambda),
                    inline: policy::document(vec![
                        policy::allow(
                            &["logs:CreateLogStream", "logs:PutLogEvents"],
                            &[log_group.clone(), format!("{log_group}:*")],
                        ),
                        policy::allow(&["sns:Publish"], &[cx.attr(&cx.local("sns-topic"), "arn")?]),
                        policy::allow(&["kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"], &[key(here)?]),
                    ]),
                    managed: vec![],
                    instance_profile: false,
                }
            }
        })
    }

    async fn describe(&self, cx: &NodeCx, name: &str, inline_name: &str) -> Result<Option<Live>, NodeError> {
        let iam = self.0.iam(&cx.region);
        let Some(role) = iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .absent_on("GetRole", &["NoSuchEntity"])?
            .and_then(|o| o.role)
        else {
            return Ok(None);
        };
        let trust = policy::parse(role.assume_role_policy_document.as_deref().unwrap_or_default());
        let inline = iam
            .get_role_policy()
            .role_name(name)
            .policy_name(inline_name)
            .send()
            .await
            .absent_on("GetRolePolicy", &["NoSuchEntity"])?
            .map(|p| policy::parse(&p.policy_document))
            .unwrap_or(Value::Null);
        let attached = iam
            .list_attached_role_policies()
            .role_name(name)
            .send()
            .await
            .op("ListAttachedRolePolicies")?;
        let mut managed: Vec<String> = attached
            .attached_policies()
            .iter()
            .filter_map(|p| p.policy_arn.clone())
            .collect();
        managed.sort();
        // moto: ListInstanceProfileTags is a 500; GetInstanceProfile serves on AWS and moto.
        let profile = iam
            .get_instance_profile()
            .instance_profile_name(name)
            .send()
            .await
            .absent_on("GetInstanceProfile", &["NoSuchEntity"])?
            .and_then(|o| o.instance_profile);
        let mut live = Live::new(name)
            .arn(&role.arn)
            .attr("name", name)
            .observed(&IamRoleLive {
                trust: Some(trust),
                inline: Some(inline),
                managed: Some(managed),
                instance_profile: Some(
                    profile
                        .as_ref()
                        .is_some_and(|p| p.roles.iter().any(|r| r.role_name == name)),
                ),
                tags: None,
            });
        if let Some(p) = profile {
            live = live
                .attr("instance_profile_arn", p.arn)
                .attr("instance_profile_name", p.instance_profile_name);
        }
        let tags = match role.tags {
            Some(t) => t,
            None => {
                iam.list_role_tags()
                    .role_name(name)
                    .send()
                    .await
                    .op("ListRoleTags")?
                    .tags
            }
        };
        Ok(Some(live.tags(tag_map(tags.into_iter().map(|t| (t.key, t.value))))))
    }

    fn iam_tags(cx: &NodeCx) -> Vec<Tag> {
        cx.tags()
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value"))
            .collect()
    }
}

#[async_trait::async_trait]
impl Kind for IamRole {
    type Spec = IamRoleSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<IamRoleSpec, NodeError> {
        let s = self.spec(cx).await?;
        let mut managed = s.managed.clone();
        managed.sort();
        Ok(IamRoleSpec {
            trust: policy::normalize(&policy::trust(s.service)),
            inline: policy::normalize(&s.inline),
            managed,
            instance_profile: s.instance_profile,
            tags: cx.tags(),
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("role {}", role_name(cx, self.1))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let name = role_name(cx, self.1);
        self.describe(cx, &name, inline_name(self.1)).await
    }

    async fn create(&self, cx: &NodeCx, _: &IamRoleSpec) -> Result<Live, NodeError> {
        let s = self.spec(cx).await?;
        // Named: a retry after a lost response answers EntityAlreadyExists, and the driver adopts
        // the role only if it carries this node's tags.
        self.0
            .iam(&cx.region)
            .create_role()
            .role_name(&s.name)
            .assume_role_policy_document(policy::trust(s.service).to_string())
            .set_tags(Some(Self::iam_tags(cx)))
            .send()
            .await
            .op("CreateRole")?;
        Ok(Live::new(&s.name).observed(&IamRoleLive {
            managed: Some(vec![]),
            ..Default::default()
        }))
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, want: &IamRoleSpec) -> Result<(), NodeError> {
        let changed = IamRoleChanged {
            inline: true,
            managed: true,
            instance_profile: true,
            ..Default::default()
        };
        self.update(cx, live, want, &changed).await
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        _: &IamRoleSpec,
        changed: &IamRoleChanged,
    ) -> Result<(), NodeError> {
        let s = self.spec(cx).await?;
        let iam = self.0.iam(&cx.region);
        let name = &live.physical_id;
        if changed.trust {
            iam.update_assume_role_policy()
                .role_name(name)
                .policy_document(policy::trust(s.service).to_string())
                .send()
                .await
                .op("UpdateAssumeRolePolicy")?;
        }
        if changed.inline {
            iam.put_role_policy()
                .role_name(name)
                .policy_name(s.inline_name)
                .policy_document(s.inline.to_string())
                .send()
                .await
                .op("PutRolePolicy")?;
        }
        if changed.managed {
            let have: BTreeSet<String> = observed_of::<IamRoleSpec>(live)
                .managed
                .unwrap_or_default()
                .into_iter()
                .collect();
            let want: BTreeSet<String> = s.managed.iter().cloned().collect();
            for arn in want.difference(&have) {
                iam.attach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .op("AttachRolePolicy")?;
            }
            for arn in have.difference(&want) {
                iam.detach_role_policy()
                    .role_name(name)
                    .policy_arn(arn)
                    .send()
                    .await
                    .ok_on("DetachRolePolicy", &["NoSuchEntity"])?;
            }
        }
        if changed.instance_profile && s.instance_profile {
            iam.create_instance_profile()
                .instance_profile_name(name)
                .set_tags(Some(Self::iam_tags(cx)))
                .send()
                .await
                .ok_on("CreateInstanceProfile", &["EntityAlreadyExists"])?;
            iam.add_role_to_instance_profile()
                .instance_profile_name(name)
                .role_name(name)
                .send()
                .await
                .ok_on("AddRoleToInstanceProfile", &["LimitExceeded", "EntityAlreadyExists"])?;
        }
        if changed.tags {
            iam.tag_role()
                .role_name(name)
                .set_tags(Some(Self::iam_tags(cx)))
                .send()
                .await
                .op("TagRole")?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        delete_role(&self.0, &cx.region, &live.physical_id).await
    }
}

/// SPEC: detach managed policies, delete inline policies, remove from instance profiles, delete
/// the profiles, then the role. Anything already gone counts as deleted.
pub async fn delete_role(aws: &Aws, region: &str, name: &str) -> Result<(), NodeError> {
    let iam = aws.iam(region);
    const GONE: &[&str] = &["NoSuchEntity"];
    let Some(attached) = iam
        .list_attached_role_policies()
        .role_name(name)
        .send()
        .await
        .absent_on("ListAttachedRolePolicies", GONE)?
    else {
        return Ok(());
    };
    for p in attached.attached_policies() {
        if let Some(arn) = &p.policy_arn {
            iam.detach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .ok_on("DetachRolePolicy", GONE)?;
        }
    }
    if let Some(inline) = iam
        .list_role_policies()
        .role_name(name)
        .send()
        .await
        .absent_on("ListRolePolicies", GONE)?
    {
        for p in inline.policy_names() {
            iam.delete_role_policy()
                .role_name(name)
                .policy_name(p)
                .send()
                .await
                .ok_on("DeleteRolePolicy", GONE)?;
        }
    }
    if let Some(profiles) = iam
        .list_instance_profiles_for_role()
        .role_name(name)
        .send()
        .await
        .absent_on("ListInstanceProfilesForRole", GONE)?
    {
        for p in profiles.instance_profiles() {
            let pn = &p.instance_profile_name;
            let removed = iam
                .remove_role_from_instance_profile()
                .instance_profile_name(pn)
                .role_name(name)
                .send()
                .await
                .ok_on("RemoveRoleFromInstanceProfile", GONE);
            if let Err(e) = removed {
                // A retry after a lost response finds the role already removed (moto then answers
                // 500): removed is removed. Anything else stands.
                let still = iam
                    .get_instance_profile()
                    .instance_profile_name(pn)
                    .send()
                    .await
                    .absent_on("GetInstanceProfile", GONE)?
                    .is_some_and(|p| {
                        p.instance_profile()
                            .is_some_and(|p| p.roles().iter().any(|r| r.role_name() == name))
                    });
                if still {
                    return Err(e);
                }
            }
            iam.delete_instance_profile()
                .instance_profile_name(pn)
                .send()
                .await
                .ok_on("DeleteInstanceProfile", GONE)?;
        }
    }
    // A profile named like the role but left without it (interrupted create) goes too.
    iam.delete_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
        .ok_on("DeleteInstanceProfile", GONE)?;
    iam.delete_role().role_name(name).send().await.ok_on("DeleteRole", GONE)
}
