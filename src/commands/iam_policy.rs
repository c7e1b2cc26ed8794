//! `ecoboot iam-policy`: the deployer's least-privilege policy for this config, on stdout.

use crate::aws::deployer_policy::{self, Input};
use crate::cli::Global;
use crate::config::Config;
use crate::error::Result;
use crate::remote_state::Location;

/// What the policy for `config` is scoped to. The account: `account`, else the caller's
/// (STS), else `*`.
pub(super) async fn input(g: &Global, config: &Config, account: Option<&str>) -> Input {
    let account = match account {
        Some(a) => a.to_string(),
        None => caller_account(config).await.unwrap_or_else(|| {
            tracing::warn!("could not read the account id (sts:GetCallerIdentity): ARNs use `*`");
            "*".into()
        }),
    };
    let mut buckets = Vec::new();
    if let (_, crate::state::Backend::S3(loc)) = super::state_cmd::backend(g, config) {
        buckets.push((loc.bucket, loc.prefix));
    }
    let backup = config.cluster.spec.backup.to.as_ref();
    if let Some(loc) = backup.and_then(|t| Location::parse(&t.value)) {
        buckets.push((loc.bucket, loc.prefix));
    }
    let aws = &config.cluster.spec.aws;
    let attach = (aws.iam_policies.iter())
        .chain(&aws.controller_iam_policies)
        .map(|p| p.value.clone())
        .collect();
    Input {
        cluster: config.name().to_string(),
        account,
        region: aws.region.value.clone(),
        buckets,
        attach,
    }
}

/// The caller's account id, when credentials answer.
pub(super) async fn caller_account(config: &Config) -> Option<String> {
    let aws = crate::aws::Aws::connect(config, Default::default()).await;
    let sts = aws_sdk_sts::config::Builder::from(&aws.shared)
        .interceptor(crate::aws::permissions::Permitted)
        .build();
    let id = aws_sdk_sts::Client::from_conf(sts)
        .get_caller_identity()
        .send()
        .await
        .ok()?;
    id.account().map(str::to_string)
}

/// `ecoboot iam-policy [--account ID] [--part N]`: the whole policy, or part N of it.
pub(super) async fn iam_policy(
    g: &Global,
    account: Option<&str>,
    part: Option<usize>,
) -> Result<()> {
    let config = super::load_config(g, crate::config::FileChecks::Skip)?;
    let doc = deployer_policy::document(&input(g, &config, account).await);
    let parts = crate::aws::deployer_role::split(&doc);
    let shown = match part {
        None => {
            if parts.len() > 1 {
                eprintln!(
                    "note: this policy is {} characters, more than one managed policy holds ({}); attach its {} parts (`--part 1` … `--part {}`), or let `ecoboot github setup` do it",
                    doc.to_string().len(),
                    crate::aws::deployer_role::MANAGED_POLICY_MAX,
                    parts.len(),
                    parts.len()
                );
            }
            doc
        }
        Some(n) => parts.get(n.wrapping_sub(1)).cloned().ok_or_else(|| {
            crate::error::Error::Usage(format!(
                "--part {n}: the policy has {} part(s)",
                parts.len()
            ))
        })?,
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&shown).unwrap_or_default()
    );
    Ok(())
}
