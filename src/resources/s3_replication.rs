//! `s3-replication`: a region bucket's replication configuration: a rule to every other
//! region's bucket (SPEC v3: objects written in any region, e.g. after a failover, reach all).

use super::cx::StackCx;
use super::names;
use super::typed::{Kind, Observe};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_s3::types::{
    DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, EncryptionConfiguration, Metrics,
    MetricsStatus, ReplicaModifications, ReplicaModificationsStatus, ReplicationConfiguration, ReplicationRule,
    ReplicationRuleFilter, ReplicationRuleStatus, SourceSelectionCriteria, SseKmsEncryptedObjects,
    SseKmsEncryptedObjectsStatus, StorageClass,
};
use std::sync::Arc;

pub struct S3Replication(pub Arc<Aws>);

crate::spec! {
    /// SPEC v3: the region bucket replicates to every other region's bucket, one rule each, with
    /// SSE-KMS objects and replica modifications (two-way metadata sync) selected. The two
    /// source-selection switches apply to every rule; they are compared only where the API
    /// returns them (moto never returns `SourceSelectionCriteria`).
    pub struct ReplicationSpec, ReplicationLive, ReplicationChanged {
        role: String,
        /// Sorted by id.
        rules: Vec<Rule>,
        sse_kms_encrypted_objects: String,
        replica_modifications: String,
    }
    immutable []
}

/// One rule: to one other region's bucket, encrypted with that region's key.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Rule {
    pub id: String,
    pub status: String,
    pub priority: i32,
    pub filter_prefix: String,
    pub delete_marker_replication: String,
    pub destination_bucket: String,
    pub storage_class: String,
    /// S3 emits the `s3:Replication:*` events the function subscribes to only with replication
    /// metrics on (S3 User Guide, "Monitoring progress with replication metrics").
    pub metrics: String,
    /// `None`: not returned, unobservable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replica_kms_key: Option<String>,
}

/// `ReplicateTo-{D}`.
pub fn rule_id(destination: &str) -> String {
    format!("ReplicateTo-{destination}")
}

/// The rules of `region`'s bucket: one per other region, priority its index + 1 (S3 User Guide,
/// "Replication configuration": with several rules each needs a distinct priority and a filter).
fn rules(cx: &NodeCx) -> Result<Vec<Rule>, NodeError> {
    let t = cx.topo();
    let mut rules = Vec::new();
    for d in t.regions().filter(|d| *d != cx.region) {
        rules.push(Rule {
            id: rule_id(d),
            status: "Enabled".into(),
            priority: t.index(d).unwrap_or(0) as i32 + 1,
            filter_prefix: String::new(),
            delete_marker_replication: "Disabled".into(),
            destination_bucket: names::bucket_arn(cx.inputs(), d),
            storage_class: "STANDARD_IA".into(),
            metrics: "Enabled".into(),
            replica_kms_key: Some(cx.attr(&t.id(d, "kms-key"), "arn")?),
        });
    }
    rules.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(rules)
}

/// A rule as the API returned it.
fn observe(rule: &ReplicationRule, keys: &super::kms_ref::KnownKeys) -> Rule {
    let d = rule.destination.as_ref();
    Rule {
        id: rule.id.clone().unwrap_or_default(),
        status: rule.status.as_str().to_string(),
        priority: rule.priority.unwrap_or(0),
        filter_prefix: rule.filter.as_ref().and_then(|f| f.prefix.clone()).unwrap_or_default(),
        delete_marker_replication: rule
            .delete_marker_replication
            .as_ref()
            .and_then(|d| d.status.as_ref())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        destination_bucket: d.map(|d| d.bucket.clone()).unwrap_or_default(),
        storage_class: d
            .and_then(|d| d.storage_class.as_ref())
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        metrics: d
            .and_then(|d| d.metrics.as_ref())
            .map(|m| m.status.as_str().to_string())
            .unwrap_or_default(),
        replica_kms_key: d
            .and_then(|d| d.encryption_configuration.as_ref())
            .and_then(|e| e.replica_kms_key_id.as_deref())
            .map(|k| keys.observed(k)),
    }
}

/// A switch that holds for every rule, as returned: `None` unless every rule returns it alike.
fn all_alike(values: Vec<Option<String>>) -> Option<String> {
    let first = values.first().cloned().flatten()?;
    values
        .iter()
        .all(|v| v.as_deref() == Some(first.as_str()))
        .then_some(first)
}

