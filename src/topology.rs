//! Regions as data: the home region and the secondaries the stack is built over. Nothing else in
//! tap knows how many regions there are or which one plays which part; it asks the topology.
//!
//! Logical ids keep the prefixes of the deployed release: `primary/…` for the home region,
//! `secondary/…` for the first secondary (`secondaryN/…` for the N-th, N ≥ 2).

use crate::config::{InvalidInput, validate_region};

/// The regions of one stack, home first. Each region has a fixed index: the home region 0, the
/// secondaries 1, 2, ... in the order given (the second octet of its VPC's CIDR).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    regions: Vec<String>,
}

impl Topology {
    /// Validates every region (the `aws` partition) and that none repeats.
    pub fn new(home: &str, secondaries: &[&str]) -> Result<Topology, InvalidInput> {
        validate_region(home, "primary")?;
        for s in secondaries {
            validate_region(s, "secondary")?;
            if *s == home {
                return Err(InvalidInput(format!(
                    "primary and secondary region are both {home:?}; they must differ"
                )));
            }
        }
        for (i, s) in secondaries.iter().enumerate() {
            if secondaries[..i].contains(s) {
                return Err(InvalidInput(format!("secondary region {s:?} is given twice")));
            }
        }
        let mut regions = vec![home.to_string()];
        regions.extend(secondaries.iter().map(|s| s.to_string()));
        Ok(Topology { regions })
    }

    /// Every region, home first.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions.iter().map(String::as_str)
    }

    pub fn home(&self) -> &str {
        &self.regions[0]
    }

    pub fn secondaries(&self) -> &[String] {
        &self.regions[1..]
    }

    pub fn is_home(&self, region: &str) -> bool {
        region == self.home()
    }

    /// The region that writes (the database primary, the replication source, the first
    /// CloudFront origin). The home region: tap has no failover yet.
    pub fn writer(&self) -> &str {
        self.home()
    }

    /// The region after `region` in the ring home → secondaries → home: the replication
    /// destination and the failover origin of the writer.
    pub fn next(&self, region: &str) -> &str {
        let i = self.index(region).unwrap_or(0);
        &self.regions[(i + 1) % self.regions.len()]
    }

    /// The fixed index of `region`: 0 for home, 1.. for the secondaries.
    pub fn index(&self, region: &str) -> Option<usize> {
        self.regions.iter().position(|r| r == region)
    }

    /// The prefix of the logical ids of `region`.
    pub fn prefix(&self, region: &str) -> String {
        match self.index(region) {
            Some(0) => "primary".into(),
            Some(1) => "secondary".into(),
            Some(n) => format!("secondary{n}"),
            None => format!("unknown-region-{region}"),
        }
    }

    /// The logical id of `kind` in `region` (also the value of its `tap:id` tag).
    pub fn id(&self, region: &str, kind: &str) -> String {
        format!("{}/{kind}", self.prefix(region))
    }
}

/// The regions, home first, separated by `/`: `us-east-1/eu-west-1`.
impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.regions.join("/"))
    }
}

/// `{r}` of SPEC: the region name without dashes.
pub fn r(region: &str) -> String {
    region.replace('-', "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_have_fixed_indexes_and_prefixes() {
        let t = Topology::new("us-east-1", &["eu-west-1", "ap-southeast-2"]).unwrap();
        assert_eq!(
            t.regions().collect::<Vec<_>>(),
            ["us-east-1", "eu-west-1", "ap-southeast-2"]
        );
        assert_eq!(t.id("us-east-1", "vpc"), "primary/vpc");
        assert_eq!(t.id("eu-west-1", "vpc"), "secondary/vpc");
        assert_eq!(t.id("ap-southeast-2", "vpc"), "secondary2/vpc");
        assert_eq!(t.next("us-east-1"), "eu-west-1");
        assert_eq!(t.next("ap-southeast-2"), "us-east-1");
        assert_eq!(t.index("ap-southeast-2"), Some(2));
        assert!(Topology::new("us-east-1", &["eu-west-1", "eu-west-1"]).is_err());
        assert!(Topology::new("us-east-1", &["us-east-1"]).is_err());
    }
}
