//! Regions as data: the home region and the secondaries the stack is built over, each with a
//! fixed index, and the region that writes. Nothing else in tap knows how many regions there are
//! or which one plays which part; it asks the topology.
//!
//! Logical ids are `{R}/{node}` (SPEC v3); SPEC v2 used `primary/…` and `secondary/…`
//! ([`Topology::v2_id`], for migration and adoption).

use crate::config::{InvalidInput, validate_region};
use std::collections::BTreeMap;

/// At most this many secondary regions (SPEC v3 "Inputs").
pub const MAX_SECONDARIES: usize = 4;

/// The regions of one stack, home first, then the secondaries in the order given. Each region
/// has a fixed index: the home region 0, a secondary the index recorded when it was first
/// deployed (a new one takes the lowest free index). The index gives its VPC's CIDR
/// (`10.{i}.0.0/16`) and the order of regions after the writer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    regions: Vec<(String, u32)>,
    writer: String,
}

impl Topology {
    /// Validates every region (the `aws` partition), that none repeats and that there are 1 to
    /// [`MAX_SECONDARIES`] secondaries; indexes are assigned in order (0, 1, 2, ...).
    pub fn new(home: &str, secondaries: &[&str]) -> Result<Topology, InvalidInput> {
        if secondaries.len() > MAX_SECONDARIES {
            return Err(InvalidInput(format!(
                "{} secondary regions given; 1 to {MAX_SECONDARIES} are allowed",
                secondaries.len()
            )));
        }
        Topology::with_indexes(home, secondaries, &BTreeMap::new())
    }

    /// As [`Topology::new`] (without its bound on the number of secondaries: this also describes
    /// a stack while regions are being removed from it), keeping the indexes recorded in state
    /// for the regions it knows; a region it does not know takes the lowest free index.
    pub fn with_indexes(
        home: &str,
        secondaries: &[&str],
        recorded: &BTreeMap<String, u32>,
    ) -> Result<Topology, InvalidInput> {
        validate_region(home, "primary")?;
        if secondaries.is_empty() {
            return Err(InvalidInput(format!(
                "no secondary region given; 1 to {MAX_SECONDARIES} are allowed"
            )));
        }
        for (i, s) in secondaries.iter().enumerate() {
            validate_region(s, "secondary")?;
            if *s == home {
                return Err(InvalidInput(format!(
                    "primary and secondary region are both {home:?}; they must differ"
                )));
            }
            if secondaries[..i].contains(s) {
                return Err(InvalidInput(format!("secondary region {s:?} is given twice")));
            }
        }
        let mut regions = vec![(home.to_string(), 0)];
        let mut taken: Vec<u32> = secondaries
            .iter()
            .filter_map(|s| recorded.get(*s).copied().filter(|i| *i > 0))
            .collect();
        for s in secondaries {
            let index = match recorded.get(*s).copied().filter(|i| *i > 0) {
                Some(i) => i,
                None => {
                    let free = (1..).find(|i| !taken.contains(i)).expect("a free index");
                    taken.push(free);
                    free
                }
            };
            regions.push((s.to_string(), index));
        }
        Ok(Topology {
            regions,
            writer: home.to_string(),
        })
    }

    /// The same regions with `writer` writing (recorded in state after a failover). A region
    /// that is not part of the stack leaves the home region writing.
    pub fn with_writer(mut self, writer: Option<&str>) -> Topology {
        if let Some(w) = writer.filter(|w| self.index(w).is_some()) {
            self.writer = w.to_string();
        }
        self
    }

    /// Every region, home first.
    pub fn regions(&self) -> impl Iterator<Item = &str> {
        self.regions.iter().map(|(r, _)| r.as_str())
    }

    /// Every region with its index.
    pub fn indexes(&self) -> BTreeMap<String, u32> {
        self.regions.iter().cloned().collect()
    }

    pub fn home(&self) -> &str {
        &self.regions[0].0
    }

    /// The secondaries, in the order given.
    pub fn secondaries(&self) -> impl Iterator<Item = &str> {
        self.regions[1..].iter().map(|(r, _)| r.as_str())
    }

    pub fn is_home(&self, region: &str) -> bool {
        region == self.home()
    }

    /// The region that writes: the database writer, the primary copy of its secret, the first
    /// CloudFront origin. The home region unless a failover moved it.
    pub fn writer(&self) -> &str {
        &self.writer
    }

    pub fn is_writer(&self, region: &str) -> bool {
        region == self.writer
    }

