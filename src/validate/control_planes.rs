//! With several control planes: every control plane reachable and its own API server ready
//! (asked on the node at 127.0.0.1:6443, not through the load balancer), etcd with exactly one
//! healthy member per control plane at that node's address (no stale member), and every
//! control plane's instance a healthy target of the load balancer.

use std::collections::BTreeMap;

use super::Check;
use crate::config::Role;
use crate::engine::Ctx;

const READYZ: &str = "kubectl --kubeconfig /etc/kubernetes/admin.conf --server https://127.0.0.1:6443 get --raw /readyz";

/// The control-plane checks (none with one control plane: the API checks cover it).
pub async fn checks(cx: &Ctx) -> Vec<Check> {
    if !cx.config.is_ha() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let (conns, failures) = match cx
        .connect_nodes("validate", |t| t.role == Role::ControlPlane)
        .await
    {
        Ok(found) => found,
        Err(e) => return vec![Check::fail("control planes", "ssh", e.to_string())],
    };
    for f in failures {
        out.push(Check::fail(
            "control planes",
            &f.node,
            format!("unreachable over SSH ({}): if its instance is gone, `ecoboot up` replaces it and joins it again", f.tail),
        ));
    }
    let ready = crate::ssh::run::each_node(conns, "readyz", READYZ).await;
    for (target, result) in ready {
        let node = target.node;
        out.push(match result {
            Ok(o) if o.ok() => Check::pass("control planes", &node, "API server ready (/readyz on the node)"),
            Ok(o) => Check::fail("control planes", &node, format!("its API server is not ready: {}; see `crictl ps -a --name kube-apiserver` on {node}", o.tail(2))),
            Err(e) => Check::fail("control planes", &node, e.to_string()),
        });
    }
    out.extend(etcd(cx).await);
    out.extend(load_balancer(cx).await);
    out
}

/// One check per configured control plane (its member: present once, at its address,
/// healthy) and one per member that no control plane answers for.
async fn etcd(cx: &Ctx) -> Vec<Check> {
    let (target, conn) = match cx.control_plane("validate").await {
        Ok(found) => found,
        Err(e) => return vec![Check::fail("etcd", "members", e.to_string())],
    };
    let (members, health) = match (
        crate::etcd::members(&conn).await,
        crate::etcd::health(&conn).await,
    ) {
        (Ok(m), Ok(h)) => (m, h),
        (Err(e), _) | (_, Err(e)) => return vec![Check::fail("etcd", &target.node, e.to_string())],
    };
    let healthy: BTreeMap<String, (bool, Option<String>)> = (health.into_iter())
        .map(|h| {
            let ip = (h.endpoint.strip_prefix("https://").unwrap_or(&h.endpoint))
                .rsplit_once(':')
                .map(|(host, _)| host.to_string())
                .unwrap_or_default();
            (ip, (h.health, h.error))
        })
        .collect();
    let records = cx.node_records().await.ok().flatten();
    let ip_of = |node: &str| {
        (records.as_ref())
            .and_then(|r| r.nodes.get(node))
            .map(|n| n.private_ip.clone())
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for cp in cx.config.control_planes() {
        let name = cp.name.as_str();
        let ip = ip_of(name);
        let mine: Vec<_> = members.iter().filter(|m| m.name == name).collect();
        out.push(match mine.as_slice() {
            [] => Check::fail("etcd", name, "no etcd member: run `ecoboot up` (join-control-plane adds it)"),
            [m] if !ip.is_empty() && m.peer_ip != ip => Check::fail("etcd", name, format!("its member {} is at {}, the node is at {ip}: a replaced instance's old member; `ecoboot up` removes it and joins the node again", m.hex(), m.peer_ip)),
            [m] => match healthy.get(&m.peer_ip) {
                Some((true, _)) => Check::pass("etcd", name, format!("member {} healthy", m.hex())),
                Some((false, why)) => Check::fail("etcd", name, format!("member {} unhealthy: {}", m.hex(), why.clone().unwrap_or_default())),
                None => Check::fail("etcd", name, format!("member {} did not report its health", m.hex())),
            },
            _ => Check::fail("etcd", name, format!("{} members carry this name: `ecoboot up` removes the stale one", mine.len())),
        });
    }
    for m in members.iter().filter(|m| {
        cx.config
            .control_planes()
            .all(|c| c.name.as_str() != m.name)
    }) {
        out.push(Check::fail(
            "etcd",
            format!("member {}", m.hex()),
            format!(
                "`{}` at {} is no configured control plane: `ecoboot up` removes it",
                m.name, m.peer_ip
            ),
        ));
    }
    let n = cx.config.control_planes().count();
    let up = out.iter().filter(|c| c.ok).count();
    out.push(match up > n / 2 {
        true => Check::pass("etcd", "quorum", format!("{up} of {n} members healthy (quorum {})", n / 2 + 1)),
        false => Check::fail("etcd", "quorum", format!("{up} of {n} members healthy: quorum ({}) lost, the API cannot write; restore from a backup (`ecoboot restore`)", n / 2 + 1)),
    });
    out
}

/// Every control plane's current instance is a healthy target of the API load balancer.
async fn load_balancer(cx: &Ctx) -> Vec<Check> {
    let lb = match crate::aws::nlb::find(cx.aws().await).await {
        Ok(Some(lb)) => lb,
        Ok(None) => {
            return vec![Check::fail(
                "load balancer",
                "api",
                "no load balancer: run `ecoboot stage load-balancer`",
            )];
        }
        Err(e) => return vec![Check::fail("load balancer", "api", e.to_string())],
    };
    let records = cx.node_records().await.ok().flatten();
    let targets = lb.target_group.map(|t| t.targets).unwrap_or_default();
    (cx.config.control_planes())
        .map(|cp| {
            let name = cp.name.as_str();
            let id = (records.as_ref())
                .and_then(|r| r.nodes.get(name))
                .map(|n| n.instance_id.clone())
                .unwrap_or_default();
            match targets.get(&id).map(String::as_str) {
                Some("healthy") => Check::pass("load balancer", name, format!("{id} healthy behind {}", lb.dns_name)),
                Some(state) => Check::fail("load balancer", name, format!("{id} is `{state}` behind {}: its API server does not answer health checks on 6443", lb.dns_name)),
                None => Check::fail("load balancer", name, format!("{id} is not a target of {}: run `ecoboot stage load-balancer`", lb.dns_name)),
            }
        })
        .collect()
}
