//! Atomic, permission-aware file writes for everything ecoboot stores (state, kubeconfig, keys).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Writes `bytes` to `path` atomically: a temp file in the same directory, fsync, rename, fsync
/// of the directory. The file is created with `mode` (e.g. 0o600 for secrets); a reader sees
/// either the old or the new content, never a torn file.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{seq}", std::process::id()));
    let write = || -> std::io::Result<()> {
        // `create_new` with O_NOFOLLOW refuses anything planted at the temp path.
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io("write", path, e)
    })
}

/// The sha256 of a file's bytes (hex), read in chunks.
pub fn sha256_file(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut file = File::open(path).map_err(|e| Error::io("read", path, e))?;
    let (mut hash, mut buf) = (Sha256::new(), vec![0u8; 1 << 16]);
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| Error::io("read", path, e))?;
        if n == 0 {
            return Ok(hex::encode(hash.finalize()));
        }
        hash.update(&buf[..n]);
    }
}

/// Creates `path` new (never an existing file, never through a symlink) with mode 0600, for
/// large secret payloads written as a stream (etcd snapshots).
pub fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::io("create", path, e))
}

/// Creates `dir` and its parents with mode 0700 if missing, then checks that `dir` is a real
/// directory (not a symlink) owned by this user that nobody else can write to: ecoboot
/// keeps control sockets, logs and state there, so a directory someone else prepared is refused.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::io("create directory", dir, e))?;
    let meta = fs::symlink_metadata(dir).map_err(|e| Error::io("inspect", dir, e))?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    let why = if meta.file_type().is_symlink() {
        Some("it is a symbolic link".to_string())
    } else if !meta.is_dir() {
        Some("it is not a directory".to_string())
    } else if meta.uid() != euid {
        Some(format!(
            "it belongs to uid {}, not to you (uid {euid})",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "its mode is {:o}: others can write to it (ecoboot creates it 700)",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match why {
        None => Ok(()),
        Some(why) => Err(Error::io(
            "use private directory",
            dir,
            std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("refused: {why}"),
            ),
        )),
    }
}

/// Options that open (or create, 0600) a file for appending without following a symlink.
pub fn append_nofollow() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW);
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_with_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write_atomic(&path, b"one", 0o600).unwrap();
        write_atomic(&path, b"two", 0o600).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two");
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left behind");
    }

    #[test]
    fn private_dirs_refuse_symlinks_and_open_modes() {
        let base = tempfile::tempdir().unwrap();
        let good = base.path().join("a/b");
        ensure_private_dir(&good).unwrap();
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(
            ensure_private_dir(&link)
                .unwrap_err()
                .to_string()
                .contains("use private directory")
        );
        let open = base.path().join("open");
        fs::create_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ensure_private_dir(&open).is_err());
    }

    #[test]
    fn a_dir_owned_by_another_user_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return; // only root can hand a directory to another user
        }
        let base = tempfile::tempdir().unwrap();
        let theirs = base.path().join("ecoboot-1000");
        fs::create_dir(&theirs).unwrap();
        fs::set_permissions(&theirs, fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
        let err = ensure_private_dir(&theirs).unwrap_err().to_string();
        assert!(err.contains("use private directory"), "{err}");
    }

    #[test]
    fn appends_never_follow_symlinks() {
        let base = tempfile::tempdir().unwrap();
        let target = base.path().join("target");
        fs::write(&target, "keep").unwrap();
        let log = base.path().join("node.log");
        std::os::unix::fs::symlink(&target, &log).unwrap();
        assert!(append_nofollow().open(&log).is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }
}
