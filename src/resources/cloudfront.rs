//! `cloudfront`: the distribution with two S3 origins behind OAC, the failover origin group
//! `tap-failover` as the default behaviour's target (defect 5), logging to `cf-log-bucket`.
//! Create does not wait for edge propagation (nothing needs it; `status` shows it). Destroy
//! disables, waits until Deployed, re-reads the ETag, deletes.

use super::cx::StackCx;
use super::names;
use super::s3_bucket::cf_log_bucket;
use super::typed::{self, Kind};
use crate::aws::{Aws, SendExt};
use crate::engine::resource::{Live, NodeCx, NodeError, Readiness};
use aws_sdk_cloudfront::types::{DistributionConfigWithTags, Tag, Tags};
use std::sync::Arc;

mod distribution;

use distribution::{config, observe, sort_origins};

pub struct CloudFront(pub Arc<Aws>);

crate::spec! {
    /// The distribution's properties.
    pub struct CfSpec, CfLive, CfChanged {
        oac: String,
        comment: String,
        enabled: bool,
        /// Sorted by their JSON text (see [`distribution::sort_origins`]).
        origins: Vec<CfOrigin>,
        /// `None`: the distribution has no origin group (null, a difference).
        origin_group: Option<CfOriginGroup>,
        default_target: String,
        viewer_protocol_policy: String,
        cache_policy: String,
        price_class: String,
        http_version: String,
        ipv6: bool,
        logging: CfLogging,
        tags: typed::Tags,
    }
    immutable []
}

/// An origin as compared: its id, domain, and how long CloudFront tries it before failing over.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CfOrigin {
    // Declared in the order of their names: the JSON text the origins are sorted by lists the
    // keys sorted.
    /// SPEC v3: 2 attempts (AWS default 3) and a 5 s timeout (default 10): a dead origin fails
    /// over in about 10 s, not 30 (CloudFront Developer Guide, "Origin settings": connection
    /// attempts 1-3, connection timeout 1-10 s). `None`: not returned, unobservable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_attempts: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_timeout: Option<i32>,
    pub domain: String,
    pub id: String,
}

/// Connection attempts and timeout (seconds) of each origin (SPEC v3).
const CONNECTION_ATTEMPTS: i32 = 2;
const CONNECTION_TIMEOUT: i32 = 5;

/// The failover origin group as compared: its id, members in order, status codes sorted.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CfOriginGroup {
    pub id: String,
    pub members: Vec<String>,
    pub codes: Vec<i32>,
}

/// Standard logging as compared.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CfLogging {
    pub enabled: bool,
    pub bucket: String,
    pub prefix: String,
}

pub const GROUP_ID: &str = "tap-failover";
pub const FAILOVER_CODES: [i32; 6] = [500, 502, 503, 504, 403, 404];
pub const CACHING_OPTIMIZED: &str = "658327ea-f89d-4fab-a63d-7e88639e58f6";
/// Set in state when the endpoint refused the origin group as default target (moto does;
/// AWS accepts it): later runs then target the primary origin there instead of retrying.
const GROUP_TARGET_REFUSED: &str = "emulator_refuses_group_target";

pub fn comment(env: &str) -> String {
    format!("TAP CloudFront Distribution - {env}")
}

fn origin_domain(cx: &NodeCx, region: &str) -> String {
    format!("{}.s3.{region}.amazonaws.com", names::bucket(cx.inputs(), region))
}

/// The origins, in failover order: the writer region's bucket, then the next region's in index
/// order after it (wrapping); each with its region as id.
fn origins(cx: &NodeCx) -> [(String, String); 2] {
    let t = cx.topo();
    [t.writer(), t.next(t.writer())].map(|r| (r.to_string(), origin_domain(cx, r)))
}

/// The origin the distribution targets where the endpoint refuses the origin group: the
/// writer's.
fn first_origin(cx: &NodeCx) -> String {
    cx.topo().writer().to_string()
}

fn cf_tags(cx: &NodeCx) -> Tags {
    let items = cx
        .tags()
        .into_iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().expect("key"))
        .collect();
    Tags::builder().set_items(Some(items)).build()
}

impl CloudFront {
    async fn tags(&self, cx: &NodeCx, arn: &str) -> Result<std::collections::BTreeMap<String, String>, NodeError> {
        let out = self
            .0
            .cloudfront(&cx.region)
            .list_tags_for_resource()
            .resource(arn)
            .send()
            .await
            .op("ListTagsForResource")?;
        let items = out.tags.map(|t| t.items().to_vec()).unwrap_or_default();
        Ok(super::tag_map(items.into_iter().map(|t| (Some(t.key), t.value))))
    }

