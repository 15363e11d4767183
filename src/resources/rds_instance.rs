//! `rds-primary` (Postgres, Multi-AZ, master password from `db-secret`) and
//! `rds-replica` (cross-region read replica by the primary's ARN, encrypted with the secondary
//! key; defect 2 of the reference). The password is read from the secret only to be sent.

use super::cx::StackCx;
use super::db_subnet_group;
use super::names;
use super::rds_tags;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Readiness, Resource};
use aws_sdk_rds::types::DbInstance;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

pub struct RdsInstance(pub Arc<Aws>, pub Role);

impl RdsInstance {
    /// The master password, from `db-secret` (read at the moment of use, never kept).
    async fn password(&self, cx: &NodeCx) -> Result<String, NodeError> {
        let secret = cx.attr(&cx.writer("db-secret"), "arn")?;
        super::db_secret::master_password(&self.0, &cx.region, &secret).await
    }
}

/// The live engine version as plan compares it. With auto minor version upgrade on, AWS moves the
/// instance to a later minor of the same major (16.9 -> 16.10): that is not drift, and planning
/// `16.10 -> 16.9` would make ModifyDBInstance fail ("Cannot upgrade postgres from 16.10 to
/// 16.9"), taking every other change of the call with it. Such a version reads as the desired
/// one; an older version, or another major, still differs.
pub fn observed_version(live: &str, desired: &str) -> String {
    let parse = |v: &str| -> Option<(u32, u32)> {
        let mut it = v.split('.');
        Some((it.next()?.parse().ok()?, it.next().unwrap_or("0").parse().ok()?))
    };
    match (parse(live), parse(desired)) {
        (Some((lm, ln)), Some((dm, dn))) if lm == dm && ln >= dn => desired.to_string(),
        _ => live.to_string(),
    }
}

/// SPEC: postgres 16.9 unless configured (`TAP_POSTGRES_VERSION`).
pub fn engine_version() -> String {
    std::env::var("TAP_POSTGRES_VERSION")
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "16.9".into())
}

const GONE: &[&str] = &["DBInstanceNotFound", "DBInstanceNotFoundFault"];

fn to_live(db: DbInstance) -> Live {
    let id = db.db_instance_identifier.clone().unwrap_or_default();
    let arn = db.db_instance_arn.clone().unwrap_or_default();
    let mut sgs: Vec<String> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id.clone())
        .collect();
    sgs.sort();
    let mut live = Live::new(&id)
        .arn(arn)
        .attr("id", &id)
        .attr("status", db.db_instance_status.clone().unwrap_or_default())
        .prop("class", db.db_instance_class.clone().unwrap_or_default())
        .prop("encrypted", db.storage_encrypted.unwrap_or(false))
        .prop("kms_key", db.kms_key_id.clone().unwrap_or_default())
        .prop("publicly_accessible", db.publicly_accessible.unwrap_or(false))
        .prop(
            "subnet_group",
            db.db_subnet_group
                .as_ref()
                .and_then(|g| g.db_subnet_group_name.clone())
                .unwrap_or_default(),
        )
        .prop("security_groups", json!(sgs))
        .tags(rds_tags::map(db.tag_list()));
    if let Some(e) = db.endpoint.as_ref().and_then(|e| e.address.clone()) {
        live = live.attr("endpoint", e);
    }
    if let Some(s) = db.master_user_secret.as_ref().and_then(|s| s.secret_arn.clone()) {
        live = live.attr("secret_arn", s);
    }
    if let Some(src) = &db.read_replica_source_db_instance_identifier {
        live = live.prop("source", src.clone());
    }
    if db.read_replica_source_db_instance_identifier.is_none() {
        live = live
            .prop("engine", db.engine.clone().unwrap_or_default())
            .prop(
                "engine_version",
                observed_version(db.engine_version.as_deref().unwrap_or_default(), &engine_version()),
            )
            .prop("storage_gb", db.allocated_storage.unwrap_or(0))
            .prop("storage_type", db.storage_type.clone().unwrap_or_default())
            .prop("multi_az", db.multi_az.unwrap_or(false))
            .prop("backup_retention_days", db.backup_retention_period.unwrap_or(0))
            .prop("db_name", db.db_name.clone().unwrap_or_default())
            .prop("master_username", db.master_username.clone().unwrap_or_default())
            .prop("managed_password", db.master_user_secret.is_some())
            .prop("deletion_protection", db.deletion_protection.unwrap_or(false))
            .prop("copy_tags_to_snapshot", db.copy_tags_to_snapshot.unwrap_or(false));
    }
    live
}

