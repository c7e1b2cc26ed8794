//! `spec.aws.policyDocuments`: IAM policy documents for the node and controller roles, from a
//! local file or a pinned URL + sha256 (downloaded once, cached and verified like the pinned
//! manifests). ecoboot puts them inline while a role's inline total fits, and as
//! customer-managed policies tagged with the cluster beyond that.

use serde::Deserialize;

use super::{Located, Manifest};

/// One policy document.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct PolicyDocument {
    /// Policy name (letters, digits and `+=,.@_-`, at most 128): the inline policy's name or
    /// the managed policy's name under the path `/ecoboot/<cluster>/`.
    pub name: Located<String>,
    /// Only the controller role (nodes with `awsControllers: true`) gets it; otherwise every
    /// node does.
    pub controller_only: bool,
    /// Download URL (https); needs `sha256`.
    pub url: Option<Located<String>>,
    /// Expected sha256 of the file (64 hex characters); required with `url`.
    pub sha256: Option<Located<String>>,
    /// Local JSON file (relative to the config file); with `sha256` it is checked too.
    pub path: Option<Located<String>>,
}

impl PolicyDocument {
    /// The document as a pinned manifest (for the fetch cache), when it carries a sha256.
    pub fn pinned(&self) -> Option<Manifest> {
        let sha256 = self.sha256.clone()?;
        Some(Manifest {
            version: self.name.clone(),
            url: self.url.clone().unwrap_or_default(),
            sha256,
            path: self.path.as_ref().map(|p| p.value.clone()),
        })
    }
}

/// Checks that `text` is an IAM policy document: a JSON object with `Version` and `Statement`.
/// Returns it minified (what IAM counts against its size limits).
pub fn policy_json(text: &str) -> Result<String, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("is not JSON: {e}"))?;
    let object = value.as_object().ok_or(
        "is not a JSON object (an IAM policy is {\"Version\": ..., \"Statement\": [...]})",
    )?;
    for key in ["Version", "Statement"] {
        if !object.contains_key(key) {
            return Err(format!("has no `{key}`: it is not an IAM policy document"));
        }
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::policy_json;

    #[test]
    fn policy_json_minifies_and_refuses_non_policies() {
        let doc = "{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": []\n}\n";
        assert_eq!(
            policy_json(doc).unwrap(),
            r#"{"Statement":[],"Version":"2012-10-17"}"#
        );
        assert!(
            policy_json("[1]")
                .unwrap_err()
                .contains("not a JSON object")
        );
        assert!(
            policy_json("{\"Version\":1}")
                .unwrap_err()
                .contains("`Statement`")
        );
        assert!(policy_json("{").unwrap_err().contains("not JSON"));
    }
}
