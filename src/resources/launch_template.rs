//! `launch-template`: `tap-lt-{r}-{env}`: Amazon Linux 2 from the region's SSM public parameter,
//! t3.micro, the instance profile, `sg-app`, an encrypted 8 GiB gp3 root volume, IMDSv2 only.

use super::cx::StackCx;
use super::ec2;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Resource};
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    RequestLaunchTemplateData, ResourceType, ResponseLaunchTemplateData, VolumeType,
};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct LaunchTemplate(pub Arc<Aws>);

pub const AMI_PARAMETER: &str = "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2";

pub fn template_name(cx: &NodeCx) -> String {
    format!("tap-lt-{}-{}", cx.r(), cx.inputs().env)
}

fn data(d: &Props) -> RequestLaunchTemplateData {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let vol = &d["root_volume"];
    RequestLaunchTemplateData::builder()
        .image_id(s(&d["ami"]))
        .instance_type(InstanceType::from(s(&d["instance_type"]).as_str()))
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .arn(s(&d["instance_profile"]))
                .build(),
        )
        .set_security_group_ids(serde_json::from_value(d["security_groups"].clone()).ok())
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(s(&vol["device"]))
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(vol["size_gib"].as_i64().unwrap_or(8) as i32)
                        .volume_type(VolumeType::from(s(&vol["type"]).as_str()))
                        .encrypted(vol["encrypted"] == true)
                        .kms_key_id(s(&vol["kms_key"]))
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::from(s(&d["http_tokens"]).as_str()))
                .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .build()
}

fn observed(mut live: Live, d: &ResponseLaunchTemplateData) -> Live {
    let mut sgs: Vec<String> = d.security_group_ids().to_vec();
    sgs.sort();
    live = live
        .prop("ami", d.image_id.clone().unwrap_or_default())
        .prop(
            "instance_type",
            d.instance_type
                .as_ref()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
        )
        .prop(
            "instance_profile",
            d.iam_instance_profile
                .as_ref()
                .and_then(|p| p.arn.clone())
                .unwrap_or_default(),
        )
        .prop("security_groups", json!(sgs));
    if let Some(b) = d.block_device_mappings().first() {
        let e = b.ebs.as_ref();
        live = live.prop(
            "root_volume",
            json!({
                "device": b.device_name.clone().unwrap_or_default(),
                "size_gib": e.and_then(|e| e.volume_size).unwrap_or(0),
                "type": e.and_then(|e| e.volume_type.as_ref()).map(|t| t.as_str().to_string()).unwrap_or_default(),
                "encrypted": e.and_then(|e| e.encrypted).unwrap_or(false),
                "kms_key": e.and_then(|e| e.kms_key_id.clone()).unwrap_or_default(),
            }),
        );
    }
    if let Some(t) = d.metadata_options.as_ref().and_then(|m| m.http_tokens.as_ref()) {
        live = live.prop("http_tokens", t.as_str());
    }
    live
}

