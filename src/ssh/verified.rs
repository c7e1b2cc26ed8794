//! Which host keys were checked against an instance's console *on this machine*. known_hosts
//! travels through the state store (S3), so a bucket writer could plant a key there; under
//! `knownHosts: console` a key counts as verified only when this file (never synced) lists its
//! fingerprint for that host, and any other key is checked against the console again.

use std::path::Path;

use crate::error::{Error, Result};

/// Whether every fingerprint in `fingerprints` is recorded as verified for `entry` (the
/// known_hosts name of a host, `host` or `[host]:port`).
pub fn all(verified: &Path, entry: &str, fingerprints: &[String]) -> bool {
    let text = std::fs::read_to_string(verified).unwrap_or_default();
    fingerprints.iter().all(|fp| {
        text.lines()
            .any(|l| l.split_once(' ') == Some((entry, fp.as_str())))
    })
}

/// Records `fingerprints` of `entry` as verified (0600, appended).
pub fn record(verified: &Path, entry: &str, fingerprints: &[String]) -> Result<()> {
    use std::io::Write;
    let mut text = String::new();
    for fp in fingerprints {
        text.push_str(&format!("{entry} {fp}\n"));
    }
    crate::fsutil::append_nofollow()
        .open(verified)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::io("write", verified, e))
}

/// Drops every verified fingerprint of `entry` (the host's key is being forgotten on purpose).
pub fn forget(verified: &Path, entry: &str) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(verified) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| l.split_once(' ').map(|(e, _)| e) != Some(entry))
        .map(|l| format!("{l}\n"))
        .collect();
    crate::fsutil::write_atomic(verified, kept.as_bytes(), 0o600)
}

/// Keeps only plain known_hosts lines (`host[,host] keytype base64`): no markers
/// (`@cert-authority`, `@revoked`), no wildcards or negations, no hashed or option-bearing
/// entries. Returns the kept text and how many lines were dropped.
pub fn plain_lines(text: &str) -> (String, usize) {
    const TYPES: [&str; 6] = [
        "ssh-ed25519",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "ssh-rsa",
        "sk-ssh-ed25519@openssh.com",
    ];
    let host_ok = |h: &str| {
        let bare = match h.strip_prefix('[').and_then(|r| r.split_once("]:")) {
            Some((host, port)) => {
                if !port.parse::<u16>().is_ok_and(|p| p > 0) {
                    return false;
                }
                host
            }
            None => h,
        };
        crate::config::syntax::host(bare).is_ok()
    };
    let mut kept = String::new();
    let mut dropped = 0;
    for line in text.lines() {
        if line.trim().is_empty() {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        let ok = parts.len() == 3
            && parts[0].split(',').all(host_ok)
            && TYPES.contains(&parts[1])
            && parts[2]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c));
        if ok {
            kept.push_str(&parts[..3].join(" "));
            kept.push('\n');
        } else {
            dropped += 1;
        }
    }
    (kept, dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_key_lines_survive() {
        let text = "127.0.1.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n[127.0.1.2]:2222 ssh-ed25519 AAAAC3Nza\n@cert-authority * ssh-ed25519 AAAA\n@revoked 127.0.1.1 ssh-ed25519 AAAA\n*.example ssh-ed25519 AAAA\n!10.0.0.1 ssh-ed25519 AAAA\n|1|abc=|def= ssh-ed25519 AAAA\n127.0.1.3 ssh-ed25519 AAAA comment words here\n";
        let (kept, dropped) = plain_lines(text);
        assert_eq!(
            kept,
            "127.0.1.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB\n[127.0.1.2]:2222 ssh-ed25519 AAAAC3Nza\n"
        );
        assert_eq!(dropped, 6);
    }

    #[test]
    fn verified_fingerprints_are_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("known_hosts.verified");
        assert!(!all(&f, "127.0.1.1", &["SHA256:a".into()]));
        record(&f, "127.0.1.1", &["SHA256:a".into()]).unwrap();
        assert!(all(&f, "127.0.1.1", &["SHA256:a".into()]));
        assert!(!all(&f, "127.0.1.2", &["SHA256:a".into()]));
        assert!(!all(
            &f,
            "127.0.1.1",
            &["SHA256:a".into(), "SHA256:b".into()]
        ));
    }
}