    /// The distribution with this env's comment and ownership tags.
    async fn find(&self, cx: &NodeCx) -> Result<Option<(String, String)>, NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        if let Some(id) = cx.known_id()
            && let Some(d) = cf
                .get_distribution()
                .id(id)
                .send()
                .await
                .absent_on("GetDistribution", &["NoSuchDistribution"])?
                .and_then(|o| o.distribution)
        {
            return Ok(Some((d.id, d.arn)));
        }
        let want = comment(&cx.inputs().env);
        let mut marker = None;
        loop {
            let out = cf
                .list_distributions()
                .set_marker(marker.clone())
                .send()
                .await
                .op("ListDistributions")?;
            let Some(list) = out.distribution_list else {
                return Ok(None);
            };
            for d in list.items() {
                if d.comment != want {
                    continue;
                }
                let tags = self.tags(cx, &d.arn).await?;
                if tags.get(crate::config::STACK_TAG) == Some(&cx.inputs().env) {
                    return Ok(Some((d.id.clone(), d.arn.clone())));
                }
            }
            if !list.is_truncated {
                return Ok(None);
            }
            marker = list.next_marker;
        }
    }

    async fn describe(&self, cx: &NodeCx, id: &str, arn: &str) -> Result<Option<Live>, NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        let Some(out) = cf
            .get_distribution()
            .id(id)
            .send()
            .await
            .absent_on("GetDistribution", &["NoSuchDistribution"])?
        else {
            return Ok(None);
        };
        let Some(d) = out.distribution else { return Ok(None) };
        let tags = self.tags(cx, arn).await?;
        let mut live = Live::new(id)
            .arn(arn)
            .attr("id", id)
            .attr("domain_name", &d.domain_name)
            .attr("status", &d.status)
            .tags(tags);
        if self.refuses_group_target(cx) {
            live = live.attr(GROUP_TARGET_REFUSED, "true");
        }
        Ok(Some(match &d.distribution_config {
            Some(c) => observe(live, c),
            None => live,
        }))
    }

    fn refused_group_target(&self, e: &NodeError, d: &CfSpec) -> bool {
        let refused = e.code == "NoSuchOrigin" && d.default_target == GROUP_ID;
        if refused {
            self.0.note_quirk(GROUP_TARGET_REFUSED);
        }
        refused
    }

    /// Known from an earlier run (state) or from this one.
    fn refuses_group_target(&self, cx: &NodeCx) -> bool {
        cx.prior
            .as_ref()
            .is_some_and(|p| p.attrs.contains_key(GROUP_TARGET_REFUSED))
            || self.0.has_quirk(GROUP_TARGET_REFUSED)
    }
}

#[async_trait::async_trait]
impl Kind for CloudFront {
    type Spec = CfSpec;

    async fn desired(&self, cx: &NodeCx) -> Result<CfSpec, NodeError> {
        let oac = cx.attr(&cx.home("cf-origin-access-control"), "id")?;
        let refused = self.refuses_group_target(cx);
        let mut origins: Vec<_> = origins(cx)
            .iter()
            .map(|(id, domain)| CfOrigin {
                connection_attempts: Some(CONNECTION_ATTEMPTS),
                connection_timeout: Some(CONNECTION_TIMEOUT),
                domain: domain.clone(),
                id: id.clone(),
            })
            .collect();
        let members = origins.iter().map(|o| o.id.clone()).collect();
        sort_origins(&mut origins);
        let mut codes = FAILOVER_CODES.to_vec();
        codes.sort();
        Ok(CfSpec {
            oac,
            comment: comment(&cx.inputs().env),
            enabled: true,
            origins,
            origin_group: Some(CfOriginGroup {
                id: GROUP_ID.into(),
                members,
                codes,
            }),
            default_target: if refused { first_origin(cx) } else { GROUP_ID.into() },
            viewer_protocol_policy: "redirect-to-https".into(),
            cache_policy: CACHING_OPTIMIZED.into(),
            price_class: "PriceClass_100".into(),
            http_version: "http2".into(),
            ipv6: true,
            logging: CfLogging {
                enabled: true,
                bucket: format!("{}.s3.amazonaws.com", cf_log_bucket(cx.inputs())),
                prefix: "cloudfront/".into(),
            },
            tags: cx.tags(),
        })
    }

    async fn read(&self, cx: &NodeCx) -> Result<Option<Live>, NodeError> {
        match self.find(cx).await? {
            Some((id, arn)) => self.describe(cx, &id, &arn).await,
            None => Ok(None),
        }
    }

