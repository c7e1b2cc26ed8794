//! What `ecoboot github setup` makes in the account: GitHub's OIDC provider, and a deployer
//! role that exactly one repository's environment may assume, holding the deployer policy
//! (`ecoboot iam-policy`). The role and its policies live under the path `/ecoboot-deployer/`,
//! outside the `ecoboot-<cluster>-*` names the deployer policy lets it change: the deployer
//! cannot widen its own rights.

use serde_json::{Value, json};

use super::managed_policies::decode;
use super::{Aws, aws_error, code_of};
use crate::error::Result;

/// GitHub Actions' OIDC issuer host.
pub const ISSUER: &str = "token.actions.githubusercontent.com";
/// The audience `aws-actions/configure-aws-credentials` asks for.
pub const AUDIENCE: &str = "sts.amazonaws.com";
/// The role's maximum session (seconds): the bootstrap workflow's job timeout fits in it and
/// its `role-duration-seconds` asks for exactly this.
pub const SESSION_SECONDS: i32 = 7200;
/// IAM path of the deployer role and its policies.
pub const PATH: &str = "/ecoboot-deployer/";
/// IAM's limit on one managed policy document (characters, whitespace excluded).
pub const MANAGED_POLICY_MAX: usize = 6144;
/// GitHub's OIDC certificate thumbprints (IAM no longer checks them for this issuer, but the
/// API still takes a list).
const THUMBPRINTS: [&str; 2] = [
    "6938fd4d98bab03faadb97b34396831e3780aea1",
    "1c58a3a8518e8759bf075b76b750d4f2df264fcd",
];

/// The deployer role's name for `cluster`.
pub fn role_name(cluster: &str) -> String {
    format!("ecoboot-github-{cluster}")
}

/// The trust policy: web identity from GitHub's provider, for `repo:OWNER/REPO:environment:ENV`.
pub fn trust(provider_arn: &str, repo: &str, environment: &str) -> Value {
    json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Allow",
            "Principal": { "Federated": provider_arn },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": { "StringEquals": {
                format!("{ISSUER}:aud"): AUDIENCE,
                format!("{ISSUER}:sub"): format!("repo:{repo}:environment:{environment}"),
            } }
        }]
    })
}

/// Splits `doc`'s statements into documents that each fit IAM's managed policy limit.
pub fn split(doc: &Value) -> Vec<Value> {
    let wrap = |s: &[Value]| json!({ "Version": "2012-10-17", "Statement": s });
    let mut out: Vec<Vec<Value>> = vec![vec![]];
    for s in doc["Statement"].as_array().cloned().unwrap_or_default() {
        let last = out.last_mut().expect("one");
        last.push(s.clone());
        if wrap(last).to_string().len() > MANAGED_POLICY_MAX && last.len() > 1 {
            last.pop();
            out.push(vec![s]);
        }
    }
    out.iter().map(|s| wrap(s)).collect()
}

/// What exists of the deployer setup.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The OIDC provider's ARN.
    pub provider: Option<String>,
    /// The role's ARN, trust document and maximum session.
    pub role: Option<(String, Value, i32)>,
    /// Each policy part's ARN and default document, by name.
    pub policies: Vec<(String, String, Value)>,
    /// Attached policy ARNs.
    pub attached: Vec<String>,
}

/// Looks for the provider, the role and its policies.
pub async fn probe(aws: &Aws, cluster: &str, account: &str) -> Result<Found> {
    let iam = &aws.iam;
    let mut found = Found::default();
    let providers = (iam.list_open_id_connect_providers().send().await)
        .map_err(|e| aws_error("ListOpenIDConnectProviders", ISSUER, e))?;
    found.provider = (providers.open_id_connect_provider_list().iter())
        .filter_map(|p| p.arn())
        .find(|arn| arn.ends_with(&format!("oidc-provider/{ISSUER}")))
        .map(str::to_string);
    let name = role_name(cluster);
    match iam.get_role().role_name(&name).send().await {
        Ok(out) => {
            if let Some(r) = out.role() {
                let doc = r
                    .assume_role_policy_document()
                    .map(decode)
                    .unwrap_or_default();
                found.role = Some((
                    r.arn().to_string(),
                    doc,
                    r.max_session_duration().unwrap_or(3600),
                ));
            }
        }
        Err(e) if code_of(&e).as_deref() == Some("NoSuchEntity") => {}
        Err(e) => return Err(aws_error("GetRole", &name, e)),
    }
    for part in 1..=10 {
        let arn = format!("arn:aws:iam::{account}:policy{PATH}{name}-{part}");
        let got = iam.get_policy().policy_arn(&arn).send().await;
        let version = match got {
            Ok(out) => out
                .policy()
                .and_then(|p| p.default_version_id())
                .map(str::to_string),
            Err(e) if code_of(&e).as_deref() == Some("NoSuchEntity") => break,
            Err(e) => return Err(aws_error("GetPolicy", &arn, e)),
        };
        let v = (iam.get_policy_version().policy_arn(&arn))
            .version_id(version.unwrap_or_default())
            .send()
            .await
            .map_err(|e| aws_error("GetPolicyVersion", &arn, e))?;
        let doc = v
            .policy_version()
            .and_then(|v| v.document())
            .map(decode)
            .unwrap_or_default();
        found.policies.push((format!("{name}-{part}"), arn, doc));
    }
    if found.role.is_some() {
        let out = (iam
            .list_attached_role_policies()
            .role_name(&name)
            .send()
            .await)
            .map_err(|e| aws_error("ListAttachedRolePolicies", &name, e))?;
        found.attached = (out.attached_policies().iter())
            .filter_map(|p| p.policy_arn())
            .map(str::to_string)
            .collect();
    }
    Ok(found)
}

