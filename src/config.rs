//! Inputs of a run (SPEC "Inputs"), their validation, and the names and tags derived from them.
//! Everything here is checked before any AWS call is made.

use crate::topology::Topology;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The inputs of a run, recorded in state as [`InputsRecord`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "InputsRecord", try_from = "InputsRecord")]
pub struct Inputs {
    pub env: String,
    /// The regions: home and secondaries.
    pub topology: Topology,
    pub repository: String,
    pub author: String,
    /// The caller's account id (STS GetCallerIdentity, once per run), for global names.
    pub account: String,
}

/// [`Inputs`] as the state file records them (input parsing of a recorded state). SPEC v2
/// recorded one `secondary_region`; v3 records `secondary_regions`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InputsRecord {
    pub env: String,
    pub primary_region: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secondary_regions: Vec<String>,
    /// SPEC v2's one secondary (read, never written).
    #[serde(default, skip_serializing)]
    pub secondary_region: Option<String>,
    pub repository: String,
    pub author: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub account: String,
}

impl From<Inputs> for InputsRecord {
    fn from(i: Inputs) -> InputsRecord {
        InputsRecord {
            env: i.env,
            primary_region: i.topology.home().to_string(),
            secondary_regions: i.topology.secondaries().map(str::to_string).collect(),
            secondary_region: None,
            repository: i.repository,
            author: i.author,
            account: i.account,
        }
    }
}

impl TryFrom<InputsRecord> for Inputs {
    type Error = InvalidInput;

    fn try_from(r: InputsRecord) -> Result<Inputs, InvalidInput> {
        let mut secondaries: Vec<&str> = r.secondary_regions.iter().map(String::as_str).collect();
        if let Some(s) = r.secondary_region.as_deref() {
            secondaries.push(s);
        }
        Ok(Inputs {
            env: r.env,
            topology: Topology::new(&r.primary_region, &secondaries)?,
            repository: r.repository,
            author: r.author,
            account: r.account,
        })
    }
}

/// An input that is not allowed; the message says what is wrong and what is allowed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidInput(pub String);

impl Inputs {
    /// Inputs of one home region and one secondary.
    pub fn new(
        env: &str,
        primary_region: &str,
        secondary_region: &str,
        repository: Option<String>,
        author: Option<String>,
    ) -> Result<Inputs, InvalidInput> {
        Inputs::with_secondaries(env, primary_region, &[secondary_region], repository, author)
    }

    /// The inputs of the command line: `--primary-region` is the home region,
    /// `--secondary-region` (repeated, or comma-separated) the secondaries, in order.
    pub fn with_secondaries(
        env: &str,
        primary_region: &str,
        secondaries: &[&str],
        repository: Option<String>,
        author: Option<String>,
    ) -> Result<Inputs, InvalidInput> {
        validate_env(env)?;
        let topology = Topology::new(primary_region, secondaries)?;
        let or_unknown = |v: Option<String>| v.filter(|s| !s.is_empty()).unwrap_or_else(|| "unknown".into());
        Ok(Inputs {
            env: env.to_string(),
            topology,
            repository: or_unknown(repository),
            author: or_unknown(author),
            account: String::new(),
        })
    }

    /// The tags every taggable resource carries (SPEC "Tags"), for logical id `id`.
    pub fn tags(&self, id: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("Environment".to_string(), self.env.clone()),
            ("Repository".to_string(), self.repository.clone()),
            ("Author".to_string(), self.author.clone()),
            ("Project".to_string(), "tap-multi-region".to_string()),
            (STACK_TAG.to_string(), self.env.clone()),
            (ID_TAG.to_string(), id.to_string()),
        ])
    }
}

pub use crate::engine::resource::{ID_TAG, STACK_TAG};

/// SPEC: 1-16 characters, lowercase letters, digits and `-`, starts with a letter, no `--`,
/// no trailing `-`.
pub fn validate_env(env: &str) -> Result<(), InvalidInput> {
    let rule = "the environment suffix must be 1-16 characters of lowercase letters, digits and '-', \
                start with a letter, and contain no '--' and no trailing '-'";
    let ok = (1..=16).contains(&env.len())
        && env.starts_with(|c: char| c.is_ascii_lowercase())
        && env
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !env.contains("--")
        && !env.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(InvalidInput(format!("invalid environment suffix {env:?}: {rule}")))
    }
}

