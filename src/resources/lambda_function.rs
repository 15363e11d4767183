//! `lambda-function`: the replication monitor of the reference (python3.11), its zip built in
//! memory, deterministically, so that its SHA-256 tells whether the deployed code differs.

use super::cx::StackCx;
use super::typed::{Kind, Observe, Tags};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Readiness};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime, State};
use base64::Engine;
use sha2::Digest;
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;

pub struct LambdaFunction(pub Arc<Aws>);

crate::spec! {
    /// SPEC: python3.11, `index.handler`, 5 minutes, 128 MB, the topic in its environment.
    pub struct FunctionSpec, FunctionLive, FunctionChanged {
        runtime: String,
        handler: String,
        role: String,
        timeout: i32,
        memory: i32,
        environment: BTreeMap<String, String>,
        code_sha256: String,
        tags: Tags,
    }
    immutable []
}

/// The handler code of the reference, verbatim.
pub const HANDLER: &str = include_str!("handler.py");

pub fn function_name(cx: &NodeCx) -> String {
    format!("tap-replication-monitor-{}-{}", cx.r(), cx.inputs().env)
}

/// `index.py` in a zip with fixed timestamps: the same bytes on every run.
pub fn code_zip() -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .last_modified_time(zip::DateTime::default())
            .unix_permissions(0o644);
        z.start_file("index.py", opts).expect("zip entry");
        z.write_all(HANDLER.as_bytes()).expect("zip write");
        z.finish().expect("zip finish");
    }
    buf.into_inner()
}

fn environment(want: &FunctionSpec) -> Environment {
    let topic = want.environment.get("SNS_TOPIC_ARN").cloned().unwrap_or_default();
    Environment::builder().variables("SNS_TOPIC_ARN", topic).build()
}

/// What Lambda reports as `CodeSha256`: base64 of the zip's SHA-256.
pub fn code_sha256(zip: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(zip))
}

#[async_trait::async_trait]
impl Kind for LambdaFunction {
    type Spec = FunctionSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<FunctionSpec, NodeError> {
        Ok(FunctionSpec {
            runtime: "python3.11".into(),
            handler: "index.handler".into(),
            role: cx.attr(&cx.local("iam-lambda-role"), "arn")?,
            timeout: 300,
            memory: 128,
            environment: BTreeMap::from([("SNS_TOPIC_ARN".into(), cx.attr(&cx.local("sns-topic"), "arn")?)]),
            code_sha256: code_sha256(&code_zip()),
            tags: cx.tags(),
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("function {}", function_name(cx))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let name = function_name(cx);
        let out = self
            .0
            .lambda(&cx.region)
            .get_function()
            .function_name(&name)
            .send()
            .await;
        let Some(out) = out.absent_on("GetFunction", &["ResourceNotFoundException"])? else {
            return Ok(None);
        };
        let Some(c) = out.configuration else { return Ok(None) };
        let env = c
            .environment
            .as_ref()
            .and_then(|e| e.variables.clone())
            .unwrap_or_default();
        let env: BTreeMap<_, _> = env.into_iter().collect();
        Ok(Some(
            Live::new(&name)
                .arn(c.function_arn.clone().unwrap_or_default())
                .attr("name", &name)
                .attr(
                    "status",
                    c.state.as_ref().map(|s| s.as_str().to_string()).unwrap_or_default(),
                )
                .observed(&FunctionLive {
                    runtime: Some(c.runtime.as_ref().map(|r| r.as_str().to_string()).unwrap_or_default()),
                    handler: Some(c.handler.clone().unwrap_or_default()),
                    role: Some(c.role.clone().unwrap_or_default()),
                    timeout: Some(c.timeout.unwrap_or(0)),
                    memory: Some(c.memory_size.unwrap_or(0)),
                    environment: Some(env),
                    code_sha256: Some(c.code_sha256.clone().unwrap_or_default()),
                    tags: None,
                })
                .tags(out.tags.unwrap_or_default().into_iter().collect()),
        ))
    }

    async fn create(&self, cx: &NodeCx, want: &FunctionSpec) -> Result<Live, NodeError> {
        let name = function_name(cx);
        // A role created moments ago may be refused ("cannot be assumed"): the error is classed
        // as IAM propagation and retried by the driver's policy.
        self.0
            .lambda(&cx.region)
            .create_function()
            .function_name(&name)
            .runtime(Runtime::from(want.runtime.as_str()))
            .handler(&want.handler)
            .role(&want.role)
            .timeout(want.timeout)
            .memory_size(want.memory)
            .environment(environment(want))
            .code(FunctionCode::builder().zip_file(Blob::new(code_zip())).build())
            .set_tags(Some(cx.tags().into_iter().collect()))
            .send()
            .await
            .op("CreateFunction")?;
        self.read(cx).await?.ok_or_else(|| {
            NodeError::fatal(
                "GetFunction",
                "ResourceNotFoundException",
                format!("{name} missing after create"),
            )
        })
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        want: &FunctionSpec,
        changed: &FunctionChanged,
    ) -> Result<(), NodeError> {
        let l = self.0.lambda(&cx.region);
        let name = &live.physical_id;
        if changed.runtime
            || changed.handler
            || changed.role
            || changed.timeout
            || changed.memory
            || changed.environment
        {
            l.update_function_configuration()
                .function_name(name)
                .runtime(Runtime::from(want.runtime.as_str()))
                .handler(&want.handler)
                .role(&want.role)
                .timeout(want.timeout)
                .memory_size(want.memory)
                .environment(environment(want))
                .send()
                .await
                .op("UpdateFunctionConfiguration")?;
        }
        // Right after a configuration update Lambda answers 409 "update in progress": that
        // refusal is classed transient and retried by the driver.
        if changed.code_sha256 {
            l.update_function_code()
                .function_name(name)
                .zip_file(Blob::new(code_zip()))
                .send()
                .await
                .op("UpdateFunctionCode")?;
        }
        if changed.tags {
            let arn = live.arn.clone().unwrap_or_default();
            l.tag_resource()
                .resource(arn)
                .set_tags(Some(cx.tags().into_iter().collect()))
                .send()
                .await
                .op("TagResource")?;
        }
        Ok(())
    }

    async fn ready(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        let out = self
            .0
            .lambda(&cx.region)
            .get_function_configuration()
            .function_name(&live.physical_id)
            .send()
            .await
            .op("GetFunctionConfiguration")?;
        // SPEC: ready when State is Active and, after an update, LastUpdateStatus is Successful
        // (Lambda developer guide, "Lambda function states": calls that modify the function
        // fail while an update is InProgress).
        use aws_sdk_lambda::types::LastUpdateStatus as Last;
        Ok(match (out.state, out.last_update_status) {
            (Some(State::Failed), _) => Readiness::Failed(out.state_reason.unwrap_or_default()),
            (_, Some(Last::Failed)) => Readiness::Failed(out.last_update_status_reason.unwrap_or_default()),
            (Some(State::Active) | None, Some(Last::Successful) | None) => Readiness::Ready,
            (Some(State::Active) | None, Some(l)) => Readiness::Pending(format!("update {}", l.as_str())),
            (Some(s), _) => Readiness::Pending(s.as_str().to_string()),
        })
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let l = self.0.lambda(&cx.region);
        l.delete_function()
            .function_name(&live.physical_id)
            .send()
            .await
            .ok_on("DeleteFunction", &["ResourceNotFoundException"])
    }
}
