//! Emulator compatibility that is inert on AWS.
//!
//! moto 5.2.5 answers S3 GetBucketVersioning with the root element `GetBucketVersioningResponse`
//! where AWS (and the SDK's parser) use `VersioningConfiguration`, so the SDK rejects the
//! response as an unhandled error. The raw body travels with the error: [`versioning_status`]
//! reads the status from it. AWS never sends that root, so on AWS this path is never taken.

use crate::aws::SendExt;
use crate::engine::resource::NodeError;
use aws_sdk_s3::operation::get_bucket_versioning::{GetBucketVersioningError, GetBucketVersioningOutput};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;

/// `Enabled`, `Suspended`, or `None` for a bucket never versioned.
pub fn versioning_status(
    r: Result<GetBucketVersioningOutput, SdkError<GetBucketVersioningError, HttpResponse>>,
) -> Result<Option<String>, NodeError> {
    match r {
        Ok(o) => Ok(o.status.map(|s| s.as_str().to_string())),
        Err(e) => {
            let body = e
                .raw_response()
                .and_then(|r| r.body().bytes())
                .map(|b| String::from_utf8_lossy(b).into_owned());
            match body.as_deref().filter(|b| b.contains("<GetBucketVersioningResponse")) {
                Some(b) => Ok(status_in(b)),
                None => Err(Err::<(), _>(e).op("GetBucketVersioning").unwrap_err()),
            }
        }
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