/// Creates GitHub's OIDC provider; returns its ARN.
pub async fn create_provider(aws: &Aws) -> Result<String> {
    aws.pace().await;
    let out = (aws.iam.create_open_id_connect_provider())
        .url(format!("https://{ISSUER}"))
        .client_id_list(AUDIENCE)
        .set_thumbprint_list(Some(THUMBPRINTS.iter().map(|t| t.to_string()).collect()))
        .send()
        .await
        .map_err(|e| aws_error("CreateOpenIDConnectProvider", ISSUER, e))?;
    Ok(out
        .open_id_connect_provider_arn()
        .unwrap_or_default()
        .to_string())
}

/// Creates the role, or sets its trust and maximum session to `trust` and [`SESSION_SECONDS`].
pub async fn ensure_role(aws: &Aws, cluster: &str, found: &Found, trust: &Value) -> Result<String> {
    let name = role_name(cluster);
    let iam = &aws.iam;
    aws.pace().await;
    let Some((arn, doc, session)) = &found.role else {
        let out = (iam.create_role().role_name(&name).path(PATH))
            .assume_role_policy_document(trust.to_string())
            .max_session_duration(SESSION_SECONDS)
            .description(format!(
                "ecoboot deployer of cluster {cluster} (GitHub Actions)"
            ))
            .set_tags(Some(aws.tags.iam(&name)))
            .send()
            .await
            .map_err(|e| aws_error("CreateRole", &name, e))?;
        return Ok(out.role().map(|r| r.arn().to_string()).unwrap_or_default());
    };
    if doc != trust {
        (iam.update_assume_role_policy().role_name(&name))
            .policy_document(trust.to_string())
            .send()
            .await
            .map_err(|e| aws_error("UpdateAssumeRolePolicy", &name, e))?;
    }
    if *session != SESSION_SECONDS {
        (iam.update_role().role_name(&name))
            .max_session_duration(SESSION_SECONDS)
            .send()
            .await
            .map_err(|e| aws_error("UpdateRole", &name, e))?;
    }
    Ok(arn.clone())
}

/// Makes the policy parts hold `parts` (a new default version where one differs) and
/// attaches them to the role.
pub async fn ensure_policies(
    aws: &Aws,
    cluster: &str,
    found: &Found,
    parts: &[Value],
) -> Result<()> {
    let name = role_name(cluster);
    let iam = &aws.iam;
    for (i, doc) in parts.iter().enumerate() {
        let part = format!("{name}-{}", i + 1);
        aws.pace().await;
        let arn = match found.policies.iter().find(|(n, _, _)| *n == part) {
            Some((_, arn, have)) if have == doc => arn.clone(),
            Some((_, arn, _)) => {
                super::managed_policies::make_room(aws, arn).await?;
                (iam.create_policy_version().policy_arn(arn))
                    .policy_document(doc.to_string())
                    .set_as_default(true)
                    .send()
                    .await
                    .map_err(|e| aws_error("CreatePolicyVersion", arn, e))?;
                arn.clone()
            }
            None => {
                let out = (iam.create_policy().policy_name(&part).path(PATH))
                    .policy_document(doc.to_string())
                    .description(format!(
                        "ecoboot deployer of cluster {cluster}, part {}",
                        i + 1
                    ))
                    .send()
                    .await
                    .map_err(|e| aws_error("CreatePolicy", &part, e))?;
                out.policy()
                    .and_then(|p| p.arn())
                    .unwrap_or_default()
                    .to_string()
            }
        };
        if !found.attached.contains(&arn) {
            (iam.attach_role_policy().role_name(&name).policy_arn(&arn))
                .send()
                .await
                .map_err(|e| aws_error("AttachRolePolicy", &name, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_statement_and_each_part_fits() {
        let big: Vec<Value> = (0..200)
            .map(|i| json!({"Sid": format!("S{i}"), "Effect": "Allow", "Action": ["ec2:DescribeVpcs"], "Resource": "*"}))
            .collect();
        let parts = split(&json!({"Version": "2012-10-17", "Statement": big}));
        assert!(parts.len() > 1);
        let n: usize = parts
            .iter()
            .map(|p| p["Statement"].as_array().unwrap().len())
            .sum();
        assert_eq!(n, 200);
        assert!(
            parts
                .iter()
                .all(|p| p.to_string().len() <= MANAGED_POLICY_MAX)
        );
    }

    #[test]
    fn trust_names_exactly_one_repository_environment() {
        let t = trust(
            "arn:aws:iam::1:oidc-provider/token.actions.githubusercontent.com",
            "o/r",
            "production",
        );
        let c = &t["Statement"][0]["Condition"]["StringEquals"];
        assert_eq!(
            c["token.actions.githubusercontent.com:sub"],
            "repo:o/r:environment:production"
        );
        assert_eq!(
            c["token.actions.githubusercontent.com:aud"],
            "sts.amazonaws.com"
        );
    }
}
