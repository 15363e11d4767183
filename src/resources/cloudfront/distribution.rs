//! The distribution's configuration as tap sends it ([`config`]) and as plan compares it
//! ([`observe`]).

use super::{
    CACHING_OPTIMIZED, CONNECTION_ATTEMPTS, CONNECTION_TIMEOUT, CfLive, CfLogging, CfOrigin, CfOriginGroup, CfSpec,
    FAILOVER_CODES, GROUP_ID, comment, origins,
};
use crate::engine::resource::{Live, NodeCx};
use crate::resources::cx::StackCx;
use crate::resources::s3_bucket::cf_log_bucket;
use crate::resources::typed::Observe;
use aws_sdk_cloudfront::types::{
    AllowedMethods, CachedMethods, DefaultCacheBehavior, DistributionConfig, HttpVersion, LoggingConfig, Method,
    Origin, OriginGroup, OriginGroupFailoverCriteria, OriginGroupMember, OriginGroupMembers, OriginGroups, Origins,
    PriceClass, S3OriginConfig, StatusCodes, ViewerProtocolPolicy,
};
use std::collections::BTreeSet;

/// Origins in the order plan compares them: by their JSON text (`{"domain":..,"id":..}`).
pub(super) fn sort_origins(origins: &mut [CfOrigin]) {
    origins.sort_by_key(|o| serde_json::to_string(o).expect("an origin serializes"));
}

pub(super) fn config(cx: &NodeCx, d: &CfSpec, caller_reference: &str, enabled: bool) -> DistributionConfig {
    let oac = d.oac.as_str();
    let [first, second] = origins(cx);
    let origin = |(id, domain): &(String, String)| {
        Origin::builder()
            .id(id)
            .domain_name(domain)
            .connection_attempts(CONNECTION_ATTEMPTS)
            .connection_timeout(CONNECTION_TIMEOUT)
            .origin_access_control_id(oac)
            .s3_origin_config(S3OriginConfig::builder().origin_access_identity("").build())
            .build()
            .expect("id and domain set")
    };
    let member = |id: &str| OriginGroupMember::builder().origin_id(id).build().expect("id set");
    let group = OriginGroup::builder()
        .id(GROUP_ID)
        .failover_criteria(
            OriginGroupFailoverCriteria::builder()
                .status_codes(
                    StatusCodes::builder()
                        .quantity(6)
                        .set_items(Some(FAILOVER_CODES.to_vec()))
                        .build()
                        .expect("codes"),
                )
                .build(),
        )
        .members(
            OriginGroupMembers::builder()
                .quantity(2)
                .items(member(&first.0))
                .items(member(&second.0))
                .build()
                .expect("members"),
        )
        .build()
        .expect("group");
    let get_head = || vec![Method::Get, Method::Head];
    let behavior = DefaultCacheBehavior::builder()
        .target_origin_id(&d.default_target)
        .viewer_protocol_policy(ViewerProtocolPolicy::from(d.viewer_protocol_policy.as_str()))
        .allowed_methods(
            AllowedMethods::builder()
                .quantity(2)
                .set_items(Some(get_head()))
                .cached_methods(
                    CachedMethods::builder()
                        .quantity(2)
                        .set_items(Some(get_head()))
                        .build()
                        .expect("methods"),
                )
                .build()
                .expect("methods"),
        )
        .cache_policy_id(CACHING_OPTIMIZED)
        .compress(true)
        .build()
        .expect("behavior");
    DistributionConfig::builder()
        .caller_reference(caller_reference)
        .comment(comment(&cx.inputs().env))
        .enabled(enabled)
        .origins(
            Origins::builder()
                .quantity(2)
                .items(origin(&first))
                .items(origin(&second))
                .build()
                .expect("origins"),
        )
        .origin_groups(
            OriginGroups::builder()
                .quantity(1)
                .items(group)
                .build()
                .expect("groups"),
        )
        .default_cache_behavior(behavior)
        .price_class(PriceClass::from(d.price_class.as_str()))
        .http_version(HttpVersion::Http2)
        .is_ipv6_enabled(true)
        .logging(
            LoggingConfig::builder()
                .enabled(true)
                .include_cookies(false)
                .bucket(format!("{}.s3.amazonaws.com", cf_log_bucket(cx.inputs())))
                .prefix("cloudfront/")
                .build(),
        )
        .build()
        .expect("config")
}