    async fn create(&self, cx: &NodeCx, d: &CfSpec) -> Result<Live, NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        // CallerReference is CloudFront's idempotency token: the same for every retry of this
        // create and for a rerun after a crash, so a lost response never makes a second one.
        let reference = cx.token(128);
        let send = |d: &CfSpec| {
            let cfg = DistributionConfigWithTags::builder()
                .distribution_config(config(cx, d, &reference, true))
                .tags(cf_tags(cx))
                .build();
            cf.create_distribution_with_tags()
                .distribution_config_with_tags(cfg)
                .send()
        };
        let (out, refused) = match send(d).await.op("CreateDistributionWithTags") {
            Err(e) if self.refused_group_target(&e, d) => {
                tracing::warn!(
                    node = cx.id(),
                    "the endpoint refuses the origin group as default target; targeting the primary origin"
                );
                let d2 = CfSpec {
                    default_target: first_origin(cx),
                    ..d.clone()
                };
                (send(&d2).await.op("CreateDistributionWithTags")?, true)
            }
            other => (other?, false),
        };
        let dist = out
            .distribution
            .ok_or_else(|| NodeError::fatal("CreateDistributionWithTags", "EmptyResponse", "no distribution"))?;
        let live = self.describe(cx, &dist.id, &dist.arn).await?;
        let live = live.unwrap_or_else(|| Live::new(&dist.id).arn(&dist.arn).attr("id", &dist.id));
        debug_assert!(!refused || live.attrs.contains_key(GROUP_TARGET_REFUSED));
        Ok(live)
    }

    async fn update(&self, cx: &NodeCx, live: &Live, d: &CfSpec, changed: &CfChanged) -> Result<(), NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        // Anything but the tags is in the distribution's configuration.
        let tags_only = CfChanged {
            tags: changed.tags,
            ..Default::default()
        };
        if *changed != tags_only {
            let cur = cf
                .get_distribution_config()
                .id(&live.physical_id)
                .send()
                .await
                .op("GetDistributionConfig")?;
            let reference = cur
                .distribution_config
                .as_ref()
                .map(|c| c.caller_reference.clone())
                .unwrap_or_default();
            let send = |d: &CfSpec| {
                let cfg = config(cx, d, &reference, true);
                cf.update_distribution()
                    .id(&live.physical_id)
                    .set_if_match(cur.e_tag.clone())
                    .distribution_config(cfg)
                    .send()
            };
            match send(d).await.op("UpdateDistribution") {
                Err(e) if self.refused_group_target(&e, d) => {
                    let d2 = CfSpec {
                        default_target: first_origin(cx),
                        ..d.clone()
                    };
                    send(&d2).await.op("UpdateDistribution")?;
                }
                other => {
                    other?;
                }
            }
        }
        if changed.tags {
            cf.tag_resource()
                .resource(live.arn.clone().unwrap_or_default())
                .tags(cf_tags(cx))
                .send()
                .await
                .op("TagResource")?;
        }
        Ok(())
    }

    async fn prepare_delete(&self, cx: &NodeCx, live: &Live) -> Result<bool, NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        let Some(cur) = cf
            .get_distribution_config()
            .id(&live.physical_id)
            .send()
            .await
            .absent_on("GetDistributionConfig", &["NoSuchDistribution"])?
        else {
            return Ok(false);
        };
        let Some(mut cfg) = cur.distribution_config else {
            return Ok(false);
        };
        if cfg.enabled {
            cfg.enabled = false;
            cf.update_distribution()
                .id(&live.physical_id)
                .set_if_match(cur.e_tag)
                .distribution_config(cfg)
                .send()
                .await
                .op("UpdateDistribution")?;
        }
        Ok(true)
    }

    async fn deletable(&self, cx: &NodeCx, live: &Live) -> Result<Readiness, NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        let out = cf
            .get_distribution()
            .id(&live.physical_id)
            .send()
            .await
            .absent_on("GetDistribution", &["NoSuchDistribution"])?;
        Ok(match out.and_then(|o| o.distribution) {
            None => Readiness::Ready,
            Some(d) if d.status == "Deployed" => Readiness::Ready,
            Some(d) => Readiness::Pending(d.status),
        })
    }

    async fn delete(&self, cx: &NodeCx, live: &Live) -> Result<(), NodeError> {
        let cf = self.0.cloudfront(&cx.region);
        const GONE: &[&str] = &["NoSuchDistribution"];
        // The ETag changes with the disable: read it again right before deleting.
        let Some(cur) = cf
            .get_distribution()
            .id(&live.physical_id)
            .send()
            .await
            .absent_on("GetDistribution", GONE)?
        else {
            return Ok(());
        };
        cf.delete_distribution()
            .id(&live.physical_id)
            .set_if_match(cur.e_tag)
            .send()
            .await
            .ok_on("DeleteDistribution", GONE)
    }
}
