//! Cluster state in S3 (`s3://bucket/prefix/<cluster>/`): the journal and known_hosts as
//! objects written with conditional requests, and a run lock that is an object created with
//! `If-None-Match: *`, renewed with `If-Match` on its ETag while the run lasts, and released with
//! a conditional delete (the mechanism Terraform's S3 backend uses with `use_lockfile`). A lock
//! whose lease expired is never taken over silently: `ecoboot unlock --force ID` or
//! `--steal-expired-lock`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::primitives::ByteStream;
use serde::{Deserialize, Serialize};

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

/// What a lock object says about its holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// Random id (`unlock --force` names it).
    pub id: String,
    /// `user@host pid N` and the CI run URL when in GitHub Actions.
    pub holder: String,
    /// RFC 3339.
    pub started: String,
    /// Unix seconds after which the lease has expired (the holder's clock: a hint only).
    pub expires: u64,
    /// The holder's lease: a stealer must see the lock's ETag unchanged this long.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
}

fn default_lease_seconds() -> u64 {
    LEASE.as_secs()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl LockInfo {
    /// A lock for this process.
    pub fn mine() -> LockInfo {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let mut holder = format!("{user}@{} pid {}", host.trim(), std::process::id());
        if std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true") {
            let run = ["GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"]
                .map(|k| std::env::var(k).unwrap_or_default());
            holder.push_str(&format!(", {}/{}/actions/runs/{}", run[0], run[1], run[2]));
        }
        LockInfo {
            id: format!("{:016x}", rand_u64()),
            holder,
            started: crate::clock::now(),
            expires: unix_now() + lease().as_secs(),
            lease_seconds: lease().as_secs(),
        }
    }

    /// The lease has run out by this machine's clock: a hint for messages and the trigger
    /// to start watching, never enough to take the lock.
    pub fn expired(&self) -> bool {
        unix_now() > self.expires
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::process::id() as u128 ^ unix_now() as u128);
    h.finish()
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
            .build();
        // Every call names the account that must own the bucket: a deleted or mistyped bucket
        // name that someone else registered is refused by S3 instead of receiving the journal,
        // the lock or the cluster's CA keys.
        let owner = aws_sdk_sts::Client::new(&shared)
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

/// The lock object's name.
pub const LOCK: &str = "lock";

/// A held lock: renewed in the background until released.
pub struct HeldLock {
    remote: Remote,
    /// What the lock says.
    pub info: LockInfo,
    etag: Arc<Mutex<String>>,
    renewer: tokio::task::JoinHandle<()>,
}

/// Takes the lock of `remote`'s cluster. A live lock → [`Error::RemoteLocked`] (exit 3) with
/// the holder; an expired one is taken over only with `steal_expired`.
pub async fn acquire(remote: &Remote, steal_expired: bool) -> Result<HeldLock> {
    let mine = LockInfo::mine();
    let body = serde_json::to_vec_pretty(&mine).expect("lock serializes");
    for _ in 0..3 {
        if let Some(etag) = remote.put(LOCK, body.clone(), &Expect::Absent).await? {
            return Ok(hold(remote.clone(), mine, etag));
        }
        let Some((text, etag)) = remote.get(LOCK).await? else {
            continue; // released meanwhile: try again
        };
        let theirs: Option<LockInfo> = serde_json::from_slice(&text).ok();
        match theirs {
            Some(t) if t.expired() && steal_expired => {
                let watch = Duration::from_secs(t.lease_seconds.clamp(5, 3600));
                match unchanged_for(remote, &etag, watch).await? {
                    Watch::Unchanged => {
                        remote.delete(LOCK, &etag).await?;
                    }
                    Watch::Gone => {}
                    Watch::Changed => {
                        return Err(Error::RemoteLocked {
                            cluster: remote.cluster.clone(),
                            holder: format!(
                                "{}, since {} (it renewed its lease while this run watched: it is alive)",
                                t.holder, t.started
                            ),
                            id: t.id.clone(),
                            expired: false,
                            url: remote.url(LOCK),
                        });
                    }
                }
            }
            other => {
                return Err(Error::RemoteLocked {
                    cluster: remote.cluster.clone(),
                    holder: other.as_ref().map_or("an unreadable lock".into(), |t| {
                        format!("{}, since {}", t.holder, t.started)
                    }),
                    id: other.as_ref().map_or(String::new(), |t| t.id.clone()),
                    expired: other.as_ref().is_some_and(LockInfo::expired),
                    url: remote.url(LOCK),
                });
            }
        }
    }
    Err(Error::RemoteLocked {
        cluster: remote.cluster.clone(),
        holder: "another run that keeps taking it".into(),
        id: String::new(),
        expired: false,
        url: remote.url(LOCK),
    })
}

/// What the lock object did while a stealer watched it.
enum Watch {
    /// Same ETag for the whole lease: its holder stopped renewing.
    Unchanged,
    /// Renewed (or replaced): someone holds it.
    Changed,
    /// Released meanwhile.
    Gone,
}

/// Watches the lock for `lease` (this process's monotonic clock; S3's ETag is the only
/// witness, so neither side's wall clock matters).
async fn unchanged_for(remote: &Remote, etag: &str, lease: Duration) -> Result<Watch> {
    tracing::warn!(
        "the state lock's lease looks expired: watching it for {}s before taking it over",
        lease.as_secs()
    );
    let start = std::time::Instant::now();
    let step = (lease / 5).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(step).await;
        match remote.get(LOCK).await? {
            None => return Ok(Watch::Gone),
            Some((_, now)) if now != etag => return Ok(Watch::Changed),
            Some(_) if start.elapsed() >= lease => return Ok(Watch::Unchanged),
            Some(_) => {}
        }
    }
}

