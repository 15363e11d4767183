//! `kms-key`: the region's symmetric key, its policy and rotation.

use super::cx::StackCx;
use super::typed::{Kind, Observe, Tags};
use super::{names, policy, tag_map};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_kms::types::{KeyState, Tag};
use serde_json::{Value, json};
use std::sync::Arc;

pub struct KmsKey(pub Arc<Aws>);

crate::spec! {
    /// SPEC: a description naming the region, yearly rotation, the key policy below.
    pub struct KeySpec, KeyLive, KeyChanged {
        description: String,
        rotation: bool,
        /// The key policy, normalized (see [`policy::normalize`]).
        policy: Value,
        tags: Tags,
    }
    immutable []
}

const SERVICE_ACTIONS: &[&str] = &[
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncrypt*",
    "kms:GenerateDataKey*",
    "kms:DescribeKey",
];

/// The key policy of SPEC's `kms-key` row.
pub fn key_policy(account: &str, region: &str) -> Value {
    let services: Vec<String> = ["ec2", "autoscaling", "rds", "s3", "sns", "lambda"]
        .iter()
        .map(|s| format!("{s}.amazonaws.com"))
        .chain([format!("logs.{region}.amazonaws.com")])
        .collect();
    let mut slr_actions = SERVICE_ACTIONS.to_vec();
    slr_actions.push("kms:CreateGrant");
    policy::document(vec![
        json!({"Sid": "EnableRootAccount", "Effect": "Allow",
               "Principal": {"AWS": format!("arn:aws:iam::{account}:root")},
               "Action": "kms:*", "Resource": "*"}),
        json!({"Sid": "AllowServices", "Effect": "Allow",
               "Principal": {"Service": services},
               "Action": SERVICE_ACTIONS, "Resource": "*"}),
        json!({"Sid": "AllowCloudFrontDecrypt", "Effect": "Allow",
               "Principal": {"Service": "cloudfront.amazonaws.com"},
               "Action": "kms:Decrypt", "Resource": "*",
               "Condition": {"StringEquals": {"aws:SourceAccount": account}}}),
        json!({"Sid": "AllowAutoScalingServiceLinkedRole", "Effect": "Allow",
               "Principal": {"AWS": format!("arn:aws:iam::{account}:role/aws-service-role/autoscaling.amazonaws.com/AWSServiceRoleForAutoScaling")},
               "Action": slr_actions, "Resource": "*"}),
    ])
}

