//! The node preflight prepare-nodes runs before any change: cgroup v2 (kubelet 1.35+ refuses
//! cgroup v1), the kernel modules Kubernetes networking needs, and the container runtime against
//! the Kubernetes minor (the rules live in `config::support`). One read-only round trip per node;
//! every problem of every node is reported at once.

use std::time::Duration;

use crate::config::support;
use crate::ssh::Conn;

/// Kernel modules every node must be able to load.
const MODULES: &[&str] = &["overlay", "br_netfilter"];

/// What a node reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NodeReport {
    /// Filesystem type of `/sys/fs/cgroup/` (`cgroup2fs` on cgroup v2).
    pub cgroup: String,
    /// Modules `modprobe -n` cannot find.
    pub missing_modules: Vec<String>,
    /// `major.minor.patch` of the containerd on PATH, if any.
    pub containerd: Option<String>,
}

fn script() -> String {
    let mut s = String::from("echo \"cgroup=$(stat -fc %T /sys/fs/cgroup/ 2>/dev/null)\"\n");
    for m in MODULES {
        s.push_str(&format!(
            "modprobe -n {m} >/dev/null 2>&1 || echo missing={m}\n"
        ));
    }
    s.push_str("echo \"containerd=$(containerd --version 2>/dev/null | head -n1)\"\ntrue");
    s
}

/// Parses the preflight script's output.
pub fn parse(stdout: &str) -> NodeReport {
    let mut r = NodeReport::default();
    for line in stdout.lines() {
        match line.split_once('=') {
            Some(("cgroup", v)) => r.cgroup = v.trim().to_string(),
            Some(("missing", m)) => r.missing_modules.push(m.trim().to_string()),
            Some(("containerd", v)) => {
                r.containerd = v
                    .split_whitespace()
                    .map(|w| w.trim_start_matches('v'))
                    .find(|w| {
                        let parts: Vec<&str> = w.split('.').collect();
                        parts.len() >= 2 && parts.iter().all(|p| p.parse::<u32>().is_ok())
                    })
                    .map(String::from)
            }
            _ => {}
        }
    }
    r
}

/// What keeps a node from running Kubernetes `version`, each with what to do.
pub fn problems(r: &NodeReport, version: &str) -> Vec<String> {
    let minor = support::minor(version);
    let mut out = Vec::new();
    if support::needs_cgroup_v2(version) && r.cgroup != "cgroup2fs" {
        out.push(format!(
            "cgroup v1 (/sys/fs/cgroup is {}): kubelet {minor} needs cgroup v2; use an image that boots with the unified hierarchy (Ubuntu 22.04 and 24.04 do)",
            if r.cgroup.is_empty() { "unknown" } else { &r.cgroup }
        ));
    }
    for m in &r.missing_modules {
        out.push(format!(
            "kernel module {m} is not available: use a kernel that ships it (Ubuntu's generic or aws kernels do)"
        ));
    }
    if let Some(v) = &r.containerd {
        let have: Vec<u32> = v.split('.').map_while(|p| p.parse().ok()).collect();
        let (major, minor_rt) = support::min_containerd(version);
        if have.len() >= 2 && (have[0], have[1]) < (major, minor_rt) {
            out.push(format!(
                "runs containerd {v}; Kubernetes {minor} needs containerd {major}.{minor_rt} or newer: migrate its runtime first with `ecoboot migrate-runtime` (drain, containerd 2.x, uncordon, node by node), or stay on Kubernetes 1.35 until then"
            ));
        }
    }
    out
}

/// What one node reports (one read-only round trip), or why it could not run.
pub async fn report(conn: &Conn) -> Result<NodeReport, String> {
    let out = conn
        .run("preflight", &script(), Duration::from_secs(60), true)
        .await
        .map_err(|e| e.to_string())?;
    if !out.ok() {
        return Err(out.tail(3));
    }
    Ok(parse(&out.stdout))
}

/// Runs the preflight on one node: `Ok(problems)`, or why it could not run.
pub async fn check(conn: &Conn, version: &str) -> Result<Vec<String>, String> {
    Ok(problems(&report(conn).await?, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgroup_v1_node_with_containerd_1_7_is_refused_for_1_36() {
        let r = parse(
            "cgroup=tmpfs\nmissing=br_netfilter\ncontainerd=containerd github.com/containerd/containerd 1.7.24\n",
        );
        assert_eq!(r.containerd.as_deref(), Some("1.7.24"));
        let p = problems(&r, "1.36");
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].starts_with("cgroup v1"));
        assert!(p[1].contains("br_netfilter"));
        assert!(p[2].contains("containerd 1.7.24") && p[2].contains("2.0"));
        assert_eq!(
            problems(&r, "1.34").len(),
            1,
            "1.34 accepts cgroup v1 and containerd 1.7"
        );
    }

    #[test]
    fn a_prepared_node_and_a_fresh_node_pass() {
        let done = parse(
            "cgroup=cgroup2fs\ncontainerd=containerd github.com/containerd/containerd/v2 v2.3.4 abc\n",
        );
        assert_eq!(done.containerd.as_deref(), Some("2.3.4"));
        assert!(problems(&done, "1.36").is_empty());
        let fresh = parse("cgroup=cgroup2fs\ncontainerd=\n");
        assert_eq!(fresh.containerd, None);
        assert!(problems(&fresh, "1.37").is_empty());
    }
}
