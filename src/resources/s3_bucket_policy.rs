//! `s3-bucket-policy`: TLS-only access, and reads by the CloudFront distribution (OAC).

use super::cx::StackCx;
use super::typed::{Kind, Observe};
use super::{names, policy};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use serde_json::{Value, json};
use std::sync::Arc;

pub struct S3BucketPolicy(pub Arc<Aws>);

crate::spec! {
    /// The policy document, normalized (see [`policy::normalize`]).
    pub struct BucketPolicySpec, BucketPolicyLive, BucketPolicyChanged {
        policy: Value,
    }
    immutable []
}

/// The bucket policy of SPEC; `distribution_arn` adds the CloudFront read grant.
pub fn bucket_policy(bucket_arn: &str, distribution_arn: Option<&str>) -> Value {
    let mut statements = vec![json!({
        "Sid": "DenyInsecureTransport",
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket_arn, format!("{bucket_arn}/*")],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}}
    })];
    if let Some(dist) = distribution_arn {
        statements.push(json!({
            "Sid": "AllowCloudFrontRead",
            "Effect": "Allow",
            "Principal": {"Service": "cloudfront.amazonaws.com"},
            "Action": "s3:GetObject",
            "Resource": format!("{bucket_arn}/*"),
            "Condition": {"StringEquals": {"AWS:SourceArn": dist}}
        }));
    }
    policy::document(statements)
}

impl S3BucketPolicy {
    fn authored(&self, cx: &NodeCx) -> Result<Value, NodeError> {
        let arn = names::bucket_arn(cx.inputs(), &cx.region);
        Ok(bucket_policy(&arn, self.distribution(cx)?.as_deref()))
    }

    /// The distribution ARN, when this stack has a `cloudfront` node this policy depends on.
    fn distribution(&self, cx: &NodeCx) -> Result<Option<String>, NodeError> {
        match cx.node.deps.iter().find(|d| d.ends_with("/cloudfront")) {
            Some(cf) => cx.attr(cf, "arn").map(Some),
            None => Ok(None),
        }
    }
}

#[async_trait::async_trait]
impl Kind for S3BucketPolicy {
    type Spec = BucketPolicySpec;

    async fn desired(&self, cx: &NodeCx) -> Result<BucketPolicySpec, NodeError> {
        Ok(BucketPolicySpec {
            policy: policy::normalize(&self.authored(cx)?),
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("policy of bucket {}", names::bucket(cx.inputs(), &cx.region))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let bucket = names::bucket(cx.inputs(), &cx.region);
        let out = self.0.s3(&cx.region).get_bucket_policy().bucket(&bucket).send().await;
        let out = match out.absent_on("GetBucketPolicy", &["NoSuchBucketPolicy", "NoSuchBucket"]) {
            Ok(o) => o,
            Err(e) => return Err(super::s3_bucket::explain_forbidden(&self.0, &cx.region, &bucket, e).await),
        };
        Ok(out.map(|o| {
            Live::new(&bucket).attr("bucket", &bucket).observed(&BucketPolicyLive {
                policy: Some(policy::parse(o.policy.as_deref().unwrap_or_default())),
            })
        }))
    }

    async fn create(&self, cx: &NodeCx, want: &BucketPolicySpec) -> Result<Live, NodeError> {
        let bucket = names::bucket(cx.inputs(), &cx.region);
        let live = Live::new(&bucket).attr("bucket", &bucket);
        self.update(cx, &live, want, &BucketPolicyChanged::default()).await?;
        Ok(live.observed(&BucketPolicyLive {
            policy: Some(want.policy.clone()),
        }))
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        _: &BucketPolicySpec,
        _: &BucketPolicyChanged,
    ) -> Result<(), NodeError> {
        let s3 = self.0.s3(&cx.region);
        s3.put_bucket_policy()
            .bucket(&live.physical_id)
            .policy(self.authored(cx)?.to_string())
            .send()
            .await
            .op("PutBucketPolicy")
            .map(|_| ())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let s3 = self.0.s3(&cx.region);
        s3.delete_bucket_policy()
            .bucket(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteBucketPolicy", &["NoSuchBucket", "NoSuchBucketPolicy"])
    }
}
