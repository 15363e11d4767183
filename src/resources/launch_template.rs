//! `launch-template`: `tap-lt-{r}-{env}`: Amazon Linux 2 from the region's SSM public parameter,
//! t3.micro, the instance profile, `sg-app`, an encrypted 8 GiB gp3 root volume, IMDSv2 only.

use super::cx::StackCx;
use super::ec2;
use super::typed::{Kind, Observe, Tags, to_props};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateHttpTokensState, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateInstanceMetadataEndpointState, LaunchTemplateInstanceMetadataOptionsRequest,
    RequestLaunchTemplateData, ResourceType, ResponseLaunchTemplateData, VolumeType,
};
use std::sync::Arc;

pub struct LaunchTemplate(pub Arc<Aws>);

/// The root volume of the template's block device mappings.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RootVolume {
    pub device: String,
    pub size_gib: i32,
    #[serde(rename = "type")]
    pub volume_type: String,
    pub encrypted: bool,
    pub kms_key: String,
}

crate::spec! {
    /// SPEC: the region's Amazon Linux 2 AMI, t3.micro, the instance profile, `sg-app`, an
    /// encrypted 8 GiB gp3 root volume under the region key, IMDSv2 only.
    pub struct TemplateSpec, TemplateLive, TemplateChanged {
        ami: String,
        instance_type: String,
        instance_profile: String,
        security_groups: Vec<String>,
        root_volume: RootVolume,
        http_tokens: String,
        tags: Tags,
    }
    immutable []
}

pub const AMI_PARAMETER: &str = "/aws/service/ami-amazon-linux-latest/amzn2-ami-hvm-x86_64-gp2";

pub fn template_name(cx: &NodeCx) -> String {
    format!("tap-lt-{}-{}", cx.r(), cx.inputs().env)
}

