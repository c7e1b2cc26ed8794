//! The state journal: what ran, when, with what outcome, plus a cache of resource ids.
//! The real world (AWS tags, node files, API objects) stays the authority; this file is a hint.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fsutil;

mod records;

pub use records::{SCHEMA, StageRecord, StageStatus, State};

pub use crate::clock::now;

/// Reads a file without following a symlink at its path.
fn read_nofollow(path: &Path) -> std::io::Result<String> {
    let mut text = String::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?
        .read_to_string(&mut text)?;
    Ok(text)
}

/// Where a cluster's state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// Only the local state directory (the default).
    Local,
    /// S3, with the local directory as a working copy.
    S3(crate::remote_state::Location),
}

/// The state directory of one cluster, held under an exclusive lock for a whole run, and,
/// with the S3 backend, the remote store it mirrors.
pub struct Store {
    dir: PathBuf,
    _lock: Option<File>,
    remote: Option<crate::state_sync::Synced>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("locked", &self._lock.is_some())
            .field("remote", &self.remote.as_ref().map(|r| r.location()))
            .finish()
    }
}

impl Store {
    /// `<state_dir>/<cluster>`.
    pub fn cluster_dir(state_dir: &Path, cluster: &str) -> PathBuf {
        state_dir.join(cluster)
    }

