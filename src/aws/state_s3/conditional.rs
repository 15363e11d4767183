//! What an S3 answer to a conditional request means, read from the HTTP status (not from the
//! text of a message), and the pure decisions the state backend takes on it.
//!
//! S3 User Guide, "How to prevent object overwrites with conditional writes"
//! (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html) and S3 API
//! reference, PutObject (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html):
//! `If-None-Match: *` / `If-Match: <ETag>` answer 412 Precondition Failed when the condition does
//! not hold, and 409 ConditionalRequestConflict when a concurrent conditional write or delete on
//! the same key is in flight ("retry the request").

use crate::aws::aws_err;
use crate::engine::resource::NodeError;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use std::time::Duration;

/// An S3 error with what `NodeError` does not carry: the HTTP status of the raw response and
/// the `x-amz-bucket-region` header.
pub struct S3Error {
    pub error: NodeError,
    pub status: Option<u16>,
    pub bucket_region: Option<String>,
}

/// How a failed conditional request ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 412: the condition did not hold (or our own write, executed and its response lost, made
    /// the SDK's resend fail its condition).
    PreconditionFailed,
    /// 409: a concurrent conditional operation on the key; the request was not executed.
    Conflict,
    /// 404: no such object (a delete or read of a key that is gone).
    Absent,
    /// 501 NotImplemented: the endpoint does not implement the conditional header (an
    /// S3-compatible store: LocalStack answers `DeleteObject If-Match` so). S3 API reference,
    /// "Error responses": NotImplemented, "A header you provided implies functionality that is
    /// not implemented", 501 (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html).
    NotImplemented,
    Other,
}

/// By the HTTP status: a message that happens to contain "412" is no 412.
pub fn outcome(status: Option<u16>, code: &str) -> Outcome {
    match status {
        Some(412) => Outcome::PreconditionFailed,
        // S3 also answers 409 OperationAborted "A conflicting conditional operation is currently
        // in progress against this resource" (S3 API reference, "Error responses").
        Some(409) if matches!(code, "ConditionalRequestConflict" | "OperationAborted") => Outcome::Conflict,
        Some(404) => Outcome::Absent,
        Some(501) => Outcome::NotImplemented,
        _ if code == "NotImplemented" => Outcome::NotImplemented,
        _ => Outcome::Other,
    }
}

/// Whether a conditional state write was refused because the version it was conditioned on is
/// not the current one: 412 on AWS; `If-Match` on a key deleted meanwhile answers 404 on some
/// S3-compatible stores (LocalStack). Either way another writer changed the state.
pub fn condition_failed(outcome: &Outcome, if_match: bool) -> bool {
    match outcome {
        Outcome::PreconditionFailed => true,
        Outcome::Absent => if_match,
        _ => false,
    }
}

impl S3Error {
    pub fn from_sdk<E>(op: &str, e: SdkError<E, HttpResponse>) -> S3Error
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let bucket_region = bucket_region(&e);
        S3Error {
            error: aws_err(op, e),
            status,
            bucket_region,
        }
    }

    pub fn outcome(&self) -> Outcome {
        outcome(self.status, &self.error.code)
    }
}

/// The region S3 names for the bucket in an error response (`x-amz-bucket-region`), if any.
pub fn bucket_region<E>(e: &SdkError<E, HttpResponse>) -> Option<String> {
    e.raw_response()
        .and_then(|r| r.headers().get("x-amz-bucket-region"))
        .map(str::to_string)
}

/// The bucket is in another region than the one asked: S3 answers 301 PermanentRedirect (400
/// AuthorizationHeaderMalformed at the bucket's own regional endpoint) with the header
/// `x-amz-bucket-region`, and the Rust SDK does not follow it (S3 API reference, HeadBucket:
/// x-amz-bucket-region; "Error responses": PermanentRedirect,
/// https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html). The error to show, if so.
pub fn wrong_region(
    bucket: &str,
    asked: &str,
    op: &str,
    status: Option<u16>,
    code: &str,
    header: Option<&str>,
) -> Option<String> {
    let fix = match header {
        Some(r) if r != asked => format!("it is in {r}: add --state-region {r}"),
        Some(_) => return None,
        None if status == Some(301) || code == "PermanentRedirect" => {
            "name its region with --state-region REGION".to_string()
        }
        None => return None,
    };
    let code = if code.is_empty() || code.starts_with("HTTP") {
        "PermanentRedirect"
    } else {
        code
    };
    Some(format!(
        "state bucket {bucket} is not in {asked} ({op} answered {} {code}; the AWS SDK does not \
         follow S3's redirect to another region); {fix}",
        status.map_or_else(|| "an error".to_string(), |s| s.to_string())
    ))
}

/// Whether the object found after a 412 is the version this run just wrote (the SDK resent a
/// write that S3 had executed, its response lost). Byte for byte: the serialized state carries
/// its lineage and serial, and the serial this run wrote is the one any other writer that read
/// the same version would write too, so lineage and serial alone cannot tell the two apart;
/// the whole text (every node's status and time) can.
pub fn is_our_write(sent: &[u8], found: &[u8]) -> bool {
    !sent.is_empty() && sent == found
}

/// Whether the lock object found after a 412 holds this run's lock id (random, 64 bits).
pub fn is_our_lock(our_id: &str, found_id: &str) -> bool {
    !our_id.is_empty() && our_id == found_id
}

