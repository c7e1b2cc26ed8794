//! The customer-managed policies ecoboot creates for documents that do not fit inline: named
//! `ecoboot-<cluster>-<document>` under the path `/ecoboot/<cluster>/`, tagged with the
//! cluster, found by that path. Used by the `iam` stage and by `down`.

use std::collections::BTreeMap;

use crate::aws::{Aws, aws_error, code_of};
use crate::error::Result;

/// One ecoboot-managed policy as it exists.
#[derive(Debug, Clone, Default)]
pub struct Managed {
    /// Policy ARN.
    pub arn: String,
    /// Its default version's document.
    pub document: serde_json::Value,
}

/// The IAM path of the cluster's managed policies.
pub fn path(cluster: &str) -> String {
    format!("/ecoboot/{cluster}/")
}

/// The managed policy name of document `name` (policy names are unique per account).
pub fn policy_name(cluster: &str, name: &str) -> String {
    format!("ecoboot-{cluster}-{name}")
}

/// The document name behind `arn` if it is one of the cluster's managed policies.
pub fn config_name(cluster: &str, arn: &str) -> Option<String> {
    let (_, rest) = arn.split_once(":policy")?;
    let rest = rest.strip_prefix(&path(cluster))?;
    rest.strip_prefix(&format!("ecoboot-{cluster}-"))
        .map(str::to_string)
}

/// A policy document as IAM returns it (URL-encoded JSON; some emulators return it plain).
pub fn decode(raw: &str) -> serde_json::Value {
    serde_json::from_str(raw).unwrap_or_else(|_| {
        let text = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    })
}

/// The cluster's managed policies, by document name.
pub async fn list(aws: &Aws, cluster: &str) -> Result<BTreeMap<String, Managed>> {
    let pages: Vec<_> = aws
        .iam
        .list_policies()
        .scope(aws_sdk_iam::types::PolicyScopeType::Local)
        .path_prefix(path(cluster))
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| aws_error("ListPolicies", &path(cluster), e))?;
    let mut out = BTreeMap::new();
    for policy in pages.iter().flat_map(|p| p.policies()) {
        let (Some(arn), Some(version)) = (policy.arn(), policy.default_version_id()) else {
            continue;
        };
        let Some(name) = config_name(cluster, arn) else {
            continue;
        };
        let got = aws
            .iam
            .get_policy_version()
            .policy_arn(arn)
            .version_id(version)
            .send()
            .await
            .map_err(|e| aws_error("GetPolicyVersion", arn, e))?;
        let document = got
            .policy_version()
            .and_then(|v| v.document())
            .map(decode)
            .unwrap_or_default();
        out.insert(
            name,
            Managed {
                arn: arn.to_string(),
                document,
            },
        );
    }
    Ok(out)
}

/// Creates the managed policy for document `name`, or makes `json` the default version of the
/// existing one (dropping its oldest version when IAM's five are used). Returns the ARN.
pub async fn put(
    aws: &Aws,
    cluster: &str,
    name: &str,
    json: &str,
    existing: Option<&Managed>,
) -> Result<String> {
    aws.pace().await;
    let Some(existing) = existing else {
        let full = policy_name(cluster, name);
        let out = aws
            .iam
            .create_policy()
            .policy_name(&full)
            .path(path(cluster))
            .policy_document(json)
            .description(format!("ecoboot cluster {cluster}: policy document {name}"))
            .set_tags(Some(aws.tags.iam(&full)))
            .send()
            .await
            .map_err(|e| aws_error("CreatePolicy", &full, e))?;
        return Ok(out
            .policy()
            .and_then(|p| p.arn())
            .unwrap_or_default()
            .to_string());
    };
    let arn = &existing.arn;
    make_room(aws, arn).await?;
    aws.iam
        .create_policy_version()
        .policy_arn(arn)
        .policy_document(json)
        .set_as_default(true)
        .send()
        .await
        .map_err(|e| aws_error("CreatePolicyVersion", arn, e))?;
    Ok(arn.clone())
}

