//! SPEC names, in one place: every resource file and every test derives names from here.

use crate::config::{Inputs, Side};

pub fn bucket(i: &Inputs, side: Side) -> String {
    format!("tap-bucket-{}-{}", i.r(side), i.env)
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
