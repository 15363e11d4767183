//! The AWS side: SDK configuration, per-region clients, error mapping, and a record of every
//! call made (for `-vv` and for tests that prove a second deploy mutates nothing).

pub mod compat;
pub mod credentials;
pub mod errors;
pub mod state_s3;

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_types::config_bag::{ConfigBag, Storable, StoreReplace};
use aws_smithy_types::retry::RetryConfig;
use aws_types::SdkConfig;
use aws_types::region::Region;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::OnceCell;

pub use errors::{SendExt, aws_err};

/// One AWS call as the SDK dispatched it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    pub region: String,
    pub service: String,
    pub operation: String,
}

impl Call {
    /// Reads are Get*, Describe*, List*, Head*; everything else changes something.
    pub fn is_mutating(&self) -> bool {
        !["Get", "Describe", "List", "Head"]
            .iter()
            .any(|p| self.operation.starts_with(p))
    }
}

#[derive(Debug, Default)]
pub struct CallLog {
    calls: Mutex<Vec<Call>>,
}

impl CallLog {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().expect("call log").clone()
    }

    pub fn mutating(&self) -> Vec<Call> {
        self.calls().into_iter().filter(Call::is_mutating).collect()
    }
}

#[derive(Debug)]
struct Recorder {
    region: String,
    log: Arc<CallLog>,
}

impl Intercept for Recorder {
    fn name(&self) -> &'static str {
        "TapCallRecorder"
    }

    // Client-level read_before_execution runs before the operation's Metadata is in the bag;
    // read_before_serialization runs once per operation, after it.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(md) = cfg.load::<Metadata>() {
            let call = Call {
                region: self.region.clone(),
                service: md.service().to_string(),
                operation: md.name().to_string(),
            };
            self.log.calls.lock().expect("call log").push(call);
        }
        Ok(())
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        cfg.interceptor_state()
            .store_put(AttemptStart(std::time::Instant::now()));
        Ok(())
    }

    /// One diagnostic per attempt (`-vv`): service, operation, duration, outcome. Inside the
    /// node's span, so it names the node too.
    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _rc: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let ms = cfg.load::<AttemptStart>().map_or(0, |s| s.0.elapsed().as_millis());
        let (service, operation) = cfg
            .load::<Metadata>()
            .map(|m| (m.service().to_string(), m.name().to_string()))
            .unwrap_or_default();
        let outcome = match context.response() {
            Some(r) => r.status().as_u16().to_string(),
            None => "no response".to_string(),
        };
        tracing::debug!(target: "tap::aws", "{} {service}.{operation} {ms} ms -> {outcome}", self.region);
        Ok(())
    }
}

/// When the current attempt was sent.
#[derive(Debug, Clone)]
struct AttemptStart(std::time::Instant);

impl Storable for AttemptStart {
    type Storer = StoreReplace<Self>;
}

/// The one retry layer for throttling, 5xx and network errors of every call: the SDK's standard
/// strategy (exponential backoff with full jitter, a shared retry quota), with this budget.
/// Creates without an idempotency token opt out per call ([`no_retry_ec2`], [`no_retry_kms`],
/// [`no_retry_secrets`]):
/// the driver's create protocol looks the object up instead of sending them blindly again.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryBudget {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryBudget {
    /// Eight attempts (the SDK's default is three): a brownout of a region's API under a
    /// 67-node deploy should cost a few seconds, not the run. At most about a minute per call.
    fn default() -> Self {
        RetryBudget {
            max_attempts: 8,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(20),
        }
    }
}

impl RetryBudget {
    pub fn retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }
}

