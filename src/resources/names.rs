//! SPEC names, in one place: every resource file and every test derives names from here.

use crate::config::Inputs;
use crate::topology::r;

/// `tap-bucket-{r}-{env}-{account}`: bucket names are global across all accounts.
pub fn bucket(i: &Inputs, region: &str) -> String {
    global(format!("tap-bucket-{}-{}", r(region), i.env), i)
}

/// `tap-cf-logs-{env}-{account}`.
pub fn cf_log_bucket(i: &Inputs) -> String {
    global(format!("tap-cf-logs-{}", i.env), i)
}

/// The account id appended to a globally unique name (absent only before it is known).
fn global(name: String, i: &Inputs) -> String {
    match i.account.is_empty() {
        true => name,
        false => format!("{name}-{}", i.account),
    }
}

/// `tap-db-{r}-{env}`: named by region, not by role (after a failover the secondary's instance
/// is the writer).
pub fn db_instance(i: &Inputs, region: &str) -> String {
    format!("tap-db-{}-{}", r(region), i.env)
}

pub fn bucket_arn(i: &Inputs, region: &str) -> String {
    format!("arn:aws:s3:::{}", bucket(i, region))
}

pub fn kms_alias(i: &Inputs, region: &str) -> String {
    format!("alias/tap-{}-{}", r(region), i.env)
}

pub fn replication_role(i: &Inputs) -> String {
    format!("tap-s3-replication-{}", i.env)
}

pub fn key_description(region: &str) -> String {
    format!("TAP Multi-Region KMS Key - {}", region)
}

pub fn log_group(i: &Inputs, region: &str) -> String {
    format!("/aws/lambda/tap-replication-monitor-{}-{}", r(region), i.env)
}
