//! Explains a host key verification failure: unknown key under `strict`, or a changed key
//! (both fingerprints named). ecoboot never rewrites its known_hosts entry for a node.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use super::Target;
use crate::error::Error;

fn host_pattern(target: &Target) -> String {
    entry_name(&target.host, target.port)
}

/// How known_hosts names `host:port` (`host` alone on port 22).
pub fn entry_name(host: &str, port: u16) -> String {
    match port {
        22 => host.to_string(),
        p => format!("[{host}]:{p}"),
    }
}

/// Removes every key of `host:port` from `known_hosts` (`ssh-keygen -R`), for a deliberate
/// replacement only: `forget-host`, or an instance ecoboot itself replaced. True when an entry
/// was there.
pub fn forget(known_hosts: &Path, host: &str, port: u16) -> crate::error::Result<bool> {
    if !known_hosts.exists() || host.is_empty() {
        return Ok(false);
    }
    super::verified::forget(
        &known_hosts.with_file_name("known_hosts.verified"),
        &entry_name(host, port),
    )?;
    let out = std::process::Command::new("ssh-keygen")
        .args(["-R", &entry_name(host, port), "-f"])
        .arg(known_hosts)
        .output()
        .map_err(|e| Error::io("run ssh-keygen -R on", known_hosts, e))?;
    let _ = std::fs::remove_file(known_hosts.with_extension("old"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(out.status.success() && said.contains("updated"))
}

/// The SHA256 fingerprints known_hosts holds for `target`.
pub async fn fingerprints_known(target: &Target, known_hosts: &Path) -> Vec<String> {
    let out = Command::new("ssh-keygen")
        .arg("-l")
        .arg("-F")
        .arg(host_pattern(target))
        .arg("-f")
        .arg(known_hosts)
        .output()
        .await;
    out.map(|o| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                l.split_whitespace()
                    .find(|w| w.starts_with("SHA256:"))
                    .map(str::to_string)
            })
            .collect()
    })
    .unwrap_or_default()
}

/// One host key a node presents: its known_hosts line and SHA256 fingerprint.
struct Scanned {
    line: String,
    fingerprint: String,
}

/// The host keys `target` presents (ssh-keyscan; no authentication, nothing recorded).
async fn scan(target: &Target) -> Vec<Scanned> {
    let scan = Command::new("ssh-keyscan")
        .args([
            "-T",
            "5",
            "-p",
            &target.port.to_string(),
            "--",
            &target.host,
        ])
        .stderr(Stdio::null())
        .output()
        .await;
    let Ok(scan) = scan else { return Vec::new() };
    let mut out = Vec::new();
    for line in String::from_utf8_lossy(&scan.stdout).lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(fingerprint) = fingerprint(line).await {
            out.push(Scanned {
                line: line.to_string(),
                fingerprint,
            });
        }
    }
    out
}

/// The SHA256 fingerprint of one known_hosts line.
async fn fingerprint(line: &str) -> Option<String> {
    use tokio::io::AsyncWriteExt;
    let mut child = Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let mut stdin = child.stdin.take()?;
    stdin.write_all(format!("{line}\n").as_bytes()).await.ok()?;
    drop(stdin);
    let out = child.wait_with_output().await.ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .map(str::to_string)
}

async fn fingerprints_presented(target: &Target) -> Vec<String> {
    scan(target)
        .await
        .into_iter()
        .map(|s| s.fingerprint)
        .collect()
}

/// True when `known_hosts` already has a key for `target`.
pub async fn known(target: &Target, known_hosts: &Path) -> bool {
    !fingerprints_known(target, known_hosts).await.is_empty()
}

/// What pinning a node's key from out-of-band fingerprints found.
pub enum Pinned {
    /// The node presented a matching key; it is now in known_hosts.
    Yes,
    /// The node did not answer the scan (still booting): try again.
    NoAnswer,
}

/// Records the host keys `target` presents whose fingerprints are in `expected` (read out of
/// band, from the instance's console) in `known_hosts`, so the following connection can be
/// strict. A node presenting none of them is refused: it is not the instance it claims to be.
pub async fn pin(
    target: &Target,
    known_hosts: &Path,
    verified: &Path,
    expected: &[String],
) -> Result<Pinned, Error> {
    let presented = scan(target).await;
    if presented.is_empty() {
        return Ok(Pinned::NoAnswer);
    }
    let matching: Vec<&Scanned> = presented
        .iter()
        .filter(|s| expected.contains(&s.fingerprint))
        .collect();
    if matching.is_empty() {
        let shown: Vec<&str> = presented.iter().map(|s| s.fingerprint.as_str()).collect();
        return Err(Error::Ssh {
            node: target.node.clone(),
            message: format!(
                "host key of {} does not match its instance's console: it presents {}, the console printed {}",
                host_pattern(target),
                shown.join(", "),
                if expected.is_empty() { "none".to_string() } else { expected.join(", ") }
            ),
            help: "refusing to connect: something other than the instance answers at this address. Check the instance and its address; `knownHosts: accept-new` skips this check if you accept that risk".into(),
        });
    }
    let mut text = String::new();
    for s in &matching {
        text.push_str(&s.line);
        text.push('\n');
    }
    let fingerprints: Vec<String> = matching.iter().map(|s| s.fingerprint.clone()).collect();
    super::verified::record(verified, &host_pattern(target), &fingerprints)?;
    use std::io::Write;
    crate::fsutil::append_nofollow()
        .open(known_hosts)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .map_err(|e| Error::io("write", known_hosts, e))?;
    Ok(Pinned::Yes)
}

/// The diagnostic for a failed host key check on `target`.
pub async fn diagnose(target: &Target, known_hosts: &Path) -> Error {
    let known = fingerprints_known(target, known_hosts).await;
    let presented = fingerprints_presented(target).await;
    let shown = if presented.is_empty() {
        "unknown".to_string()
    } else {
        presented.join(", ")
    };
    if known.is_empty() {
        return Error::Ssh {
            node: target.node.clone(),
            message: format!(
                "host key of {} is not known and spec.ssh.knownHosts is `strict` (it presents {shown})",
                host_pattern(target)
            ),
            help: format!(
                "add the node's key to {} after checking it out of band, or use `knownHosts: accept-new`",
                known_hosts.display()
            ),
        };
    }
    Error::Ssh {
        node: target.node.clone(),
        message: format!(
            "HOST KEY CHANGED for {}: ecoboot recorded {}, the host now presents {shown}",
            host_pattern(target),
            known.join(", ")
        ),
        help: format!(
            "refusing to connect: this can be a replaced instance or an attack. If the node was rebuilt on purpose, remove its line with `ssh-keygen -R '{}' -f {}` and rerun",
            host_pattern(target),
            known_hosts.display()
        ),
    }
}