/// A region name of the `aws` partition: `us-east-1`, `eu-west-1`, `ap-southeast-2`.
pub fn validate_region(region: &str, which: &str) -> Result<(), InvalidInput> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    if !ok {
        return Err(InvalidInput(format!(
            "invalid {which} region {region:?}: expected an AWS region name such as us-east-1 or eu-west-1"
        )));
    }
    // SPEC: both regions in the standard `aws` partition (ARNs are built with `arn:aws:`, and
    // CloudFront and this stack's services are there). China (`cn-*`), GovCloud (`us-gov-*`) and
    // the isolated partitions (`us-iso-*`, `us-isob-*`, `eu-isoe-*`, `us-isof-*`) are not.
    const OTHER_PARTITIONS: &[&str] = &["cn-", "us-gov-", "us-iso-", "us-isob-", "us-isof-", "eu-isoe-"];
    if let Some(p) = OTHER_PARTITIONS.iter().find(|p| region.starts_with(*p)) {
        return Err(InvalidInput(format!(
            "invalid {which} region {region:?}: {p}* regions are outside the standard aws partition, which tap supports only"
        )));
    }
    Ok(())
}

/// `--endpoint-url` must be an absolute http(s) URL with a host.
pub fn validate_endpoint(url: &str) -> Result<(), InvalidInput> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.starts_with('/') && !r.contains(char::is_whitespace) => Ok(()),
        _ => Err(InvalidInput(format!(
            "invalid endpoint URL {url:?}: expected http://HOST[:PORT] or https://HOST[:PORT]"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_rule() {
        for ok in ["dev", "a", "pr-123", "abcdefghijklmnop", "x1-y2"] {
            assert!(validate_env(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Dev",
            "1dev",
            "-dev",
            "dev-",
            "de--v",
            "abcdefghijklmnopq",
            "dev_1",
            "dév",
        ] {
            assert!(validate_env(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_and_endpoint() {
        assert!(validate_region("us-east-1", "primary").is_ok());
        assert!(validate_region("ap-southeast-2", "primary").is_ok());
        for bad in [
            "useast1",
            "us-east",
            "US-EAST-1",
            "us-east-x",
            "",
            "us-gov-west-1",
            "cn-north-1",
            "us-iso-east-1",
        ] {
            assert!(validate_region(bad, "primary").is_err(), "{bad}");
        }
        let same = Inputs::new("dev", "us-east-1", "us-east-1", None, None);
        assert!(same.unwrap_err().0.contains("must differ"));
        let i = Inputs::with_secondaries("dev", "us-east-1", &["eu-west-1", "sa-east-1"], None, None).unwrap();
        let recorded = serde_json::to_value(&i).unwrap();
        assert_eq!(recorded["primary_region"], "us-east-1");
        assert_eq!(
            recorded["secondary_regions"],
            serde_json::json!(["eu-west-1", "sa-east-1"])
        );
        let back: Inputs = serde_json::from_value(recorded).unwrap();
        assert_eq!(back, i);
        // As SPEC v2 recorded them.
        let v2 = serde_json::json!({"env": "dev", "primary_region": "us-east-1", "secondary_region": "eu-west-1",
            "repository": "r", "author": "a", "account": "123456789012"});
        let back: Inputs = serde_json::from_value(v2).unwrap();
        assert_eq!(back.topology.secondaries().collect::<Vec<_>>(), ["eu-west-1"]);
        assert!(validate_endpoint("http://127.0.0.1:4566").is_ok());
        assert!(validate_endpoint("localhost:4566").is_err());
        assert!(validate_endpoint("http://").is_err());
    }

    #[test]
    fn tags_and_names() {
        let i = Inputs::new("dev", "us-east-1", "eu-west-1", None, Some("me".into())).unwrap();
        assert_eq!(crate::topology::r("eu-west-1"), "euwest1");
        let t = i.tags("primary/s3-bucket");
        assert_eq!(t["tap:id"], "primary/s3-bucket");
        assert_eq!(t["Repository"], "unknown");
        assert_eq!(t["Author"], "me");
        assert_eq!(t.len(), 6);
    }
}