impl RdsInstance {
    async fn describe(&self, cx: &NodeCx, id: &str) -> Result<Option<DbInstance>, NodeError> {
        let out = self
            .0
            .rds(&cx.region)
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await;
        Ok(out
            .absent_on("DescribeDBInstances", GONE)?
            .and_then(|o| o.db_instances.and_then(|v| v.into_iter().next())))
    }
}

fn s(d: &Props, k: &str) -> String {
    d.get(k).and_then(Value::as_str).unwrap_or_default().to_string()
}

#[async_trait::async_trait]
impl Resource for RdsInstance {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        let mut p = Props::from([
            ("class".into(), json!("db.t3.micro")),
            ("encrypted".into(), json!(true)),
            ("kms_key".into(), json!(cx.attr(&cx.local("kms-key"), "arn")?)),
            ("publicly_accessible".into(), json!(false)),
            ("subnet_group".into(), json!(db_subnet_group::name(&cx.inputs().env))),
            ("security_groups".into(), json!([cx.attr(&cx.local("sg-db"), "id")?])),
            ("tags".into(), json!(cx.tags())),
        ]);
        match self.1 {
            Role::Primary => {
                for (k, v) in [
                    ("engine", json!("postgres")),
                    ("engine_version", json!(engine_version())),
                    ("storage_gb", json!(20)),
                    ("storage_type", json!("gp3")),
                    ("multi_az", json!(true)),
                    ("backup_retention_days", json!(7)),
                    ("db_name", json!("tapdb")),
                    ("master_username", json!("tapuser")),
                    ("managed_password", json!(false)),
                    ("deletion_protection", json!(false)),
                    ("copy_tags_to_snapshot", json!(true)),
                ] {
                    p.insert(k.into(), v);
                }
            }
            Role::Replica => {
                p.insert("source".into(), json!(cx.attr(&cx.writer("rds-primary"), "arn")?));
            }
        }
        Ok(p)
    }

    fn immutable(&self) -> &'static [&'static str] {
        &[
            "engine",
            "encrypted",
            "kms_key",
            "db_name",
            "master_username",
            "subnet_group",
            "source",
        ]
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("DB instance {}", names::db_instance(cx.inputs(), &cx.region))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let id = names::db_instance(cx.inputs(), &cx.region);
        Ok(self.describe(cx, &id).await?.map(to_live))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        let rds = self.0.rds(&cx.region);
        let id = names::db_instance(cx.inputs(), &cx.region);
        let sgs: Vec<String> = serde_json::from_value(d["security_groups"].clone()).unwrap_or_default();
        let out = match self.1 {
            Role::Primary => {
                rds.create_db_instance()
                    .db_instance_identifier(&id)
                    .engine(s(d, "engine"))
                    .engine_version(s(d, "engine_version"))
                    .db_instance_class(s(d, "class"))
                    .allocated_storage(20)
                    .storage_type(s(d, "storage_type"))
                    .multi_az(true)
                    .storage_encrypted(true)
                    .kms_key_id(s(d, "kms_key"))
                    .backup_retention_period(7)
                    .db_name(s(d, "db_name"))
                    .master_username(s(d, "master_username"))
                    // SPEC v2: the password from `db-secret`, never ManageMasterUserPassword
                    // (AWS refuses read replicas of an instance whose password RDS manages).
                    .master_user_password(self.password(cx).await?)
                    .publicly_accessible(false)
                    .deletion_protection(false)
                    .copy_tags_to_snapshot(true)
                    .db_subnet_group_name(s(d, "subnet_group"))
                    .set_vpc_security_group_ids(Some(sgs))
                    .set_tags(Some(rds_tags::tags(cx)))
                    .send()
                    .await
                    .op("CreateDBInstance")?
                    .db_instance
            }
            // Cross-region: the source is named by ARN and the key is the destination region's.
            // The SDK for Rust builds no PreSignedUrl; commercial regions need none.
            Role::Replica => {
                rds.create_db_instance_read_replica()
                    .db_instance_identifier(&id)
                    .source_db_instance_identifier(s(d, "source"))
                    .db_instance_class(s(d, "class"))
                    .kms_key_id(s(d, "kms_key"))
                    .db_subnet_group_name(s(d, "subnet_group"))
                    .set_vpc_security_group_ids(Some(sgs))
                    .publicly_accessible(false)
                    .set_tags(Some(rds_tags::tags(cx)))
                    .send()
                    .await
                    .op("CreateDBInstanceReadReplica")?
                    .db_instance
            }
        };
        out.map(to_live)
            .ok_or_else(|| NodeError::fatal("CreateDBInstance", "EmptyResponse", "no instance returned"))
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, changed: &BTreeSet<String>) -> Result<(), NodeError> {
        let rds = self.0.rds(&cx.region);
        let modifiable = [
            "class",
            "publicly_accessible",
            "security_groups",
            "engine_version",
            "storage_gb",
            "storage_type",
            "multi_az",
            "backup_retention_days",
            "deletion_protection",
            "copy_tags_to_snapshot",
            "managed_password",
        ];
        if modifiable.iter().any(|k| changed.contains(*k)) {
            let has = |k: &str| changed.contains(k);
            let mut req = rds
                .modify_db_instance()
                .db_instance_identifier(&live.physical_id)
                .apply_immediately(true);
            if has("class") {
                req = req.db_instance_class(s(d, "class"));
            }
            if has("publicly_accessible") {
                req = req.publicly_accessible(false);
            }
            if has("security_groups") {
                req = req.set_vpc_security_group_ids(serde_json::from_value(d["security_groups"].clone()).ok());
            }
            if has("engine_version") {
                req = req.engine_version(s(d, "engine_version"));
            }
            if has("storage_gb") {
                req = req.allocated_storage(20);
            }
            if has("storage_type") {
                req = req.storage_type(s(d, "storage_type"));
            }
            if has("multi_az") {
                req = req.multi_az(true);
            }
            if has("backup_retention_days") {
                req = req.backup_retention_period(7);
            }
            if has("deletion_protection") {
                req = req.deletion_protection(false);
            }
            if has("copy_tags_to_snapshot") {
                req = req.copy_tags_to_snapshot(true);
            }
            if has("managed_password") {
                // Turning RDS's management off takes a password: the one in `db-secret`.
                req = req
                    .manage_master_user_password(false)
                    .master_user_password(self.password(cx).await?);
            }
            req.send().await.op("ModifyDBInstance")?;
        }
        if changed.contains("tags") {
            rds_tags::retag(&self.0, cx, live.arn.as_deref().unwrap_or_default()).await?;
        }
        Ok(())
    }

    /// Available (for the primary: with backups on, which a cross-region replica needs).
    async fn ready(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        let Some(db) = self.describe(cx, &live.physical_id).await? else {
            return Ok(Readiness::Pending("not visible yet".into()));
        };
        let status = db.db_instance_status.clone().unwrap_or_default();
        Ok(match status.as_str() {
            "available" if self.1 == Role::Primary && db.backup_retention_period.unwrap_or(0) == 0 => {
                Readiness::Pending("available, backups off".into())
            }
            "available" => Readiness::Ready,
            "failed" | "incompatible-parameters" | "incompatible-restore" | "storage-full" => {
                Readiness::Failed(format!("{} is {status}", live.physical_id))
            }
            _ => Readiness::Pending(status),
        })
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        // moto answers 500 to deleting an unpromoted cross-region replica, yet deletes it; the
        // retry of that 500 then finds it gone, which counts as deleted.
        let rds = self.0.rds(&cx.region);
        let r = rds
            .delete_db_instance()
            .db_instance_identifier(&live.physical_id)
            .skip_final_snapshot(true)
            .delete_automated_backups(true)
            .send()
            .await;
        match r.ok_on("DeleteDBInstance", GONE) {
            Err(e) if e.code == "InvalidDBInstanceState" && e.message.contains("already being deleted") => Ok(()),
            other => other,
        }
    }

    async fn gone(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        Ok(match self.describe(cx, &live.physical_id).await? {
            None => Readiness::Ready,
            Some(db) => Readiness::Pending(db.db_instance_status.unwrap_or_else(|| "deleting".into())),
        })
    }

    fn waits_for_deletion(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::observed_version;

    #[test]
    fn a_later_minor_of_the_same_major_is_not_drift() {
        assert_eq!(observed_version("16.10", "16.9"), "16.9");
        assert_eq!(observed_version("16.9", "16.9"), "16.9");
        assert_eq!(
            observed_version("16.8", "16.9"),
            "16.8",
            "an older minor is drift (an upgrade)"
        );
        assert_eq!(observed_version("17.1", "16.9"), "17.1", "another major is drift");
        assert_eq!(observed_version("", "16.9"), "");
    }
}
