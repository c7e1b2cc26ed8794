//! The commands one node runs during an upgrade (all idempotent: a rerun after a crash repeats
//! them safely): switch the package repository to the target minor, upgrade kubeadm, upgrade
//! the control plane or the node's configuration, upgrade kubelet and kubectl, restart kubelet.

use std::time::Duration;

use super::plan::Version;
use crate::error::{Error, Result};
use crate::ssh::Conn;

const KEYRING: &str = "/etc/apt/keyrings/kubernetes-apt-keyring.gpg";
const SOURCES: &str = "/etc/apt/sources.list.d/kubernetes.list";

/// The apt version pattern for `to` (`1.37.2-*`, or `1.37.*` before the patch is known).
fn apt_version(to: Version) -> String {
    match to.patch {
        Some(p) => format!("1.{}.{p}-*", to.minor),
        None => format!("1.{}.*", to.minor),
    }
}

async fn run(conn: &Conn, label: &str, script: &str, secs: u64) -> Result<String> {
    let help = "see the node log in <state-dir>/<cluster>/logs/nodes/; fix the cause and rerun `ecoboot upgrade`: it continues at this node";
    conn.run_ok("upgrade", label, script, Duration::from_secs(secs), help)
        .await
}

/// Points apt at the target minor's repository and upgrades kubeadm; returns the kubeadm
/// version now installed.
pub async fn upgrade_kubeadm(conn: &Conn, to: Version) -> Result<Version> {
    let m = to.minor_str();
    let repo = format!("https://pkgs.k8s.io/core:/stable:/v{m}/deb/");
    let script = format!(
        "set -e\nif ! grep -qs '{repo} /' {SOURCES}; then\n  mkdir -p -m 755 /etc/apt/keyrings\n  curl -fsSL {repo}Release.key | gpg --batch --yes --dearmor -o {KEYRING}\n  echo 'deb [signed-by={KEYRING}] {repo} /' > {SOURCES}\nfi\napt-get update -q\nexport DEBIAN_FRONTEND=noninteractive\napt-get install -y -q --allow-change-held-packages kubeadm='{v}'\napt-mark hold kubeadm\nkubeadm version -o short",
        v = apt_version(to)
    );
    let out = run(conn, "upgrade kubeadm", &script, 600).await?;
    let line = out.lines().last().unwrap_or_default();
    Version::parse(line).ok_or_else(|| Error::StageFailed {
        stage: "upgrade".into(),
        message: format!("{}: kubeadm reports version `{line}`", conn.node),
        help: "check the node's kubeadm package".into(),
    })
}

/// `kubeadm upgrade plan` (read-only): the control plane can be upgraded.
pub async fn check_plan(conn: &Conn) -> Result<()> {
    run(conn, "kubeadm upgrade plan", "kubeadm upgrade plan", 300)
        .await
        .map(|_| ())
}

/// `kubeadm upgrade apply` on the control plane (the API server moves to `to` first).
pub async fn apply_control_plane(conn: &Conn, to: Version) -> Result<()> {
    let script = format!("kubeadm upgrade apply v{to} -y");
    run(conn, "kubeadm upgrade apply", &script, 1200)
        .await
        .map(|_| ())
}

/// `kubeadm upgrade node` on any other node (its kubelet configuration).
pub async fn upgrade_node_config(conn: &Conn) -> Result<()> {
    run(conn, "kubeadm upgrade node", "kubeadm upgrade node", 600)
        .await
        .map(|_| ())
}

/// kubelet and kubectl at `to`, held again, kubelet restarted.
pub async fn upgrade_kubelet(conn: &Conn, to: Version) -> Result<()> {
    let v = apt_version(to);
    let script = format!(
        "set -e\nexport DEBIAN_FRONTEND=noninteractive\napt-get install -y -q --allow-change-held-packages kubelet='{v}' kubectl='{v}'\napt-mark hold kubelet kubeadm kubectl\nsystemctl daemon-reload\nsystemctl restart kubelet"
    );
    run(conn, "upgrade kubelet", &script, 600).await.map(|_| ())
}
