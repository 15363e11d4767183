//! `s3-replication`: the primary bucket's replication configuration (SSE-KMS objects included).

use super::cx::StackCx;
use super::names;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Resource};
use aws_sdk_s3::types::{
    DeleteMarkerReplication, DeleteMarkerReplicationStatus, Destination, EncryptionConfiguration, Metrics,
    MetricsStatus, ReplicationConfiguration, ReplicationRule, ReplicationRuleFilter, ReplicationRuleStatus,
    SourceSelectionCriteria, SseKmsEncryptedObjects, SseKmsEncryptedObjectsStatus, StorageClass,
};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct S3Replication(pub Arc<Aws>);

pub const RULE_ID: &str = "ReplicateToSecondaryRegion";

/// Where the writer's bucket replicates to: the next region.
fn destination(cx: &NodeCx) -> &str {
    let t = cx.topo();
    t.next(t.writer())
}

#[async_trait::async_trait]
impl Resource for S3Replication {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        Ok(Props::from([
            ("role".into(), json!(cx.attr(&cx.home("iam-replication-role"), "arn")?)),
            ("rule_id".into(), json!(RULE_ID)),
            ("status".into(), json!("Enabled")),
            ("priority".into(), json!(1)),
            ("filter_prefix".into(), json!("")),
            ("delete_marker_replication".into(), json!("Disabled")),
            (
                "destination_bucket".into(),
                json!(names::bucket_arn(cx.inputs(), destination(cx))),
            ),
            ("storage_class".into(), json!("STANDARD_IA")),
            // SPEC v2: S3 emits the s3:Replication:* events the function subscribes to only with
            // replication metrics on (S3 User Guide, "Monitoring progress with replication metrics").
            ("metrics".into(), json!("Enabled")),
            (
                "replica_kms_key".into(),
                json!(cx.attr(&cx.topo().id(destination(cx), "kms-key"), "arn")?),
            ),
            ("sse_kms_encrypted_objects".into(), json!("Enabled")),
        ]))
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!(
            "replication configuration of bucket {}",
            names::bucket(cx.inputs(), cx.topo().writer())
        )
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let bucket = names::bucket(cx.inputs(), cx.topo().writer());
        let out = self
            .0
            .s3(&cx.region)
            .get_bucket_replication()
            .bucket(&bucket)
            .send()
            .await;
        let Some(conf) = out
            .absent_on(
                "GetBucketReplication",
                &["ReplicationConfigurationNotFoundError", "NoSuchBucket"],
            )?
            .and_then(|o| o.replication_configuration)
        else {
            return Ok(None);
        };
        let mut live = Live::new(&bucket)
            .attr("bucket", &bucket)
            .prop("role", conf.role.clone());
        // Only what the API returns is compared. moto never returns SourceSelectionCriteria.
        if let Some(rule) = conf
            .rules
            .iter()
            .find(|r| r.id.as_deref() == Some(RULE_ID))
            .or(conf.rules.first())
        {
            live = live
                .prop("rule_id", rule.id.clone().unwrap_or_default())
                .prop("status", rule.status.as_str())
                .prop("priority", rule.priority.unwrap_or(0));
            if let Some(f) = &rule.filter {
                live = live.prop("filter_prefix", f.prefix.clone().unwrap_or_default());
            }
            if let Some(d) = rule.delete_marker_replication.as_ref().and_then(|d| d.status.as_ref()) {
                live = live.prop("delete_marker_replication", d.as_str());
            }
            if let Some(d) = &rule.destination {
                live = live.prop("destination_bucket", d.bucket.clone());
                if let Some(sc) = &d.storage_class {
                    live = live.prop("storage_class", sc.as_str());
                }
                if let Some(m) = &d.metrics {
                    live = live.prop("metrics", m.status.as_str());
                }
                if let Some(k) = d
                    .encryption_configuration
                    .as_ref()
                    .and_then(|e| e.replica_kms_key_id.clone())
                {
                    live = live.prop("replica_kms_key", k);
                }
            }
            if let Some(s) = rule
                .source_selection_criteria
                .as_ref()
                .and_then(|s| s.sse_kms_encrypted_objects.as_ref())
            {
                live = live.prop("sse_kms_encrypted_objects", s.status.as_str());
            }
        } else {
            live = live.prop("rule_id", "");
        }
        Ok(Some(live))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        let bucket = names::bucket(cx.inputs(), cx.topo().writer());
        let live = Live::new(&bucket).attr("bucket", &bucket);
        self.update(cx, &live, d, &BTreeSet::new()).await?;
        Ok(live)
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, _: &BTreeSet<String>) -> Result<(), NodeError> {
        let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        let destination = Destination::builder()
            .bucket(s("destination_bucket"))
            .storage_class(StorageClass::from(s("storage_class").as_str()))
            .encryption_configuration(
                EncryptionConfiguration::builder()
                    .replica_kms_key_id(s("replica_kms_key"))
                    .build(),
            )
            .metrics(
                Metrics::builder()
                    .status(MetricsStatus::from(s("metrics").as_str()))
                    .build()
                    .expect("status set"),
            )
            .build()
            .expect("bucket set");
        let rule = ReplicationRule::builder()
            .id(s("rule_id"))
            .status(ReplicationRuleStatus::from(s("status").as_str()))
            .priority(d["priority"].as_i64().unwrap_or(1) as i32)
            .filter(ReplicationRuleFilter::builder().prefix(s("filter_prefix")).build())
            .delete_marker_replication(
                DeleteMarkerReplication::builder()
                    .status(DeleteMarkerReplicationStatus::from(
                        s("delete_marker_replication").as_str(),
                    ))
                    .build(),
            )
            .source_selection_criteria(
                SourceSelectionCriteria::builder()
                    .sse_kms_encrypted_objects(
                        SseKmsEncryptedObjects::builder()
                            .status(SseKmsEncryptedObjectsStatus::from(
                                s("sse_kms_encrypted_objects").as_str(),
                            ))
                            .build()
                            .expect("status set"),
                    )
                    .build(),
            )
            .destination(destination)
            .build()
            .expect("status and destination set");
        let conf = ReplicationConfiguration::builder()
            .role(s("role"))
            .rules(rule)
            .build()
            .expect("role and rules set");
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
