//! `lambda-function`: the replication monitor of the reference (python3.11), its zip built in
//! memory, deterministically, so that its SHA-256 tells whether the deployed code differs.

use super::cx::StackCx;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Readiness, Resource};
use aws_sdk_lambda::primitives::Blob;
use aws_sdk_lambda::types::{Environment, FunctionCode, Runtime, State};
use base64::Engine;
use serde_json::json;
use sha2::Digest;
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::Arc;

pub struct LambdaFunction(pub Arc<Aws>);

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

fn environment(d: &Props) -> Environment {
    let topic = d["environment"]["SNS_TOPIC_ARN"].as_str().unwrap_or_default();
    Environment::builder().variables("SNS_TOPIC_ARN", topic).build()
}

fn int(d: &Props, k: &str) -> i32 {
    d[k].as_i64().unwrap_or_default() as i32
}

/// What Lambda reports as `CodeSha256`: base64 of the zip's SHA-256.
pub fn code_sha256(zip: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(zip))
}

#[async_trait::async_trait]
impl Resource for LambdaFunction {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        Ok(Props::from([
            ("runtime".into(), json!("python3.11")),
            ("handler".into(), json!("index.handler")),
            ("role".into(), json!(cx.attr(&cx.local("iam-lambda-role"), "arn")?)),
            ("timeout".into(), json!(300)),
            ("memory".into(), json!(128)),
            (
                "environment".into(),
                json!({"SNS_TOPIC_ARN": cx.attr(&cx.local("sns-topic"), "arn")?}),
            ),
            ("code_sha256".into(), json!(code_sha256(&code_zip()))),
            ("tags".into(), json!(cx.tags())),
        ]))
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
        let env: std::collections::BTreeMap<_, _> = env.into_iter().collect();
        Ok(Some(
            Live::new(&name)
                .arn(c.function_arn.clone().unwrap_or_default())
                .attr("name", &name)
                .attr(
                    "status",
                    c.state.as_ref().map(|s| s.as_str().to_string()).unwrap_or_default(),
                )
                .prop(
                    "runtime",
                    c.runtime.as_ref().map(|r| r.as_str().to_string()).unwrap_or_default(),
                )
                .prop("handler", c.handler.clone().unwrap_or_default())
                .prop("role", c.role.clone().unwrap_or_default())
                .prop("timeout", c.timeout.unwrap_or(0))
                .prop("memory", c.memory_size.unwrap_or(0))
                .prop("environment", json!(env))
                .prop("code_sha256", c.code_sha256.clone().unwrap_or_default())
                .tags(out.tags.unwrap_or_default().into_iter().collect()),
        ))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        let name = function_name(cx);
        let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        // A role created moments ago may be refused ("cannot be assumed"): the error is classed
        // as IAM propagation and retried by the driver's policy.
        self.0
            .lambda(&cx.region)
            .create_function()
            .function_name(&name)
            .runtime(Runtime::from(s("runtime").as_str()))
            .handler(s("handler"))
            .role(s("role"))
            .timeout(int(d, "timeout"))
            .memory_size(int(d, "memory"))
            .environment(environment(d))
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

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, changed: &BTreeSet<String>) -> Result<(), NodeError> {
        let l = self.0.lambda(&cx.region);
        let name = &live.physical_id;
        let s = |k: &str| d[k].as_str().unwrap_or_default().to_string();
        if ["runtime", "handler", "role", "timeout", "memory", "environment"]
            .iter()
            .any(|k| changed.contains(*k))
        {
            l.update_function_configuration()
                .function_name(name)
                .runtime(Runtime::from(s("runtime").as_str()))
                .handler(s("handler"))
                .role(s("role"))
                .timeout(int(d, "timeout"))
                .memory_size(int(d, "memory"))
                .environment(environment(d))
                .send()
                .await
                .op("UpdateFunctionConfiguration")?;
        }
        // Right after a configuration update Lambda answers 409 "update in progress": that
        // refusal is classed transient and retried by the driver.
        if changed.contains("code_sha256") {
            l.update_function_code()
                .function_name(name)
                .zip_file(Blob::new(code_zip()))
                .send()
                .await
                .op("UpdateFunctionCode")?;
        }
        if changed.contains("tags") {
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
