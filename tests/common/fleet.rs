//! A fleet of real sshd nodes for tests (scripts/fleet.sh), stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Running fleet.
pub struct Fleet {
    /// The fleet directory (keys, known_hosts, node overlays).
    pub dir: tempfile::TempDir,
    /// Number of nodes.
    pub n: usize,
    /// Port every node listens on.
    pub port: u16,
    /// The last nodes no config node is on (an image builder's).
    pub spare: usize,
    kubeconfig: Option<PathBuf>,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/fleet.sh")
}

impl Fleet {
    /// Starts `n` nodes on 127.0.1.1..n at a free port.
    pub fn start(n: usize) -> Fleet {
        Fleet::start_with(n, None)
    }

    /// Like [`Fleet::start`]; the node simulators register with the API behind `kubeconfig`.
    pub fn start_with(n: usize, kubeconfig: Option<&Path>) -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("ef")
            .tempdir_in("/tmp")
            .unwrap();
        let port = loop {
            let port = 20000 + (std::process::id() % 1000) as u16 * 40 + next_port_offset();
            if (1..=n).all(|i| {
                std::net::TcpListener::bind((format!("127.0.1.{i}").as_str(), port)).is_ok()
            }) {
                break port;
            }
        };
        let fleet = Fleet {
            dir,
            n,
            port,
            spare: 0,
            kubeconfig: kubeconfig.map(Path::to_path_buf),
        };
        fleet.sh(&["start"]);
        fleet
    }

    fn sh(&self, args: &[&str]) {
        let out = Command::new("bash")
            .arg(script())
            .args(args)
            .env("FLEET_DIR", self.dir.path())
            .env("FLEET_N", self.n.to_string())
            .env("FLEET_PORT", self.port.to_string())
            .env(
                "FLEET_KUBECONFIG",
                self.kubeconfig.as_deref().unwrap_or(Path::new("")),
            )
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fleet.sh {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops node `i` (its state stays).
    pub fn down(&self, i: usize) {
        self.sh(&["down", &i.to_string()]);
    }

    /// Stops node `i` and removes its disk (overlays and /root), as a new instance would have;
    /// the next [`Fleet::restart_all`] starts it empty.
    pub fn wipe(&self, i: usize) {
        self.sh(&["wipe", &i.to_string()]);
    }

    /// Starts node `i` again.
    pub fn up(&self, i: usize) {
        self.sh(&["up", &i.to_string()]);
    }

    /// Starts every node that is not running (a wiped node's overlays are made again first).
    pub fn restart_all(&self) {
        self.sh(&["start"]);
    }

    /// Replaces node `i`'s host key (as a rebuilt instance would have) and restarts it.
    pub fn rekey(&self, i: usize) {
        self.down(i);
        let key = self
            .dir
            .path()
            .join(format!("nodes/{i}/ssh_host_ed25519_key"));
        std::fs::remove_file(&key).unwrap();
        std::fs::remove_file(key.with_extension("pub")).unwrap();
        self.sh(&["start"]);
    }

    /// `ssh` to node `i` running `cmd`, with the fleet's key and pinned host keys.
    fn ssh_command(&self, i: usize, cmd: &str) -> Command {
        let d = self.dir.path();
        let mut c = Command::new("ssh");
        c.arg("-i")
            .arg(d.join("keys/id_ed25519"))
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                d.join("known_hosts").display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-p",
                &self.port.to_string(),
            ])
            .arg(format!("root@127.0.1.{i}"))
            .arg(cmd);
        c
    }

    /// Runs `cmd` on node `i` over SSH; its standard output (it must succeed).
    pub fn ssh_output(&self, i: usize, cmd: &str) -> String {
        let out = self.ssh_command(i, cmd).output().unwrap();
        assert!(
            out.status.success(),
            "ssh node {i}: {cmd}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `cmd` on node `i` over SSH (for test setup such as fault injection).
    pub fn ssh(&self, i: usize, cmd: &str) {
        let ok = self.ssh_command(i, cmd).status().unwrap().success();
        assert!(ok, "ssh node {i}: {cmd}");
    }

    /// A file of node `i`'s private filesystem, as the host sees it (overlay upper dir).
    pub fn file(&self, i: usize, path: &str) -> Option<String> {
        let path = path.trim_start_matches('/');
        let (top, rest) = match path.strip_prefix("usr/local/") {
            Some(rest) => ("usr/local", rest),
            None => path.split_once('/').unwrap(),
        };
        std::fs::read_to_string(
            self.dir
                .path()
                .join(format!("nodes/{i}/ov/{top}/upper/{rest}")),
        )
        .ok()
    }

    /// The permission bits of a file of node `i` (as [`Fleet::file`] finds it).
    pub fn mode(&self, i: usize, path: &str) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        let path = path.trim_start_matches('/');
        let (top, rest) = path.split_once('/').unwrap();
        let host = self
            .dir
            .path()
            .join(format!("nodes/{i}/ov/{top}/upper/{rest}"));
        std::fs::metadata(host)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }

    /// Commands the node simulators ran on node `i`.
    pub fn calls(&self, i: usize) -> Vec<String> {
        self.file(i, "/var/log/ecoboot-sim/calls.log")
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// The simulator calls on node `i` that change something.
    pub fn mutating_calls(&self, i: usize) -> Vec<String> {
        self.calls(i)
            .into_iter()
            .filter(|c| is_mutating(c))
            .collect()
    }

    /// The shipped config rewritten for this fleet: every node at 127.0.1.N:port, root, the
    /// fleet key, a short connect timeout. Written to `dir/cluster.yaml`.
    pub fn config(&self, dir: &Path) -> PathBuf {
        let path = super::config_with_key(dir);
        let text = std::fs::read_to_string(&path).unwrap();
        let key = self.dir.path().join("keys/id_ed25519");
        let text = text
            .replace("user: ubuntu", "user: root")
            .replace(
                "identityFile: ~/.ssh/sesacthon.pem",
                &format!("identityFile: {}", key.display()),
            )
            .replace("connectTimeoutSeconds: 1", "connectTimeoutSeconds: 3");
        let mut out = String::new();
        let mut n = 0;
        for line in text.lines() {
            if line.trim_start().starts_with("address: ") {
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if line.starts_with("      subnet: ") {
                n += 1;
                out.push_str(&format!("      address: \"127.0.1.{n}:{}\"\n", self.port));
            }
        }
        super::assert_loopback_only(&out);
        assert_eq!(
            n,
            self.n - self.spare,
            "the fleet has one node per config node"
        );
        std::fs::write(&path, out).unwrap();
        path
    }
}

/// Simulator calls that change node state (reads such as dpkg-query are not).
pub fn is_mutating(call: &str) -> bool {
    let words: Vec<&str> = call.split_whitespace().collect();
    match words.as_slice() {
        ["dpkg-query", ..] | ["apt-mark", "showhold", ..] | ["stat", ..] => false,
        ["modprobe", "-n", ..] | ["containerd", "--version", ..] | ["crictl", "ps", ..] => false,
        ["crictl", "inspecti", ..] | ["crictl", "images", ..] | ["cloud-init", "status", ..] => {
            false
        }
        ["crictl", "--runtime-endpoint", _, "inspecti", ..] => false,
        ["systemctl", rest @ ..] => !rest.iter().any(|w| *w == "is-active" || *w == "is-enabled"),
        _ => true,
    }
}

fn next_port_offset() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst) % 40
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // `destroy`, not only `stop`: a non-root fleet's overlay work directories are mode 000,
        // which the temporary directory's own removal cannot list.
        let _ = Command::new("bash")
            .arg(script())
            .arg("destroy")
            .env("FLEET_DIR", self.dir.path())
            .env("FLEET_N", self.n.to_string())
            .env("FLEET_PORT", self.port.to_string())
            .output();
    }
}

