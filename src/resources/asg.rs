//! `asg`: `tap-asg-{r}-{env}` on the launch template, 1..3 (desired 1) in the private subnets,
//! tags propagated at launch. Destroy force-deletes and waits until it is gone.

use super::cx::StackCx;
use super::typed::{Kind, Observe, Tags};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Readiness};
use aws_sdk_autoscaling::types::{AutoScalingGroup, LaunchTemplateSpecification, Tag};
use std::sync::Arc;

pub struct Asg(pub Arc<Aws>);

crate::spec! {
    /// SPEC: the latest version of the launch template, 1..3 (desired 1) in the private
    /// subnets (sorted), tags propagated at launch.
    pub struct AsgSpec, AsgLive, AsgChanged {
        launch_template: String,
        launch_template_version: String,
        min: i32,
        max: i32,
        desired: i32,
        subnets: Vec<String>,
        propagate_at_launch: bool,
        tags: Tags,
    }
    immutable []
}

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
        .observed(&AsgLive {
            launch_template: Some(lt.and_then(|l| l.launch_template_id.clone()).unwrap_or_default()),
            launch_template_version: Some(lt.and_then(|l| l.version.clone()).unwrap_or_default()),
            // Not returned (AWS always returns them) reads as 0: a difference, as null was.
            min: Some(g.min_size.unwrap_or_default()),
            max: Some(g.max_size.unwrap_or_default()),
            desired: Some(g.desired_capacity.unwrap_or_default()),
            subnets: Some(subnets),
            propagate_at_launch: Some(propagated),
            tags: None,
        })
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
impl Kind for Asg {
    type Spec = AsgSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<AsgSpec, NodeError> {
        let mut subnets = vec![
            cx.attr(&cx.local("subnet-private-a"), "id")?,
            cx.attr(&cx.local("subnet-private-b"), "id")?,
        ];
        subnets.sort();
        Ok(AsgSpec {
            launch_template: cx.attr(&cx.local("launch-template"), "id")?,
            launch_template_version: "$Latest".into(),
            min: 1,
            max: 3,
            desired: 1,
            subnets,
            propagate_at_launch: true,
            tags: cx.tags(),
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("Auto Scaling group {}", group_name(cx))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        Ok(self.describe(cx, &group_name(cx)).await?.as_ref().map(to_live))
    }

    async fn create(&self, cx: &NodeCx, want: &AsgSpec) -> Result<Live, NodeError> {
        let name = group_name(cx);
        let subnets = &want.subnets;
        let lt = LaunchTemplateSpecification::builder()
            .launch_template_id(&want.launch_template)
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

    async fn update(&self, cx: &NodeCx, live: &Live, want: &AsgSpec, changed: &AsgChanged) -> Result<(), NodeError> {
        let a = self.0.autoscaling(&cx.region);
        let AsgChanged {
            launch_template,
            launch_template_version,
            min,
            max,
            desired,
            subnets,
            propagate_at_launch,
            tags,
        } = *changed;
        if launch_template || launch_template_version || min || max || desired || subnets {
            let subnets = &want.subnets;
            let lt = LaunchTemplateSpecification::builder()
                .launch_template_id(&want.launch_template)
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
        if tags || propagate_at_launch {
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
