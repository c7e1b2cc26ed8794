//! Connection settings shared by every node: user, key, ecoboot's own known_hosts, where
//! control sockets live, and the ssh client config ecoboot runs with.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::Config;

/// Connection settings shared by all nodes.
#[derive(Debug, Clone)]
pub struct Options {
    /// Remote user.
    pub user: String,
    /// Private key (IdentitiesOnly).
    pub identity: Option<PathBuf>,
    /// ecoboot's own known_hosts file.
    pub known_hosts: PathBuf,
    /// The keys checked against a console on this machine ([`super::verified`]; never synced).
    pub verified: PathBuf,
    /// Unknown host keys are refused (`strict` and `console`); `accept-new` records them.
    pub strict: bool,
    /// Per node, the host key fingerprints its instance's console printed (`knownHosts:
    /// console`): on first contact a presented key is recorded only if it is one of these.
    pub pins: BTreeMap<String, Vec<String>>,
    /// ProxyJump host.
    pub bastion: Option<String>,
    /// How long to keep trying to reach a node.
    pub connect_timeout: Duration,
    /// Directory for control sockets (kept short: sockets are limited to 108 bytes).
    pub control_dir: PathBuf,
    /// Per-node command logs.
    pub log_dir: PathBuf,
}

impl Options {
    /// Settings from config; state files under `state_dir`.
    pub fn from_config(config: &Config, state_dir: &Path) -> Options {
        let ssh = &config.cluster.spec.ssh;
        let uid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .unwrap_or(0);
        Options {
            user: ssh.user.value.clone(),
            identity: ssh.identity_file.as_ref().map(|p| config.resolve_path(p)),
            known_hosts: crate::nodes::known_hosts(state_dir),
            verified: state_dir.join("known_hosts.verified"),
            strict: ssh.known_hosts.as_str() != "accept-new",
            pins: BTreeMap::new(),
            bastion: ssh.bastion.as_ref().map(|b| b.value.clone()),
            connect_timeout: Duration::from_secs(ssh.connect_timeout_seconds.max(1)),
            control_dir: control_dir(uid),
            log_dir: state_dir.join("logs").join("nodes"),
        }
    }
}

/// Where control sockets live: `$XDG_RUNTIME_DIR/ecoboot` (a per-user 0700 directory the
/// system made) when set, else `$TMPDIR/ecoboot-<uid>`. Either is checked for owner and mode
/// before use ([`crate::fsutil::ensure_private_dir`]), so a directory another user planted in a
/// shared /tmp is refused instead of used.
fn control_dir(uid: u32) -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_absolute() && dir.as_os_str().len() < 64 => dir.join("ecoboot"),
        _ => std::env::temp_dir().join(format!("ecoboot-{uid}")),
    }
}

/// The ssh client config ecoboot runs with: its own settings first (the first value ssh reads
/// wins), so no agent or X11 forwarding and no forwardings from the user's config reach a node,
/// then the user's and the system's config for everything else (ProxyJump, ciphers, ...).
fn client_config() -> String {
    let mut text = String::from(
        "# written by ecoboot for its own ssh connections\nForwardAgent no\nForwardX11 no\nClearAllForwardings yes\nPermitLocalCommand no\n",
    );
    let home = std::env::var_os("HOME").map(PathBuf::from);
    for path in [
        home.map(|h| h.join(".ssh/config")),
        Some(PathBuf::from("/etc/ssh/ssh_config")),
    ]
    .into_iter()
    .flatten()
    {
        if path.is_file() && !path.to_string_lossy().contains(char::is_whitespace) {
            text.push_str(&format!("Include {}\n", path.display()));
        }
    }
    text
}

/// Writes [`client_config`] into `control_dir` once per process and returns its path.
pub(super) fn client_config_file(control_dir: &Path) -> crate::error::Result<PathBuf> {
    static WRITTEN: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());
    let path = control_dir.join("ssh_config");
    let mut written = WRITTEN.lock().unwrap_or_else(|p| p.into_inner());
    if !written.contains(&path) {
        crate::fsutil::write_atomic(&path, client_config().as_bytes(), 0o600)?;
        written.push(path.clone());
    }
    Ok(path)
}
