//! `s3-bucket` (the region's data bucket) and `cf-log-bucket` (CloudFront standard logs).

use super::cx::StackCx;
use super::typed::{Kind, Observe, Tags};
use super::{names, tag_map};
use crate::aws::{Aws, SendExt, compat};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration, Delete, ObjectIdentifier,
    ObjectOwnership, OwnershipControls, OwnershipControlsRule, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
    VersioningConfiguration,
};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// `tap-bucket-{r}-{env}-{account}`: versioned, SSE-KMS with the region key, owner enforced.
    Data,
    /// `tap-cf-logs-{env}-{account}`: unversioned, SSE-S3, ACLs allowed (CloudFront logging needs them).
    CloudFrontLogs,
}

pub struct S3Bucket(pub Arc<Aws>, pub Variant);

/// The bucket's public access block settings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PublicAccessBlock {
    pub block_public_acls: bool,
    pub ignore_public_acls: bool,
    pub block_public_policy: bool,
    pub restrict_public_buckets: bool,
}

crate::spec! {
    /// Both variants block public access; versioning, encryption and ownership per [`Variant`]
    /// (the key and the bucket key only for the data bucket).
    pub struct BucketSpec, BucketLive, BucketChanged {
        public_access_block: PublicAccessBlock,
        tags: Tags,
        versioning: String,
        sse_algorithm: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sse_kms_key: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bucket_key: Option<bool>,
        object_ownership: String,
    }
    immutable []
}

pub use super::names::cf_log_bucket;

fn is_forbidden(e: &NodeError) -> bool {
    matches!(e.code.as_str(), "AccessDenied" | "Forbidden" | "HTTP403")
}

/// A 403 from a call on `bucket` (its policy, its notifications): when HeadBucket is refused
/// too, [`forbidden`] says whose the bucket is; otherwise `e` as it is.
pub async fn explain_forbidden(aws: &Aws, region: &str, bucket: &str, e: NodeError) -> NodeError {
    if !is_forbidden(&e) {
        return e;
    }
    match aws
        .s3(region)
        .head_bucket()
        .bucket(bucket)
        .send()
        .await
        .op("HeadBucket")
    {
        Err(h) if is_forbidden(&h) => forbidden(aws, region, bucket, e).await,
        _ => e,
    }
}

/// HeadBucket answers 403 (no body: no code, no message) in two cases (S3 API reference,
/// HeadBucket): the bucket exists and belongs to another account (bucket names are global), or
/// it is this account's and these credentials lack `s3:ListBucket` on it. ListBuckets lists this
/// account's buckets only, so it tells the two apart when it is allowed.
async fn forbidden(aws: &Aws, region: &str, bucket: &str, e: NodeError) -> NodeError {
    let listed = aws
        .s3(region)
        .list_buckets()
        .prefix(bucket)
        .send()
        .await
        .op("ListBuckets")
        .map(|l| l.buckets().iter().any(|b| b.name() == Some(bucket)));
    let bucket_of = format!("bucket {bucket}");
    match listed {
        Ok(false) => another_account(bucket, &e.op).on(bucket_of),
        Ok(true) => NodeError::fatal(
            &e.op,
            "AccessDenied",
            "access denied: the bucket is this account's, and these credentials may not read it \
             (s3:ListBucket, s3:Get* on the bucket)",
        )
        .on(bucket_of),
        Err(_) => NodeError::fatal(
            &e.op,
            "AccessDenied",
            "access denied: the bucket belongs to another AWS account (bucket names are global), or \
             these credentials may not read it (s3:ListBucket; s3:ListAllMyBuckets would tell which)",
        )
        .on(bucket_of),
    }
}

/// The code of an error about a bucket name that belongs to another account.
pub const FOREIGN_BUCKET: &str = crate::engine::reconcile::FOREIGN;

/// A bucket name taken by another account: nothing tap can do but say so.
fn another_account(name: &str, op: &str) -> NodeError {
    NodeError::fatal(
        op,
        FOREIGN_BUCKET,
        format!(
            "bucket {name} exists and belongs to another AWS account (bucket names are global); \
             tap cannot use it. Delete it there, or deploy with another --env"
        ),
    )
}

impl S3Bucket {
    fn name(&self, cx: &NodeCx) -> String {
        match self.1 {
            Variant::Data => names::bucket(cx.inputs(), &cx.region),
            Variant::CloudFrontLogs => cf_log_bucket(cx.inputs()),
        }
    }