/// Node name → the SHA256 fingerprint of its fleet node's host key, in config order.
pub fn console_fingerprints(fleet: &Fleet, config: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(config).unwrap();
    let names = text
        .lines()
        .filter_map(|l| l.strip_prefix("    - name: "))
        .map(str::to_string);
    names
        .enumerate()
        .map(|(i, name)| {
            let key = fleet
                .dir
                .path()
                .join(format!("nodes/{}/ssh_host_ed25519_key.pub", i + 1));
            let out = std::process::Command::new("ssh-keygen")
                .arg("-lf")
                .arg(&key)
                .output()
                .unwrap();
            let fp = String::from_utf8(out.stdout).unwrap();
            (name, fp.split_whitespace().nth(1).unwrap().to_string())
        })
        .collect()
}

/// The proxy's fault config that answers GetConsoleOutput with `console`'s fingerprints (and
/// models RunInstances ClientToken idempotency).
pub fn faults_with_console(console: &[(String, String)]) -> String {
    let map: serde_json::Map<String, serde_json::Value> = console
        .iter()
        .map(|(n, fp)| (n.clone(), serde_json::json!([fp])))
        .collect();
    serde_json::json!({"idempotent_tokens": true, "delay": {"RunInstances": 0.1}, "console": map})
        .to_string()
}

/// [`faults_with_console`] with the fleet's real fingerprints.
pub fn console_faults(fleet: &Fleet, config: &Path) -> String {
    faults_with_console(&console_fingerprints(fleet, config))
}