#[async_trait::async_trait]
impl Kind for S3Replication {
    type Spec = ReplicationSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<ReplicationSpec, NodeError> {
        Ok(ReplicationSpec {
            role: cx.attr(&cx.home("iam-replication-role"), "arn")?,
            rules: rules(cx)?,
            sse_kms_encrypted_objects: "Enabled".into(),
            replica_modifications: "Enabled".into(),
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!(
            "replication configuration of bucket {}",
            names::bucket(cx.inputs(), &cx.region)
        )
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let bucket = names::bucket(cx.inputs(), &cx.region);
        let out = self
            .0
            .s3(&cx.region)
            .get_bucket_replication()
            .bucket(&bucket)
            .send()
            .await;
        let out = match out.absent_on(
            "GetBucketReplication",
            &["ReplicationConfigurationNotFoundError", "NoSuchBucket"],
        ) {
            Ok(o) => o,
            // A bucket of another account (its name taken): not tap's; destroy skips it.
            Err(e) => return Err(super::s3_bucket::explain_forbidden(&self.0, &cx.region, &bucket, e).await),
        };
        let Some(conf) = out.and_then(|o| o.replication_configuration) else {
            return Ok(None);
        };
        // The destinations' keys: every other region's (this node reads each).
        let keys = super::kms_ref::KnownKeys::of(cx, cx.topo().regions().filter(|d| *d != cx.region));
        let mut rules: Vec<Rule> = conf.rules.iter().map(|r| observe(r, &keys)).collect();
        rules.sort_by(|a, b| a.id.cmp(&b.id));
        let criteria: Vec<_> = conf
            .rules
            .iter()
            .map(|r| r.source_selection_criteria.as_ref())
            .collect();
        let seen = ReplicationLive {
            role: Some(conf.role.clone()),
            rules: Some(rules),
            sse_kms_encrypted_objects: all_alike(
                criteria
                    .iter()
                    .map(|c| {
                        c.and_then(|c| c.sse_kms_encrypted_objects.as_ref())
                            .map(|s| s.status.as_str().to_string())
                    })
                    .collect(),
            ),
            replica_modifications: all_alike(
                criteria
                    .iter()
                    .map(|c| {
                        c.and_then(|c| c.replica_modifications.as_ref())
                            .map(|s| s.status.as_str().to_string())
                    })
                    .collect(),
            ),
        };
        Ok(Some(Live::new(&bucket).attr("bucket", &bucket).observed(&seen)))
    }

    async fn create(&self, cx: &NodeCx, want: &ReplicationSpec) -> Result<Live, NodeError> {
        let bucket = names::bucket(cx.inputs(), &cx.region);
        let live = Live::new(&bucket).attr("bucket", &bucket);
        self.update(cx, &live, want, &ReplicationChanged::default()).await?;
        Ok(live)
    }

    /// The whole configuration is put at once (PutBucketReplication replaces it).
    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        want: &ReplicationSpec,
        _: &ReplicationChanged,
    ) -> Result<(), NodeError> {
        let criteria = || {
            SourceSelectionCriteria::builder()
                .sse_kms_encrypted_objects(
                    SseKmsEncryptedObjects::builder()
                        .status(SseKmsEncryptedObjectsStatus::from(
                            want.sse_kms_encrypted_objects.as_str(),
                        ))
                        .build()
                        .expect("status set"),
                )
                .replica_modifications(
                    ReplicaModifications::builder()
                        .status(ReplicaModificationsStatus::from(want.replica_modifications.as_str()))
                        .build()
                        .expect("status set"),
                )
                .build()
        };
        let mut conf = ReplicationConfiguration::builder().role(&want.role);
        for r in &want.rules {
            let mut encryption = EncryptionConfiguration::builder();
            if let Some(k) = &r.replica_kms_key {
                encryption = encryption.replica_kms_key_id(k);
            }
            let destination = Destination::builder()
                .bucket(&r.destination_bucket)
                .storage_class(StorageClass::from(r.storage_class.as_str()))
                .encryption_configuration(encryption.build())
                .metrics(
                    Metrics::builder()
                        .status(MetricsStatus::from(r.metrics.as_str()))
                        .build()
                        .expect("status set"),
                )
                .build()
                .expect("bucket set");
            let rule = ReplicationRule::builder()
                .id(&r.id)
                .status(ReplicationRuleStatus::from(r.status.as_str()))
                .priority(r.priority)
                .filter(ReplicationRuleFilter::builder().prefix(&r.filter_prefix).build())
                .delete_marker_replication(
                    DeleteMarkerReplication::builder()
                        .status(DeleteMarkerReplicationStatus::from(
                            r.delete_marker_replication.as_str(),
                        ))
                        .build(),
                )
                .source_selection_criteria(criteria())
                .destination(destination)
                .build()
                .expect("status and destination set");
            conf = conf.rules(rule);
        }
        let conf = conf.build().expect("role and rules set");
        let s3 = self.0.s3(&cx.region);
        s3.put_bucket_replication()
            .bucket(&live.physical_id)
            .replication_configuration(conf)
            .send()
            .await
            .op("PutBucketReplication")
            .map(|_| ())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let s3 = self.0.s3(&cx.region);
        s3.delete_bucket_replication()
            .bucket(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteBucketReplication", &["NoSuchBucket"])
    }
}
