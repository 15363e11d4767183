//! `db-instance`: in the writer region the writer (Postgres, Multi-AZ, master password from the
//! writer's `db-secret`), in every other region a cross-region read replica of the writer by its
//! ARN, encrypted with that region's key (defect 2 of the reference). The role follows the
//! writer region (`by_role`). The password is read from the secret only to be sent.

use super::cx::StackCx;
use super::db_subnet_group;
use super::names;
use super::rds_tags;
use super::typed::{Kind, Observe, Tags};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Readiness};
use aws_sdk_rds::types::DbInstance;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

pub struct RdsInstance(pub Arc<Aws>, pub Role);

crate::spec! {
    /// The instance's properties. The `Option` fields belong to one role only: the primary's
    /// (engine ... `copy_tags_to_snapshot`) or the replica's (`source`); the other role has none
    /// of them (absent, not null).
    pub struct DbSpec, DbLive, DbChanged {
        class: String,
        encrypted: bool,
        kms_key: String,
        publicly_accessible: bool,
        subnet_group: String,
        security_groups: Vec<String>,
        tags: Tags,
        #[serde(skip_serializing_if = "Option::is_none")]
        engine: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        engine_version: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        storage_gb: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        storage_type: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        multi_az: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        backup_retention_days: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        db_name: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        master_username: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        managed_password: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        deletion_protection: Option<bool>,
        #[serde(skip_serializing_if = "Option::is_none")]
        copy_tags_to_snapshot: Option<bool>,
        /// The replica's: the primary's ARN.
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<String>,
        /// The writer's: the id of the secret version whose password RDS was given (never the
        /// password). RDS cannot tell it, so the live value is the one recorded in state; a
        /// state without it (an earlier release) reads as unobserved: the current one is adopted.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        password_version: Option<String>,
    }
    immutable [engine, encrypted, kms_key, db_name, master_username, subnet_group, source]
}

impl RdsInstance {
    /// The master password of the secret's version `version` (`None`: the current one), from
    /// `db-secret` (read at the moment of use, never kept).
    async fn password(&self, cx: &NodeCx, version: Option<&str>) -> Result<String, NodeError> {
        let secret = cx.attr(&cx.writer("db-secret"), "arn")?;
        super::db_secret::master_password_at(&self.0, &cx.region, &secret, version).await
    }
}

