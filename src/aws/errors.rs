//! AWS SDK errors as engine errors: operation, AWS error code and message, and a class that
//! the driver's retry policies act on.

use crate::engine::resource::{ErrorClass, NodeError};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Refusals before the request ran: sending it again is safe.
const THROTTLING: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "RequestThrottled",
    "RequestThrottledException",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Server faults: the request may or may not have run.
const SERVER_FAULTS: &[&str] = &[
    "ServiceUnavailable",
    "ServiceUnavailableException",
    "InternalError",
    "InternalFailure",
    "InternalServerError",
    "InternalServiceError",
    "ServiceFailure",
];

/// An answer that AWS gives with one error code for several causes, told apart by its message.
/// Scoped to the operations that answer so: the same code and words from another operation mean
/// something else (and are not retried).
struct Answer {
    ops: &'static [&'static str],
    code: &'static str,
    /// Words of the message (AWS has no other field that tells these causes apart).
    says: &'static str,
}

const fn answer(ops: &'static [&'static str], code: &'static str, says: &'static str) -> Answer {
    Answer { ops, code, says }
}

/// IAM eventual consistency: refusals that go away once a fresh role, instance profile or
/// service-linked role has propagated (IAM User Guide, "Troubleshooting IAM": changes are
/// eventually consistent; Lambda, Auto Scaling, EC2, KMS and S3 validate the role when called).
const PROPAGATION: &[Answer] = &[
    // Lambda API reference, CreateFunction: "The role defined for the function cannot be assumed
    // by Lambda."
    answer(
        &["CreateFunction", "UpdateFunctionConfiguration"],
        "InvalidParameterValueException",
        "cannot be assumed",
    ),
    answer(
        &["CreateFunction", "UpdateFunctionConfiguration"],
        "InvalidParameterValueException",
        "role",
    ),
    // Auto Scaling validates the launch template's instance profile.
    answer(
        &["CreateAutoScalingGroup", "UpdateAutoScalingGroup"],
        "ValidationError",
        "Invalid IAM Instance Profile",
    ),
    answer(
        &[
            "CreateLaunchTemplate",
            "CreateLaunchTemplateVersion",
            "CreateAutoScalingGroup",
            "UpdateAutoScalingGroup",
        ],
        "InvalidParameterValue",
        "iamInstanceProfile",
    ),
    // KMS API reference, CreateKey / PutKeyPolicy: a principal that is not visible yet makes the
    // policy "MalformedPolicyDocumentException ... invalid principals".
    answer(
        &["CreateKey", "PutKeyPolicy"],
        "MalformedPolicyDocumentException",
        "invalid principals",
    ),
    // S3 checks the replication role when the configuration is put.
    answer(&["PutBucketReplication"], "InvalidArgument", "role"),
    answer(&["PutBucketReplication"], "InvalidRequest", "role"),
    answer(
        &[
            "PutBucketReplication",
            "PutBucketNotificationConfiguration",
            "CreateFunction",
            "AddPermission",
        ],
        "AccessDenied",
        "assume",
    ),
];

/// Answers that clear by themselves within seconds. S3 checks a replication destination's
/// versioning and a notification's destination when the configuration is put, and may not see a
/// just-changed bucket or function yet.
const NOT_YET_VISIBLE: &[Answer] = &[
    // Lambda: "The operation cannot be performed at this time. An update is in progress".
    answer(
        &[
            "UpdateFunctionCode",
            "UpdateFunctionConfiguration",
            "AddPermission",
            "RemovePermission",
            "TagResource",
            "DeleteFunction",
        ],
        "ResourceConflictException",
        "in progress",
    ),
    // S3: "A conflicting conditional operation is currently in progress against this resource."
    answer(
        &[
            "CreateBucket",
            "PutBucketVersioning",
            "PutBucketReplication",
            "PutBucketNotificationConfiguration",
            "PutBucketPolicy",
            "PutBucketEncryption",
            "PutBucketTagging",
            "PutPublicAccessBlock",
            "PutBucketOwnershipControls",
            "DeleteBucket",
        ],
        "OperationAborted",
        "conflicting conditional operation",
    ),
    // EC2: a NAT gateway's Elastic IP or route target still `pending`.
    answer(
        &["CreateNatGateway", "CreateRoute", "DeleteNatGateway", "ReleaseAddress"],
        "IncorrectState",
        "pending",
    ),
    // S3 API reference, PutBucketReplication: the destination "must have versioning enabled".
    answer(
        &["PutBucketReplication"],
        "InvalidRequest",
        "must have versioning enabled",
    ),
    // S3: "Unable to validate the following destination configurations" (a just-created
    // function's permission not visible yet).
    answer(
        &["PutBucketNotificationConfiguration"],
        "InvalidArgument",
        "Unable to validate",
    ),
    // A secret force-deleted by a just-finished (or interrupted) destroy: its name is free once
    // the asynchronous delete completes (Secrets Manager API reference, DeleteSecret,
    // https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DeleteSecret.html:
    // "Secrets Manager performs the actual deletion with an asynchronous background process ...
    // use appropriate back off and retry logic"). Meanwhile CreateSecret of the name answers
    // "... already scheduled for deletion" and RestoreSecret of the secret (still described, with
    // a DeletedDate) "... because it was deleted" (API_RestoreSecret.html, InvalidRequestException).
    answer(&["CreateSecret"], "InvalidRequestException", "scheduled for deletion"),
    answer(&["RestoreSecret"], "InvalidRequestException", "because it was deleted"),
];

