//! A backup archive is hostile until proven otherwise: it comes from S3, which a bucket writer
//! controls, and `restore` unpacks it as root. Before a byte goes to the node, the local copy is
//! read member by member: only directories and regular files, only under `etc/kubernetes/pki/`
//! plus `etcd.db`, no absolute paths or `..`, no links, devices or FIFOs, no setuid/setgid
//! bits, no member twice, bounded sizes. The node then extracts without the archive's owners
//! and permissions (`--no-same-owner --no-same-permissions` under `umask 077`).

use std::collections::BTreeSet;
use std::path::{Component, Path};

/// The etcd snapshot may be this large (etcd's recommended maximum database size).
pub const MAX_SNAPSHOT: u64 = 8 << 30;
/// A certificate or key file may be this large.
pub const MAX_PKI_FILE: u64 = 1 << 20;
/// At most this many members.
pub const MAX_MEMBERS: usize = 256;

/// What a checked archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// Members (files and directories).
    pub members: usize,
    /// The snapshot's size in bytes.
    pub snapshot_bytes: u64,
}

/// Where a member may live, and how large it may be.
fn allowed(path: &str, dir: bool) -> Option<u64> {
    const PARENTS: [&str; 4] = [
        "etc",
        "etc/kubernetes",
        "etc/kubernetes/pki",
        "etc/kubernetes/ecoboot",
    ];
    if dir {
        return (PARENTS.contains(&path) || path.starts_with("etc/kubernetes/pki/")).then_some(0);
    }
    if path == "etcd.db" {
        return Some(MAX_SNAPSHOT);
    }
    if path == super::ENCRYPTION_MEMBER {
        return Some(MAX_PKI_FILE);
    }
    path.starts_with("etc/kubernetes/pki/")
        .then_some(MAX_PKI_FILE)
}

/// A member's path, normalised (`./a/b/` → `a/b`), or why it is refused.
fn member_path(raw: &Path) -> Result<String, String> {
    let mut parts = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(p) => {
                let p = p
                    .to_str()
                    .ok_or_else(|| format!("{}: not UTF-8", raw.display()))?;
                if p.chars().any(char::is_control) {
                    return Err(format!(
                        "{}: a control character in a name",
                        p.escape_default()
                    ));
                }
                parts.push(p.to_string());
            }
            Component::CurDir => {}
            _ => return Err(format!("{}: absolute or `..` path", raw.display())),
        }
    }
    if parts.is_empty() {
        return Err("an empty member name".into());
    }
    Ok(parts.join("/"))
}