/// 409 ConditionalRequestConflict is retried this often at most (the first try not counted).
pub const CONFLICT_RETRIES: u32 = 6;

/// Before the `attempt`-th retry (from 1): exponential from 100 ms, at most 3.2 s, with full
/// jitter (the same waiting rule as the SDK's standard retries), so that two runs that
/// collided do not collide again.
pub fn conflict_backoff(attempt: u32, random: u64) -> Duration {
    let cap_ms = (100u64 << attempt.saturating_sub(1).min(5)).min(3200);
    Duration::from_millis(random % (cap_ms + 1))
}

fn random() -> u64 {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).expect("OS random source");
    u64::from_le_bytes(b)
}

/// Sends a conditional request, again after a 409 ConditionalRequestConflict (bounded, with
/// jitter): AWS says to retry it.
pub async fn retry_conflicts<T, F, Fut>(mut send: F) -> Result<T, S3Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, S3Error>>,
{
    let mut attempt = 0;
    loop {
        match send().await {
            Err(e) if e.outcome() == Outcome::Conflict && attempt < CONFLICT_RETRIES => {
                attempt += 1;
                let delay = conflict_backoff(attempt, random());
                tracing::info!(
                    op = %e.error.op,
                    code = %e.error.code,
                    attempt,
                    delay_ms = delay.as_millis() as u64,
                    "conditional request conflicted with another; retrying"
                );
                tokio::time::sleep(delay).await;
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_read_from_the_status_not_the_message() {
        assert_eq!(outcome(Some(412), "PreconditionFailed"), Outcome::PreconditionFailed);
        // A HEAD-like answer without a body still is a 412.
        assert_eq!(outcome(Some(412), "HTTP412"), Outcome::PreconditionFailed);
        // "412" inside another error's code or message is not a precondition failure.
        assert_eq!(outcome(Some(400), "InvalidArgument"), Outcome::Other);
        assert_eq!(outcome(None, "NetworkError"), Outcome::Other);
        assert_eq!(outcome(Some(409), "ConditionalRequestConflict"), Outcome::Conflict);
        assert_eq!(outcome(Some(409), "OperationAborted"), Outcome::Conflict);
        assert_eq!(outcome(Some(409), "BucketAlreadyExists"), Outcome::Other);
        assert_eq!(outcome(Some(404), "NoSuchKey"), Outcome::Absent);
        assert_eq!(outcome(Some(501), "NotImplemented"), Outcome::NotImplemented);
    }

    /// Issue 17 item 13: LocalStack answers `PutObject If-Match` on a missing key 404, not 412.
    #[test]
    fn an_if_match_write_answered_404_is_a_failed_condition() {
        assert!(condition_failed(&Outcome::PreconditionFailed, false));
        assert!(condition_failed(&Outcome::Absent, true));
        assert!(
            !condition_failed(&Outcome::Absent, false),
            "If-None-Match: a 404 is no verdict"
        );
        assert!(!condition_failed(&Outcome::Other, true));
    }

    #[test]
    fn a_412_is_our_own_write_only_when_the_object_is_what_we_sent() {
        let ours = br#"{"lineage":"ab","serial":7,"nodes":{"x":{"status":"done"}}}"#;
        assert!(is_our_write(ours, ours));
        // Another writer that read the same version writes the same lineage and serial.
        let theirs = br#"{"lineage":"ab","serial":7,"nodes":{"x":{"status":"failed"}}}"#;
        assert!(!is_our_write(ours, theirs));
        assert!(!is_our_write(b"", b""));
        assert!(is_our_lock("0badc0ffee", "0badc0ffee"));
        assert!(!is_our_lock("0badc0ffee", "feedface"));
        assert!(!is_our_lock("", ""));
    }

    #[test]
    fn conflict_backoff_is_bounded_and_jittered() {
        for attempt in 1..=CONFLICT_RETRIES {
            for r in [0, 1, 99, 12345, u64::MAX] {
                assert!(conflict_backoff(attempt, r) <= Duration::from_millis(3200));
            }
        }
        assert_eq!(conflict_backoff(1, 150), Duration::from_millis(150 % 101));
        assert_ne!(conflict_backoff(3, 7), conflict_backoff(3, 300));
    }

    #[test]
    fn a_bucket_in_another_region_names_the_state_region_to_use() {
        let m = wrong_region(
            "acme",
            "us-east-1",
            "GetBucketVersioning",
            Some(301),
            "PermanentRedirect",
            Some("eu-central-1"),
        )
        .unwrap();
        assert!(m.contains("acme") && m.contains("--state-region eu-central-1"), "{m}");
        assert!(m.contains("301 PermanentRedirect"), "{m}");
        // HEAD: no body, no code.
        let m = wrong_region("acme", "us-east-1", "HeadObject", Some(301), "HTTP301", None).unwrap();
        assert!(
            m.contains("--state-region REGION") && m.contains("PermanentRedirect"),
            "{m}"
        );
        assert!(wrong_region("acme", "us-east-1", "GetObject", Some(403), "AccessDenied", None).is_none());
        assert!(
            wrong_region(
                "acme",
                "us-east-1",
                "GetObject",
                Some(404),
                "NoSuchKey",
                Some("us-east-1")
            )
            .is_none()
        );
    }
}
