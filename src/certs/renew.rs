//! `ecoboot certs renew`: `kubeadm certs renew all` on the control plane, then its static pods
//! restarted one at a time in a safe order (etcd, kube-apiserver, kube-controller-manager,
//! kube-scheduler; each manifest moved out until kubelet stopped the container, then back until
//! it runs again), `/readyz` waited for, and the renewed admin.conf fetched (0600). A run killed
//! with a manifest moved out puts it back first. Every step is safe to repeat.

use std::time::Duration;

use super::{Expiry, ID, read};
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Action;
use crate::retry::{Backoff, Try, retry};
use crate::ssh::{Conn, script};

/// The static pods, in the order they are restarted.
const ORDER: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];
/// Where a manifest waits while kubelet stops its pod.
const PARKED: &str = "/etc/kubernetes/ecoboot/parked";
/// This control plane's own API server's readiness (not through a load balancer).
const READYZ: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://127.0.0.1:6443 get --raw /readyz";

/// What `certs renew` found before renewing: every control plane's certificates.
#[derive(Debug, Clone)]
pub struct RenewPlan {
    /// Per control plane (config order), the certificates as they are.
    pub nodes: Vec<NodeCerts>,
}

/// One control plane's certificates before renewing.
#[derive(Debug, Clone)]
pub struct NodeCerts {
    /// The control-plane node.
    pub node: String,
    /// The certificates as they are.
    pub before: Vec<Expiry>,
}

/// Every control plane, connected (all must be reachable: each has its own certificates).
async fn control_planes(cx: &Ctx) -> Result<Vec<(crate::ssh::Target, std::sync::Arc<Conn>)>> {
    cx.all_control_planes(ID, "every control plane has its own certificates")
        .await
}

/// Reads the certificates and returns the plan with its actions.
pub async fn plan(cx: &Ctx) -> Result<(RenewPlan, Vec<Action>)> {
    let mut nodes = Vec::new();
    let mut actions = Vec::new();
    for (target, conn) in control_planes(cx).await? {
        let before = read(&conn).await?;
        let leaves: Vec<&Expiry> = before.iter().filter(|e| !e.ca).collect();
        let soonest = leaves
            .first()
            .map(|e| {
                format!(
                    "; the soonest, {}, expires in {} day(s)",
                    e.file, e.days_left
                )
            })
            .unwrap_or_default();
        let node = target.node.clone();
        actions.push(Action::new(
            &node,
            format!(
                "kubeadm certs renew all ({} certificates{soonest})",
                leaves.len()
            ),
        ));
        actions.push(Action::new(
            &node,
            format!(
                "restart the static pods one at a time: {}",
                ORDER.join(", ")
            ),
        ));
        actions.push(Action::new(&node, "wait until /readyz answers"));
        nodes.push(NodeCerts { node, before });
    }
    actions.push(Action::new(
        "admin.conf",
        "fetch the renewed admin.conf (kubeconfigs exported from the old one must be exported again)",
    ));
    Ok((RenewPlan { nodes }, actions))
}

async fn run(conn: &Conn, label: &str, text: &str, secs: u64) -> Result<String> {
    let help = "see the node log in <state-dir>/<cluster>/logs/nodes/; rerun `ecoboot certs renew` (every step is safe to repeat)";
    conn.run_ok(ID, label, text, Duration::from_secs(secs), help)
        .await
}

/// Moves `component`'s manifest out until kubelet stopped its container, then back until it
/// runs again (a manifest parked by a killed run is simply put back).
pub(crate) fn restart_script(component: &str) -> String {
    let c = script::quote(component);
    format!(
        "set -e\nm=/etc/kubernetes/manifests/{component}.yaml\np={PARKED}/{component}.yaml\nmkdir -p {PARKED}\n[ -f \"$m\" ] && mv \"$m\" \"$p\"\nfor i in $(seq 1 90); do [ -z \"$(crictl ps --name {c} -q 2>/dev/null)\" ] && break; sleep 1; done\nmv \"$p\" \"$m\"\nfor i in $(seq 1 180); do [ -n \"$(crictl ps --name {c} -q 2>/dev/null)\" ] && exit 0; sleep 1; done\necho \"{component} did not start again\" >&2; exit 1"
    )
}

