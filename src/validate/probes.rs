//! The probes that run: short-lived pods in namespace [`NAMESPACE`], each pinned to a node. A
//! server on every node; every node a client of the next node's server, over the pod network
//! (so every node is tested sending and receiving across nodes); and from every node a DNS
//! lookup of `kubernetes.default` followed by a connection to the API's Service. The pods are
//! deleted after; the namespace stays, empty.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;

use super::Check;
use super::cluster::why_not;
use crate::config::Config;
use crate::retry::{Backoff, Try, retry};

/// Where the probes run.
pub const NAMESPACE: &str = "ecoboot-validate";
/// The probe image (Kubernetes' own e2e test image: `netexec` serves, `connect` dials).
pub const IMAGE: &str = "registry.k8s.io/e2e-test-images/agnhost:2.52";
/// How long probes may take to start and finish (image pull included).
const PROBE_TIMEOUT: Duration = Duration::from_secs(180);

fn pod(name: &str, node: &str, role: &str, args: &[&str], target: Option<&str>) -> Pod {
    let mut annotations = serde_json::Map::new();
    if let Some(t) = target {
        annotations.insert("ecoboot.io/target-ip".into(), json!(t));
    }
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"ecoboot.io/validate": role}, "annotations": annotations},
        "spec": {
            "nodeName": node, "restartPolicy": "Never", "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "c", "image": IMAGE, "args": args,
                "securityContext": {"allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 65534,
                    "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}}],
        }
    }))
    .expect("a valid Pod")
}

/// A pod name for `role` on `node`, unique to this process's run (a probe of an earlier run
/// still terminating never collides).
fn name(role: &str, node: &str) -> String {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let run = RUN.get_or_init(|| format!("{:05x}", (std::process::id() ^ 0x5a5a5) & 0xfffff));
    let node: String = node.chars().take(40).collect();
    format!("{role}-{node}-{run}")
}

/// Calico's readiness per node (from the calico-node pods).
async fn calico(client: &kube::Client) -> BTreeMap<String, bool> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "kube-system");
    let lp = ListParams::default().labels("k8s-app=calico-node");
    let Ok(list) = pods.list(&lp).await else {
        return BTreeMap::new();
    };
    (list.items.iter())
        .filter_map(|p| {
            let node = p.spec.as_ref()?.node_name.clone()?;
            let ready = (p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten())
            .any(|c| c.type_ == "Ready" && c.status == "True");
            Some((node, ready))
        })
        .collect()
}

fn cause(calico: &BTreeMap<String, bool>, node: &str) -> String {
    match calico.get(node) {
        Some(false) => format!(
            "Calico is not Ready on {node} (`kubectl -n kube-system get pods -l k8s-app=calico-node -o wide`)"
        ),
        None => format!("no calico-node pod on {node}"),
        Some(true) => String::new(),
    }
}