    /// The region after `region` in index order, wrapping: the writer's failover origin.
    pub fn next(&self, region: &str) -> &str {
        let i = self.index(region).unwrap_or(0);
        let mut by_index: Vec<&(String, u32)> = self.regions.iter().collect();
        by_index.sort_by_key(|(_, i)| *i);
        by_index
            .iter()
            .find(|(_, j)| *j > i)
            .or_else(|| by_index.first())
            .map(|(r, _)| r.as_str())
            .expect("a topology has regions")
    }

    /// The fixed index of `region`: 0 for home, 1.. for the secondaries.
    pub fn index(&self, region: &str) -> Option<u32> {
        self.regions.iter().find(|(r, _)| r == region).map(|(_, i)| *i)
    }

    /// The logical id of `kind` in `region` (also the value of its `tap:id` tag).
    pub fn id(&self, region: &str, kind: &str) -> String {
        format!("{region}/{kind}")
    }

    /// The id SPEC v2 gave the same object (home `primary/…`, index 1 `secondary/…`, the
    /// database as `rds-primary` / `rds-replica`), if v2 had one: objects deployed by v2 carry it
    /// as their `tap:id` until they are retagged.
    pub fn v2_id(&self, region: &str, kind: &str) -> Option<String> {
        let prefix = match self.index(region)? {
            0 => "primary",
            1 => "secondary",
            _ => return None,
        };
        let kind = match (kind, prefix) {
            ("db-instance", "primary") => "rds-primary",
            ("db-instance", _) => "rds-replica",
            (k, _) => k,
        };
        Some(format!("{prefix}/{kind}"))
    }
}

/// The regions, home first, separated by `/`: `us-east-1/eu-west-1`.
impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.regions().collect::<Vec<_>>().join("/"))
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
    fn regions_have_fixed_indexes_and_ids() {
        let t = Topology::new("us-east-1", &["eu-west-1", "ap-southeast-2"]).unwrap();
        assert_eq!(
            t.regions().collect::<Vec<_>>(),
            ["us-east-1", "eu-west-1", "ap-southeast-2"]
        );
        assert_eq!(t.id("us-east-1", "vpc"), "us-east-1/vpc");
        assert_eq!(t.next("us-east-1"), "eu-west-1");
        assert_eq!(t.next("ap-southeast-2"), "us-east-1");
        assert_eq!(t.index("ap-southeast-2"), Some(2));
        assert_eq!(t.v2_id("us-east-1", "db-instance").unwrap(), "primary/rds-primary");
        assert_eq!(t.v2_id("eu-west-1", "db-instance").unwrap(), "secondary/rds-replica");
        assert_eq!(t.v2_id("eu-west-1", "vpc").unwrap(), "secondary/vpc");
        assert_eq!(t.v2_id("ap-southeast-2", "vpc"), None);
        assert!(Topology::new("us-east-1", &["eu-west-1", "eu-west-1"]).is_err());
        assert!(Topology::new("us-east-1", &["us-east-1"]).is_err());
        assert!(Topology::new("us-east-1", &[]).is_err());
        let five = ["eu-west-1", "eu-west-2", "eu-west-3", "eu-central-1", "ap-south-1"];
        assert!(Topology::new("us-east-1", &five).unwrap_err().0.contains("1 to 4"));
    }

    /// Adding a region never renumbers the others; a new one takes the lowest free index.
    #[test]
    fn recorded_indexes_are_kept_and_new_regions_take_the_lowest_free_one() {
        let recorded = BTreeMap::from([
            ("us-east-1".to_string(), 0),
            ("eu-west-1".to_string(), 1),
            ("ap-southeast-2".to_string(), 3),
        ]);
        let t = Topology::with_indexes("us-east-1", &["ap-southeast-2", "sa-east-1", "eu-west-1"], &recorded).unwrap();
        assert_eq!(t.index("eu-west-1"), Some(1));
        assert_eq!(t.index("ap-southeast-2"), Some(3));
        assert_eq!(t.index("sa-east-1"), Some(2));
        assert_eq!(t.next("eu-west-1"), "sa-east-1");
        assert_eq!(t.next("ap-southeast-2"), "us-east-1");
    }

    #[test]
    fn the_writer_moves_only_to_a_region_of_the_stack() {
        let t = Topology::new("us-east-1", &["eu-west-1"]).unwrap();
        assert_eq!(t.writer(), "us-east-1");
        assert_eq!(t.clone().with_writer(Some("eu-west-1")).writer(), "eu-west-1");
        assert_eq!(t.with_writer(Some("sa-east-1")).writer(), "us-east-1");
    }
}
