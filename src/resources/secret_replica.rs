//! `db-secret` outside the writer region: the replica of the writer's secret in this region,
//! encrypted with this region's key, `InSync` (SPEC v3: "so a failover has its credentials").
//!
//! A replica is managed through the writer's secret (Secrets Manager API reference,
//! ReplicateSecretToRegions / RemoveRegionsFromReplication; its state is the primary's
//! `ReplicationStatus` for the region: `InProgress`, `InSync` or `Failed` with a message). A
//! replica carries the primary's tags, so it is found by its ARN (the primary's with the region
//! swapped), never by its tags.

use super::cx::StackCx;
use super::typed::{Kind, Observe};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Readiness};
use aws_sdk_secretsmanager::types::{ReplicaRegionType, ReplicationStatusType, StatusType};
use std::sync::Arc;

pub struct SecretReplica(pub Arc<Aws>);

const GONE: &[&str] = &["ResourceNotFoundException"];

crate::spec! {
    /// The replica's key: this region's.
    pub struct ReplicaSpec, ReplicaLive, ReplicaChanged {
        kms_key: String,
    }
    immutable []
}

fn failed(s: &ReplicationStatusType) -> bool {
    s.status() == Some(&StatusType::Failed)
}

/// The ARN of the secret `arn` (in its own region) as replicated to `region`: same name and
/// suffix (Secrets Manager User Guide, "Replicate an AWS Secrets Manager secret").
pub fn replica_arn(arn: &str, region: &str) -> String {
    let mut parts: Vec<&str> = arn.splitn(5, ':').collect();
    if parts.len() == 5 {
        parts[3] = region;
    }
    parts.join(":")
}

/// ReplicateSecretToRegions for `regions`, sent once: no SDK resend. It takes no idempotency
/// token, and a resend after a lost response asks again for a region already replicated (the
/// emulator then listed the region twice, the second entry Failed "already exists": CI of stop
/// 19, fault seed 3). After an error, callers read the primary's replication status before they
/// send again (the driver's create protocol looks the replica up). `force_overwrite`:
/// ForceOverwriteReplicaSecret, overwrite a secret of the same name in a destination Region
/// (Secrets Manager API reference, ReplicateSecretToRegions).
pub async fn replicate_once(
    sm: &aws_sdk_secretsmanager::Client,
    arn: &str,
    regions: Vec<ReplicaRegionType>,
    force_overwrite: bool,
) -> Result<(), NodeError> {
    sm.replicate_secret_to_regions()
        .secret_id(arn)
        .set_add_replica_regions(Some(regions))
        .force_overwrite_replica_secret(force_overwrite)
        .customize()
        .config_override(crate::aws::no_retry_secrets())
        .send()
        .await
        .op("ReplicateSecretToRegions")
        .map(|_| ())
}

impl SecretReplica {
    /// The writer's secret: its region and ARN, from its node (a dependency of this one), else
    /// looked up by name (a destroy after the writer's node is gone from state, a lost state).
    /// `None`: the writer's secret does not exist (nor, then, its replicas).
    async fn primary(&self, cx: &NodeCx) -> Result<Option<(String, String)>, NodeError> {
        let writer = cx.topo().writer().to_string();
        if let Ok(arn) = cx.attr(&cx.writer("db-secret"), "arn")
            && arn.starts_with("arn:")
        {
            return Ok(Some((writer, arn)));
        }
        if cx.planning {
            // Planned before the writer's secret exists.
            return Ok(None);
        }
        let found = self
            .0
            .secrets(&writer)
            .describe_secret()
            .secret_id(super::db_secret::secret_name(&cx.inputs().env))
            .send()
            .await
            .absent_on("DescribeSecret", GONE)?;
        Ok(found.and_then(|s| s.arn).map(|arn| (writer, arn)))
    }

    /// As [`Self::primary`], for calls that need it.
    async fn required_primary(&self, cx: &NodeCx) -> Result<(String, String), NodeError> {
        self.primary(cx).await?.ok_or_else(|| {
            NodeError::fatal(
                "DescribeSecret",
                "ResourceNotFoundException",
                format!(
                    "the writer's secret {} does not exist",
                    super::db_secret::secret_name(&cx.inputs().env)
                ),
            )
        })
    }

    /// This region's entry in the writer's replication status, if it has one.
    async fn status(&self, cx: &NodeCx) -> Result<Option<(String, ReplicationStatusType)>, NodeError> {
        let Some((writer, arn)) = self.primary(cx).await? else {
            return Ok(None);
        };
        let Some(out) = self
            .0
            .secrets(&writer)
            .describe_secret()
            .secret_id(&arn)
            .send()
            .await
            .absent_on("DescribeSecret", GONE)?
        else {
            return Ok(None);
        };
        let arn = out.arn.clone().unwrap_or(arn);
        Ok(out
            .replication_status()
            .iter()
            .find(|r| r.region() == Some(cx.region.as_str()))
            .map(|r| (arn, r.clone())))
    }