fn hold(remote: Remote, info: LockInfo, etag: String) -> HeldLock {
    let etag = Arc::new(Mutex::new(etag));
    let (r, e, i) = (remote.clone(), etag.clone(), info.clone());
    crate::lock_health::renewed(lease());
    let renewer = tokio::spawn(async move {
        let mut info = i;
        loop {
            tokio::time::sleep(lease() / 3).await;
            // Stopped (SIGSTOP, a suspended laptop) or cut off for too long: a stealer may
            // already hold it, so this run stops before renewing over it.
            if crate::lock_health::still_held().is_err() {
                return;
            }
            info.expires = unix_now() + lease().as_secs();
            let body = serde_json::to_vec_pretty(&info).expect("lock serializes");
            let current = e.lock().unwrap_or_else(|p| p.into_inner()).clone();
            match r.put(LOCK, body, &Expect::ETag(current)).await {
                Ok(Some(new)) => {
                    *e.lock().unwrap_or_else(|p| p.into_inner()) = new;
                    crate::lock_health::renewed(lease());
                }
                Ok(None) => {
                    crate::lock_health::lost(
                        "the state lock was taken over by another run (`unlock --force` or `--steal-expired-lock`)".into(),
                    );
                    return;
                }
                Err(err) => tracing::warn!("could not renew the state lock: {err}"),
            }
        }
    });
    HeldLock {
        remote,
        info,
        etag,
        renewer,
    }
}

impl HeldLock {
    /// Stops renewing and deletes the lock (if it is still ours).
    pub async fn release(self) {
        self.renewer.abort();
        crate::lock_health::released();
        let etag = self.etag.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Err(e) = self.remote.delete(LOCK, &etag).await {
            tracing::warn!("could not release the state lock: {e}");
        }
    }
}

/// `ecoboot unlock --force ID`: deletes the lock if it still is `id`.
pub async fn force_unlock(remote: &Remote, id: &str) -> Result<bool> {
    let Some((text, etag)) = remote.get(LOCK).await? else {
        return Ok(false);
    };
    let theirs: Option<LockInfo> = serde_json::from_slice(&text).ok();
    if theirs.as_ref().map(|t| t.id.as_str()) != Some(id) {
        return Err(Error::Usage(format!(
            "the lock at {} is not `{id}` (it is {}); nothing was removed",
            remote.url(LOCK),
            theirs.map_or("unreadable".into(), |t| format!(
                "`{}` held by {}",
                t.id, t.holder
            ))
        )));
    }
    remote.delete(LOCK, &etag).await
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