/// Deletes the oldest non-default version when `arn` has IAM's five, so one more fits.
pub async fn make_room(aws: &Aws, arn: &str) -> Result<()> {
    let old = old_versions(aws, arn).await?;
    if old.len() >= 4 {
        delete_version(aws, arn, &old[0]).await?;
    }
    Ok(())
}

/// The non-default version ids of `arn`, oldest first by IAM's `vN` numbering.
async fn old_versions(aws: &Aws, arn: &str) -> Result<Vec<String>> {
    let out = aws
        .iam
        .list_policy_versions()
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| aws_error("ListPolicyVersions", arn, e))?;
    let mut ids: Vec<(u32, String)> = out
        .versions()
        .iter()
        .filter(|v| !v.is_default_version())
        .filter_map(|v| v.version_id())
        .map(|id| {
            (
                id.trim_start_matches('v').parse().unwrap_or(0),
                id.to_string(),
            )
        })
        .collect();
    ids.sort();
    Ok(ids.into_iter().map(|(_, id)| id).collect())
}

async fn delete_version(aws: &Aws, arn: &str, id: &str) -> Result<()> {
    aws.pace().await;
    aws.iam
        .delete_policy_version()
        .policy_arn(arn)
        .version_id(id)
        .send()
        .await
        .map_err(|e| aws_error("DeletePolicyVersion", arn, e))?;
    Ok(())
}

/// Detaches `arn` from `role` (already detached is fine).
pub async fn detach(aws: &Aws, role: &str, arn: &str) -> Result<()> {
    aws.pace().await;
    match aws
        .iam
        .detach_role_policy()
        .role_name(role)
        .policy_arn(arn)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code_of(&e).as_deref() == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(aws_error("DetachRolePolicy", arn, e)),
    }
}

/// Deletes inline policy `name` of `role` (already gone is fine).
pub async fn delete_inline(aws: &Aws, role: &str, name: &str) -> Result<()> {
    aws.pace().await;
    match aws
        .iam
        .delete_role_policy()
        .role_name(role)
        .policy_name(name)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if code_of(&e).as_deref() == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(aws_error("DeleteRolePolicy", name, e)),
    }
}

/// Deletes managed policy `m`: detached from every role first, its old versions, then itself.
pub async fn delete(aws: &Aws, m: &Managed) -> Result<()> {
    let arn = &m.arn;
    let entities = aws
        .iam
        .list_entities_for_policy()
        .policy_arn(arn)
        .send()
        .await
        .map_err(|e| aws_error("ListEntitiesForPolicy", arn, e))?;
    for role in entities.policy_roles() {
        if let Some(name) = role.role_name() {
            detach(aws, name, arn).await?;
        }
    }
    for id in old_versions(aws, arn).await? {
        delete_version(aws, arn, &id).await?;
    }
    aws.pace().await;
    match aws.iam.delete_policy().policy_arn(arn).send().await {
        Ok(_) => Ok(()),
        Err(e) if code_of(&e).as_deref() == Some("NoSuchEntity") => Ok(()),
        Err(e) => Err(aws_error("DeletePolicy", arn, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_foreign_arns_are_not_ours() {
        let arn = format!(
            "arn:aws:iam::123456789012:policy/ecoboot/prod/{}",
            policy_name("prod", "big")
        );
        assert_eq!(config_name("prod", &arn).as_deref(), Some("big"));
        assert_eq!(config_name("dev", &arn), None);
        assert_eq!(
            config_name(
                "prod",
                "arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"
            ),
            None
        );
    }

    #[test]
    fn decode_reads_url_encoded_and_plain_documents() {
        let plain = r#"{"Version":"2012-10-17","Statement":[]}"#;
        let encoded = "%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%5D%7D";
        assert_eq!(decode(plain), decode(encoded));
        assert_eq!(decode(plain)["Version"], "2012-10-17");
    }
}
