//! Final snapshots: `tap-db-{r}-{env}-final-{yyyymmddhhmm}`, taken when a stale writer left by a
//! failover is deleted (SPEC v3 "Destroy"). They may hold writes that never replicated: tap never
//! deletes them, and a KMS key that encrypts one is kept (not scheduled for deletion, its alias
//! and tags kept), or the snapshot could never be restored (KMS Developer Guide, "Deleting AWS
//! KMS keys": data encrypted under a deleted key is unrecoverable).

use super::cx::StackCx;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{NodeCx, NodeError};

/// The code of a delete that keeps its object on purpose (the driver forgets the node and says
/// why).
pub use crate::engine::reconcile::KEPT;

/// The final snapshots of this env in the node's region encrypted with `key` (its id or ARN).
pub async fn encrypted_with(aws: &Aws, cx: &NodeCx, key: &str) -> Result<Vec<String>, NodeError> {
    let prefix = format!("tap-db-{}-{}-final-", cx.r(), cx.inputs().env);
    let snapshots: Vec<_> = aws
        .rds(&cx.region)
        .describe_db_snapshots()
        .snapshot_type("manual")
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .op("DescribeDBSnapshots")?;
    let id = key.rsplit('/').next().unwrap_or(key);
    Ok(snapshots
        .into_iter()
        .filter(|s| s.db_snapshot_identifier().is_some_and(|n| n.starts_with(&prefix)))
        .filter(|s| {
            s.kms_key_id()
                .is_some_and(|k| k == key || k.rsplit('/').next() == Some(id))
        })
        .filter_map(|s| s.db_snapshot_identifier)
        .collect())
}

/// The refusal that keeps `what` because of `snapshots`.
pub fn kept(op: &str, what: &str, snapshots: &[String]) -> NodeError {
    NodeError::fatal(
        op,
        KEPT,
        format!(
            "kept {what}: it encrypts the final snapshot{} {} (tap never deletes final snapshots; \
             delete {} and this key by hand once the data is no longer needed)",
            if snapshots.len() == 1 { "" } else { "s" },
            snapshots.join(", "),
            if snapshots.len() == 1 { "it" } else { "them" }
        ),
    )
}
