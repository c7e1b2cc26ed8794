//! `allowedSshCidrs: [self]`: port 22 open to this machine's public address only while a
//! command needs SSH. The rule is added to the cluster's security group before the first
//! connection, marked with the run's id and an expiry (in its description and its tags), and
//! revoked when the command ends (success, failure or Ctrl-C). A rule a killed run left is
//! revoked by the next run that holds the lock, and by any run once it has expired.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_ec2::types::{
    Filter, IpPermission, IpRange, Ipv6Range, ResourceType, Tag, TagSpecification,
};

use crate::aws::{Aws, aws_error, ec2_filter};
use crate::config::Config;
use crate::error::Result;

/// The `allowedSshCidrs` entry that means "the machine running ecoboot".
pub const SELF: &str = "self";
/// Description prefix of a runner rule (the network stage leaves these alone).
pub const MARK: &str = "ecoboot-runner";
/// Tag key carrying the run id on a runner rule.
pub const RUN_TAG: &str = "ecoboot.io/runner-run";
/// Tag key carrying the rule's expiry (Unix seconds) on a runner rule.
pub const EXPIRES_TAG: &str = "ecoboot.io/runner-expires";
/// How long a runner rule may live when nothing revokes it (longer than any command).
pub const LIFETIME: Duration = Duration::from_secs(3 * 3600);
/// Where the caller's public address is asked (one address in plain text).
pub const DEFAULT_IP_URL: &str = "https://checkip.amazonaws.com";

/// A rule this run added.
#[derive(Debug, Clone)]
pub struct Opened {
    /// The security group.
    pub group: String,
    /// The rule's id.
    pub rule: String,
    /// The source (`a.b.c.d/32` or `x::y/128`).
    pub cidr: String,
}

/// Whether the config asks for the caller's address.
pub fn wanted(config: &Config) -> bool {
    let aws = &config.cluster.spec.aws;
    aws.allowed_ssh_cidrs.iter().any(|c| c.value == SELF)
}

/// The caller's public address, as the what's-my-IP service (`ECOBOOT_MY_IP_URL`, default
/// [`DEFAULT_IP_URL`]) answers it. The answer is parsed as one IP address, nothing else.
pub async fn caller_address() -> Result<IpAddr> {
    let url = std::env::var("ECOBOOT_MY_IP_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| DEFAULT_IP_URL.into());
    let text = crate::fetch::small_text(&url, 64, "this machine's public address", "ssh").await?;
    text.trim()
        .parse::<IpAddr>()
        .map_err(|_| crate::error::Error::StageFailed {
            stage: "ssh".into(),
            message: format!("{url} did not answer with an IP address (allowedSshCidrs: self)"),
            help: "set ECOBOOT_MY_IP_URL to a service that answers with your address in plain text, or list a fixed CIDR in spec.aws.allowedSshCidrs".into(),
        })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The cluster's security group (by the cluster tag and its name), if it exists yet.
async fn group(aws: &Aws, config: &Config) -> Result<Option<String>> {
    let name = format!("{}-cluster", config.name());
    let out = (aws.ec2.describe_security_groups())
        .filters(aws.tags.filter())
        .filters(ec2_filter("group-name", &name))
        .send()
        .await
        .map_err(|e| aws_error("DescribeSecurityGroups", &name, e))?;
    Ok(out
        .security_groups()
        .first()
        .and_then(|g| g.group_id())
        .map(str::to_string))
}

/// A runner rule as found: its id, run and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    id: String,
    run: String,
    expires: u64,
}

/// Parses `ecoboot-runner run=<id> until=<unix>` (the description is the fallback when a
/// rule's tags are missing).
fn parse_mark(description: &str) -> Option<(String, u64)> {
    let rest = description.strip_prefix(MARK)?.trim();
    let mut run = None;
    let mut until = None;
    for word in rest.split_whitespace() {
        match word.split_once('=') {
            Some(("run", v)) => run = Some(v.to_string()),
            Some(("until", v)) => until = v.parse().ok(),
            _ => {}
        }
    }
    Some((run?, until.unwrap_or(0)))
}

async fn runner_rules(aws: &Aws, group: &str) -> Result<Vec<Found>> {
    let out = (aws.ec2.describe_security_group_rules())
        .filters(Filter::builder().name("group-id").values(group).build())
        .send()
        .await
        .map_err(|e| aws_error("DescribeSecurityGroupRules", group, e))?;
    let rules = out
        .security_group_rules()
        .iter()
        .filter(|r| r.is_egress() != Some(true));
    Ok(rules
        .filter_map(|r| {
            let (run, expires) = parse_mark(r.description().unwrap_or_default())?;
            Some(Found {
                id: r.security_group_rule_id()?.to_string(),
                run,
                expires,
            })
        })
        .collect())
}

async fn revoke(aws: &Aws, group: &str, ids: Vec<String>) -> Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    aws.pace().await;
    (aws.ec2.revoke_security_group_ingress())
        .group_id(group)
        .set_security_group_rule_ids(Some(ids))
        .send()
        .await
        .map(drop)
        .map_err(|e| aws_error("RevokeSecurityGroupIngress", group, e))
}

