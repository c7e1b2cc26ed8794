//! Cluster state in S3 (`s3://bucket/prefix/<cluster>/`): the journal and known_hosts as
//! objects written with conditional requests, and a run lock that is an object created with
//! `If-None-Match: *`, renewed with `If-Match` on its ETag while the run lasts, and released with
//! a conditional delete (the mechanism Terraform's S3 backend uses with `use_lockfile`). A lock
//! whose lease expired is never taken over silently: `ecoboot unlock --force ID` or
//! `--steal-expired-lock`.

use std::time::Duration;

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;

mod lock;

pub use lock::{HeldLock, LOCK, LockInfo, acquire, force_unlock};

use crate::error::{Error, Result};

/// How long a lock lives without renewal, by default.
pub const LEASE: Duration = Duration::from_secs(120);

/// The lease: `ECOBOOT_LOCK_LEASE_SECONDS` (5 to 3600) or [`LEASE`]. The holder renews it every
/// third of it, so a run that is gone leaves a lock that expires one lease after its last renewal.
pub fn lease() -> Duration {
    std::env::var("ECOBOOT_LOCK_LEASE_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map_or(LEASE, |n| Duration::from_secs(n.clamp(5, 3600)))
}

/// Where the state lives: `s3://bucket/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// Bucket.
    pub bucket: String,
    /// Key prefix (no leading or trailing `/`; may be empty).
    pub prefix: String,
    /// Region of the bucket (default: the SDK's).
    pub region: Option<String>,
}

impl Location {
    /// Parses `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Option<Location> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        (!bucket.is_empty()).then(|| Location {
            bucket: bucket.into(),
            prefix: prefix.trim_matches('/').into(),
            region: None,
        })
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.prefix.as_str() {
            "" => write!(f, "s3://{}", self.bucket),
            p => write!(f, "s3://{}/{p}", self.bucket),
        }
    }
}

/// A precondition for a write.
#[derive(Debug, Clone)]
pub enum Expect {
    /// The object must not exist.
    Absent,
    /// The object must still have this ETag.
    ETag(String),
}

/// The S3 objects of one cluster.
#[derive(Clone)]
pub struct Remote {
    pub(crate) s3: aws_sdk_s3::Client,
    /// Where.
    pub location: Location,
    cluster: String,
    /// The account id every bucket call expects to own the bucket (`ExpectedBucketOwner`).
    pub(crate) owner: Option<String>,
}

/// Why a conditional request failed.
fn precondition_failed<E: ProvideErrorMetadata>(e: &aws_sdk_s3::error::SdkError<E>) -> bool {
    match e {
        aws_sdk_s3::error::SdkError::ServiceError(s) => {
            s.err().code() == Some("PreconditionFailed") || s.raw().status().as_u16() == 412
        }
        _ => false,
    }
}

fn s3_error<E>(op: &str, target: &str, e: aws_sdk_s3::error::SdkError<E>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    crate::aws::aws_error(op, target, e)
}

impl Remote {
    /// A client for `location` (credentials and endpoint from the SDK chain; path-style
    /// addressing when `AWS_ENDPOINT_URL` points somewhere else than AWS).
    pub async fn connect(location: Location, cluster: &str) -> Remote {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = location.region.clone() {
            loader = loader.region(aws_config::Region::new(r));
        }
        let shared = loader.load().await;
        let conf = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(
                std::env::var_os("AWS_ENDPOINT_URL_S3").is_some()
                    || std::env::var_os("AWS_ENDPOINT_URL").is_some(),
            )
            .interceptor(crate::aws::permissions::Permitted)
            .build();
        // Every call names the account that must own the bucket: a deleted or mistyped bucket
        // name that someone else registered is refused by S3 instead of receiving the journal,
        // the lock or the cluster's CA keys.
        let sts = aws_sdk_sts::config::Builder::from(&shared)
            .interceptor(crate::aws::permissions::Permitted)
            .build();
        let owner = aws_sdk_sts::Client::from_conf(sts)
            .get_caller_identity()
            .send()
            .await
            .ok()
            .and_then(|id| id.account().map(str::to_string));
        if owner.is_none() {
            tracing::warn!(
                "could not read this account's id (sts:GetCallerIdentity): S3 calls go without ExpectedBucketOwner"
            );
        }
        Remote {
            s3: aws_sdk_s3::Client::from_conf(conf),
            location,
            cluster: cluster.into(),
            owner,
        }
    }