/// Waits until `done` holds for every pod in `names`, or the pod cannot start: it is Pending
/// on a node where Calico is not Ready (no pod network, so no sandbox), which fails at once.
async fn wait(
    api: &Api<Pod>,
    names: &[String],
    calico: &BTreeMap<String, bool>,
    done: impl Fn(&Pod) -> bool,
) -> BTreeMap<String, Pod> {
    let stuck = |p: &Pod| {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        phase(p) == "Pending" && calico.get(&node) == Some(&false)
    };
    let done = |p: &Pod| done(p) || stuck(p);
    // One list per poll (all probe pods), not one get per pod.
    let look = || async {
        let lp = ListParams::default().labels("ecoboot.io/validate");
        let list = api.list(&lp).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(
            (list.items.into_iter())
                .filter_map(|p| Some((p.metadata.name.clone()?, p)))
                .filter(|(n, _)| names.contains(n))
                .collect::<BTreeMap<String, Pod>>(),
        )
    };
    let backoff = Backoff::poll(Duration::from_millis(300), PROBE_TIMEOUT);
    let got = retry(&backoff, |_| async {
        match look().await {
            Ok(seen) if seen.len() == names.len() && seen.values().all(&done) => Try::Done(seen),
            Ok(_) => Try::Again(String::new()),
            Err(e) => Try::Fail(e),
        }
    })
    .await;
    match got {
        Ok(seen) => seen,
        Err(_) => look().await.unwrap_or_default(),
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

fn ip(p: &Pod) -> Option<String> {
    p.status.as_ref().and_then(|s| s.pod_ip.clone())
}

/// Runs the probes on the registered nodes of `config` and removes them.
pub(super) async fn run(client: &kube::Client, config: &Config) -> Vec<Check> {
    let nodes: Vec<String> = config.nodes().map(|n| n.name.value.clone()).collect();
    let api: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let calico = calico(client).await;
    let out = match start(client, &api, &nodes).await {
        Ok(()) => probe(&api, &nodes, &calico).await,
        Err(e) => vec![Check::fail(
            "pod network",
            NAMESPACE,
            format!("cannot create the probe pods: {e}"),
        )],
    };
    cleanup(&api).await;
    out
}

async fn start(client: &kube::Client, api: &Api<Pod>, nodes: &[String]) -> Result<(), kube::Error> {
    cleanup(api).await;
    let ns: Namespace = serde_json::from_value(json!({"apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "ecoboot"}}}))
    .expect("a valid Namespace");
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
    {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(e),
    }
    for node in nodes {
        let server = pod(
            &name("srv", node),
            node,
            "server",
            &["netexec", "--http-port=8080"],
            None,
        );
        api.create(&PostParams::default(), &server).await?;
        let dns = pod(
            &name("dns", node),
            node,
            "dns",
            &[
                "connect",
                "kubernetes.default.svc.cluster.local:443",
                "--timeout=5s",
            ],
            None,
        );
        api.create(&PostParams::default(), &dns).await?;
    }
    Ok(())
}

async fn probe(api: &Api<Pod>, nodes: &[String], calico: &BTreeMap<String, bool>) -> Vec<Check> {
    let mut out = Vec::new();
    let servers: Vec<String> = nodes.iter().map(|n| name("srv", n)).collect();
    let up = wait(api, &servers, calico, |p| {
        phase(p) != "Pending" && ip(p).is_some()
    })
    .await;
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        let to = &nodes[(i + 1) % nodes.len()];
        let server = up.get(&name("srv", to));
        let Some(target) = server.and_then(ip) else {
            let why = server.map(why_not).unwrap_or_else(|| "not created".into());
            out.push(Check::fail(
                "pod network",
                format!("{node} → {to}"),
                format!(
                    "the probe server on {to} did not start ({why}); {}",
                    cause(calico, to)
                ),
            ));
            continue;
        };
        let cli = name("cli", node);
        let args = ["connect", &format!("{target}:8080"), "--timeout=5s"];
        if let Err(e) = api
            .create(
                &PostParams::default(),
                &pod(&cli, node, "client", &args, Some(&target)),
            )
            .await
        {
            out.push(Check::fail(
                "pod network",
                format!("{node} → {to}"),
                format!("cannot create the probe: {e}"),
            ));
            continue;
        }
        clients.push((cli, node.clone(), to.clone()));
    }
    let names: Vec<String> = clients.iter().map(|c| c.0.clone()).collect();
    let finished = |p: &Pod| matches!(phase(p), "Succeeded" | "Failed");
    let done = wait(api, &names, calico, finished).await;
    for (cli, node, to) in clients {
        let subject = format!("{node} → {to}");
        out.push(match done.get(&cli) {
            Some(p) if phase(p) == "Succeeded" => Check::pass("pod network", subject, "connected over the pod network"),
            Some(p) => {
                let mut why = vec![why_not(p)];
                why.extend([cause(calico, &node), cause(calico, &to)].into_iter().filter(|c| !c.is_empty()));
                if why.len() == 1 && phase(p) == "Failed" {
                    why.push("VXLAN (UDP 4789) between the nodes blocked? the cluster security group must allow all traffic between nodes".into());
                }
                Check::fail("pod network", subject, why.join("; "))
            }
            None => Check::fail("pod network", subject, "the probe pod vanished"),
        });
    }
    let dns: Vec<String> = nodes.iter().map(|n| name("dns", n)).collect();
    let done = wait(api, &dns, calico, finished).await;
    for node in nodes {
        out.push(match done.get(&name("dns", node)) {
            Some(p) if phase(p) == "Succeeded" => {
                Check::pass("dns", node, "kubernetes.default resolved and answered")
            }
            Some(p) => Check::fail(
                "dns",
                node,
                format!(
                    "{}; {}",
                    why_not(p),
                    match cause(calico, node) {
                        c if c.is_empty() =>
                            "is CoreDNS Ready (`kubectl -n kube-system get deploy coredns`)?"
                                .to_string(),
                        c => c,
                    }
                ),
            ),
            None => Check::fail("dns", node, "the probe pod vanished"),
        });
    }
    out
}

/// Deletes every probe pod (of any run); the namespace stays, empty.
async fn cleanup(api: &Api<Pod>) {
    let now = DeleteParams {
        grace_period_seconds: Some(0),
        ..Default::default()
    };
    if let Ok(list) = api
        .list(&ListParams::default().labels("ecoboot.io/validate"))
        .await
    {
        for p in list.items {
            if let Some(name) = p.metadata.name {
                let _ = api.delete(&name, &now).await;
            }
        }
    }
}
