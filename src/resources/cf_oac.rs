//! `cf-origin-access-control`: OAC `tap-oac-{env}` (S3, sign always, SigV4; defect 6).
//! OACs take no tags: found by their SPEC name.

use super::cx::StackCx;
use super::typed::{Kind, Observe};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError};
use aws_sdk_cloudfront::types::{
    OriginAccessControlConfig, OriginAccessControlOriginTypes, OriginAccessControlSigningBehaviors,
    OriginAccessControlSigningProtocols,
};
use std::sync::Arc;

pub struct CfOriginAccessControl(pub Arc<Aws>);

crate::spec! {
    /// SPEC: an S3 origin, signing always, with SigV4.
    pub struct OacSpec, OacLive, OacChanged {
        origin_type: String,
        signing_behavior: String,
        signing_protocol: String,
    }
    immutable []
}

pub fn oac_name(env: &str) -> String {
    format!("tap-oac-{env}")
}

fn config(env: &str) -> OriginAccessControlConfig {
    OriginAccessControlConfig::builder()
        .name(oac_name(env))
        .description(format!("TAP S3 origins ({env})"))
        .origin_access_control_origin_type(OriginAccessControlOriginTypes::S3)
        .signing_behavior(OriginAccessControlSigningBehaviors::Always)
        .signing_protocol(OriginAccessControlSigningProtocols::Sigv4)
        .build()
        .expect("all fields set")
}

#[async_trait::async_trait]
impl Kind for CfOriginAccessControl {
    type Spec = OacSpec;

    async fn desired(&self, _cx: &NodeCx) -> Result<OacSpec, NodeError> {
        Ok(OacSpec {
            origin_type: "s3".into(),
            signing_behavior: "always".into(),
            signing_protocol: "sigv4".into(),
        })
    }

    fn object(&self, cx: &NodeCx) -> String {
        format!("origin access control {}", oac_name(&cx.inputs().env))
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        let name = oac_name(&cx.inputs().env);
        // Paged by NextMarker (100 per page): an account may hold many.
        let cf = self.0.cloudfront(&cx.region);
        let mut items = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = cf
                .list_origin_access_controls()
                .set_marker(marker.take())
                .send()
                .await
                .op("ListOriginAccessControls")?;
            let Some(list) = out.origin_access_control_list else {
                break;
            };
            items.extend(list.items.unwrap_or_default());
            match list.next_marker.filter(|m| list.is_truncated && !m.is_empty()) {
                Some(m) => marker = Some(m),
                None => break,
            }
        }
        Ok(items.into_iter().find(|o| o.name == name).map(|o| {
            Live::new(&o.id)
                .attr("id", &o.id)
                .attr("name", &name)
                .observed(&OacLive {
                    origin_type: Some(o.origin_access_control_origin_type.as_str().into()),
                    signing_behavior: Some(o.signing_behavior.as_str().into()),
                    signing_protocol: Some(o.signing_protocol.as_str().into()),
                })
        }))
    }

    async fn create(&self, cx: &NodeCx, _: &OacSpec) -> Result<Live, NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        let out = cf
            .create_origin_access_control()
            .origin_access_control_config(config(&cx.inputs().env))
            .send()
            .await
            .op("CreateOriginAccessControl")?;
        let id = out.origin_access_control.map(|o| o.id).unwrap_or_default();
        Ok(Live::new(&id).attr("id", &id).attr("name", oac_name(&cx.inputs().env)))
    }

    async fn update(&self, cx: &NodeCx, live: &Live, _: &OacSpec, _: &OacChanged) -> Result<(), NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        let etag = cf
            .get_origin_access_control()
            .id(&live.physical_id)
            .send()
            .await
            .op("GetOriginAccessControl")?
            .e_tag;
        cf.update_origin_access_control()
            .id(&live.physical_id)
            .set_if_match(etag)
            .origin_access_control_config(config(&cx.inputs().env))
            .send()
            .await
            .op("UpdateOriginAccessControl")
            .map(|_| ())
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        const GONE: &[&str] = &["NoSuchOriginAccessControl"];
        let Some(got) = cf
            .get_origin_access_control()
            .id(&live.physical_id)
            .send()
            .await
            .absent_on("GetOriginAccessControl", GONE)?
        else {
            return Ok(());
        };
        cf.delete_origin_access_control()
            .id(&live.physical_id)
            .set_if_match(got.e_tag)
            .send()
            .await
            .ok_on("DeleteOriginAccessControl", GONE)
    }
}