/// Issue 17 item 9: the secret version RDS was given, as last recorded for the node (`None`: not
/// recorded, unobservable, so no drift).
fn recorded_password_version(cx: &NodeCx) -> Option<String> {
    cx.prior
        .as_ref()
        .and_then(|p| p.props.get("password_version"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
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

fn to_live(db: DbInstance, keys: &super::kms_ref::KnownKeys) -> Live {
    let id = db.db_instance_identifier.clone().unwrap_or_default();
    let arn = db.db_instance_arn.clone().unwrap_or_default();
    let mut sgs: Vec<String> = db
        .vpc_security_groups()
        .iter()
        .filter_map(|g| g.vpc_security_group_id.clone())
        .collect();
    sgs.sort();
    let mut observed = DbLive {
        class: Some(db.db_instance_class.clone().unwrap_or_default()),
        encrypted: Some(db.storage_encrypted.unwrap_or(false)),
        kms_key: Some(keys.observed(db.kms_key_id().unwrap_or_default())),
        publicly_accessible: Some(db.publicly_accessible.unwrap_or(false)),
        subnet_group: Some(
            db.db_subnet_group
                .as_ref()
                .and_then(|g| g.db_subnet_group_name.clone())
                .unwrap_or_default(),
        ),
        security_groups: Some(sgs),
        ..Default::default()
    };
    let mut live = Live::new(&id)
        .arn(arn)
        .attr("id", &id)
        .attr("status", db.db_instance_status.clone().unwrap_or_default())
        .tags(rds_tags::map(db.tag_list()));
    if let Some(e) = db.endpoint.as_ref().and_then(|e| e.address.clone()) {
        live = live.attr("endpoint", e);
    }
    // A failover promotes a replica with the writer's backup window (PromoteReadReplica).
    if let Some(w) = db.preferred_backup_window.clone() {
        live = live.attr("backup_window", w);
    }
    if let Some(s) = db.master_user_secret.as_ref().and_then(|s| s.secret_arn.clone()) {
        live = live.attr("secret_arn", s);
    }
    if let Some(src) = &db.read_replica_source_db_instance_identifier {
        observed.source = Some(Some(src.clone()));
    }
    if db.read_replica_source_db_instance_identifier.is_none() {
        observed = DbLive {
            engine: Some(Some(db.engine.clone().unwrap_or_default())),
            engine_version: Some(Some(observed_version(
                db.engine_version.as_deref().unwrap_or_default(),
                &engine_version(),
            ))),
            storage_gb: Some(Some(db.allocated_storage.unwrap_or(0))),
            storage_type: Some(Some(db.storage_type.clone().unwrap_or_default())),
            multi_az: Some(Some(db.multi_az.unwrap_or(false))),
            backup_retention_days: Some(Some(db.backup_retention_period.unwrap_or(0))),
            db_name: Some(Some(db.db_name.clone().unwrap_or_default())),
            master_username: Some(Some(db.master_username.clone().unwrap_or_default())),
            managed_password: Some(Some(db.master_user_secret.is_some())),
            deletion_protection: Some(Some(db.deletion_protection.unwrap_or(false))),
            copy_tags_to_snapshot: Some(Some(db.copy_tags_to_snapshot.unwrap_or(false))),
            ..observed
        };
    }
    live.observed(&observed)
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

/// A role's own property (the empty string when the role has none: as it was sent before).
fn s(v: &Option<String>) -> String {
    v.clone().unwrap_or_default()
}

#[async_trait::async_trait]
impl Kind for RdsInstance {
    type Spec = DbSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<DbSpec, NodeError> {
        let common = DbSpec {
            class: "db.t3.micro".into(),
            encrypted: true,
            kms_key: cx.attr(&cx.local("kms-key"), "arn")?,
            publicly_accessible: false,
            subnet_group: db_subnet_group::name(&cx.inputs().env),
            security_groups: vec![cx.attr(&cx.local("sg-db"), "id")?],
            tags: cx.tags(),
            engine: None,
            engine_version: None,
            storage_gb: None,
            storage_type: None,
            multi_az: None,
            backup_retention_days: None,
            db_name: None,
            master_username: None,
            managed_password: None,
            deletion_protection: None,
            copy_tags_to_snapshot: None,
            source: None,
            password_version: None,
        };
        Ok(match self.1 {
            Role::Primary => DbSpec {
                engine: Some("postgres".into()),
                engine_version: Some(engine_version()),
                storage_gb: Some(20),
                storage_type: Some("gp3".into()),
                multi_az: Some(true),
                backup_retention_days: Some(7),
                db_name: Some("tapdb".into()),
                master_username: Some("tapuser".into()),
                managed_password: Some(false),
                deletion_protection: Some(false),
                copy_tags_to_snapshot: Some(true),
                // The writer's secret's current version: a rotated or recreated secret is a
                // password RDS does not have yet.
                password_version: cx.attr(&cx.writer("db-secret"), super::db_secret::VERSION_ATTR).ok(),
                ..common
            },
            Role::Replica => DbSpec {
                source: Some(cx.attr(&cx.writer("db-instance"), "arn")?),
                ..common
            },
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("DB instance {}", names::db_instance(cx.inputs(), &cx.region))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let id = names::db_instance(cx.inputs(), &cx.region);
        let Some(db) = self.describe(cx, &id).await? else {
            return Ok(None);
        };
        let writer = self.1 == Role::Primary && db.read_replica_source_db_instance_identifier.is_none();
        let live = to_live(db, &super::kms_ref::KnownKeys::local(cx));
        Ok(Some(match recorded_password_version(cx).filter(|_| writer) {
            Some(v) => live.observed(&DbLive {
                password_version: Some(Some(v)),
                ..Default::default()
            }),
            None => live,
        }))
    }

    async fn create(&self, cx: &NodeCx, d: &DbSpec) -> Result<Live, NodeError> {
        let rds = self.0.rds(&cx.region);
        let id = names::db_instance(cx.inputs(), &cx.region);
        let sgs: Vec<String> = d.security_groups.clone();
        let out = match self.1 {
            Role::Primary => {
                rds.create_db_instance()
                    .db_instance_identifier(&id)
                    .engine(s(&d.engine))
                    .engine_version(s(&d.engine_version))
                    .db_instance_class(d.class.clone())
                    .allocated_storage(20)
                    .storage_type(s(&d.storage_type))
                    .multi_az(true)
                    .storage_encrypted(true)
                    .kms_key_id(d.kms_key.clone())
                    .backup_retention_period(7)
                    .db_name(s(&d.db_name))
                    .master_username(s(&d.master_username))
                    // SPEC v2: the password from `db-secret`, never ManageMasterUserPassword
                    // (AWS refuses read replicas of an instance whose password RDS manages).
                    .master_user_password(self.password(cx, d.password_version.as_deref()).await?)
                    .publicly_accessible(false)
                    .deletion_protection(false)
                    .copy_tags_to_snapshot(true)
                    .db_subnet_group_name(d.subnet_group.clone())
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
                    .source_db_instance_identifier(s(&d.source))
                    .db_instance_class(d.class.clone())
                    .kms_key_id(d.kms_key.clone())
                    .db_subnet_group_name(d.subnet_group.clone())
                    .set_vpc_security_group_ids(Some(sgs))
                    .publicly_accessible(false)
                    .set_tags(Some(rds_tags::tags(cx)))
                    .send()
                    .await
                    .op("CreateDBInstanceReadReplica")?
                    .db_instance
            }
        };
        out.map(|db| to_live(db, &super::kms_ref::KnownKeys::local(cx)))
            .ok_or_else(|| NodeError::fatal("CreateDBInstance", "EmptyResponse", "no instance returned"))
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &DbSpec, changed: &DbChanged) -> Result<(), NodeError> {
        let rds = self.0.rds(&cx.region);
        let modifiable = [
            changed.class,
            changed.publicly_accessible,
            changed.security_groups,
            changed.engine_version,
            changed.storage_gb,
            changed.storage_type,
            changed.multi_az,
            changed.backup_retention_days,
            changed.deletion_protection,
            changed.copy_tags_to_snapshot,
            changed.managed_password,
            changed.password_version,
        ];
        if modifiable.into_iter().any(|c| c) {
            let mut req = rds
                .modify_db_instance()
                .db_instance_identifier(&live.physical_id)
                .apply_immediately(true);
            if changed.class {
                req = req.db_instance_class(d.class.clone());
            }
            if changed.publicly_accessible {
                req = req.publicly_accessible(false);
            }
            if changed.security_groups {
                req = req.set_vpc_security_group_ids(Some(d.security_groups.clone()));
            }
            if changed.engine_version {
                req = req.engine_version(s(&d.engine_version));
            }
            if changed.storage_gb {
                req = req.allocated_storage(20);
            }
            if changed.storage_type {
                req = req.storage_type(s(&d.storage_type));
            }
            if changed.multi_az {
                req = req.multi_az(true);
            }
            if changed.backup_retention_days {
                req = req.backup_retention_period(7);
            }
            if changed.deletion_protection {
                req = req.deletion_protection(false);
            }
            if changed.copy_tags_to_snapshot {
                req = req.copy_tags_to_snapshot(true);
            }
            if changed.managed_password {
                // Turning RDS's management off takes a password: the one in `db-secret`.
                req = req.manage_master_user_password(false);
            }
            if changed.managed_password || changed.password_version {
                // A new secret version (rotated, or the secret created again): RDS keeps the
                // password it was given until told (RDS API reference, ModifyDBInstance,
                // MasterUserPassword, https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/API_ModifyDBInstance.html).
                req = req.master_user_password(self.password(cx, d.password_version.as_deref()).await?);
            }
            req.send().await.op("ModifyDBInstance")?;
        }
        if changed.tags {
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
        // A standalone instance outside the writer region is a stale writer a failover left
        // behind (reprotect not run): it may hold writes that never replicated, so it goes with
        // a final snapshot, which tap keeps (SPEC "Destroy").
        let stale_writer = self.1 == Role::Replica && live.props.contains_key("engine");
        let snapshot = format!(
            "{}-final-{}",
            names::db_instance(cx.inputs(), &cx.region),
            chrono::Utc::now().format("%Y%m%d%H%M")
        );
        let r = rds
            .delete_db_instance()
            .db_instance_identifier(&live.physical_id)
            .skip_final_snapshot(!stale_writer)
            .set_final_db_snapshot_identifier(stale_writer.then(|| snapshot.clone()))
            .delete_automated_backups(true)
            .send()
            .await;
        if stale_writer {
            tracing::info!(target: "tap::dr", "deleting stale writer {} with final snapshot {snapshot}", live.physical_id);
        }
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

    /// A stale writer (a standalone instance outside the writer region, after a failover not
    /// yet re-protected) is deleted only once its read replicas are gone: RDS promotes the
    /// replicas of a deleted source to standalone instances, which would make more writers
    /// (RDS User Guide, "Working with DB instance read replicas"). Their own nodes delete them.
    async fn prepare_delete(&self, _cx: &NodeCx, live: &Live) -> Result<bool, NodeError> {
        Ok(self.1 == Role::Replica && live.props.contains_key("engine"))
    }

    async fn deletable(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        let Some(db) = self.describe(cx, &live.physical_id).await? else {
            return Ok(Readiness::Ready);
        };
        // Each listed replica (a cross-region one by ARN) that still exists. moto 5.2.5 keeps a
        // deleted cross-region replica's ARN listed on its source: only a replica that answers
        // counts.
        let mut left = vec![];
        for r in db.read_replica_db_instance_identifiers() {
            let (region, id) = match r.split(':').collect::<Vec<_>>()[..] {
                [_, _, _, region, _, _, id] => (region.to_string(), id.to_string()),
                _ => (cx.region.clone(), r.clone()),
            };
            let found = self
                .0
                .rds(&region)
                .describe_db_instances()
                .db_instance_identifier(&id)
                .send()
                .await
                .absent_on("DescribeDBInstances", GONE)?;
            if found.is_some_and(|o| !o.db_instances().is_empty()) {
                left.push(r.clone());
            }
        }
        Ok(match left.is_empty() {
            true => Readiness::Ready,
            false => Readiness::Pending(format!("its replicas to be gone first ({})", left.join(", "))),
        })
    }

    fn waits_for_deletion(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::{DbSpec, Tags, observed_version};
    use crate::resources::typed::to_props;

    #[test]
    fn a_role_has_only_its_own_properties() {
        let replica = DbSpec {
            class: "db.t3.micro".into(),
            encrypted: true,
            kms_key: "k".into(),
            publicly_accessible: false,
            subnet_group: "g".into(),
            security_groups: vec!["sg".into()],
            tags: Tags::new(),
            engine: None,
            engine_version: None,
            storage_gb: None,
            storage_type: None,
            multi_az: None,
            backup_retention_days: None,
            db_name: None,
            master_username: None,
            managed_password: None,
            deletion_protection: None,
            copy_tags_to_snapshot: None,
            source: Some("arn".into()),
            password_version: None,
        };
        assert_eq!(
            to_props(&replica).keys().collect::<Vec<_>>(),
            [
                "class",
                "encrypted",
                "kms_key",
                "publicly_accessible",
                "security_groups",
                "source",
                "subnet_group",
                "tags"
            ]
        );
        let primary = DbSpec {
            source: None,
            storage_gb: Some(20),
            ..replica
        };
        let p = to_props(&primary);
        assert!(!p.contains_key("source") && p["storage_gb"] == serde_json::json!(20));
    }

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