/// The observable properties of a distribution configuration.
pub(super) fn observe(live: Live, c: &DistributionConfig) -> Live {
    let mut origins: Vec<CfOrigin> = c
        .origins
        .as_ref()
        .map(|o| o.items())
        .unwrap_or_default()
        .iter()
        .map(|o| CfOrigin {
            connection_attempts: o.connection_attempts,
            connection_timeout: o.connection_timeout,
            domain: o.domain_name.clone(),
            id: o.id.clone(),
        })
        .collect();
    // moto does not return OriginAccessControlId: the OAC is compared only when returned.
    let oacs: BTreeSet<&str> = c
        .origins
        .as_ref()
        .map(|o| o.items())
        .unwrap_or_default()
        .iter()
        .filter_map(|o| o.origin_access_control_id.as_deref())
        .filter(|s| !s.is_empty())
        .collect();
    let oac = (oacs.len() == 1).then(|| oacs.into_iter().next().unwrap_or_default().to_string());
    sort_origins(&mut origins);
    let group = c.origin_groups.as_ref().and_then(|g| g.items().first()).map(|g| {
        let mut codes: Vec<i32> = g
            .failover_criteria
            .as_ref()
            .and_then(|f| f.status_codes.as_ref())
            .map(|s| s.items().to_vec())
            .unwrap_or_default();
        codes.sort();
        let members: Vec<String> = g
            .members
            .as_ref()
            .map(|m| m.items().iter().map(|m| m.origin_id.clone()).collect())
            .unwrap_or_default();
        CfOriginGroup {
            id: g.id.clone(),
            members,
            codes,
        }
    });
    let b = c.default_cache_behavior.as_ref();
    let logging = c.logging.as_ref().map(|l| CfLogging {
        enabled: l.enabled,
        bucket: l.bucket.clone(),
        prefix: l.prefix.clone(),
    });
    live.observed(&CfLive {
        oac,
        comment: Some(c.comment.clone()),
        enabled: Some(c.enabled),
        origins: Some(origins),
        origin_group: Some(group),
        default_target: Some(b.map(|b| b.target_origin_id.clone()).unwrap_or_default()),
        viewer_protocol_policy: Some(
            b.map(|b| b.viewer_protocol_policy.as_str().to_string())
                .unwrap_or_default(),
        ),
        cache_policy: Some(b.and_then(|b| b.cache_policy_id.clone()).unwrap_or_default()),
        price_class: Some(
            c.price_class
                .as_ref()
                .map(|p| p.as_str().to_string())
                .unwrap_or_default(),
        ),
        http_version: Some(
            c.http_version
                .as_ref()
                .map(|h| h.as_str().to_string())
                .unwrap_or_default(),
        ),
        ipv6: Some(c.is_ipv6_enabled.unwrap_or(false)),
        logging,
        tags: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_serialize_and_sort_as_their_json_objects() {
        let mut origins = vec![
            CfOrigin {
                connection_attempts: Some(2),
                connection_timeout: Some(5),
                domain: "b.s3.us-east-1.amazonaws.com".into(),
                id: "us-east-1".into(),
            },
            CfOrigin {
                connection_attempts: None,
                connection_timeout: None,
                domain: "a.s3.us-west-2.amazonaws.com".into(),
                id: "us-west-2".into(),
            },
        ];
        let mut values: Vec<serde_json::Value> = vec![
            serde_json::json!({"id": "us-east-1", "domain": "b.s3.us-east-1.amazonaws.com",
                "connection_attempts": 2, "connection_timeout": 5}),
            serde_json::json!({"id": "us-west-2", "domain": "a.s3.us-west-2.amazonaws.com"}),
        ];
        values.sort_by_key(|v| v.to_string());
        sort_origins(&mut origins);
        assert_eq!(
            serde_json::to_value(&origins).unwrap(),
            serde_json::Value::Array(values)
        );
    }
}