/// Reads the gzip-compressed tar at `path` and checks every member (see the module doc).
pub fn check(path: &Path) -> Result<Checked, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open it: {e}"))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let entries = archive
        .entries()
        .map_err(|e| format!("not a tar.gz archive: {e}"))?;
    let mut seen = BTreeSet::new();
    let mut snapshot = None;
    for entry in entries {
        let entry = entry.map_err(|e| format!("not a readable tar.gz archive: {e}"))?;
        let header = entry.header();
        let kind = header.entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let raw = entry
            .path()
            .map_err(|e| format!("an unreadable member name: {e}"))?
            .into_owned();
        let name = member_path(&raw)?;
        let dir = kind.is_dir();
        if !dir && !kind.is_file() {
            return Err(format!(
                "{name}: a {} (only regular files and directories are restored)",
                match kind {
                    k if k.is_symlink() => "symbolic link",
                    k if k.is_hard_link() => "hard link",
                    k if k.is_character_special() || k.is_block_special() => "device node",
                    k if k.is_fifo() => "FIFO",
                    _ => "special member",
                }
            ));
        }
        let mode = header.mode().unwrap_or(0);
        if mode & 0o7000 != 0 {
            return Err(format!("{name}: setuid, setgid or sticky bits ({mode:o})"));
        }
        let Some(limit) = allowed(&name, dir) else {
            return Err(format!(
                "{name}: outside etc/kubernetes/pki/ and etcd.db, where a backup has nothing"
            ));
        };
        let size = entry.size();
        if !dir && size > limit {
            return Err(format!("{name}: {size} bytes is more than {limit}"));
        }
        if !seen.insert(name.clone()) {
            return Err(format!("{name}: twice in the archive"));
        }
        if seen.len() > MAX_MEMBERS {
            return Err(format!("more than {MAX_MEMBERS} members"));
        }
        if name == "etcd.db" {
            snapshot = Some(size);
        }
    }
    let snapshot_bytes = snapshot.ok_or("it has no etcd.db")?;
    if !seen.contains("etc/kubernetes/pki/ca.crt") || !seen.contains("etc/kubernetes/pki/ca.key") {
        return Err("it has no cluster CA (etc/kubernetes/pki/ca.crt and ca.key)".into());
    }
    Ok(Checked {
        members: seen.len(),
        snapshot_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> tempfile::NamedTempFile {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &tar).unwrap();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), gz.finish().unwrap()).unwrap();
        f
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, mode: u32, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    }

    fn good(b: &mut tar::Builder<Vec<u8>>) {
        file(b, "etc/kubernetes/pki/ca.crt", 0o644, b"crt");
        file(b, "etc/kubernetes/pki/ca.key", 0o600, b"key");
        file(b, "etcd.db", 0o600, b"db");
    }

    #[test]
    fn a_backup_as_ecoboot_writes_it_passes() {
        let f = archive(good);
        assert_eq!(check(f.path()).unwrap().members, 3);
    }

    #[test]
    fn links_devices_setuid_escapes_and_duplicates_are_refused() {
        let link = |kind: tar::EntryType, name: &'static str, target: &'static str| {
            move |b: &mut tar::Builder<Vec<u8>>| {
                good(b);
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(kind);
                h.set_size(0);
                h.set_cksum();
                b.append_link(&mut h, name, target).unwrap();
            }
        };
        let cases: Vec<(tempfile::NamedTempFile, &str)> = vec![
            (
                archive(link(
                    tar::EntryType::Symlink,
                    "etc/kubernetes/pki/sa.key",
                    "/etc/shadow",
                )),
                "symbolic link",
            ),
            (
                archive(link(
                    tar::EntryType::Link,
                    "etc/kubernetes/pki/x.key",
                    "etc/kubernetes/pki/ca.key",
                )),
                "hard link",
            ),
            (
                archive(|b| {
                    good(b);
                    file(b, "etc/kubernetes/pki/tool", 0o4755, b"#!")
                }),
                "setuid",
            ),
            (
                archive(|b| {
                    good(b);
                    file(b, "etc/cron.d/evil", 0o644, b"* * * * * root x")
                }),
                "outside",
            ),
            (
                archive(|b| {
                    good(b);
                    file(b, "etcd.db", 0o600, b"again")
                }),
                "twice",
            ),
            (
                archive(|b| {
                    file(b, "etc/kubernetes/pki/ca.crt", 0o644, b"c");
                    file(b, "etc/kubernetes/pki/ca.key", 0o600, b"k")
                }),
                "no etcd.db",
            ),
            (
                archive(|b| {
                    good(b);
                    file(
                        b,
                        "etc/kubernetes/pki/big.key",
                        0o600,
                        &vec![0; (MAX_PKI_FILE + 1) as usize],
                    )
                }),
                "more than",
            ),
        ];
        for (f, want) in cases {
            let err = check(f.path()).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        let device = archive(|b| {
            good(b);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Char);
            h.set_size(0);
            h.set_cksum();
            b.append_data(&mut h, "etc/kubernetes/pki/null", std::io::empty())
                .unwrap();
        });
        assert!(check(device.path()).unwrap_err().contains("device node"));
        let raw = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(raw.path(), b"not gzip").unwrap();
        assert!(check(raw.path()).is_err());
    }

    #[test]
    fn escaping_paths_are_refused() {
        assert!(member_path(Path::new("/etc/shadow")).is_err());
        assert!(member_path(Path::new("etc/../../root/.ssh/authorized_keys")).is_err());
        assert_eq!(
            member_path(Path::new("./etc/kubernetes/pki/")).unwrap(),
            "etc/kubernetes/pki"
        );
    }
}