/// A delete refused while a dependency lingers (EC2 API reference, DeleteSecurityGroup and
/// DeleteSubnet: `DependencyViolation` while network interfaces remain).
const LINGERING: &[&str] = &[
    "DependencyViolation",
    "OriginAccessControlInUse",
    "InvalidDBSubnetGroupStateFault",
    "ScalingActivityInProgress",
    "ResourceInUse",
];

/// A create refused because the object (its name) exists. `BucketAlreadyExists` is not here:
/// that name belongs to another account.
const ALREADY_EXISTS: &[&str] = &[
    "EntityAlreadyExists",
    "AlreadyExists",
    "AlreadyExistsException",
    "BucketAlreadyOwnedByYou",
    "InvalidGroup.Duplicate",
    "DBInstanceAlreadyExists",
    "DBSubnetGroupAlreadyExists",
    "ResourceAlreadyExistsException",
    "ResourceExistsException",
    "OriginAccessControlAlreadyExists",
    "DistributionAlreadyExists",
    "InvalidLaunchTemplateName.AlreadyExistsException",
];

/// Whether `code` says an object does not exist (EC2's `InvalidVpcID.NotFound`, IAM's
/// `NoSuchEntity`, S3's `NoSuchBucket`, ...).
fn is_not_found(code: &str) -> bool {
    code.ends_with(".NotFound")
        || code.ends_with("NotFound")
        || code.ends_with("NotFoundException")
        || code.ends_with("NotFoundFault")
        || code.starts_with("NoSuch")
}

/// What an error of operation `op` means for retrying: message-told answers only for the
/// operations that give them; codes and HTTP statuses for the rest.
pub fn classify(op: &str, code: &str, message: &str, status: Option<u16>) -> ErrorClass {
    let has = |table: &[Answer]| {
        table
            .iter()
            .any(|a| a.code == code && a.ops.contains(&op) && message.contains(a.says))
    };
    if has(NOT_YET_VISIBLE) {
        ErrorClass::NotYetVisible
    } else if has(PROPAGATION) {
        ErrorClass::Propagation
    } else if THROTTLING.contains(&code) || status == Some(429) {
        ErrorClass::Throttled
    } else if SERVER_FAULTS.contains(&code) || status.is_some_and(|s| s >= 500) {
        ErrorClass::Transient
    } else if LINGERING.contains(&code) {
        ErrorClass::Lingering
    } else if ALREADY_EXISTS.contains(&code)
        // Lambda answers a taken function name with ResourceConflictException "already exist".
        || (op == "CreateFunction" && code == "ResourceConflictException" && message.contains("already exist"))
    {
        ErrorClass::AlreadyExists
    } else if is_not_found(code) {
        // A read that expects "absent" maps these itself (`absent_on`); anywhere else it is an
        // id tap was just given that another call cannot see yet.
        ErrorClass::NotYetVisible
    } else {
        ErrorClass::Fatal
    }
}

/// An error and its causes in one line, `outer: inner: root`, each message once. Not
/// `DisplayErrorContext`: that appends the whole error's `Debug` form, a dump no user should read.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let m = err.to_string();
        if !m.is_empty() && !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = err.source();
    }
    parts.join(": ")
}

/// The innermost cause's message (`Connection refused (os error 111)`), for one-line errors.
pub fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

pub fn aws_err<E>(op: &str, e: SdkError<E, HttpResponse>) -> NodeError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = e.raw_response().map(|r| r.status().as_u16());
    let (code, message, class) = match &e {
        SdkError::ServiceError(_) => {
            let code = e.code().map(str::to_string).unwrap_or_else(|| match status {
                Some(404) => "NotFound".into(),
                Some(s) => format!("HTTP{s}"),
                None => "Unknown".into(),
            });
            // A HEAD request's error has no body: no code, no message, only the status.
            let message = match (e.message(), status) {
                (Some(m), _) if !m.is_empty() => m.to_string(),
                (_, Some(403)) => "access denied (HTTP 403, no error body)".into(),
                (_, Some(s)) => format!("HTTP {s}, no error body"),
                (_, None) => chain(&e),
            };
            let class = classify(op, &code, &message, status);
            (code, message, class)
        }
        SdkError::TimeoutError(_) => ("Timeout".into(), chain(&e), ErrorClass::Transient),
        SdkError::DispatchFailure(_) => ("NetworkError".into(), chain(&e), ErrorClass::Transient),
        // The response was cut off or unreadable: the request may have run.
        SdkError::ResponseError(_) => ("ResponseError".into(), chain(&e), ErrorClass::Transient),
        _ => ("Unknown".into(), chain(&e), ErrorClass::Fatal),
    };
    NodeError {
        op: op.to_string(),
        object: None,
        code,
        message,
        class,
        status,
    }
}

