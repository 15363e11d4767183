//! Resource kinds, one file each. Each holds the AWS handle; the engine sees only `Resource`.

pub mod asg;
pub mod by_role;
pub mod cf_oac;
pub mod cloudfront;
pub mod cx;
pub mod db_secret;
pub mod db_subnet_group;
pub mod ec2;
pub mod final_snapshots;
pub mod iam_role;
pub mod internet_gateway;
pub mod kms_alias;
pub mod kms_key;
pub mod kms_ref;
pub mod lambda_function;
pub mod launch_template;
pub mod log_group;
pub mod names;
pub mod nat;
pub mod policy;
pub mod rds_instance;
pub mod rds_tags;
pub mod route_table;
pub mod s3_bucket;
pub mod s3_bucket_policy;
pub mod s3_notification;
pub mod s3_replication;
pub mod secret_replica;
pub mod security_group;
pub mod sns_topic;
pub mod subnet;
pub mod typed;
pub mod vpc;

use std::collections::BTreeMap;

/// Tags as a map, from (key, value) pairs of any SDK's tag type.
pub fn tag_map<I, K, V>(pairs: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (K, V)>,
    K: Into<Option<String>>,
    V: Into<Option<String>>,
{
    pairs
        .into_iter()
        .filter_map(|(k, v)| Some((k.into()?, v.into().unwrap_or_default())))
        .collect()
}