#[async_trait::async_trait]
impl Resource for LaunchTemplate {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        let ami = self
            .0
            .ssm(&cx.region)
            .get_parameter()
            .name(AMI_PARAMETER)
            .send()
            .await
            .op("GetParameter")?;
        let ami = ami.parameter.and_then(|p| p.value).unwrap_or_default();
        Ok(Props::from([
            ("ami".into(), json!(ami)),
            ("instance_type".into(), json!("t3.micro")),
            (
                "instance_profile".into(),
                json!(cx.attr(&cx.local("iam-ec2-role"), "instance_profile_arn")?),
            ),
            ("security_groups".into(), json!([cx.attr(&cx.local("sg-app"), "id")?])),
            (
                "root_volume".into(),
                json!({"device": "/dev/xvda", "size_gib": 8, "type": "gp3", "encrypted": true,
                       "kms_key": cx.attr(&cx.local("kms-key"), "arn")?}),
            ),
            ("http_tokens".into(), json!("required")),
            ("tags".into(), ec2::desired_tags(cx)),
        ]))
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("launch template {}", template_name(cx))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let name = template_name(cx);
        let ec2c = self.0.ec2(&cx.region);
        let out = ec2c
            .describe_launch_templates()
            .launch_template_names(&name)
            .send()
            .await;
        let found = out.absent_on(
            "DescribeLaunchTemplates",
            &[
                "InvalidLaunchTemplateName.NotFoundException",
                "InvalidLaunchTemplateId.NotFound",
            ],
        )?;
        let Some(lt) = found.and_then(|o| o.launch_templates.and_then(|v| v.into_iter().next())) else {
            return Ok(None);
        };
        let id = lt.launch_template_id.clone().unwrap_or_default();
        let versions = ec2c
            .describe_launch_template_versions()
            .launch_template_id(&id)
            .versions("$Latest")
            .send()
            .await
            .op("DescribeLaunchTemplateVersions")?;
        // The tags as CreateTags left them: DescribeTags (on AWS the same as the template's own
        // list; moto's DescribeLaunchTemplates keeps the creation tags and ignores CreateTags).
        let tagged = ec2c
            .describe_tags()
            .filters(ec2::filter("resource-id", &id))
            .send()
            .await
            .op("DescribeTags")?;
        let tags: std::collections::BTreeMap<String, String> =
            super::tag_map(tagged.tags().iter().map(|t| (t.key.clone(), t.value.clone())));
        let tags = if tags.is_empty() {
            ec2::tag_map_of(lt.tags())
        } else {
            tags
        };
        let mut live = Live::new(&id)
            .attr("id", &id)
            .attr("name", &name)
            .attr("latest_version", lt.latest_version_number.unwrap_or(1).to_string())
            .tags(tags);
        if let Some(d) = versions
            .launch_template_versions()
            .first()
            .and_then(|v| v.launch_template_data.as_ref())
        {
            live = observed(live, d);
        }
        Ok(Some(live))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        self.0
            .ec2(&cx.region)
            .create_launch_template()
            .launch_template_name(template_name(cx))
            .launch_template_data(data(d))
            .tag_specifications(ec2::tag_spec(cx, ResourceType::LaunchTemplate))
            .client_token(cx.token(64))
            .send()
            .await
            .op("CreateLaunchTemplate")?;
        self.read(cx).await?.ok_or_else(|| {
            NodeError::fatal(
                "DescribeLaunchTemplates",
                "NotFound",
                "launch template missing after create",
            )
        })
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, changed: &BTreeSet<String>) -> Result<(), NodeError> {
        let ec2c = self.0.ec2(&cx.region);
        if changed.iter().any(|k| k != "tags") {
            let v = ec2c
                .create_launch_template_version()
                .launch_template_id(&live.physical_id)
                .launch_template_data(data(d))
                // One version per content: a retry after a lost response gets the same one.
                .client_token(version_token(&live.physical_id, d))
                .send()
                .await
                .op("CreateLaunchTemplateVersion")?;
            let n = v.launch_template_version.and_then(|v| v.version_number).unwrap_or(1);
            ec2c.modify_launch_template()
                .launch_template_id(&live.physical_id)
                .default_version(n.to_string())
                .send()
                .await
                .op("ModifyLaunchTemplate")?;
        }
        if changed.contains("tags") {
            ec2::retag(&self.0, cx, &live.physical_id).await?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let ec2c = self.0.ec2(&cx.region);
        ec2c.delete_launch_template()
            .launch_template_id(&live.physical_id)
            .send()
            .await
            .ok_on(
                "DeleteLaunchTemplate",
                &[
                    "InvalidLaunchTemplateId.NotFound",
                    "InvalidLaunchTemplateName.NotFoundException",
                ],
            )
    }
}

/// The ClientToken of a new version: the template and the desired content, hashed.
fn version_token(template: &str, d: &Props) -> String {
    use sha2::Digest;
    let h = sha2::Sha256::digest(format!("{template}\0{}", serde_json::to_string(d).unwrap_or_default()));
    h.iter().take(24).map(|b| format!("{b:02x}")).collect()
}