/// Revokes runner rules that are not `run`'s: all of them when this run holds the lock
/// (`exclusive`), else only expired ones. Returns how many went.
pub async fn sweep(aws: &Aws, group: &str, run: &str, exclusive: bool) -> Result<usize> {
    let now = unix_now();
    let stale: Vec<String> = (runner_rules(aws, group).await?.into_iter())
        .filter(|f| f.run != run && (exclusive || f.expires < now))
        .map(|f| f.id)
        .collect();
    let n = stale.len();
    revoke(aws, group, stale).await?;
    Ok(n)
}

/// Opens port 22 to the caller for run `run`. `None` when the config does not ask for it or
/// the security group does not exist yet (the network stage makes it).
pub async fn open(
    aws: &Aws,
    config: &Config,
    run: &str,
    exclusive: bool,
) -> Result<Option<Opened>> {
    if !wanted(config) {
        return Ok(None);
    }
    let Some(group) = group(aws, config).await? else {
        return Ok(None);
    };
    let swept = sweep(aws, &group, run, exclusive).await?;
    if swept > 0 {
        tracing::info!("revoked {swept} SSH rule(s) left by earlier runs");
    }
    let ip = caller_address().await?;
    let until = unix_now() + LIFETIME.as_secs();
    let description = format!("{MARK} run={run} until={until}");
    let mut permission = IpPermission::builder()
        .ip_protocol("tcp")
        .from_port(22)
        .to_port(22);
    let cidr = match ip {
        IpAddr::V4(v4) => {
            let cidr = format!("{v4}/32");
            permission = permission.ip_ranges(
                IpRange::builder()
                    .cidr_ip(&cidr)
                    .description(&description)
                    .build(),
            );
            cidr
        }
        IpAddr::V6(v6) => {
            let cidr = format!("{v6}/128");
            permission = permission.ipv6_ranges(
                Ipv6Range::builder()
                    .cidr_ipv6(&cidr)
                    .description(&description)
                    .build(),
            );
            cidr
        }
    };
    let tag = |k: &str, v: &str| Tag::builder().key(k).value(v).build();
    let tags = TagSpecification::builder()
        .resource_type(ResourceType::SecurityGroupRule)
        .tags(tag(crate::aws::tags::CLUSTER, config.name()))
        .tags(tag(RUN_TAG, run))
        .tags(tag(EXPIRES_TAG, &until.to_string()))
        .build();
    aws.pace().await;
    let out = (aws.ec2.authorize_security_group_ingress())
        .group_id(&group)
        .ip_permissions(permission.build())
        .tag_specifications(tags)
        .send()
        .await;
    let out = match out {
        Ok(out) => out,
        // The address is already allowed (a fixed CIDR rule covering exactly it).
        Err(e) if crate::aws::code_of(&e).is_some_and(|c| c.contains("Duplicate")) => {
            return Ok(None);
        }
        Err(e) => return Err(aws_error("AuthorizeSecurityGroupIngress", &group, e)),
    };
    let rule = (out.security_group_rules().first())
        .and_then(|r| r.security_group_rule_id())
        .unwrap_or_default()
        .to_string();
    Ok(Some(Opened { group, rule, cidr }))
}

/// Revokes the rule this run added.
pub async fn close(aws: &Aws, opened: &Opened) -> Result<()> {
    revoke(aws, &opened.group, vec![opened.rule.clone()]).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_parse_and_foreign_descriptions_do_not() {
        assert_eq!(
            parse_mark("ecoboot-runner run=abc-1 until=1700000000"),
            Some(("abc-1".into(), 1_700_000_000))
        );
        assert_eq!(
            parse_mark("ecoboot-runner until=5"),
            None,
            "no run, not ours to judge"
        );
        assert_eq!(parse_mark("office VPN"), None);
        assert_eq!(
            parse_mark("ecoboot-runner run=x"),
            Some(("x".into(), 0)),
            "no expiry: expired"
        );
    }
}
