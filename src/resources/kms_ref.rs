//! KMS key references compared by the key they name (issue 17, item 8).
//!
//! A key is named four ways: key id, key ARN, alias name (`alias/...`), alias ARN (KMS developer
//! guide, "Key identifiers (KeyId)", https://docs.aws.amazon.com/kms/latest/developerguide/concepts.html#key-id;
//! every API that takes a `KmsKeyId` accepts them). Services report the form they keep, not
//! necessarily the one tap sent: Secrets Manager's DescribeSecret reports "the key ID or alias
//! ARN" (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_DescribeSecret.html),
//! a replica's status "an ARN, Key ID, or Alias" (API_ReplicationStatusType.html), S3, SNS and
//! EC2 echo what they were given (by tap, or by hand, by the console, by another tool). Compared
//! as strings, the same key is perpetual drift. Every kind that references a key reports it
//! through [`KnownKeys::observed`]: the desired key ARN when the reference names that key.
//!
//! Aliases are resolved through what the node already knows (its `kms-key` dependencies' id
//! and ARN, and SPEC's alias name of each), not with extra API calls; an alias tap does not know
//! (`alias/aws/...`, someone else's) stays as read, and so differs.

use super::cx::StackCx;
use super::names;
use crate::engine::resource::NodeCx;
use std::collections::BTreeMap;

/// The key id that `reference` names: itself for a key id, the id of a key ARN, and for an
/// alias name or alias ARN the key `aliases` (alias name -> key id) maps it to (`None` if the
/// alias is unknown, or the reference is empty).
pub fn key_id(reference: &str, aliases: &BTreeMap<String, String>) -> Option<String> {
    let r = reference.trim();
    // An ARN's resource part: `key/<id>` or `alias/<name>`.
    let resource = match r.strip_prefix("arn:") {
        Some(rest) => rest.splitn(5, ':').nth(4)?,
        None => r,
    };
    if let Some(id) = resource.strip_prefix("key/") {
        return (!id.is_empty()).then(|| id.to_string());
    }
    if resource.starts_with("alias/") {
        return aliases.get(resource).cloned();
    }
    (!resource.is_empty() && !r.starts_with("arn:")).then(|| resource.to_string())
}

/// The keys a node knows from its dependencies: id, ARN and alias of each region's `kms-key`.
#[derive(Clone, Debug, Default)]
pub struct KnownKeys {
    /// key id -> key ARN (the form tap sends, and desires).
    arns: BTreeMap<String, String>,
    /// alias name -> key id.
    aliases: BTreeMap<String, String>,
}

impl KnownKeys {
    /// The keys of `regions` that the node reads (a region whose `kms-key` is not a dependency
    /// of the node, or not known yet, is left out).
    pub fn of<'a>(cx: &NodeCx, regions: impl IntoIterator<Item = &'a str>) -> KnownKeys {
        let mut k = KnownKeys::default();
        for region in regions {
            let node = cx.topo().id(region, "kms-key");
            let (Ok(id), Ok(arn)) = (cx.attr(&node, "id"), cx.attr(&node, "arn")) else {
                continue;
            };
            if !arn.starts_with("arn:") {
                continue; // planned, not created yet
            }
            k.add(&id, &arn, &names::kms_alias(cx.inputs(), region));
        }
        k
    }

    /// The keys of the node's own region.
    pub fn local(cx: &NodeCx) -> KnownKeys {
        KnownKeys::of(cx, [cx.region.as_str()])
    }

    pub fn add(&mut self, id: &str, arn: &str, alias: &str) {
        self.arns.insert(id.to_string(), arn.to_string());
        self.aliases.insert(alias.to_string(), id.to_string());
    }

    /// A key reference as read, for comparison with the desired key ARN: that ARN when the
    /// reference names a known key in any form, the reference as read otherwise.
    pub fn observed(&self, reference: &str) -> String {
        key_id(reference, &self.aliases)
            .and_then(|id| self.arns.get(&id).cloned())
            .unwrap_or_else(|| reference.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1234abcd-12ab-34cd-56ef-1234567890ab";
    const ARN: &str = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    fn known() -> KnownKeys {
        let mut k = KnownKeys::default();
        k.add(ID, ARN, "alias/tap-useast1-dev");
        k
    }

    #[test]
    fn a_key_id_names_itself() {
        assert_eq!(key_id(ID, &BTreeMap::new()), Some(ID.to_string()));
        assert_eq!(known().observed(ID), ARN);
    }

    #[test]
    fn a_key_arn_names_its_key_id() {
        assert_eq!(key_id(ARN, &BTreeMap::new()), Some(ID.to_string()));
        assert_eq!(known().observed(ARN), ARN);
    }

    #[test]
    fn an_alias_name_names_the_key_it_is_known_to_target() {
        let k = known();
        assert_eq!(key_id("alias/tap-useast1-dev", &k.aliases), Some(ID.to_string()));
        assert_eq!(k.observed("alias/tap-useast1-dev"), ARN);
    }

    #[test]
    fn an_alias_arn_names_the_key_it_is_known_to_target() {
        let alias_arn = "arn:aws:kms:us-east-1:111122223333:alias/tap-useast1-dev";
        assert_eq!(known().observed(alias_arn), ARN);
    }

    #[test]
    fn another_key_or_an_unknown_alias_stays_as_read() {
        let k = known();
        let other = "arn:aws:kms:us-east-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab";
        assert_eq!(k.observed(other), other);
        assert_eq!(
            k.observed("ffffffff-12ab-34cd-56ef-1234567890ab"),
            "ffffffff-12ab-34cd-56ef-1234567890ab"
        );
        assert_eq!(k.observed("alias/aws/secretsmanager"), "alias/aws/secretsmanager");
        assert_eq!(key_id("alias/aws/secretsmanager", &k.aliases), None);
        assert_eq!(k.observed(""), "");
        assert_eq!(key_id("", &k.aliases), None);
        assert_eq!(key_id("arn:aws:kms:us-east-1:1:", &k.aliases), None);
    }
}
