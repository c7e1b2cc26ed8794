//! `spec.state`: where the cluster's journal, host keys and lock live; `spec.backup`: where
//! etcd snapshots go and how many are kept.

use serde::Deserialize;

use super::Located;

/// `spec.state.backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StateBackend {
    /// The local state directory only.
    #[default]
    Local,
    /// An S3 bucket (locked with conditional writes); the local directory is a working copy.
    S3,
}

/// `spec.state`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct State {
    /// `local` (default) or `s3`.
    pub backend: StateBackend,
    /// The bucket (with `s3`). ecoboot never creates it implicitly (`ecoboot state init` does).
    pub bucket: Option<Located<String>>,
    /// Key prefix inside the bucket; the cluster's objects go under `<key>/<cluster>/`.
    pub key: Option<Located<String>>,
    /// The bucket's region (default: the SDK's).
    pub region: Option<Located<String>>,
}

/// `spec.backup`: `ecoboot backup` (etcd snapshot plus the control plane's pki) to S3.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase", default)]
#[schemars(deny_unknown_fields)]
pub struct Backup {
    /// Where backups go: `s3://bucket[/prefix]` (objects under `<prefix>/<cluster>/`);
    /// `ecoboot backup --to` overrides it.
    pub to: Option<Located<String>>,
    /// How many backups to keep (older ones are deleted after each backup); at least 1.
    pub keep: Located<u32>,
    /// A systemd `OnCalendar` expression (`daily`, `*-*-* 03:00:00`): `up` installs a timer on
    /// the control plane that takes the same backup with the instance profile's credentials
    /// (the node role then may write exactly this prefix). Needs `to`.
    pub schedule: Option<Located<String>>,
}

impl Default for Backup {
    fn default() -> Self {
        Backup {
            to: None,
            schedule: None,
            keep: Located {
                value: 7,
                ..Default::default()
            },
        }
    }
}
