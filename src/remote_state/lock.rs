//! The run lock: an object created with `If-None-Match: *`, renewed with `If-Match` on its ETag
//! every third of the lease, released with a conditional delete. A stealer trusts no clock:
//! it takes an expired-looking lock only after its ETag stayed the same for the holder's whole
//! lease; a holder that cannot renew in time stops (see `crate::lock_health`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::{Expect, LEASE, Remote, lease};
use crate::error::{Error, Result};

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