impl KmsKey {
    /// SPEC: the Auto Scaling service-linked role exists before a key policy names it (KMS
    /// rejects a policy naming a principal that does not exist). Once per run; "already
    /// exists" is success.
    async fn ensure_autoscaling_slr(&self, region: &str) -> Result<(), NodeError> {
        self.0
            .autoscaling_slr
            .get_or_try_init(|| async {
                let r = self
                    .0
                    .iam(region)
                    .create_service_linked_role()
                    .aws_service_name("autoscaling.amazonaws.com")
                    .send()
                    .await;
                match r.op("CreateServiceLinkedRole") {
                    Ok(_) => Ok(()),
                    Err(e) if e.code == "InvalidInput" && e.message.contains("taken") => Ok(()),
                    Err(e) if e.code == "EntityAlreadyExists" => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .await
            .map(|_| ())
    }

    async fn describe(&self, region: &str, key_id: &str) -> Result<Option<Live>, NodeError> {
        let kms = self.0.kms(region);
        let Some(out) = kms
            .describe_key()
            .key_id(key_id)
            .send()
            .await
            .absent_on("DescribeKey", &["NotFoundException"])?
        else {
            return Ok(None);
        };
        let Some(md) = out.key_metadata else { return Ok(None) };
        // A key pending deletion counts as gone (SPEC "Destroy").
        if matches!(
            md.key_state,
            Some(KeyState::PendingDeletion) | Some(KeyState::PendingReplicaDeletion)
        ) {
            return Ok(None);
        }
        let id = md.key_id;
        let rotation = kms
            .get_key_rotation_status()
            .key_id(&id)
            .send()
            .await
            .op("GetKeyRotationStatus")?
            .key_rotation_enabled;
        let pol = kms
            .get_key_policy()
            .key_id(&id)
            .policy_name("default")
            .send()
            .await
            .op("GetKeyPolicy")?
            .policy
            .unwrap_or_default();
        let tags = kms
            .list_resource_tags()
            .key_id(&id)
            .send()
            .await
            .op("ListResourceTags")?
            .tags
            .unwrap_or_default();
        let arn = md.arn.unwrap_or_default();
        Ok(Some(
            Live::new(&id)
                .arn(arn)
                .attr("id", &id)
                .observed(&KeyLive {
                    description: Some(md.description.unwrap_or_default()),
                    rotation: Some(rotation),
                    policy: Some(policy::parse(&pol)),
                    tags: None,
                })
                .tags(tag_map(tags.into_iter().map(|t| (t.tag_key, t.tag_value)))),
        ))
    }
}

#[async_trait::async_trait]
impl Kind for KmsKey {
    type Spec = KeySpec;

    async fn desired(&self, cx: &NodeCx) -> Result<KeySpec, NodeError> {
        let account = self.0.account_id(&cx.region).await?;
        Ok(KeySpec {
            description: names::key_description(&cx.region),
            rotation: true,
            policy: policy::normalize(&key_policy(&account, &cx.region)),
            tags: cx.tags(),
        })
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        if let Some(id) = cx.known_id()
            && let Some(l) = self.describe(&cx.region, id).await?
        {
            return Ok(Some(l));
        }
        let kms = self.0.kms(&cx.region);
        // By alias, then by ownership tags.
        let alias = names::kms_alias(cx.inputs(), &cx.region);
        let aliases = list_aliases(&self.0, &cx.region).await?;
        if let Some(target) = aliases
            .iter()
            .find(|a| a.alias_name.as_deref() == Some(alias.as_str()))
            .and_then(|a| a.target_key_id.clone())
            && let Some(l) = self.describe(&cx.region, &target).await?
            && cx.owns(&l) != Some(false)
        {
            return Ok(Some(l));
        }
        let keys = kms
            .list_keys()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .op("ListKeys")?;
        let mut found = Vec::new();
        for k in keys {
            let Some(id) = k.key_id else { continue };
            let tags = kms
                .list_resource_tags()
                .key_id(&id)
                .send()
                .await
                .absent_on("ListResourceTags", &["NotFoundException", "AccessDeniedException"])?;
            let owned = tags.and_then(|t| t.tags).is_some_and(|t| {
                let m = tag_map(t.into_iter().map(|t| (t.tag_key, t.tag_value)));
                m.get(crate::config::STACK_TAG) == Some(&cx.inputs().env)
                    && m.get(crate::config::ID_TAG).is_some_and(|id| cx.ids().contains(id))
            });
            if owned && let Some(l) = self.describe(&cx.region, &id).await? {
                found.push(l);
            }
        }
        // Several keys tagged for this node (a CreateKey sent twice by an older tool): keep the
        // first ListKeys returns, the others are twins. Only this full scan sees them: it runs
        // when neither state nor the alias names a key.
        let mut found = found.into_iter();
        Ok(found.next().map(|l| {
            let twins = found.map(|t| t.physical_id).collect();
            l.twins(twins)
        }))
    }

    async fn create(&self, cx: &NodeCx, want: &KeySpec) -> Result<Live, NodeError> {
        self.ensure_autoscaling_slr(&cx.region).await?;
        let policy = key_policy(&self.0.account_id(&cx.region).await?, &cx.region).to_string();
        // CreateKey takes no idempotency token: no SDK retry; after an unknown outcome the
        // driver looks for a key tagged for this node first.
        let out = self
            .0
            .kms(&cx.region)
            .create_key()
            .description(&want.description)
            .policy(policy)
            .set_tags(Some(kms_tags(cx)))
            .customize()
            .config_override(crate::aws::no_retry_kms())
            .send()
            .await
            .op("CreateKey")?;
        let m = out
            .key_metadata
            .ok_or_else(|| NodeError::fatal("CreateKey", "EmptyResponse", "no key returned"))?;
        let mut live = Live::new(&m.key_id).attr("id", &m.key_id);
        if let Some(arn) = m.arn {
            live = live.arn(arn);
        }
        Ok(live)
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, _: &KeySpec) -> Result<(), NodeError> {
        self.0
            .kms(&cx.region)
            .enable_key_rotation()
            .key_id(&live.physical_id)
            .send()
            .await
            .op("EnableKeyRotation")
            .map(|_| ())
    }

    async fn update(&self, cx: &NodeCx, live: &Live, want: &KeySpec, changed: &KeyChanged) -> Result<(), NodeError> {
        let kms = self.0.kms(&cx.region);
        let id = &live.physical_id;
        if changed.policy {
            self.ensure_autoscaling_slr(&cx.region).await?;
            let doc = key_policy(&self.0.account_id(&cx.region).await?, &cx.region);
            kms.put_key_policy()
                .key_id(id)
                .policy_name("default")
                .policy(doc.to_string())
                .send()
                .await
                .op("PutKeyPolicy")?;
        }
        if changed.description {
            let desc = &want.description;
            kms.update_key_description()
                .key_id(id)
                .description(desc)
                .send()
                .await
                .op("UpdateKeyDescription")?;
        }
        if changed.rotation {
            kms.enable_key_rotation()
                .key_id(id)
                .send()
                .await
                .op("EnableKeyRotation")?;
        }
        if changed.tags {
            kms.tag_resource()
                .key_id(id)
                .set_tags(Some(kms_tags(cx)))
                .send()
                .await
                .op("TagResource")?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        // SPEC v3: a key that encrypts a final snapshot is kept.
        let arn = live.arn.clone().unwrap_or_else(|| live.physical_id.clone());
        let snapshots = super::final_snapshots::encrypted_with(&self.0, cx, &arn).await?;
        if !snapshots.is_empty() {
            return Err(super::final_snapshots::kept(
                "ScheduleKeyDeletion",
                &format!("key {}", live.physical_id),
                &snapshots,
            ));
        }
        // moto: ScheduleKeyDeletion with a key ARN is a 500; the key id works on AWS and moto.
        self.0
            .kms(&cx.region)
            .schedule_key_deletion()
            .key_id(&live.physical_id)
            .pending_window_in_days(7)
            .send()
            .await
            .ok_on(
                "ScheduleKeyDeletion",
                &["NotFoundException", "KMSInvalidStateException"],
            )
    }
}

/// Every alias of the region (paged).
pub async fn list_aliases(aws: &Aws, region: &str) -> Result<Vec<aws_sdk_kms::types::AliasListEntry>, NodeError> {
    aws.kms(region)
        .list_aliases()
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .op("ListAliases")
}

fn kms_tags(cx: &NodeCx) -> Vec<Tag> {
    cx.tags()
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .tag_key(k)
                .tag_value(v)
                .build()
                .expect("tag has key and value")
        })
        .collect()
}
