//! Emulator compatibility that is inert on AWS.
//!
//! moto 5.2.5 answers some S3 reads with a root element AWS never sends (and the SDK rejects as
//! an unhandled error): GetBucketVersioning always (`GetBucketVersioningResponse`), and
//! GetBucketNotificationConfiguration when the bucket has no notifications
//! (`GetBucketNotificationResponse`). The raw body travels with the error; these functions read
//! it. AWS never sends those roots, so on AWS these paths are never taken.

use crate::aws::SendExt;
use crate::engine::resource::NodeError;
use aws_sdk_s3::operation::get_bucket_notification_configuration::{
    GetBucketNotificationConfigurationError, GetBucketNotificationConfigurationOutput,
};
use aws_sdk_s3::operation::get_bucket_versioning::{GetBucketVersioningError, GetBucketVersioningOutput};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// The raw body of a response the SDK rejected, when its root element is `root`.
fn body_with_root<E>(e: &SdkError<E, HttpResponse>, root: &str) -> Option<String> {
    let body = e.raw_response()?.body().bytes()?;
    let text = String::from_utf8_lossy(body);
    text.contains(&format!("<{root}")).then(|| text.into_owned())
}

fn fail<T, E>(op: &str, e: SdkError<E, HttpResponse>) -> Result<T, NodeError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    Err(Err::<(), _>(e).op(op).unwrap_err())
}

/// `Enabled`, `Suspended`, or `None` for a bucket never versioned.
pub fn versioning_status(
    r: Result<GetBucketVersioningOutput, SdkError<GetBucketVersioningError, HttpResponse>>,
) -> Result<Option<String>, NodeError> {
    match r {
        Ok(o) => Ok(o.status.map(|s| s.as_str().to_string())),
        Err(e) => match body_with_root(&e, "GetBucketVersioningResponse") {
            Some(b) => Ok(status_in(&b)),
            None => fail("GetBucketVersioning", e),
        },
    }
}

/// The notification configuration; `None` for moto's empty answer (no notifications).
pub fn notification_configuration(
    r: Result<
        GetBucketNotificationConfigurationOutput,
        SdkError<GetBucketNotificationConfigurationError, HttpResponse>,
    >,
) -> Result<Option<GetBucketNotificationConfigurationOutput>, NodeError> {
    match r {
        Ok(o) => Ok(Some(o)),
        Err(e) if body_with_root(&e, "GetBucketNotificationResponse").is_some() => Ok(None),
        Err(e) => match Err::<(), _>(e).absent_on("GetBucketNotificationConfiguration", &["NoSuchBucket"]) {
            Ok(_) => Ok(None),
            Err(e) => Err(e),
        },
    }
}

fn status_in(body: &str) -> Option<String> {
    let start = body.find("<Status>")? + "<Status>".len();
    let end = body[start..].find("</Status>")? + start;
    Some(body[start..end].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_status_from_motos_body() {
        let moto = r#"<?xml version="1.0"?><GetBucketVersioningResponse xmlns="x"><Status>Enabled</Status></GetBucketVersioningResponse>"#;
        assert_eq!(status_in(moto).as_deref(), Some("Enabled"));
        assert_eq!(status_in(r#"<GetBucketVersioningResponse xmlns="x"/>"#), None);
    }
}
