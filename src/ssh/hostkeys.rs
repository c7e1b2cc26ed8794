//! Explains a host key verification failure: unknown key under `strict`, or a changed key
//! (both fingerprints named). ecoboot never rewrites its known_hosts entry for a node.

use std::path::Path;
use std::process::Stdio;

use tokio::process::Command;

use super::Target;
use crate::error::Error;

fn host_pattern(target: &Target) -> String {
    if target.port == 22 {
        target.host.clone()
    } else {
        format!("[{}]:{}", target.host, target.port)
    }
}

async fn fingerprints_known(target: &Target, known_hosts: &Path) -> Vec<String> {
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

async fn fingerprints_presented(target: &Target) -> Vec<String> {
    let scan = Command::new("ssh-keyscan")
        .args(["-T", "5", "-p", &target.port.to_string(), &target.host])
        .stderr(Stdio::null())
        .output()
        .await;
    let Ok(scan) = scan else { return Vec::new() };
    let mut child = match Command::new("ssh-keygen")
        .args(["-l", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(_) => return Vec::new(),
    };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&scan.stdout).await;
    }
    let out = child
        .wait_with_output()
        .await
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&out)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
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
