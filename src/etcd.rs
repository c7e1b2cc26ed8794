//! kubeadm's stacked etcd as seen from a control plane: the `etcdctl` preamble (on the host
//! when installed, else inside kubeadm's etcd container), the member list and the cluster's
//! health, parsed from `etcdctl -w json` into types (node output is hostile input: anything
//! outside the grammar is an error, never a guess).

use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ssh::{Conn, script};

/// Shell preamble: `$certs` (kubeadm's etcd client certificates against the local member) and
/// `etcdctl`/`etcdutl` functions (host binaries, else the etcd container's).
pub const TOOLS: &str = r#"certs="--endpoints=https://127.0.0.1:2379 --cacert=/etc/kubernetes/pki/etcd/ca.crt --cert=/etc/kubernetes/pki/etcd/healthcheck-client.crt --key=/etc/kubernetes/pki/etcd/healthcheck-client.key"
in_etcd() { crictl exec "$(crictl ps --name etcd -q | head -n1)" "$@"; }
if command -v etcdctl >/dev/null 2>&1; then etcdctl() { command etcdctl "$@"; }; else etcdctl() { in_etcd etcdctl "$@"; }; fi
if command -v etcdutl >/dev/null 2>&1; then etcdutl() { command etcdutl "$@"; }; else etcdutl() { in_etcd etcdutl "$@"; }; fi"#;

/// One etcd member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Member id (etcdctl prints it in hex for `member remove`).
    pub id: u64,
    /// Its name (kubeadm names members after their node).
    pub name: String,
    /// The IP of its first peer URL.
    pub peer_ip: String,
}

impl Member {
    /// The id as `etcdctl member remove` takes it.
    pub fn hex(&self) -> String {
        format!("{:x}", self.id)
    }
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    members: Vec<RawMember>,
}

#[derive(Deserialize)]
struct RawMember {
    #[serde(rename = "ID")]
    id: u64,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "peerURLs")]
    peer_urls: Vec<String>,
}

/// Parses `etcdctl member list -w json`. Names must be node-name shaped (or empty: a member
/// added but not started yet); peer URLs `https://<ip>:2380`.
pub fn parse_members(json: &str) -> std::result::Result<Vec<Member>, String> {
    let list: List =
        serde_json::from_str(json.trim()).map_err(|e| format!("not etcdctl's member list: {e}"))?;
    list.members
        .into_iter()
        .map(|m| {
            if !m.name.is_empty() && !crate::config::syntax::is_dns_subdomain(&m.name) {
                return Err(format!(
                    "member {:x} has a name that is not a node name",
                    m.id
                ));
            }
            let url = m.peer_urls.first().map(String::as_str).unwrap_or_default();
            let ip = (url
                .strip_prefix("https://")
                .or_else(|| url.strip_prefix("http://")))
            .and_then(|rest| rest.rsplit_once(':'))
            .map(|(host, _)| host.trim_matches(['[', ']']))
            .filter(|h| h.parse::<std::net::IpAddr>().is_ok())
            .ok_or_else(|| format!("member {:x} has no usable peer URL", m.id))?;
            Ok(Member {
                id: m.id,
                name: m.name,
                peer_ip: ip.to_string(),
            })
        })
        .collect()
}

/// One endpoint of `etcdctl endpoint health --cluster -w json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Health {
    /// `https://<ip>:2379`.
    pub endpoint: String,
    /// It answered.
    pub health: bool,
    /// Why not, when it did not.
    #[serde(default)]
    pub error: Option<String>,
}

/// Parses `etcdctl endpoint health --cluster -w json`.
pub fn parse_health(json: &str) -> std::result::Result<Vec<Health>, String> {
    serde_json::from_str(json.trim()).map_err(|e| format!("not etcdctl's health list: {e}"))
}

fn failed(node: &str, what: &str, message: String) -> Error {
    Error::StageFailed {
        stage: "etcd".into(),
        message: format!("{node}: {what}: {message}"),
        help: "check etcd on that control plane (`crictl ps --name etcd`, its logs) and rerun"
            .into(),
    }
}

/// The member list, asked of the control plane behind `conn`.
pub async fn members(conn: &Conn) -> Result<Vec<Member>> {
    let out = conn
        .run(
            "etcd member list",
            &format!("{TOOLS}\netcdctl $certs member list -w json"),
            Duration::from_secs(60),
            true,
        )
        .await?;
    if !out.ok() {
        return Err(failed(&conn.node, "etcd member list", out.tail(3)));
    }
    parse_members(&out.stdout).map_err(|e| failed(&conn.node, "etcd member list", e))
}

/// Every member's health (a member that does not answer is `health: false`).
pub async fn health(conn: &Conn) -> Result<Vec<Health>> {
    let out = conn
        .run(
            "etcd endpoint health",
            &format!("{TOOLS}\netcdctl $certs endpoint health --cluster -w json"),
            Duration::from_secs(90),
            true,
        )
        .await?;
    // etcdctl exits 1 when a member is unhealthy and still prints the list.
    parse_health(&out.stdout).map_err(|e| {
        let why = if out.ok() { e } else { out.tail(3) };
        failed(&conn.node, "etcd endpoint health", why)
    })
}

/// Removes a member (`etcdctl member remove <hex id>`).
pub async fn remove(conn: &Conn, member: &Member) -> Result<()> {
    let out = conn
        .run(
            "etcd member remove",
            &format!(
                "{TOOLS}\netcdctl $certs member remove {}",
                script::quote(&member.hex())
            ),
            Duration::from_secs(60),
            true,
        )
        .await?;
    if out.ok() {
        return Ok(());
    }
    Err(failed(
        &conn.node,
        &format!("remove etcd member {} ({})", member.name, member.hex()),
        out.tail(3),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_etcdctl_json_and_refuses_what_is_not() {
        let json = r#"{"header":{"cluster_id":1,"member_id":2,"raft_term":3},"members":[{"ID":10501334649042878790,"name":"k8s-master","peerURLs":["https://10.0.1.10:2380"],"clientURLs":["https://10.0.1.10:2379"]},{"ID":3,"peerURLs":["https://10.0.2.10:2380"],"isLearner":true}]}"#;
        let members = parse_members(json).unwrap();
        assert_eq!(members[0].name, "k8s-master");
        assert_eq!(members[0].peer_ip, "10.0.1.10");
        assert_eq!(members[0].hex(), "91bc3c398fb3c146");
        assert_eq!(members[1].name, "");
        assert!(parse_members(r#"{"members":[{"ID":1,"name":"x; rm -rf /","peerURLs":["https://10.0.0.1:2380"]}]}"#).is_err());
        assert!(
            parse_members(r#"{"members":[{"ID":1,"name":"a","peerURLs":["https://$(id):2380"]}]}"#)
                .is_err()
        );
        assert!(parse_members("Error: context deadline exceeded").is_err());
        let health = parse_health(r#"[{"endpoint":"https://10.0.1.10:2379","health":true,"took":"1ms"},{"endpoint":"https://10.0.2.10:2379","health":false,"took":"5s","error":"context deadline exceeded"}]"#).unwrap();
        assert!(health[0].health && !health[1].health);
    }
}