    async fn describe(&self, cx: &NodeCx, name: &str) -> Result<Option<Live>, NodeError> {
        let s3 = self.0.s3(&cx.region);
        let head = s3.head_bucket().bucket(name).send().await.op("HeadBucket");
        match head {
            Ok(_) => {}
            Err(e) if matches!(e.code.as_str(), "NotFound" | "NoSuchBucket") => return Ok(None),
            Err(e) if is_forbidden(&e) => return Err(forbidden(&self.0, &cx.region, name, e).await),
            Err(e) => return Err(e),
        }
        let versioning =
            match compat::versioning_status(s3.get_bucket_versioning().bucket(name).send().await)?.as_deref() {
                Some("Enabled") => "Enabled",
                _ => "Disabled",
            };
        let live = Live::new(name)
            .arn(format!("arn:aws:s3:::{name}"))
            .attr("name", name)
            .attr("regional_domain_name", format!("{name}.s3.{}.amazonaws.com", cx.region));
        let enc = s3.get_bucket_encryption().bucket(name).send().await.absent_on(
            "GetBucketEncryption",
            &["ServerSideEncryptionConfigurationNotFoundError"],
        )?;
        let rule = enc
            .and_then(|e| e.server_side_encryption_configuration)
            .and_then(|c| c.rules.into_iter().next());
        let by_default = rule
            .as_ref()
            .and_then(|r| r.apply_server_side_encryption_by_default.clone());
        let sse_algorithm = by_default
            .as_ref()
            .map(|d| d.sse_algorithm.as_str().to_string())
            .unwrap_or_else(|| "none".into());
        let bucket_key = rule.as_ref().and_then(|r| r.bucket_key_enabled).unwrap_or(false);
        let sse_kms_key = by_default
            .and_then(|d| d.kms_master_key_id)
            .map(|k| super::kms_ref::KnownKeys::local(cx).observed(&k));
        let pab = s3
            .get_public_access_block()
            .bucket(name)
            .send()
            .await
            .absent_on("GetPublicAccessBlock", &["NoSuchPublicAccessBlockConfiguration"])?
            .and_then(|o| o.public_access_block_configuration);
        let b = |f: fn(&PublicAccessBlockConfiguration) -> Option<bool>| pab.as_ref().and_then(f).unwrap_or(false);
        let public_access_block = PublicAccessBlock {
            block_public_acls: b(|p| p.block_public_acls),
            ignore_public_acls: b(|p| p.ignore_public_acls),
            block_public_policy: b(|p| p.block_public_policy),
            restrict_public_buckets: b(|p| p.restrict_public_buckets),
        };
        let ownership = s3
            .get_bucket_ownership_controls()
            .bucket(name)
            .send()
            .await
            .absent_on("GetBucketOwnershipControls", &["OwnershipControlsNotFoundError"])?
            .and_then(|o| o.ownership_controls)
            .and_then(|c| c.rules.into_iter().next())
            .map(|r| r.object_ownership.as_str().to_string())
            .unwrap_or_else(|| "ObjectWriter".into());
        let tags = s3
            .get_bucket_tagging()
            .bucket(name)
            .send()
            .await
            .absent_on("GetBucketTagging", &["NoSuchTagSet", "NoSuchTagSetError"])?;
        let tags = tag_map(
            tags.map(|t| t.tag_set)
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value)),
        );
        Ok(Some(
            live.observed(&BucketLive {
                public_access_block: Some(public_access_block),
                tags: None,
                versioning: Some(versioning.to_string()),
                sse_algorithm: Some(sse_algorithm),
                // No key (SSE-S3, or no encryption): unobserved.
                sse_kms_key: sse_kms_key.map(Some),
                bucket_key: Some(Some(bucket_key)),
                object_ownership: Some(ownership),
            })
            .tags(tags),
        ))
    }

    async fn empty(&self, cx: &NodeCx, name: &str) -> Result<(), NodeError> {
        let s3 = self.0.s3(&cx.region);
        let (mut key_marker, mut version_marker) = (None::<String>, None::<String>);
        loop {
            let Some(page) = s3
                .list_object_versions()
                .bucket(name)
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .absent_on("ListObjectVersions", &["NoSuchBucket"])?
            else {
                return Ok(());
            };
            let ids: Vec<ObjectIdentifier> = page
                .versions()
                .iter()
                .map(|v| (v.key.clone(), v.version_id.clone()))
                .chain(
                    page.delete_markers()
                        .iter()
                        .map(|m| (m.key.clone(), m.version_id.clone())),
                )
                .filter_map(|(k, v)| ObjectIdentifier::builder().set_key(k).set_version_id(v).build().ok())
                .collect();
            for chunk in ids.chunks(1000) {
                let del = Delete::builder()
                    .set_objects(Some(chunk.to_vec()))
                    .quiet(true)
                    .build()
                    .expect("objects set");
                let out = s3
                    .delete_objects()
                    .bucket(name)
                    .delete(del)
                    .send()
                    .await
                    .op("DeleteObjects")?;
                if let Some(e) = out.errors().first() {
                    return Err(NodeError::fatal(
                        "DeleteObjects",
                        e.code().unwrap_or("Unknown"),
                        format!("{}: {}", e.key().unwrap_or_default(), e.message().unwrap_or_default()),
                    ));
                }
            }
            if page.is_truncated != Some(true) {
                return Ok(());
            }
            key_marker = page.next_key_marker;
            version_marker = page.next_version_id_marker;
        }
    }

    async fn put_tags(
        &self,
        cx: &NodeCx,
        name: &str,
        extra: Option<&BTreeMap<String, String>>,
    ) -> Result<(), NodeError> {
        // PutBucketTagging replaces the whole set: keep tags others added.
        let mut all = extra.cloned().unwrap_or_default();
        all.extend(cx.tags());
        let tagging = Tagging::builder()
            .set_tag_set(Some(s3_tags(&all)))
            .build()
            .expect("tag set");
        self.0
            .s3(&cx.region)
            .put_bucket_tagging()
            .bucket(name)
            .tagging(tagging)
            .send()
            .await
            .op("PutBucketTagging")
            .map(|_| ())
    }
}

