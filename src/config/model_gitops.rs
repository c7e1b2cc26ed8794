//! `spec.gitops`: what the platform's GitOps tree needs before its first sync: ArgoCD
//! repository credentials and registry pull secrets. The config names where each secret value
//! comes from (an environment variable or a file), never the value itself.

use serde::Deserialize;

use super::Located;

/// `spec.gitops`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Gitops {
    /// ArgoCD repository credentials, applied as Secrets labelled
    /// `argocd.argoproj.io/secret-type: repository` in ArgoCD's namespace.
    pub repositories: Vec<Repository>,
    /// Registry credentials, created as `kubernetes.io/dockerconfigjson` Secrets in the listed
    /// namespaces (created if missing).
    pub image_pull_secrets: Vec<PullSecret>,
}

/// Where one secret value comes from: exactly one of `env` or `file`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct SecretSource {
    /// Name of an environment variable holding the value (e.g. a workflow secret).
    pub env: Option<Located<String>>,
    /// A file holding the value (relative to the config file; trailing newline dropped).
    pub file: Option<Located<String>>,
}

/// One repository ArgoCD reads with credentials.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Repository {
    /// Short name (DNS label); the Secret is `repo-<name>`.
    pub name: Located<String>,
    /// The repository URL, exactly as the Applications use it.
    pub url: Located<String>,
    /// User name for HTTPS (not secret; GitHub accepts any non-empty name with a token).
    pub username: Option<Located<String>>,
    /// HTTPS password or token (with an `https://` URL).
    pub password: Option<SecretSource>,
    /// SSH deploy key (with an `ssh://` or `git@` URL).
    pub ssh_private_key: Option<SecretSource>,
}

/// One registry's pull credentials.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct PullSecret {
    /// The Secret's name (DNS label) in every listed namespace.
    pub name: Located<String>,
    /// Registry host, e.g. `ghcr.io`.
    pub registry: Located<String>,
    /// User name (not secret).
    pub username: Located<String>,
    /// Password or token.
    pub password: SecretSource,
    /// Namespaces that get the Secret.
    pub namespaces: Vec<Located<String>>,
}
