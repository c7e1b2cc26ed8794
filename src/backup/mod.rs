//! etcd backups: `ecoboot backup` saves an etcd snapshot on the control plane (kubeadm's etcd
//! client certificates; checked with `etcdutl snapshot status`), streams it with the files a
//! restore needs (`/etc/kubernetes/pki`) over SSH into a local 0600 file, uploads that to S3
//! (encrypted, tagged) and keeps the newest `spec.backup.keep`. `ecoboot restore` ([`restore`])
//! puts one back onto a fresh control-plane instance.

pub mod archive;
pub mod digests;
pub mod restore;
mod store;

use std::time::Duration;

use serde::Deserialize;

pub use store::{Store, Stored};

use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::remote_state::Location;
use crate::ssh::Conn;

/// Event stage id of `backup` and `restore`.
pub const ID: &str = "backup";

/// Where the control plane keeps a snapshot while it is streamed (root only, removed after).
const NODE_DIR: &str = "/var/lib/ecoboot/backup";

/// The etcdctl preamble ([`crate::etcd::TOOLS`]).
const ETCD_TOOLS: &str = crate::etcd::TOOLS;

/// What `etcdutl snapshot status -w json` reports.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotStatus {
    /// Checksum of the snapshot.
    pub hash: u64,
    /// etcd revision at the snapshot.
    pub revision: u64,
    /// Keys in it.
    pub total_key: u64,
    /// Bytes.
    pub total_size: u64,
}

impl SnapshotStatus {
    /// Parses etcdutl's JSON (the last JSON line of `stdout`).
    pub fn parse(stdout: &str) -> Option<SnapshotStatus> {
        stdout
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l.trim()).ok())
    }
}

/// What one backup produced.
#[derive(Debug, Clone)]
pub struct Done {
    /// `s3://bucket/key` of the new backup.
    pub url: String,
    /// Its snapshot's status.
    pub status: SnapshotStatus,
    /// Bytes uploaded.
    pub size: u64,
    /// Older backups deleted to keep the newest `keep`.
    pub pruned: Vec<String>,
}

async fn run(conn: &Conn, label: &str, script: &str, help: &str) -> Result<String> {
    conn.run_ok(ID, label, script, Duration::from_secs(600), help)
        .await
}

/// The archive member holding the Secrets encryption key (`crate::hardening::ENCRYPTION`).
pub const ENCRYPTION_MEMBER: &str = "etc/kubernetes/ecoboot/encryption.yaml";

/// The backup location: `--to`, else `spec.backup.to`.
pub fn location(cx: &Ctx, to: Option<&str>) -> Result<Location> {
    let url = to
        .map(str::to_string)
        .or_else(|| {
            cx.config
                .cluster
                .spec
                .backup
                .to
                .as_ref()
                .map(|t| t.value.clone())
        })
        .ok_or_else(|| {
            Error::Usage("where to? pass `--to s3://bucket/prefix` or set spec.backup.to".into())
        })?;
    crate::config::syntax::s3_url(&url).map_err(Error::Usage)?;
    let mut location = Location::parse(&url)
        .ok_or_else(|| Error::Usage(format!("`{url}` is not s3://bucket[/prefix]")))?;
    location.region = Some(region(cx));
    Ok(location)
}

/// The bucket's region: `AWS_REGION`, else the cluster's.
pub fn region(cx: &Ctx) -> String {
    std::env::var("AWS_REGION")
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| cx.config.cluster.spec.aws.region.value.clone())
}

/// Takes one backup to `to` and prunes the old ones.
// Long by design: snapshot, check, stream, clean the node, upload, prune, in that order.
pub async fn backup(cx: &Ctx, to: Location) -> Result<Done> {
    let (target, conn) = cx.control_plane(ID).await?;
    let say = |m: String| cx.events.progress(ID, Some(&target.node), m);
    let save = format!(
        "set -e\numask 077\n{ETCD_TOOLS}\nrm -rf {NODE_DIR} && mkdir -p -m 700 {NODE_DIR}\netcdctl $certs snapshot save /var/lib/etcd/ecoboot-snapshot.db >&2\nmv /var/lib/etcd/ecoboot-snapshot.db {NODE_DIR}/etcd.db\netcdutl snapshot status {NODE_DIR}/etcd.db -w json"
    );
    let help = "check etcd on the control plane (`crictl ps --name etcd`); rerun `ecoboot backup`";
    let stdout = run(&conn, "etcd snapshot", &save, help).await?;
    let status = SnapshotStatus::parse(&stdout).ok_or_else(|| Error::StageFailed {
        stage: ID.into(),
        message: format!(
            "{}: etcdutl reported no snapshot status: {stdout}",
            target.node
        ),
        help: help.into(),
    })?;
    say(format!(
        "snapshot at revision {} ({} keys, {} bytes)",
        status.revision, status.total_key, status.total_size
    ));
    let dir = cx.state_dir().join("backups");
    crate::fsutil::ensure_private_dir(&dir)?;
    let name = format!(
        "{}-rev{}.tar.gz",
        crate::clock::now().replace([':', '-'], ""),
        status.revision
    );
    let local = dir.join(format!("{name}.part"));
    // The Secrets encryption key travels with the snapshot (inside the encrypted archive):
    // without it a restored etcd's Secrets cannot be read.
    let stream = format!(
        "key=''\n[ -s /{ENC} ] && key={ENC}\ntar -czf - -C / etc/kubernetes/pki $key -C {NODE_DIR} etcd.db",
        ENC = ENCRYPTION_MEMBER
    );
    let streamed = conn
        .download("stream backup", &stream, &local, Duration::from_secs(1800))
        .await;
    let cleanup = run(
        &conn,
        "remove the snapshot",
        &format!("rm -rf {NODE_DIR}"),
        help,
    )
    .await;
    let (out, size, sha256) = match streamed {
        Ok(v) => v,
        Err(e) => {
            let _ = std::fs::remove_file(&local);
            return Err(e);
        }
    };
    cleanup?;
    if !out.ok() {
        let _ = std::fs::remove_file(&local);
        return Err(Error::StageFailed {
            stage: ID.into(),
            message: format!(
                "{}: streaming the backup failed: {}",
                target.node,
                out.tail(3)
            ),
            help: help.into(),
        });
    }
    let store = Store::connect(to, cx.config.name()).await;
    let put = store.put(&name, &local, &sha256, status.revision).await;
    let _ = std::fs::remove_file(&local);
    let key = put?;
    let url = store.url(&key);
    say(format!(
        "uploaded {url} ({size} bytes, sha256 {})",
        &sha256[..12]
    ));
    let keep = cx.config.cluster.spec.backup.keep.value.max(1) as usize;
    let pruned = store.prune(keep, &key).await?;
    digests::record(cx, &key, &sha256, &pruned)?;
    for old in &pruned {
        say(format!(
            "deleted {} (keeping the newest {keep})",
            store.url(old)
        ));
    }
    Ok(Done {
        url,
        status,
        size,
        pruned,
    })
}

#[cfg(test)]
mod tests {
    use super::SnapshotStatus;

    #[test]
    fn parses_etcdutl_status() {
        let out =
            "noise\n{\"hash\":3790592311,\"revision\":1234,\"totalKey\":57,\"totalSize\":20480}\n";
        let s = SnapshotStatus::parse(out).unwrap();
        assert_eq!((s.revision, s.total_key, s.total_size), (1234, 57, 20480));
        assert!(SnapshotStatus::parse("Error: snapshot file integrity check failed").is_none());
    }
}
