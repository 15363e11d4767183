//! SPEC names, in one place: every resource file and every test derives names from here.

use crate::config::{Inputs, Side};

/// `tap-bucket-{r}-{env}-{account}`: bucket names are global across all accounts.
pub fn bucket(i: &Inputs, side: Side) -> String {
    global(format!("tap-bucket-{}-{}", i.r(side), i.env), i)
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
pub fn db_instance(i: &Inputs, side: Side) -> String {
    format!("tap-db-{}-{}", i.r(side), i.env)
}

pub fn bucket_arn(i: &Inputs, side: Side) -> String {
    format!("arn:aws:s3:::{}", bucket(i, side))
}

pub fn kms_alias(i: &Inputs, side: Side) -> String {
    format!("alias/tap-{}-{}", i.r(side), i.env)
}

pub fn replication_role(i: &Inputs) -> String {
    format!("tap-s3-replication-{}", i.env)
}

pub fn key_description(i: &Inputs, side: Side) -> String {
    format!("TAP Multi-Region KMS Key - {}", i.region(side))
}

pub fn log_group(i: &Inputs, side: Side) -> String {
    format!("/aws/lambda/tap-replication-monitor-{}-{}", i.r(side), i.env)
}
