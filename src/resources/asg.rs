//! `asg`: `tap-asg-{r}-{env}` on the launch template, 1..3 (desired 1) in the private subnets,
//! tags propagated at launch. Destroy force-deletes and waits until it is gone.

use super::cx::StackCx;
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Props, Readiness, Resource};
use aws_sdk_autoscaling::types::{AutoScalingGroup, LaunchTemplateSpecification, Tag};
use serde_json::json;
use std::collections::BTreeSet;
use std::sync::Arc;

pub struct Asg(pub Arc<Aws>);

pub fn group_name(cx: &NodeCx) -> String {
    format!("tap-asg-{}-{}", cx.r(), cx.inputs().env)
}

fn asg_tags(cx: &NodeCx) -> Vec<Tag> {
    let name = group_name(cx);
    cx.tags()
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .resource_id(&name)
                .resource_type("auto-scaling-group")
                .key(k)
                .value(v)
                .propagate_at_launch(true)
                .build()
        })
        .collect()
}

fn to_live(g: &AutoScalingGroup) -> Live {
    let mut subnets: Vec<String> = g
        .vpc_zone_identifier
        .clone()
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    subnets.sort();
    let lt = g.launch_template.as_ref();
    let tags = super::tag_map(g.tags().iter().map(|t| (t.key.clone(), t.value.clone())));
    let propagated = g.tags().iter().all(|t| t.propagate_at_launch == Some(true));
    let name = g.auto_scaling_group_name.clone().unwrap_or_default();
    Live::new(&name)
        .arn(g.auto_scaling_group_arn.clone().unwrap_or_default())
        .attr("name", &name)
        .attr("status", g.status.clone().unwrap_or_else(|| "active".into()))
        .prop(
            "launch_template",
            lt.and_then(|l| l.launch_template_id.clone()).unwrap_or_default(),
        )
        .prop(
            "launch_template_version",
            lt.and_then(|l| l.version.clone()).unwrap_or_default(),
        )
        .prop("min", g.min_size)
        .prop("max", g.max_size)
        .prop("desired", g.desired_capacity)
        .prop("subnets", json!(subnets))
        .prop("propagate_at_launch", propagated)
        .tags(tags)
}

impl Asg {
    async fn describe(&self, cx: &NodeCx, name: &str) -> Result<Option<AutoScalingGroup>, NodeError> {
        let out = self
            .0
            .autoscaling(&cx.region)
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .op("DescribeAutoScalingGroups")?;
        Ok(out.auto_scaling_groups().first().cloned())
    }
}

#[async_trait::async_trait]
impl Resource for Asg {
    async fn desired(&self, cx: &NodeCx) -> Result<Props, NodeError> {
        let mut subnets = vec![
            cx.attr(&cx.local("subnet-private-a"), "id")?,
            cx.attr(&cx.local("subnet-private-b"), "id")?,
        ];
        subnets.sort();
        Ok(Props::from([
            (
                "launch_template".into(),
                json!(cx.attr(&cx.local("launch-template"), "id")?),
            ),
            ("launch_template_version".into(), json!("$Latest")),
            ("min".into(), json!(1)),
            ("max".into(), json!(3)),
            ("desired".into(), json!(1)),
            ("subnets".into(), json!(subnets)),
            ("propagate_at_launch".into(), json!(true)),
            ("tags".into(), json!(cx.tags())),
        ]))
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("Auto Scaling group {}", group_name(cx))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        Ok(self.describe(cx, &group_name(cx)).await?.as_ref().map(to_live))
    }

    async fn create(&self, cx: &NodeCx, d: &Props) -> Result<Live, NodeError> {
        let name = group_name(cx);
        let subnets: Vec<String> = serde_json::from_value(d["subnets"].clone()).unwrap_or_default();
        let lt = LaunchTemplateSpecification::builder()
            .launch_template_id(d["launch_template"].as_str().unwrap_or_default())
            .version("$Latest")
            .build();
        // "Invalid IAM Instance Profile" right after the profile was created is IAM propagation:
        // classed so, and retried by the driver.
        self.0
            .autoscaling(&cx.region)
            .create_auto_scaling_group()
            .auto_scaling_group_name(&name)
            .launch_template(lt)
            .min_size(1)
            .max_size(3)
            .desired_capacity(1)
            .vpc_zone_identifier(subnets.join(","))
            .set_tags(Some(asg_tags(cx)))
            .send()
            .await
            .op("CreateAutoScalingGroup")?;
        self.read(cx).await?.ok_or_else(|| {
            NodeError::fatal(
                "DescribeAutoScalingGroups",
                "NotFound",
                format!("{name} missing after create"),
            )
        })
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &Props, changed: &BTreeSet<String>) -> Result<(), NodeError> {
        let a = self.0.autoscaling(&cx.region);
        if changed
            .iter()
            .any(|k| !["tags", "propagate_at_launch"].contains(&k.as_str()))
        {
            let subnets: Vec<String> = serde_json::from_value(d["subnets"].clone()).unwrap_or_default();
            let lt = LaunchTemplateSpecification::builder()
                .launch_template_id(d["launch_template"].as_str().unwrap_or_default())
                .version("$Latest")
                .build();
            a.update_auto_scaling_group()
                .auto_scaling_group_name(&live.physical_id)
                .launch_template(lt)
                .min_size(1)
                .max_size(3)
                .desired_capacity(1)
                .vpc_zone_identifier(subnets.join(","))
                .send()
                .await
                .op("UpdateAutoScalingGroup")?;
        }
        if changed.contains("tags") || changed.contains("propagate_at_launch") {
            a.create_or_update_tags()
                .set_tags(Some(asg_tags(cx)))
                .send()
                .await
                .op("CreateOrUpdateTags")?;
        }
        Ok(())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let a = self.0.autoscaling(&cx.region);
        let r = a
            .delete_auto_scaling_group()
            .auto_scaling_group_name(&live.physical_id)
            .force_delete(true)
            .send()
            .await;
        match r.op("DeleteAutoScalingGroup") {
            Err(e) if e.message.contains("not found") || e.message.contains("does not exist") => Ok(()),
            Err(e) if e.code == "ScalingActivityInProgress" && e.message.contains("delet") => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn gone(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        Ok(match self.describe(cx, &live.physical_id).await? {
            None => Readiness::Ready,
            Some(g) => Readiness::Pending(g.status.unwrap_or_else(|| "deleting".into())),
        })
    }

    fn waits_for_deletion(&self) -> bool {
        true
    }
}
