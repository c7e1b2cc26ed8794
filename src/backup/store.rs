//! Backups in S3: `<prefix>/<cluster>/backups/<UTC time>-rev<etcd revision>.tar.gz`, uploaded
//! from a local 0600 file with server-side encryption and the cluster tag, listed newest first,
//! pruned to the newest `keep`, and downloaded into a local 0600 file.

use std::path::Path;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use tokio::io::AsyncWriteExt;

use crate::aws::tags::CLUSTER;
use crate::error::{Error, Result};
use crate::remote_state::{Location, Remote};

/// Where a cluster's backups live in a bucket.
pub struct Store {
    remote: Remote,
    cluster: String,
}

/// One stored backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Object key.
    pub key: String,
    /// Size in bytes.
    pub size: i64,
    /// When S3 stored it (seconds since the epoch, S3's own clock).
    pub modified: i64,
}

/// Whether `name` (the part after `backups/`) is a backup name ecoboot writes:
/// `YYYYMMDDTHHMMSSZ-rev<revision>.tar.gz`. Anything else in the prefix is not ours to list,
/// restore from by default, or delete.
pub fn is_backup_name(name: &str) -> bool {
    let Some(stem) = name.strip_suffix(".tar.gz") else {
        return false;
    };
    let Some((time, rev)) = stem.split_once("-rev") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
    time.len() == 16
        && digits(&time[..8])
        && &time[8..9] == "T"
        && digits(&time[9..15])
        && &time[15..] == "Z"
        && digits(rev)
        && rev.len() <= 20
}

fn s3_error<E>(op: &str, target: &str, e: aws_sdk_s3::error::SdkError<E>) -> Error
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::aws::aws_error(op, target, e)
}

impl Store {
    /// The store at `location` for `cluster`.
    pub async fn connect(location: Location, cluster: &str) -> Store {
        Store {
            remote: Remote::connect(location, cluster).await,
            cluster: cluster.into(),
        }
    }

    fn bucket(&self) -> &str {
        &self.remote.location.bucket
    }

    /// The key of backup `name`.
    pub fn key(&self, name: &str) -> String {
        self.remote.key(&format!("backups/{name}"))
    }

    /// `s3://bucket/key`.
    pub fn url(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket())
    }

    /// Uploads `file` as backup `name` (encrypted, tagged, with its sha256 and etcd revision
    /// as metadata).
    pub async fn put(
        &self,
        name: &str,
        file: &Path,
        sha256: &str,
        revision: u64,
    ) -> Result<String> {
        let key = self.key(name);
        let body = ByteStream::from_path(file)
            .await
            .map_err(|e| Error::io("read", file, std::io::Error::other(e)))?;
        let tag = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        self.remote
            .s3
            .put_object()
            .bucket(self.bucket())
            .set_expected_bucket_owner(self.remote.owner.clone())
            .key(&key)
            .server_side_encryption(ServerSideEncryption::Aes256)
            .tagging(format!("{}={}", tag(CLUSTER), tag(&self.cluster)))
            .metadata("sha256", sha256)
            .metadata("etcd-revision", revision.to_string())
            .content_type("application/gzip")
            .body(body)
            .send()
            .await
            .map_err(|e| s3_error("PutObject", &self.url(&key), e))?;
        Ok(key)
    }

    /// The cluster's backups, newest first (names sort by time).
    pub async fn list(&self) -> Result<Vec<Stored>> {
        let prefix = self.key("");
        let pages = self
            .remote
            .s3
            .list_objects_v2()
            .bucket(self.bucket())
            .set_expected_bucket_owner(self.remote.owner.clone())
            .prefix(&prefix)
            .into_paginator()
            .send()
            .try_collect()
            .await
            .map_err(|e| s3_error("ListObjectsV2", &self.url(&prefix), e))?;
        let mut out: Vec<Stored> = pages
            .iter()
            .flat_map(|p| p.contents())
            .filter_map(|o| {
                let key = o.key()?.to_string();
                is_backup_name(key.strip_prefix(&prefix)?).then(|| Stored {
                    key,
                    size: o.size().unwrap_or_default(),
                    modified: o.last_modified().map_or(0, |t| t.secs()),
                })
            })
            .collect();
        // Newest first by S3's own clock (a planted `zz-…` or `9999…` name sorts nowhere).
        out.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| b.key.cmp(&a.key)));
        Ok(out)
    }

    /// Deletes ecoboot's own backups beyond the newest `keep` (by S3's LastModified), never
    /// `just_written`; returns the deleted keys.
    pub async fn prune(&self, keep: usize, just_written: &str) -> Result<Vec<String>> {
        let mut gone = Vec::new();
        let listed = self.list().await?;
        let others = listed.into_iter().filter(|b| b.key != just_written);
        for old in others.skip(keep.saturating_sub(1)) {
            self.remote
                .s3
                .delete_object()
                .bucket(self.bucket())
                .set_expected_bucket_owner(self.remote.owner.clone())
                .key(&old.key)
                .send()
                .await
                .map_err(|e| s3_error("DeleteObject", &self.url(&old.key), e))?;
            gone.push(old.key);
        }
        Ok(gone)
    }
}

/// Downloads `s3://bucket/key` into `dest` (created new, 0600); returns the object's
/// `sha256` metadata when it has one.
pub async fn download(location: &Location, key: &str, dest: &Path) -> Result<Option<String>> {
    let remote = Remote::connect(location.clone(), "").await;
    let url = format!("s3://{}/{key}", location.bucket);
    let got = remote
        .s3
        .get_object()
        .bucket(&location.bucket)
        .set_expected_bucket_owner(remote.owner.clone())
        .key(key)
        .send()
        .await
        .map_err(|e| s3_error("GetObject", &url, e))?;
    let sha = got.metadata().and_then(|m| m.get("sha256")).cloned();
    let file = crate::fsutil::create_private(dest)?;
    let mut file = tokio::fs::File::from_std(file);
    let mut body = got.body.into_async_read();
    tokio::io::copy(&mut body, &mut file)
        .await
        .map_err(|e| Error::io("write", dest, e))?;
    file.flush()
        .await
        .map_err(|e| Error::io("write", dest, e))?;
    Ok(sha)
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_ecoboots_own_names_are_backups() {
        assert!(super::is_backup_name("20261205T010203Z-rev9.tar.gz"));
        for bad in [
            "zz-20261205T010203Z-rev9.tar.gz",
            "99999999T999999Z-rev9.tar.gz.x",
            "20261205T010203Z-rev.tar.gz",
            "20261205T010203-rev9.tar.gz",
            "../20261205T010203Z-rev9.tar.gz",
            "9999.tar.gz",
        ] {
            assert!(!super::is_backup_name(bad), "{bad}");
        }
    }
}
