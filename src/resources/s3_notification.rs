//! `s3-notification`: the bucket's ObjectCreated and Replication events go to the function,
//! after a Lambda permission for S3 scoped to the bucket and account (defect 4).

use super::cx::StackCx;
use super::names;
use super::typed::{Kind, Observe, observed_of};
use crate::aws::{Aws, SendExt, compat};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_s3::types::{Event, LambdaFunctionConfiguration, NotificationConfiguration};
use std::sync::Arc;

pub struct S3Notification(pub Arc<Aws>);

crate::spec! {
    /// The function notified, the events (sorted), and whether S3 may invoke it.
    pub struct NotificationSpec, NotificationLive, NotificationChanged {
        function: String,
        events: Vec<String>,
        permission: bool,
    }
    immutable []
}

pub const EVENTS: [&str; 2] = ["s3:ObjectCreated:*", "s3:Replication:*"];
pub const CONFIG_ID: &str = "tap-replication-monitor";
pub const STATEMENT_ID: &str = "tap-s3-invoke";

impl S3Notification {
    /// Whether the function's policy has the S3 invoke statement for this bucket.
    async fn permission(&self, cx: &NodeCx, function: &str) -> Result<bool, NodeError> {
        let out = self
            .0
            .lambda(&cx.region)
            .get_policy()
            .function_name(function)
            .send()
            .await;
        let Some(p) = out.absent_on("GetPolicy", &["ResourceNotFoundException"])? else {
            return Ok(false);
        };
        let doc: serde_json::Value = serde_json::from_str(p.policy.as_deref().unwrap_or("{}")).unwrap_or_default();
        let bucket = names::bucket_arn(cx.inputs(), &cx.region);
        Ok(doc["Statement"].as_array().is_some_and(|st| {
            st.iter()
                .any(|s| s["Sid"] == STATEMENT_ID && s.to_string().contains(&bucket))
        }))
    }
}

#[async_trait::async_trait]
impl Kind for S3Notification {
    type Spec = NotificationSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<NotificationSpec, NodeError> {
        Ok(NotificationSpec {
            function: cx.attr(&cx.local("lambda-function"), "arn")?,
            events: EVENTS.map(String::from).to_vec(),
            permission: true,
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!(
            "notification configuration of bucket {}",
            names::bucket(cx.inputs(), &cx.region)
        )
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let bucket = names::bucket(cx.inputs(), &cx.region);
        let out = self
            .0
            .s3(&cx.region)
            .get_bucket_notification_configuration()
            .bucket(&bucket)
            .send()
            .await;
        let out = match compat::notification_configuration(out) {
            Ok(o) => o,
            Err(e) => return Err(super::s3_bucket::explain_forbidden(&self.0, &cx.region, &bucket, e).await),
        };
        let Some(out) = out else {
            return Ok(None);
        };
        let Some(conf) = out.lambda_function_configurations().first() else {
            return Ok(None);
        };
        let mut events: Vec<String> = conf.events().iter().map(|e| e.as_str().to_string()).collect();
        events.sort();
        let function = conf.lambda_function_arn.clone();
        let permission = self.permission(cx, &function).await?;
        Ok(Some(Live::new(&bucket).attr("bucket", &bucket).observed(
            &NotificationLive {
                function: Some(function),
                events: Some(events),
                permission: Some(permission),
            },
        )))
    }

    async fn create(&self, cx: &NodeCx, want: &NotificationSpec) -> Result<Live, NodeError> {
        let bucket = names::bucket(cx.inputs(), &cx.region);
        let live = Live::new(&bucket).attr("bucket", &bucket).observed(&NotificationLive {
            permission: Some(false),
            ..Default::default()
        });
        let changed = NotificationChanged {
            permission: true,
            function: true,
            ..Default::default()
        };
        self.update(cx, &live, want, &changed).await?;
        Ok(live)
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        want: &NotificationSpec,
        changed: &NotificationChanged,
    ) -> Result<(), NodeError> {
        let function = want.function.as_str();
        if changed.permission || changed.function {
            let account = self.0.account_id(&cx.region).await?;
            let l = self.0.lambda(&cx.region);
            l.remove_permission()
                .function_name(function)
                .statement_id(STATEMENT_ID)
                .send()
                .await
                .ok_on("RemovePermission", &["ResourceNotFoundException"])?;
            l.add_permission()
                .function_name(function)
                .statement_id(STATEMENT_ID)
                .action("lambda:InvokeFunction")
                .principal("s3.amazonaws.com")
                .source_arn(names::bucket_arn(cx.inputs(), &cx.region))
                .source_account(account)
                .send()
                .await
                .op("AddPermission")
                .map(|_| ())
                .or_else(|e| match e.class {
                    // The statement was just removed above: it exists only if a retry of this
                    // very call (after a lost response) finds the first attempt's.
                    crate::engine::resource::ErrorClass::AlreadyExists => Ok(()),
                    _ => Err(e),
                })?;
        }
        let conf = LambdaFunctionConfiguration::builder()
            .id(CONFIG_ID)
            .lambda_function_arn(function)
            .set_events(Some(EVENTS.iter().map(|e| Event::from(*e)).collect()))
            .build()
            .expect("arn and events set");
        let n = NotificationConfiguration::builder()
            .lambda_function_configurations(conf)
            .build();
        self.0
            .s3(&cx.region)
            .put_bucket_notification_configuration()
            .bucket(&live.physical_id)
            .notification_configuration(n)
            .send()
            .await
            .op("PutBucketNotificationConfiguration")
            .map(|_| ())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let s3 = self.0.s3(&cx.region);
        s3.put_bucket_notification_configuration()
            .bucket(&live.physical_id)
            .notification_configuration(NotificationConfiguration::builder().build())
            .send()
            .await
            .ok_on("PutBucketNotificationConfiguration", &["NoSuchBucket"])?;
        if let Some(f) = observed_of::<NotificationSpec>(live).function {
            let l = self.0.lambda(&cx.region);
            l.remove_permission()
                .function_name(f)
                .statement_id(STATEMENT_ID)
                .send()
                .await
                .ok_on("RemovePermission", &["ResourceNotFoundException"])?;
        }
        Ok(())
    }
}
