//! Syntax predicates for AWS values: regions, zones, bucket names, tags, AMI owners and name
//! filters, policy ARNs. Each returns `Err(reason)` naming what is wrong.

use super::syntax::{ascii_charset, clip, verdict};

/// An AWS region such as `ap-northeast-2` or `us-gov-west-1`.
pub fn region(region: &str) -> Result<(), String> {
    let parts: Vec<&str> = region.split('-').collect();
    let ok = parts.len() >= 3
        && region.len() <= 32
        && parts[..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_lowercase()))
        && parts[parts.len() - 1].chars().all(|c| c.is_ascii_digit())
        && !parts[parts.len() - 1].is_empty();
    if ok {
        Ok(())
    } else {
        Err(format!("`{}` is not an AWS region", clip(region)))
    }
}

/// An availability zone of `region`: the region followed by a zone letter (or a local zone
/// suffix such as `-lax-1a`).
pub fn zone(az: &str, region: &str) -> Result<(), String> {
    let ok = az.len() <= 48
        && az.starts_with(region)
        && az.len() > region.len()
        && az.ends_with(|c: char| c.is_ascii_lowercase())
        && az
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not an availability zone of {}",
            clip(az),
            clip(region)
        ))
    }
}

/// An S3 bucket name (DNS-compatible: 3-63 characters of a-z, 0-9, '.' and '-', starting and
/// ending with a letter or digit).
pub fn bucket_name(name: &str) -> Result<(), String> {
    let ok = (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && !name.contains("..");
    verdict(ok, name, "an S3 bucket name")
}

/// A systemd `OnCalendar` expression: 1-64 characters of letters, digits, space and
/// `*:,./~-` (no newline, no `=`: it goes into a unit file as one value).
pub fn on_calendar(value: &str) -> Result<(), String> {
    let ok = (1..=64).contains(&value.len())
        && value.trim() == value
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " *:,./~-".contains(c));
    verdict(ok, value, "a systemd OnCalendar expression")
}

/// `s3://bucket[/prefix]`: a valid bucket name and a clean key prefix.
pub fn s3_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("s3://") else {
        return verdict(false, url, "an s3:// URL");
    };
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    bucket_name(bucket)?;
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return Ok(());
    }
    super::syntax::repo_path(prefix)
}

/// An AWS tag key and value as EC2 and IAM accept them; `aws:` keys and the keys ecoboot sets
/// itself are refused.
pub fn aws_tag(key: &str, value: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || c == ' ' || "_.:/=+-@".contains(c);
    if key.is_empty() || key.chars().count() > 128 || !key.chars().all(allowed) {
        return Err(format!(
            "tag key `{}` must be 1-128 letters, digits, spaces or _.:/=+-@",
            clip(key)
        ));
    }
    if key.to_ascii_lowercase().starts_with("aws:") {
        return Err(format!(
            "tag key `{}` uses the reserved `aws:` prefix",
            clip(key)
        ));
    }
    if key == "Name" || key.starts_with("ecoboot.io/") || key.starts_with("kubernetes.io/cluster/")
    {
        return Err(format!("tag key `{}` is set by ecoboot itself", clip(key)));
    }
    if value.chars().count() > 256 || !value.chars().all(allowed) {
        return Err(format!(
            "tag value `{}` of `{}` must be at most 256 letters, digits, spaces or _.:/=+-@",
            clip(value),
            clip(key)
        ));
    }
    Ok(())
}

/// An AMI owner: an AWS account id (12 digits), `amazon`, `self` or `aws-marketplace`.
pub fn ami_owner(owner: &str) -> Result<(), String> {
    let account = owner.len() == 12 && owner.chars().all(|c| c.is_ascii_digit());
    verdict(
        account || ["amazon", "self", "aws-marketplace"].contains(&owner),
        owner,
        "an image owner",
    )
}

/// An image name pattern for DescribeImages (`*` and `?` are wildcards).
pub fn image_name_filter(filter: &str) -> Result<(), String> {
    verdict(
        ascii_charset(filter, 256, "-._/*?()"),
        filter,
        "an image name pattern",
    )
}

/// A managed IAM policy ARN.
pub fn policy_arn(arn: &str) -> Result<(), String> {
    let ok = arn.starts_with("arn:aws")
        && arn.contains(":policy/")
        && ascii_charset(arn, 2048, "-._:/+=,@");
    verdict(ok, arn, "a managed policy ARN")
}

/// A policy document's name: 1-64 characters of `[A-Za-z0-9._-]` (a subset of IAM's policy
/// names that leaves room for the `ecoboot-<cluster>-` prefix within IAM's 128).
pub fn iam_name(name: &str) -> Result<(), String> {
    verdict(
        ascii_charset(name, 64, "._-"),
        name,
        "1-64 characters of [A-Za-z0-9._-]",
    )
}