    /// Opens the cluster's state directory and takes the run lock; fails with
    /// [`Error::Locked`] (exit 3) if another process holds it.
    pub fn lock(state_dir: &Path, cluster: &str) -> Result<Store> {
        let dir = Self::cluster_dir(state_dir, cluster);
        fsutil::ensure_private_dir(&dir)?;
        let path = dir.join("lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io("open", &path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(Error::Locked {
                    cluster: cluster.to_string(),
                    holder: if holder.is_empty() {
                        "unknown process".into()
                    } else {
                        holder.to_string()
                    },
                    path,
                });
            }
            Err(TryLockError::Error(e)) => return Err(Error::io("lock", &path, e)),
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let who = format!(
            "pid {} on {}, since {}",
            std::process::id(),
            host.trim(),
            now()
        );
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = file.write_all(who.as_bytes());
        Ok(Store {
            dir,
            _lock: Some(file),
            remote: None,
        })
    }

    /// Opens the state of `cluster` on `backend`: locked when `writable`, read-only otherwise.
    /// With S3 the remote lock is taken too (`steal` takes over an expired one) and the journal
    /// and known_hosts are pulled into the local directory.
    pub async fn open(
        state_dir: &Path,
        cluster: &str,
        backend: &Backend,
        writable: bool,
        steal: bool,
    ) -> Result<Store> {
        let mut store = match writable {
            true => Store::lock(state_dir, cluster)?,
            false => Store::read_only(state_dir, cluster),
        };
        if let Backend::S3(location) = backend {
            fsutil::ensure_private_dir(&store.dir)?;
            let remote = crate::remote_state::Remote::connect(location.clone(), cluster).await;
            let synced =
                crate::state_sync::Synced::open(remote, &store.dir, writable, steal).await?;
            store.remote = Some(synced);
        }
        Ok(store)
    }

    /// Pushes what changed to the remote store and releases its lock (nothing for local state).
    pub async fn close(&self) -> Result<()> {
        match &self.remote {
            Some(r) => r.close(&self.dir).await,
            None => Ok(()),
        }
    }

    /// Opens the directory read-only, without the lock (status, plan).
    pub fn read_only(state_dir: &Path, cluster: &str) -> Store {
        Store {
            dir: Self::cluster_dir(state_dir, cluster),
            _lock: None,
            remote: None,
        }
    }

    /// True when this store holds the run lock (and may write).
    pub fn is_locked(&self) -> bool {
        self._lock.is_some()
    }

    /// This run's id: the remote lock's id when the state is in S3, else one made for this
    /// process (what marks the SSH rule `allowedSshCidrs: self` adds).
    pub fn run_id(&self) -> String {
        static LOCAL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        if let Some(id) = self.remote.as_ref().and_then(|r| r.lock_id()) {
            return id;
        }
        LOCAL
            .get_or_init(|| {
                let since = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                format!("local-{}-{since}", std::process::id())
            })
            .clone()
    }

    /// The cluster's state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `state.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Loads the journal. Missing → a fresh one. Corrupt or newer → [`Error::StateUnusable`]
    /// (exit 4), and the file is left as it is.
    pub fn load(&self, cluster: &str) -> Result<State> {
        let path = self.path();
        let text = match read_nofollow(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::new(cluster)),
            Err(e) => {
                return Err(Error::StateUnusable {
                    path,
                    reason: e.to_string(),
                });
            }
        };
        let value: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::StateUnusable {
                path: path.clone(),
                reason: format!("not valid JSON ({e})"),
            })?;
        let schema = value.get("schema").and_then(|s| s.as_u64());
        match schema {
            Some(s) if s == u64::from(SCHEMA) => {}
            Some(s) if s > u64::from(SCHEMA) => {
                return Err(Error::StateUnusable {
                    path,
                    reason: format!(
                        "written by a newer ecoboot (schema {s}, this build reads {SCHEMA})"
                    ),
                });
            }
            other => {
                return Err(Error::StateUnusable {
                    path,
                    reason: format!("unknown schema {other:?}"),
                });
            }
        }
        if let Some(outputs) = value.get("outputs").and_then(|o| o.as_object()) {
            let problems = crate::journal_check::problems(outputs);
            if !problems.is_empty() {
                return Err(Error::StateUnusable {
                    path,
                    reason: format!(
                        "{} value(s) outside their grammar (a journal ecoboot wrote never has them; was the state bucket written by someone else?): {}",
                        problems.len(),
                        problems.join("; ")
                    ),
                });
            }
        }
        let state: State = serde_json::from_value(value).map_err(|e| Error::StateUnusable {
            path: path.clone(),
            reason: format!("unexpected content ({e})"),
        })?;
        if state.cluster != cluster {
            return Err(Error::StateUnusable {
                path,
                reason: format!("it belongs to cluster `{}`, not `{cluster}`", state.cluster),
            });
        }
        Ok(state)
    }

    /// Writes the journal atomically with mode 0600.
    pub fn save(&self, state: &State) -> Result<()> {
        assert!(
            self._lock.is_some(),
            "state is saved only under the run lock"
        );
        let mut json = serde_json::to_vec_pretty(state).expect("state serializes");
        json.push(b'\n');
        fsutil::write_atomic(&self.path(), &json, 0o600)?;
        match &self.remote {
            Some(r) => r.push(&self.dir),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_lock_in_process() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::lock(dir.path(), "c1").unwrap();
        let mut state = store.load("c1").unwrap();
        state.record_mut("network").status = StageStatus::Done;
        state.set_output("network", &serde_json::json!({"vpc": "vpc-1"}));
        store.save(&state).unwrap();
        assert_eq!(store.load("c1").unwrap(), state);
        // A second lock on the same file fails even within one process (separate open file).
        assert!(matches!(
            Store::lock(dir.path(), "c1"),
            Err(Error::Locked { .. })
        ));
        drop(store);
        assert!(Store::lock(dir.path(), "c1").is_ok());
    }

    #[test]
    fn corrupt_and_newer_state_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::lock(dir.path(), "c1").unwrap();
        for text in [
            "{not json",
            "{\"schema\": 99, \"cluster\": \"c1\"}",
            "{\"schema\": 1, \"cluster\": \"other\", \"config_digest\": \"\", \"stages\": {}, \"outputs\": {}}",
        ] {
            std::fs::write(store.path(), text).unwrap();
            let err = store.load("c1").unwrap_err();
            assert_eq!(err.exit_code(), crate::error::exit::STATE, "{text}");
            assert_eq!(std::fs::read_to_string(store.path()).unwrap(), text);
        }
    }
}