/// Per-call override: no SDK retry (a create that carries no idempotency token).
pub fn no_retry_ec2() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// Per-call override: no SDK retry (KMS CreateKey carries no idempotency token).
pub fn no_retry_kms() -> aws_sdk_kms::config::Builder {
    aws_sdk_kms::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// Per-call override: no SDK retry (ReplicateSecretToRegions takes no idempotency token; a
/// resend after a lost response asks again for a region already replicated).
pub fn no_retry_secrets() -> aws_sdk_secretsmanager::config::Builder {
    aws_sdk_secretsmanager::config::Builder::default().retry_config(RetryConfig::disabled())
}

/// How to reach AWS.
#[derive(Clone, Debug, Default)]
pub struct Connection {
    /// Every call goes here (with S3 path-style); `AWS_ENDPOINT_URL` is honoured when unset.
    pub endpoint_url: Option<String>,
    /// Fall back to static test credentials when the standard chain has none (`--local`).
    pub test_credentials_fallback: bool,
    /// Retries of throttling, 5xx and network errors (tests shorten the backoff).
    pub retry: RetryBudget,
}

macro_rules! clients {
    ($($name:ident: $krate:ident $(=> $tweak:expr)?;)*) => {
        #[derive(Default)]
        struct Clients {
            $($name: Mutex<HashMap<String, $krate::Client>>,)*
        }

        impl Aws {
            $(
                pub fn $name(&self, region: &str) -> $krate::Client {
                    let mut cache = self.clients.$name.lock().expect("client cache");
                    cache
                        .entry(region.to_string())
                        .or_insert_with(|| {
                            #[allow(unused_mut)]
                            let mut b = $krate::config::Builder::from(&self.sdk)
                                .region(Region::new(region.to_string()))
                                .interceptor(Recorder { region: region.to_string(), log: self.log.clone() });
                            $(b = ($tweak)(b, self);)?
                            $krate::Client::from_conf(b.build())
                        })
                        .clone()
                }
            )*
        }
    };
}

clients! {
    kms: aws_sdk_kms;
    s3: aws_sdk_s3 => |b: aws_sdk_s3::config::Builder, aws: &Aws| b.force_path_style(aws.path_style);
    iam: aws_sdk_iam;
    sts: aws_sdk_sts;
    ec2: aws_sdk_ec2;
    rds: aws_sdk_rds;
    autoscaling: aws_sdk_autoscaling;
    sns: aws_sdk_sns;
    lambda: aws_sdk_lambda;
    logs: aws_sdk_cloudwatchlogs;
    cloudfront: aws_sdk_cloudfront;
    ssm: aws_sdk_ssm;
    secrets: aws_sdk_secretsmanager;
}

pub struct Aws {
    sdk: SdkConfig,
    path_style: bool,
    pub log: Arc<CallLog>,
    clients: Clients,
    account: OnceCell<String>,
    /// The Auto Scaling service-linked role is known to exist (ensured once per run).
    pub autoscaling_slr: OnceCell<()>,
    /// The first two available AZs per region (subnets), looked up once per run.
    pub azs: Mutex<HashMap<String, Arc<OnceCell<[String; 2]>>>>,
    /// Behaviours of the endpoint that differ from AWS, learnt during this run.
    quirks: Mutex<std::collections::BTreeSet<&'static str>>,
}

impl Aws {
    pub async fn connect(conn: &Connection, home_region: &str) -> Aws {
        // An attempt that hangs is abandoned after a minute (and retried as a network error).
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(10))
            .operation_attempt_timeout(Duration::from_secs(60))
            .build();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(home_region.to_string()))
            .retry_config(conn.retry.retry_config())
            .timeout_config(timeouts);
        if let Some(url) = &conn.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let mut sdk = loader.load().await;
        // One resolution for the preflight and every client (see `credentials`).
        if let Some(p) = sdk.credentials_provider() {
            sdk = sdk
                .into_builder()
                .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                    credentials::ResolveOnce::new(p),
                ))
                .build();
        }
        if conn.test_credentials_fallback && !has_credentials(&sdk).await {
            sdk = sdk
                .into_builder()
                .credentials_provider(aws_credential_types::provider::SharedCredentialsProvider::new(
                    Credentials::new("test", "test", None, None, "tap-local"),
                ))
                .build();
        }
        let path_style = sdk.endpoint_url().is_some() || std::env::var_os("AWS_ENDPOINT_URL_S3").is_some();
        Aws {
            sdk,
            path_style,
            log: Arc::new(CallLog::default()),
            clients: Clients::default(),
            account: OnceCell::new(),
            autoscaling_slr: OnceCell::new(),
            quirks: Mutex::default(),
            azs: Mutex::default(),
        }
    }

    pub fn note_quirk(&self, q: &'static str) {
        self.quirks.lock().expect("quirks").insert(q);
    }

    pub fn has_quirk(&self, q: &str) -> bool {
        self.quirks.lock().expect("quirks").contains(q)
    }

    /// Before any node runs: resolves credentials (once: the clients use this resolution, see
    /// `credentials`) and asks STS who the caller is in each
    /// region, with short timeouts and quick retries (a throttle or a lost response is not a
    /// verdict), so that an unreachable endpoint, a missing or
    /// rejected credential or an expired SSO session is one line within seconds, not a failure
    /// per node after a minute of retries. Records the account id.
    pub async fn preflight(&self, regions: &[&str]) -> Result<(), String> {
        let Some(p) = self.sdk.credentials_provider() else {
            return Err("no AWS credentials provider is configured".into());
        };
        let source = match std::env::var("AWS_PROFILE") {
            Ok(profile) => format!("profile {profile}"),
            Err(_) => "environment, profile, SSO or instance role".into(),
        };
        match tokio::time::timeout(Duration::from_secs(10), p.provide_credentials()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(format!(
                    "no usable AWS credentials ({source}): {}",
                    errors::root_cause(&e)
                ));
            }
            Err(_) => return Err(format!("timed out resolving AWS credentials ({source})")),
        }
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(2))
            .operation_attempt_timeout(Duration::from_secs(4))
            .build();
        let retry = RetryConfig::standard()
            .with_max_attempts(4)
            .with_initial_backoff(Duration::from_millis(500))
            .with_max_backoff(Duration::from_secs(2));
        let calls = regions.iter().map(|region| {
            // The preflight's calls are logged like every other (`-vv`: one line per attempt).
            let conf = aws_sdk_sts::config::Builder::from(&self.sdk)
                .region(Region::new(region.to_string()))
                .interceptor(Recorder {
                    region: region.to_string(),
                    log: self.log.clone(),
                })
                .retry_config(retry.clone())
                .timeout_config(timeouts.clone())
                .build();
            async move {
                let out = aws_sdk_sts::Client::from_conf(conf).get_caller_identity().send().await;
                (region, out)
            }
        });
        let where_ = |region: &str| match self.endpoint_url() {
            Some(url) => format!("AWS endpoint {url} ({region})"),
            None => format!("AWS in {region}"),
        };
        for (region, out) in futures::future::join_all(calls).await {
            match out {
                Ok(id) => {
                    let _ = self.account.set(id.account.unwrap_or_default());
                }
                Err(e @ aws_smithy_runtime_api::client::result::SdkError::ServiceError(_)) => {
                    let e = aws_err("GetCallerIdentity", e);
                    // Throttled or a server fault after the quick retries: the endpoint answers,
                    // and that is no verdict on the credentials. The run's own calls (with the
                    // full retry budget) go on; the account id is asked for again then.
                    if matches!(
                        e.class,
                        crate::engine::resource::ErrorClass::Throttled | crate::engine::resource::ErrorClass::Transient
                    ) {
                        tracing::warn!(
                            target: "tap::aws",
                            "preflight in {region}: {}: {} (going on)",
                            e.code,
                            e.message
                        );
                        continue;
                    }
                    return Err(format!(
                        "{} refused the credentials ({source}): {}: {}",
                        where_(region),
                        e.code,
                        e.message
                    ));
                }
                Err(e) => return Err(format!("cannot reach {}: {}", where_(region), errors::root_cause(&e))),
            }
        }
        Ok(())
    }

    pub fn endpoint_url(&self) -> Option<&str> {
        self.sdk.endpoint_url()
    }

    /// The account id of the caller (STS GetCallerIdentity, once).
    pub async fn account_id(&self, region: &str) -> Result<String, crate::engine::resource::NodeError> {
        self.account
            .get_or_try_init(|| async {
                let out = self
                    .sts(region)
                    .get_caller_identity()
                    .send()
                    .await
                    .op("GetCallerIdentity")?;
                Ok(out.account.unwrap_or_default())
            })
            .await
            .cloned()
    }
}

async fn has_credentials(sdk: &SdkConfig) -> bool {
    let Some(p) = sdk.credentials_provider() else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), p.provide_credentials()).await,
        Ok(Ok(_))
    )
}

#[cfg(test)]
mod retry_tests;