    async fn replicate(&self, cx: &NodeCx, want: &ReplicaSpec) -> Result<(), NodeError> {
        let (writer, arn) = self.required_primary(cx).await?;
        let region = ReplicaRegionType::builder()
            .region(&cx.region)
            .kms_key_id(&want.kms_key)
            .build();
        replicate_once(&self.0.secrets(&writer), &arn, vec![region], false).await
    }

    async fn remove(&self, cx: &NodeCx) -> Result<(), NodeError> {
        // No writer's secret: no replica to remove.
        let Some((writer, arn)) = self.primary(cx).await? else {
            return Ok(());
        };
        let r = self
            .0
            .secrets(&writer)
            .remove_regions_from_replication()
            .secret_id(&arn)
            .remove_replica_regions(&cx.region)
            .send()
            .await
            .op("RemoveRegionsFromReplication");
        match r {
            Ok(_) => Ok(()),
            // The primary is gone, or this region is no longer among its replicas.
            Err(e) if GONE.contains(&e.code.as_str()) || e.code == "InvalidParameterException" => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[async_trait::async_trait]
impl Kind for SecretReplica {
    type Spec = ReplicaSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<ReplicaSpec, NodeError> {
        Ok(ReplicaSpec {
            kms_key: cx.attr(&cx.local("kms-key"), "arn")?,
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!(
            "replica in {} of secret {}",
            cx.region,
            super::db_secret::secret_name(&cx.inputs().env)
        )
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let Some((arn, status)) = self.status(cx).await? else {
            return Ok(None);
        };
        // A failed replica does not exist: the next deploy creates it again (and says why it
        // failed if it fails again).
        if failed(&status) {
            return Ok(None);
        }
        let replica = replica_arn(&arn, &cx.region);
        Ok(Some(
            Live::new(&replica)
                .arn(&replica)
                .attr("name", super::db_secret::secret_name(&cx.inputs().env))
                .observed(&ReplicaLive {
                    kms_key: status
                        .kms_key_id()
                        .map(|k| super::kms_ref::KnownKeys::local(cx).observed(k)),
                }),
        ))
    }

    async fn create(&self, cx: &NodeCx, want: &ReplicaSpec) -> Result<Live, NodeError> {
        // A replica that failed (e.g. a secret of that name was in the region) stays listed in
        // the writer's replication status: it is removed before the region is added again.
        if self.status(cx).await?.is_some_and(|(_, s)| failed(&s)) {
            self.remove(cx).await?;
        }
        // ReplicateSecretToRegions takes no idempotency token and is sent once (no SDK retry):
        // after an error, the region in the writer's replication status is the proof it ran.
        if let Err(e) = self.replicate(cx, want).await
            && self.status(cx).await?.is_none()
        {
            return Err(e);
        }
        let (_, arn) = self.required_primary(cx).await?;
        let replica = replica_arn(&arn, &cx.region);
        Ok(Live::new(&replica)
            .arn(&replica)
            .attr("name", super::db_secret::secret_name(&cx.inputs().env)))
    }

    /// A replica's key cannot be changed in place: the region is removed from the replication
    /// and added again with the key.
    async fn update(
        &self,
        cx: &NodeCx,
        _live: &Live,
        want: &ReplicaSpec,
        changed: &ReplicaChanged,
    ) -> Result<(), NodeError> {
        if changed.kms_key {
            self.remove(cx).await?;
            self.replicate(cx, want).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, _live: &Live) -> Result<(), NodeError> {
        self.remove(cx).await
    }

    /// `InSync`; `Failed` (e.g. a secret of that name already exists in the region, or the key
    /// is not usable) is an error naming the region and the status message, never success.
    async fn ready(&self, cx: &NodeCx, _live: &Live) -> Result<Readiness, NodeError> {
        Ok(match self.status(cx).await? {
            None => Readiness::Pending("replicating".into()),
            Some((_, s)) => match s.status() {
                Some(StatusType::InSync) => Readiness::Ready,
                Some(StatusType::Failed) => Readiness::Failed(format!(
                    "the secret's replication to {} failed: {}",
                    cx.region,
                    s.status_message().unwrap_or("no message")
                )),
                _ => Readiness::Pending("replicating".into()),
            },
        })
    }

    /// Removing a region deletes the replica asynchronously: wait until the name is free in
    /// the region, so that a later deploy can replicate there again.
    fn waits_for_deletion(&self) -> bool {
        true
    }

    async fn gone(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        let found = self
            .0
            .secrets(&cx.region)
            .describe_secret()
            .secret_id(&live.physical_id)
            .send()
            .await
            .absent_on("DescribeSecret", GONE)?;
        Ok(match found {
            None => Readiness::Ready,
            Some(_) => Readiness::Pending("deleting the replica".into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_arn_is_the_primarys_in_another_region() {
        assert_eq!(
            replica_arn(
                "arn:aws:secretsmanager:us-east-1:123456789012:secret:tap-db-dev-AbCdEf",
                "eu-west-1"
            ),
            "arn:aws:secretsmanager:eu-west-1:123456789012:secret:tap-db-dev-AbCdEf"
        );
    }
}