pub(crate) async fn wait_ready(conn: &Conn) -> Result<()> {
    let ready = retry(
        &Backoff::poll(Duration::from_secs(2), Duration::from_secs(300)),
        |_| async {
            match conn
                .run("readyz", READYZ, Duration::from_secs(30), true)
                .await
            {
                Ok(out) if out.ok() => Try::Done(()),
                Ok(out) => Try::Again(out.tail(2)),
                Err(e) => Try::Fail(e.to_string()),
            }
        },
    )
    .await;
    ready.map_err(|why| Error::StageFailed {
        stage: ID.into(),
        message: format!("{}: the API server is not ready after the restart: {why}", conn.node),
        help: "check `crictl ps` and the kube-apiserver log on the control plane, then rerun the command".into(),
    })
}

/// On each control plane in turn (the next starts only when this one's API server is ready
/// again): renews, restarts, waits, and checks that every renewed certificate now expires later
/// than before; then fetches the renewed admin.conf.
pub async fn renew(cx: &Ctx, plan: &RenewPlan) -> Result<()> {
    let conns = control_planes(cx).await?;
    for certs in &plan.nodes {
        let Some((_, conn)) = conns.iter().find(|(t, _)| t.node == certs.node) else {
            continue;
        };
        renew_one(cx, conn, certs).await?;
    }
    let (_, conn) = cx.control_plane(ID).await?;
    crate::stages::shared::control_plane::fetch_admin(cx, &conn, ID).await?;
    let admin = crate::nodes::admin_conf(&cx.state_dir());
    cx.events.progress(ID, None, format!(
        "renewed admin.conf written to {} (0600); kubeconfigs exported from the old one carry the old client certificate: export them again with `ecoboot kubeconfig`",
        admin.display()
    ));
    Ok(())
}

async fn renew_one(cx: &Ctx, conn: &Conn, plan: &NodeCerts) -> Result<()> {
    let say = |m: String| cx.events.progress(ID, Some(&plan.node), m);
    // A run killed mid-restart left a manifest parked: back first, so the pod runs again.
    let unpark = format!(
        "for p in {PARKED}/*.yaml; do [ -f \"$p\" ] || continue; m=/etc/kubernetes/manifests/$(basename \"$p\"); [ -f \"$m\" ] || mv \"$p\" \"$m\"; rm -f \"$p\"; done"
    );
    run(conn, "put back parked manifests", &unpark, 60).await?;
    run(
        conn,
        "kubeadm certs renew all",
        "kubeadm certs renew all",
        600,
    )
    .await?;
    say("kubeadm certs renew all".into());
    for component in ORDER {
        run(
            conn,
            &format!("restart {component}"),
            &restart_script(component),
            400,
        )
        .await?;
        say(format!("{component} restarted"));
        if component == "kube-apiserver" {
            wait_ready(conn).await?;
        }
    }
    wait_ready(conn).await?;
    say("/readyz ok".into());
    let after = read(conn).await?;
    let stale: Vec<String> = (after.iter().filter(|e| !e.ca))
        .filter(|e| {
            plan.before
                .iter()
                .any(|b| b.file == e.file && b.not_after >= e.not_after)
        })
        .map(|e| format!("{} ({})", e.file, e.not_after))
        .collect();
    if !stale.is_empty() {
        return Err(Error::StageFailed {
            stage: ID.into(),
            message: format!("{}: not renewed: {}", plan.node, stale.join(", ")),
            help: "run `kubeadm certs check-expiration` on that control plane".into(),
        });
    }
    if let Some(soonest) = after.iter().find(|e| !e.ca) {
        say(format!(
            "certificates now expire on {} or later",
            soonest.not_after
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn restart_moves_the_manifest_out_and_back() {
        let s = super::restart_script("kube-apiserver");
        let out = s.find("mv \"$m\" \"$p\"").unwrap();
        let back = s.find("mv \"$p\" \"$m\"").unwrap();
        assert!(out < back, "{s}");
        assert!(s.contains("crictl ps --name kube-apiserver -q"), "{s}");
    }
}
