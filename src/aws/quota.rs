//! The account's On-Demand Standard vCPU quota (Service Quotas `ec2` / `L-1216C47A`) and the
//! vCPUs that count against it: instance types' vCPUs from DescribeInstanceTypes and the
//! account's running on-demand instances of the standard families (A, C, D, H, I, M, R, T, Z).

use std::collections::{BTreeMap, BTreeSet};

use aws_sdk_servicequotas::config::retry::RetryConfig;

use super::{Aws, aws_error, code_of};
use crate::error::Result;

/// Service Quotas code of "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances".
pub const VCPU_QUOTA_CODE: &str = "L-1216C47A";

/// The quota as it could be read.
#[derive(Debug, Clone, PartialEq)]
pub enum QuotaRead {
    /// The applied (or default) value, in vCPUs.
    Value(f64),
    /// Not readable (no permission, not offered): the reason, for a warning.
    Unreadable(String),
}

/// Families whose first letter is a standard one but which have quotas of their own
/// (Inferentia, HPC, DL, Trainium, Mac).
const OWN_QUOTA: &[&str] = &["inf", "hpc", "dl", "trn", "mac"];

/// Whether `instance_type` (e.g. `t3.large`) counts against the standard-families quota.
pub fn is_standard(instance_type: &str) -> bool {
    let t = instance_type.to_ascii_lowercase();
    t.chars().next().is_some_and(|c| "acdhimrtz".contains(c))
        && !OWN_QUOTA.iter().any(|p| t.starts_with(p))
}

/// Reads the vCPU quota: the applied value, else AWS's default; never fails the run (a
/// principal without `servicequotas:GetServiceQuota` gets [`QuotaRead::Unreadable`]).
pub async fn vcpu_quota(aws: &Aws) -> QuotaRead {
    let applied = aws
        .quotas
        .get_service_quota()
        .service_code("ec2")
        .quota_code(VCPU_QUOTA_CODE)
        .send()
        .await;
    let why = match applied {
        Ok(out) => match out.quota().and_then(|q| q.value()) {
            Some(v) => return QuotaRead::Value(v),
            None => "GetServiceQuota answered without a value".to_string(),
        },
        Err(e) if code_of(&e).as_deref() == Some("NoSuchResourceException") => {
            // No applied value: the default is the quota. One attempt: this is advisory.
            let default = aws
                .quotas
                .get_aws_default_service_quota()
                .service_code("ec2")
                .quota_code(VCPU_QUOTA_CODE)
                .customize()
                .config_override(
                    aws_sdk_servicequotas::config::Builder::default()
                        .retry_config(RetryConfig::disabled()),
                )
                .send()
                .await;
            match default {
                Ok(out) => match out.quota().and_then(|q| q.value()) {
                    Some(v) => return QuotaRead::Value(v),
                    None => "GetAWSDefaultServiceQuota answered without a value".to_string(),
                },
                Err(e) => aws_error("GetAWSDefaultServiceQuota", VCPU_QUOTA_CODE, e).to_string(),
            }
        }
        Err(e) => aws_error("GetServiceQuota", VCPU_QUOTA_CODE, e).to_string(),
    };
    QuotaRead::Unreadable(why)
}

/// Default vCPUs of each of `types` (one DescribeInstanceTypes call).
pub async fn vcpus_of(aws: &Aws, types: &BTreeSet<String>) -> Result<BTreeMap<String, i32>> {
    if types.is_empty() {
        return Ok(BTreeMap::new());
    }
    let mut call = aws.ec2.describe_instance_types();
    for t in types {
        call = call.instance_types(aws_sdk_ec2::types::InstanceType::from(t.as_str()));
    }
    let out = call
        .send()
        .await
        .map_err(|e| aws_error("DescribeInstanceTypes", "instance types", e))?;
    Ok(out
        .instance_types()
        .iter()
        .filter_map(|t| {
            let name = t.instance_type()?.as_str().to_string();
            Some((name, t.v_cpu_info()?.default_v_cpus()?))
        })
        .collect())
}

/// The account's pending and running on-demand instances of standard families in the region
/// (every instance, not only this cluster's): their types, one entry per instance.
pub async fn running_standard(aws: &Aws) -> Result<Vec<String>> {
    let all = aws.instances_where(&["pending", "running"], None).await?;
    Ok(all
        .iter()
        .filter(|i| i.instance_lifecycle().is_none()) // spot and scheduled do not count
        .filter_map(|i| i.instance_type().map(|t| t.as_str().to_string()))
        .filter(|t| is_standard(t))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::is_standard;

    #[test]
    fn standard_families_are_the_quota_letters() {
        for t in [
            "t3.medium",
            "m7i.large",
            "c6g.xlarge",
            "r5.2xlarge",
            "z1d.large",
        ] {
            assert!(is_standard(t), "{t}");
        }
        for t in [
            "p4d.24xlarge",
            "g5.xlarge",
            "x2idn.large",
            "inf2.xlarge",
            "trn1.2xlarge",
        ] {
            assert!(!is_standard(t), "{t}");
        }
    }
}