#[async_trait::async_trait]
impl Kind for S3Bucket {
    type Spec = BucketSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<BucketSpec, NodeError> {
        let public_access_block = PublicAccessBlock {
            block_public_acls: true,
            ignore_public_acls: true,
            block_public_policy: true,
            restrict_public_buckets: true,
        };
        Ok(match self.1 {
            Variant::Data => BucketSpec {
                public_access_block,
                tags: cx.tags(),
                versioning: "Enabled".into(),
                sse_algorithm: "aws:kms".into(),
                sse_kms_key: Some(cx.attr(&cx.local("kms-key"), "arn")?),
                bucket_key: Some(true),
                object_ownership: "BucketOwnerEnforced".into(),
            },
            Variant::CloudFrontLogs => BucketSpec {
                public_access_block,
                tags: cx.tags(),
                versioning: "Disabled".into(),
                sse_algorithm: "AES256".into(),
                sse_kms_key: None,
                bucket_key: None,
                object_ownership: "BucketOwnerPreferred".into(),
            },
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("bucket {}", self.name(cx))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        self.describe(cx, &self.name(cx)).await
    }

    async fn create(&self, cx: &NodeCx, want: &BucketSpec) -> Result<Live, NodeError> {
        let name = self.name(cx);
        let req = self
            .0
            .s3(&cx.region)
            .create_bucket()
            .bucket(&name)
            .object_ownership(ObjectOwnership::from(want.object_ownership.as_str()));
        // Tags go in the create call itself, so a crash right after it leaves an owned bucket.
        let mut conf = CreateBucketConfiguration::builder().set_tags(Some(s3_tags(&cx.tags())));
        if cx.region != "us-east-1" {
            conf = conf.location_constraint(BucketLocationConstraint::from(cx.region.as_str()));
        }
        // BucketAlreadyOwnedByYou: this account made it, under a name only this env uses (a retry
        // after a lost response, or a crash before state was saved). Any other account's bucket
        // answers BucketAlreadyExists, which is fatal.
        match req
            .create_bucket_configuration(conf.build())
            .send()
            .await
            .ok_on("CreateBucket", &["BucketAlreadyOwnedByYou"])
        {
            Err(e) if e.code == "BucketAlreadyExists" => return Err(another_account(&name, "CreateBucket")),
            other => other?,
        }
        Ok(Live::new(&name).attr("name", &name))
    }

    async fn after_create(&self, cx: &NodeCx, live: &Live, want: &BucketSpec) -> Result<(), NodeError> {
        let name = &live.physical_id;
        // Everything desired but the tags and the ownership (both set by CreateBucket).
        let changed = BucketChanged {
            public_access_block: true,
            tags: false,
            versioning: true,
            sse_algorithm: true,
            sse_kms_key: want.sse_kms_key.is_some(),
            bucket_key: want.bucket_key.is_some(),
            object_ownership: false,
        };
        self.update(cx, &Live::new(name), want, &changed).await?;
        let missing = || {
            NodeError::fatal(
                "HeadBucket",
                "NoSuchBucket",
                format!("{name} missing after CreateBucket"),
            )
        };
        let live = self.describe(cx, name).await?.ok_or_else(missing)?;
        if cx.owns(&live) != Some(true) {
            // moto ignores tags in CreateBucketConfiguration (AWS applies them), and keeps the
            // tags of a deleted bucket for a new one of the same name. The bucket was just
            // created here: it is ours.
            self.put_tags(cx, name, live.tags.as_ref()).await?;
        }
        Ok(())
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        want: &BucketSpec,
        changed: &BucketChanged,
    ) -> Result<(), NodeError> {
        let s3 = self.0.s3(&cx.region);
        let name = &live.physical_id;
        if changed.versioning {
            let status = if want.versioning == "Enabled" {
                BucketVersioningStatus::Enabled
            } else {
                BucketVersioningStatus::Suspended
            };
            let conf = VersioningConfiguration::builder().status(status).build();
            s3.put_bucket_versioning()
                .bucket(name)
                .versioning_configuration(conf)
                .send()
                .await
                .op("PutBucketVersioning")?;
        }
        if changed.sse_algorithm || changed.sse_kms_key || changed.bucket_key {
            let by_default = ServerSideEncryptionByDefault::builder()
                .sse_algorithm(ServerSideEncryption::from(want.sse_algorithm.as_str()))
                .set_kms_master_key_id(want.sse_kms_key.clone())
                .build()
                .expect("algorithm set");
            let rule = ServerSideEncryptionRule::builder()
                .apply_server_side_encryption_by_default(by_default)
                .set_bucket_key_enabled(want.bucket_key)
                .build();
            let conf = ServerSideEncryptionConfiguration::builder()
                .rules(rule)
                .build()
                .expect("rules set");
            s3.put_bucket_encryption()
                .bucket(name)
                .server_side_encryption_configuration(conf)
                .send()
                .await
                .op("PutBucketEncryption")?;
        }
        if changed.public_access_block {
            let p = &want.public_access_block;
            let conf = PublicAccessBlockConfiguration::builder()
                .block_public_acls(p.block_public_acls)
                .ignore_public_acls(p.ignore_public_acls)
                .block_public_policy(p.block_public_policy)
                .restrict_public_buckets(p.restrict_public_buckets)
                .build();
            s3.put_public_access_block()
                .bucket(name)
                .public_access_block_configuration(conf)
                .send()
                .await
                .op("PutPublicAccessBlock")?;
        }
        if changed.object_ownership {
            let rule = OwnershipControlsRule::builder()
                .object_ownership(ObjectOwnership::from(want.object_ownership.as_str()))
                .build()
                .expect("ownership");
            let conf = OwnershipControls::builder().rules(rule).build().expect("rules");
            s3.put_bucket_ownership_controls()
                .bucket(name)
                .ownership_controls(conf)
                .send()
                .await
                .op("PutBucketOwnershipControls")?;
        }
        if changed.tags {
            self.put_tags(cx, name, live.tags.as_ref()).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let s3 = self.0.s3(&cx.region);
        let name = &live.physical_id;
        // SPEC: the policy goes first (its TLS deny would refuse the object deletes on some
        // endpoints; moto applies it to every object call), then every version, then the bucket.
        s3.delete_bucket_policy()
            .bucket(name)
            .send()
            .await
            .ok_on("DeleteBucketPolicy", &["NoSuchBucket", "NoSuchBucketPolicy"])?;
        self.empty(cx, name).await?;
        s3.delete_bucket()
            .bucket(name)
            .send()
            .await
            .ok_on("DeleteBucket", &["NoSuchBucket"])
    }
}

fn s3_tags(tags: &BTreeMap<String, String>) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key and value"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::typed::to_props;

    /// The CloudFront log bucket has no key and no bucket key: absent, not null.
    #[test]
    fn the_log_bucket_has_no_key_properties() {
        let s = BucketSpec {
            public_access_block: PublicAccessBlock {
                block_public_acls: true,
                ignore_public_acls: true,
                block_public_policy: true,
                restrict_public_buckets: true,
            },
            tags: Tags::new(),
            versioning: "Disabled".into(),
            sse_algorithm: "AES256".into(),
            sse_kms_key: None,
            bucket_key: None,
            object_ownership: "BucketOwnerPreferred".into(),
        };
        let p = to_props(&s);
        assert_eq!(
            p.keys().collect::<Vec<_>>(),
            [
                "object_ownership",
                "public_access_block",
                "sse_algorithm",
                "tags",
                "versioning"
            ]
        );
        assert_eq!(
            p["public_access_block"],
            serde_json::json!({"block_public_acls": true, "ignore_public_acls": true,
                               "block_public_policy": true, "restrict_public_buckets": true})
        );
        assert_eq!(crate::resources::typed::from_props::<BucketSpec>("t", &p).unwrap(), s);
        let live = Live::new("b").observed(&BucketLive {
            sse_kms_key: None,
            bucket_key: Some(Some(false)),
            ..Default::default()
        });
        assert_eq!(live.props.keys().collect::<Vec<_>>(), ["bucket_key"]);
    }
}