fn data(want: &TemplateSpec) -> RequestLaunchTemplateData {
    let vol = &want.root_volume;
    RequestLaunchTemplateData::builder()
        .image_id(&want.ami)
        .instance_type(InstanceType::from(want.instance_type.as_str()))
        .iam_instance_profile(
            LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                .arn(&want.instance_profile)
                .build(),
        )
        .set_security_group_ids(Some(want.security_groups.clone()))
        .block_device_mappings(
            LaunchTemplateBlockDeviceMappingRequest::builder()
                .device_name(&vol.device)
                .ebs(
                    LaunchTemplateEbsBlockDeviceRequest::builder()
                        .volume_size(vol.size_gib)
                        .volume_type(VolumeType::from(vol.volume_type.as_str()))
                        .encrypted(vol.encrypted)
                        .kms_key_id(&vol.kms_key)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .metadata_options(
            LaunchTemplateInstanceMetadataOptionsRequest::builder()
                .http_tokens(LaunchTemplateHttpTokensState::from(want.http_tokens.as_str()))
                .http_endpoint(LaunchTemplateInstanceMetadataEndpointState::Enabled)
                .build(),
        )
        .build()
}

fn observed(live: Live, d: &ResponseLaunchTemplateData, keys: &super::kms_ref::KnownKeys) -> Live {
    let mut sgs: Vec<String> = d.security_group_ids().to_vec();
    sgs.sort();
    live.observed(&TemplateLive {
        ami: Some(d.image_id.clone().unwrap_or_default()),
        instance_type: Some(
            d.instance_type
                .as_ref()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
        ),
        instance_profile: Some(
            d.iam_instance_profile
                .as_ref()
                .and_then(|p| p.arn.clone())
                .unwrap_or_default(),
        ),
        security_groups: Some(sgs),
        // No block device mapping, or no metadata options: unobserved.
        root_volume: d.block_device_mappings().first().map(|b| {
            let e = b.ebs.as_ref();
            RootVolume {
                device: b.device_name.clone().unwrap_or_default(),
                size_gib: e.and_then(|e| e.volume_size).unwrap_or(0),
                volume_type: e
                    .and_then(|e| e.volume_type.as_ref())
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                encrypted: e.and_then(|e| e.encrypted).unwrap_or(false),
                kms_key: keys.observed(e.and_then(|e| e.kms_key_id.as_deref()).unwrap_or_default()),
            }
        }),
        http_tokens: d
            .metadata_options
            .as_ref()
            .and_then(|m| m.http_tokens.as_ref())
            .map(|t| t.as_str().to_string()),
        tags: None,
    })
}

#[async_trait::async_trait]
impl Kind for LaunchTemplate {
    type Spec = TemplateSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<TemplateSpec, NodeError> {
        let ami = self
            .0
            .ssm(&cx.region)
            .get_parameter()
            .name(AMI_PARAMETER)
            .send()
            .await
            .op("GetParameter")?;
        let ami = ami.parameter.and_then(|p| p.value).unwrap_or_default();
        Ok(TemplateSpec {
            ami,
            instance_type: "t3.micro".into(),
            instance_profile: cx.attr(&cx.local("iam-ec2-role"), "instance_profile_arn")?,
            security_groups: vec![cx.attr(&cx.local("sg-app"), "id")?],
            root_volume: RootVolume {
                device: "/dev/xvda".into(),
                size_gib: 8,
                volume_type: "gp3".into(),
                encrypted: true,
                kms_key: cx.attr(&cx.local("kms-key"), "arn")?,
            },
            http_tokens: "required".into(),
            tags: ec2::desired_tag_map(cx),
        })
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
            live = observed(live, d, &super::kms_ref::KnownKeys::local(cx));
        }
        Ok(Some(live))
    }

    async fn create(&self, cx: &NodeCx, want: &TemplateSpec) -> Result<Live, NodeError> {
        let out = self
            .0
            .ec2(&cx.region)
            .create_launch_template()
            .launch_template_name(template_name(cx))
            .launch_template_data(data(want))
            .tag_specifications(ec2::tag_spec(cx, ResourceType::LaunchTemplate))
            .client_token(cx.token(64))
            .send()
            .await
            .op("CreateLaunchTemplate")?;
        if let Some(live) = self.read(cx).await? {
            return Ok(live);
        }
        // Not readable (yet, or any more: a reused ClientToken is answered with the first
        // template even when it was deleted since). The driver checks that it exists.
        match out.launch_template.and_then(|t| t.launch_template_id) {
            Some(id) => Ok(Live::new(&id).attr("id", &id).attr("name", template_name(cx))),
            None => Err(NodeError::fatal(
                "CreateLaunchTemplate",
                "EmptyResponse",
                "no launch template returned",
            )),
        }
    }

    async fn update(
        &self,
        cx: &NodeCx,
        live: &Live,
        want: &TemplateSpec,
        changed: &TemplateChanged,
    ) -> Result<(), NodeError> {
        let ec2c = self.0.ec2(&cx.region);
        let TemplateChanged {
            ami,
            instance_type,
            instance_profile,
            security_groups,
            root_volume,
            http_tokens,
            tags,
        } = *changed;
        if ami || instance_type || instance_profile || security_groups || root_volume || http_tokens {
            let v = ec2c
                .create_launch_template_version()
                .launch_template_id(&live.physical_id)
                .launch_template_data(data(want))
                // One version per content: a retry after a lost response gets the same one.
                .client_token(version_token(&live.physical_id, want))
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
        if tags {
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
fn version_token(template: &str, want: &TemplateSpec) -> String {
    use sha2::Digest;
    // The properties as the engine's JSON (keys sorted): the same token as before the spec.
    let d = to_props(want);
    let h = sha2::Sha256::digest(format!("{template}\0{}", serde_json::to_string(&d).unwrap_or_default()));
    h.iter().take(24).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::Digest;

    fn spec() -> TemplateSpec {
        TemplateSpec {
            ami: "ami-1".into(),
            instance_type: "t3.micro".into(),
            instance_profile: "arn:profile".into(),
            security_groups: vec!["sg-1".into()],
            root_volume: RootVolume {
                device: "/dev/xvda".into(),
                size_gib: 8,
                volume_type: "gp3".into(),
                encrypted: true,
                kms_key: "arn:key".into(),
            },
            http_tokens: "required".into(),
            tags: Tags::from([("k".into(), "v".into())]),
        }
    }

    /// The properties as the JSON of the previous release (state, plan diffs, version tokens).
    #[test]
    fn the_spec_is_the_json_of_before() {
        let before: crate::engine::resource::Props = serde_json::from_value(serde_json::json!({
            "ami": "ami-1", "instance_type": "t3.micro", "instance_profile": "arn:profile",
            "security_groups": ["sg-1"],
            "root_volume": {"device": "/dev/xvda", "size_gib": 8, "type": "gp3", "encrypted": true,
                            "kms_key": "arn:key"},
            "http_tokens": "required", "tags": {"k": "v"},
        }))
        .unwrap();
        assert_eq!(to_props(&spec()), before);
        let h = sha2::Sha256::digest(format!("lt-1\0{}", serde_json::to_string(&before).unwrap()));
        let token: String = h.iter().take(24).map(|b| format!("{b:02x}")).collect();
        assert_eq!(version_token("lt-1", &spec()), token);
    }
}