    /// The key of `name` (`prefix/cluster/name`).
    pub fn key(&self, name: &str) -> String {
        match self.location.prefix.as_str() {
            "" => format!("{}/{name}", self.cluster),
            p => format!("{p}/{}/{name}", self.cluster),
        }
    }

    /// `s3://bucket/key` of `name`, for messages.
    pub fn url(&self, name: &str) -> String {
        format!("s3://{}/{}", self.location.bucket, self.key(name))
    }

    /// The object `name` and its ETag, if it exists.
    pub async fn get(&self, name: &str) -> Result<Option<(Vec<u8>, String)>> {
        let got = self
            .s3
            .get_object()
            .bucket(&self.location.bucket)
            .set_expected_bucket_owner(self.owner.clone())
            .key(self.key(name))
            .send()
            .await;
        let out = match got {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(s3_error("GetObject", &self.url(name), e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let body = out.body.collect().await.map_err(|e| Error::Aws {
            operation: "GetObject".into(),
            target: self.url(name),
            code: "ReadError".into(),
            message: e.to_string(),
            help: "rerun; check the network to S3".into(),
        })?;
        Ok(Some((body.into_bytes().to_vec(), etag)))
    }

    /// Writes `name` if `expect` holds; `Ok(None)` when it does not (412), else the new ETag.
    pub async fn put(&self, name: &str, body: Vec<u8>, expect: &Expect) -> Result<Option<String>> {
        let mut req = self
            .s3
            .put_object()
            .bucket(&self.location.bucket)
            .set_expected_bucket_owner(self.owner.clone())
            .key(self.key(name))
            .server_side_encryption(aws_sdk_s3::types::ServerSideEncryption::Aes256)
            .body(ByteStream::from(body));
        req = match expect {
            Expect::Absent => req.if_none_match("*"),
            Expect::ETag(etag) => req.if_match(etag),
        };
        match req.send().await {
            Ok(out) => Ok(Some(out.e_tag().unwrap_or_default().to_string())),
            Err(e) if precondition_failed(&e) => Ok(None),
            Err(e) => Err(s3_error("PutObject", &self.url(name), e)),
        }
    }

    /// Deletes `name` if it still has `etag`; `Ok(false)` when it changed meanwhile.
    pub async fn delete(&self, name: &str, etag: &str) -> Result<bool> {
        let sent = self
            .s3
            .delete_object()
            .bucket(&self.location.bucket)
            .set_expected_bucket_owner(self.owner.clone())
            .key(self.key(name))
            .if_match(etag)
            .send()
            .await;
        match sent {
            Ok(_) => Ok(true),
            Err(e) if precondition_failed(&e) => Ok(false),
            Err(e) => Err(s3_error("DeleteObject", &self.url(name), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_leases() {
        let l = Location::parse("s3://tf-state/ecoboot/prod").unwrap();
        assert_eq!(
            (l.bucket.as_str(), l.prefix.as_str()),
            ("tf-state", "ecoboot/prod")
        );
        assert_eq!(l.to_string(), "s3://tf-state/ecoboot/prod");
        assert_eq!(Location::parse("s3://b").unwrap().prefix, "");
        assert!(Location::parse("/var/state").is_none());
        let mut info = LockInfo::mine();
        assert!(!info.expired());
        info.expires = 1;
        assert!(info.expired());
    }
}
