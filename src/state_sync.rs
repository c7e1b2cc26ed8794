//! Keeps a cluster's local state directory in step with its remote store (S3): on open, the
//! lock is taken (runs that write) and the journal and known_hosts are pulled; every journal
//! save pushes both back with `If-Match` on the ETag last seen, so two writers can never lose an
//! update. admin.conf, kubeconfigs, logs and caches stay local: nothing secret goes to S3.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::remote_state::{self, Expect, HeldLock, Remote};

/// The files that live in the remote store.
pub const SYNCED: &[&str] = &["state.json", "known_hosts"];

/// What a file read from S3 may keep: known_hosts only its plain key lines (no
/// `@cert-authority`, `@revoked`, wildcards or options a bucket writer could plant; see
/// [`crate::ssh::verified::plain_lines`]); the journal is checked when it is loaded.
fn untrusted(name: &str, bytes: &[u8]) -> Vec<u8> {
    if name != "known_hosts" {
        return bytes.to_vec();
    }
    let (kept, dropped) = crate::ssh::verified::plain_lines(&String::from_utf8_lossy(bytes));
    if dropped > 0 {
        tracing::warn!(
            "dropped {dropped} line(s) of the remote known_hosts that are not plain host key lines"
        );
    }
    kept.into_bytes()
}

/// A remote store attached to a local state directory.
pub struct Synced {
    remote: Remote,
    lock: Mutex<Option<HeldLock>>,
    /// Last ETag seen per file ("" when the object does not exist).
    etags: Mutex<BTreeMap<String, String>>,
    /// Last content pushed or pulled per file.
    seen: Mutex<BTreeMap<String, Vec<u8>>>,
}

fn locked<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Synced {
    /// Takes the remote lock (when `writable`) and pulls the synced files into `dir`. A local
    /// journal with no remote one yet is uploaded (moving a cluster from local to S3 state).
    pub async fn open(remote: Remote, dir: &Path, writable: bool, steal: bool) -> Result<Synced> {
        let lock = match writable {
            true => Some(remote_state::acquire(&remote, steal).await?),
            false => None,
        };
        let synced = Synced {
            remote,
            lock: Mutex::new(lock),
            etags: Mutex::new(BTreeMap::new()),
            seen: Mutex::new(BTreeMap::new()),
        };
        for name in SYNCED {
            let path = dir.join(name);
            match synced.remote.get(name).await? {
                Some((bytes, etag)) => {
                    fsutil::write_atomic(&path, &untrusted(name, &bytes), 0o600)?;
                    locked(&synced.etags).insert(name.to_string(), etag);
                    locked(&synced.seen).insert(name.to_string(), bytes);
                }
                None => {
                    locked(&synced.etags).insert(name.to_string(), String::new());
                }
            }
        }
        if writable {
            for name in SYNCED {
                synced.push_now(dir, name).await?;
            }
        }
        Ok(synced)
    }

    /// The id of the remote lock this run holds, if it holds one.
    pub fn lock_id(&self) -> Option<String> {
        locked(&self.lock).as_ref().map(|l| l.info.id.clone())
    }

    /// Pushes `name` from `dir` if it changed since it was last pushed or pulled.
    async fn push_now(&self, dir: &Path, name: &str) -> Result<()> {
        let Ok(bytes) = std::fs::read(dir.join(name)) else {
            return Ok(());
        };
        if locked(&self.seen).get(name) == Some(&bytes) {
            return Ok(());
        }
        if locked(&self.lock).is_some()
            && let Err(why) = crate::lock_health::still_held()
        {
            return Err(Error::LockLost { reason: why });
        }
        let etag = locked(&self.etags).get(name).cloned().unwrap_or_default();
        let expect = match etag.as_str() {
            "" => Expect::Absent,
            e => Expect::ETag(e.to_string()),
        };
        match self.remote.put(name, bytes.clone(), &expect).await? {
            Some(new) => {
                locked(&self.etags).insert(name.to_string(), new);
                locked(&self.seen).insert(name.to_string(), bytes);
                Ok(())
            }
            None => Err(Error::StateConflict {
                url: self.remote.url(name),
                reason: "its ETag is no longer the one this run read or wrote".into(),
            }),
        }
    }

    /// Pushes every synced file that changed (called after each journal save).
    pub fn push(&self, dir: &Path) -> Result<()> {
        let handle = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| {
            handle.block_on(async {
                for name in SYNCED {
                    self.push_now(dir, name).await?;
                }
                Ok(())
            })
        })
    }

    /// Pushes what changed and releases the lock.
    pub async fn close(&self, dir: &Path) -> Result<()> {
        let mut result = Ok(());
        if locked(&self.lock).is_some() {
            for name in SYNCED {
                if let Err(e) = self.push_now(dir, name).await {
                    result = Err(e);
                    break;
                }
            }
        }
        let lock = locked(&self.lock).take();
        if let Some(lock) = lock {
            lock.release().await;
        }
        result
    }

    /// Where the state lives.
    pub fn location(&self) -> String {
        self.remote.url("")
    }
}

/// What [`pull`] or [`push`] did with one synced file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Copied {
    /// Copied (its size in bytes).
    Copied(usize),
    /// Both sides already held the same bytes.
    Same,
    /// The source side has no such file.
    Missing,
}

/// `ecoboot state pull`: copies the remote journal and known_hosts into `dir` (no lock: a read).
/// A local file that differs is kept beside it as `<name>.before-pull`.
pub async fn pull(remote: &Remote, dir: &Path) -> Result<Vec<(&'static str, Copied)>> {
    fsutil::ensure_private_dir(dir)?;
    let mut done = Vec::new();
    for name in SYNCED {
        let path = dir.join(name);
        let copied = match remote.get(name).await? {
            None => Copied::Missing,
            Some((bytes, _)) => match std::fs::read(&path).map(|l| (l, untrusted(name, &bytes))) {
                Ok((local, bytes)) if local == bytes => Copied::Same,
                local => {
                    if let Ok((local, _)) = &local {
                        fsutil::write_atomic(&path.with_extension("before-pull"), local, 0o600)?;
                    }
                    let bytes = untrusted(name, &bytes);
                    fsutil::write_atomic(&path, &bytes, 0o600)?;
                    Copied::Copied(bytes.len())
                }
            },
        };
        done.push((*name, copied));
    }
    Ok(done)
}

/// `ecoboot state push`: replaces the remote journal and known_hosts with the files in `dir`,
/// under the remote lock, each write conditional on the ETag read under that lock (the bucket's
/// versioning keeps what it replaced).
pub async fn push(remote: &Remote, dir: &Path, steal: bool) -> Result<Vec<(&'static str, Copied)>> {
    let lock = remote_state::acquire(remote, steal).await?;
    let mut done = Vec::new();
    let mut result = Ok(());
    for name in SYNCED {
        let Ok(bytes) = std::fs::read(dir.join(name)) else {
            done.push((*name, Copied::Missing));
            continue;
        };
        let step = async {
            let expect = match remote.get(name).await? {
                Some((theirs, _)) if theirs == bytes => return Ok(Copied::Same),
                Some((_, etag)) => Expect::ETag(etag),
                None => Expect::Absent,
            };
            match remote.put(name, bytes.clone(), &expect).await? {
                Some(_) => Ok(Copied::Copied(bytes.len())),
                None => Err(Error::StateConflict {
                    url: remote.url(name),
                    reason: "it changed while it was being replaced".into(),
                }),
            }
        };
        match step.await {
            Ok(c) => done.push((*name, c)),
            Err(e) => {
                result = Err(e);
                break;
            }
        }
    }
    lock.release().await;
    result.map(|()| done)
}