/// `.send().await.op("GetRole")?` and `.send().await.absent_on("GetRole", &["NoSuchEntity"])?`.
pub trait SendExt<T> {
    fn op(self, op: &str) -> Result<T, NodeError>;
    /// `Ok(None)` when the error code is one of `codes` (the object does not exist).
    fn absent_on(self, op: &str, codes: &[&str]) -> Result<Option<T>, NodeError>;
    /// `Ok(())` when the error code is one of `codes` (already gone, already exists).
    fn ok_on(self, op: &str, codes: &[&str]) -> Result<(), NodeError>;
}

impl<T, E> SendExt<T> for Result<T, SdkError<E, HttpResponse>>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    fn op(self, op: &str) -> Result<T, NodeError> {
        self.map_err(|e| aws_err(op, e))
    }

    fn absent_on(self, op: &str, codes: &[&str]) -> Result<Option<T>, NodeError> {
        match self {
            Ok(v) => Ok(Some(v)),
            Err(e) => {
                let e = aws_err(op, e);
                if codes.contains(&e.code.as_str()) {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn ok_on(self, op: &str, codes: &[&str]) -> Result<(), NodeError> {
        self.absent_on(op, codes).map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        let any = "DescribeVpcs";
        assert_eq!(
            classify(any, "ThrottlingException", "Rate exceeded", Some(400)),
            ErrorClass::Throttled
        );
        assert_eq!(classify(any, "Whatever", "", Some(503)), ErrorClass::Transient);
        assert_eq!(
            classify("CreateSubnet", "InvalidVpcID.NotFound", "", Some(400)),
            ErrorClass::NotYetVisible
        );
        assert_eq!(
            classify("DeleteSubnet", "DependencyViolation", "", Some(400)),
            ErrorClass::Lingering
        );
        assert_eq!(
            classify("CreateSecurityGroup", "InvalidGroup.Duplicate", "", Some(400)),
            ErrorClass::AlreadyExists
        );
        assert_eq!(
            classify("CreateBucket", "BucketAlreadyExists", "", Some(409)),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(
                "PutBucketReplication",
                "InvalidRequest",
                "Destination bucket must have versioning enabled.",
                Some(400)
            ),
            ErrorClass::NotYetVisible
        );
        assert_eq!(
            classify(
                "CreateFunction",
                "InvalidParameterValueException",
                "The role defined for the function cannot be assumed by Lambda.",
                Some(400)
            ),
            ErrorClass::Propagation
        );
        assert_eq!(
            classify(
                "CreateAutoScalingGroup",
                "ValidationError",
                "Invalid IAM Instance Profile name",
                Some(400)
            ),
            ErrorClass::Propagation
        );
        assert_eq!(
            classify("GetBucketPolicy", "AccessDenied", "Access Denied", Some(403)),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify("PutKeyPolicy", "MalformedPolicyDocument", "bad", Some(400)),
            ErrorClass::Fatal
        );
    }

    /// The message-told answers hold only for the operations that give them: the same code and
    /// words elsewhere are a plain refusal, not something to wait out.
    #[test]
    fn message_told_answers_are_scoped_to_their_operations() {
        let role = "The role defined for the function cannot be assumed by Lambda.";
        assert_eq!(
            classify(
                "UpdateFunctionConfiguration",
                "InvalidParameterValueException",
                role,
                Some(400)
            ),
            ErrorClass::Propagation
        );
        assert_eq!(
            classify("CreateTopic", "InvalidParameterValueException", role, Some(400)),
            ErrorClass::Fatal
        );
        let versioning = "Destination bucket must have versioning enabled.";
        assert_eq!(
            classify("PutBucketTagging", "InvalidRequest", versioning, Some(400)),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(
                "CreateSecret",
                "InvalidRequestException",
                "already scheduled for deletion",
                Some(400)
            ),
            ErrorClass::NotYetVisible
        );
        assert_eq!(
            classify(
                "UpdateSecret",
                "InvalidRequestException",
                "already scheduled for deletion",
                Some(400)
            ),
            ErrorClass::Fatal
        );
        let deleted = "You can't perform this operation on the secret because it was deleted.";
        assert_eq!(
            classify("RestoreSecret", "InvalidRequestException", deleted, Some(400)),
            ErrorClass::NotYetVisible
        );
        assert_eq!(
            classify("UpdateSecret", "InvalidRequestException", deleted, Some(400)),
            ErrorClass::Fatal
        );
        assert_eq!(
            classify(
                "CreateFunction",
                "ResourceConflictException",
                "Function already exist",
                Some(409)
            ),
            ErrorClass::AlreadyExists
        );
    }
}
