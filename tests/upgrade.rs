//! `ecoboot upgrade` on the 14-node fleet and the API double: the drift guard, a skipped minor,
//! the dry run, the runtime boundary, kill -9 during the control plane's `kubeadm upgrade apply`
//! and again mid-drain, a drain blocked by a PodDisruptionBudget, and the finished rolling
//! upgrade 1.36 → 1.37, checked against the
//! double's event log: no kubelet ever newer than the API server, never more than
//! `--max-unavailable` workers cordoned, every node drained once.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use common::fleet::Fleet;
use common::kube::KubeApi;
use common::{ecoboot, run};

const NODES: usize = 14;
const MAX_UNAVAILABLE: usize = 3;

fn eco(config: &Path, state: &Path, args: &[&str]) -> (i32, String, String) {
    run(ecoboot(state).arg("-c").arg(config).args(args))
}

/// `v1.37.2` → (37, 2).
fn version(v: &str) -> (u32, u32) {
    let mut parts = v.trim_start_matches("v1.").split('.');
    let minor = parts.next().unwrap().parse().unwrap();
    let patch = parts.next().unwrap_or("0").parse().unwrap_or(0);
    (minor, patch)
}

/// Replays the double's event log and checks the skew and availability rules at every instant.
fn check_invariants(api: &KubeApi) -> BTreeMap<String, u32> {
    let events = api.hook("GET", "/_double/events", "").unwrap();
    let mut server = version("v1.36.2");
    let mut cordoned: BTreeSet<String> = BTreeSet::new();
    let mut evictions: BTreeMap<String, u32> = BTreeMap::new();
    let mut kubelets: BTreeMap<String, (u32, u32)> = BTreeMap::new();
    for e in events.as_array().unwrap() {
        let node = e["node"].as_str().unwrap_or_default().to_string();
        match e["what"].as_str().unwrap() {
            "apiserver" => server = version(e["value"].as_str().unwrap()),
            "kubelet" => {
                kubelets.insert(node.clone(), version(e["value"].as_str().unwrap()));
            }
            "cordoned" if e["value"] == true => {
                cordoned.insert(node);
            }
            "cordoned" => {
                cordoned.remove(&node);
            }
            "evicted" => *evictions.entry(node).or_default() += 1,
            _ => {}
        }
        for (n, v) in &kubelets {
            assert!(
                *v <= server,
                "{n} ran kubelet {v:?} while the API server ran {server:?}"
            );
        }
        let workers = cordoned.iter().filter(|n| *n != "k8s-master").count();
        assert!(
            workers <= MAX_UNAVAILABLE,
            "{workers} workers cordoned at once: {cordoned:?}"
        );
    }
    evictions
}

/// `ecoboot` in the background (to be killed with -9 at a chosen point).
fn spawn(config: &Path, state: &Path, args: &[&str]) -> std::process::Child {
    ecoboot(state)
        .arg("-c")
        .arg(config)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Polls `ready` (up to 15 s), asserts it became true, then kills `child` with SIGKILL.
fn kill_when(mut child: std::process::Child, what: &str, ready: impl Fn() -> bool) {
    for _ in 0..300 {
        if ready() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(ready(), "{what}");
    child.kill().unwrap();
    let _ = child.wait();
}

fn create(api: &KubeApi, object: serde_json::Value) {
    api.hook(
        "POST",
        "/_double/create",
        &serde_json::json!({"object": object}).to_string(),
    );
}

#[test]
fn rolling_upgrade_guarded_resumable_and_within_the_skew_policy() {
    let api = KubeApi::start();
    if api.hook("GET", "/_double/events", "").is_none() {
        eprintln!("skipped: needs the API double's event log");
        return;
    }
    let fleet = Fleet::start_with(NODES, Some(&api.admin_conf));
    let dir = tempfile::tempdir().unwrap();
    let config = common::kube::config(&fleet, dir.path());
    let state = dir.path().join("state");
    let (code, _, err) = eco(
        &config,
        &state,
        &["up", "--from", "prepare-nodes", "--to", "label-nodes"],
    );
    assert_eq!(code, 0, "{err}");

    // Drift: a config that asks for another minor stops before any change, at the version line.
    let text = std::fs::read_to_string(&config).unwrap();
    let next = dir.path().join("next.yaml");
    std::fs::write(
        &next,
        text.replacen("version: \"1.36\"", "version: \"1.37\"", 1),
    )
    .unwrap();
    let before: Vec<usize> = (1..=NODES).map(|i| fleet.mutating_calls(i).len()).collect();
    for args in [&["plan"][..], &["up"], &["stage", "prepare-nodes"]] {
        let (code, _, err) = eco(&next, &state, args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("the cluster runs Kubernetes 1.36.2"), "{err}");
        assert!(err.contains("ecoboot upgrade --to 1.37"), "{err}");
        assert!(
            err.contains("version: \"1.37\""),
            "the span shows the line: {err}"
        );
    }
    let after: Vec<usize> = (1..=NODES).map(|i| fleet.mutating_calls(i).len()).collect();
    assert_eq!(before, after, "the guard changes nothing");

    // One minor at a time.
    let (code, _, err) = eco(&config, &state, &["upgrade", "--to", "1.38"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("upgrade 1.36.2 to 1.37 first"), "{err}");

    // The dry run shows the order: control plane alone, then batches of at most 3.
    let mu = MAX_UNAVAILABLE.to_string();
    let (code, out, err) = eco(
        &next,
        &state,
        &["upgrade", "--dry-run", "--max-unavailable", &mu],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("k8s-master: would 1. kubeadm upgrade apply v1.37"),
        "{out}"
    );
    assert!(
        out.contains("k8s-postgresql: would "),
        "infrastructure nodes alone: {out}"
    );

    // The runtime boundary: a node back on Ubuntu's containerd 1.7 keeps the cluster from moving
    // (Kubernetes 1.36+ needs containerd 2.x); the preflight names it and changes nothing.
    fleet.ssh(
        5,
        "mv /usr/local/bin/containerd /usr/local/bin/containerd.off && echo 1.7.24-0ubuntu1~24.04.2 > /var/lib/ecoboot-sim/pkgs/containerd",
    );
    let (code, _, err) = eco(&next, &state, &["upgrade", "--dry-run"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("k8s-api-character: runs containerd 1.7.24; Kubernetes 1.37 needs containerd 2.0 or newer"),
        "{err}"
    );
    fleet.ssh(
        5,
        "mv /usr/local/bin/containerd.off /usr/local/bin/containerd && rm /var/lib/ecoboot-sim/pkgs/containerd",
    );

    // kill -9 during the control plane's `kubeadm upgrade apply`.
    fleet.ssh(1, "echo 4 > /var/lib/ecoboot-sim/slow-upgrade");
    let child = spawn(&next, &state, &["upgrade", "--max-unavailable", &mu]);
    let calls = || {
        fleet
            .calls(1)
            .iter()
            .filter(|c| c.starts_with("kubeadm upgrade apply"))
            .count()
    };
    kill_when(child, "the upgrade reached kubeadm upgrade apply", || {
        calls() > 0
    });
    assert_eq!(calls(), 1);
    fleet.ssh(1, "rm /var/lib/ecoboot-sim/slow-upgrade");

    // A workload whose budget allows no disruption blocks the first worker's drain: the rerun
    // continues after the control plane, stops naming the pod and the budget.
    for (i, node) in ["k8s-api-auth", "k8s-api-auth", "k8s-api-my"]
        .iter()
        .enumerate()
    {
        create(
            &api,
            serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("web-{i}"), "namespace": "default", "labels": {"app": "web"}},
                "spec": {"nodeName": node, "containers": [{"name": "web", "image": "nginx"}]},
                "status": {"phase": "Running"}
            }),
        );
    }
    create(
        &api,
        serde_json::json!({
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"minAvailable": 3, "selector": {"matchLabels": {"app": "web"}}}
        }),
    );
    // kill -9 mid-drain: the first batch is cordoned and its evictions are being refused.
    let child = spawn(
        &next,
        &state,
        &[
            "upgrade",
            "--max-unavailable",
            &mu,
            "--drain-timeout",
            "120",
        ],
    );
    let cordoned =
        || {
            let events = api.hook("GET", "/_double/events", "").unwrap();
            events.as_array().unwrap().iter().any(|e| {
                e["what"] == "cordoned" && e["node"] == "k8s-api-auth" && e["value"] == true
            })
        };
    let refused_a_while = || {
        cordoned() && {
            std::thread::sleep(Duration::from_secs(3));
            true
        }
    };
    kill_when(child, "the first batch was cordoned", refused_a_while);
    let (code, _, err) = eco(
        &next,
        &state,
        &["upgrade", "--max-unavailable", &mu, "--drain-timeout", "4"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("pod default/web-0: PodDisruptionBudget default/web allows no disruption"),
        "{err}"
    );
    assert!(
        err.contains("draining k8s-api-auth did not finish"),
        "{err}"
    );

    // Relaxed budget; kill -9 between batches (once the first batch is back at 1.37 and
    // uncordoned); the rerun finishes; no node is drained twice.
    api.hook(
        "POST",
        "/_double/edit",
        r#"{"kind":"PodDisruptionBudget","name":"web","namespace":"default","merge":{"spec":{"minAvailable":0}}}"#,
    );
    let child = spawn(&next, &state, &["upgrade", "--max-unavailable", &mu]);
    let first_batch_done = || {
        let events = api.hook("GET", "/_double/events", "").unwrap();
        let events = events.as_array().unwrap();
        ["k8s-api-auth", "k8s-api-my"].iter().all(|n| {
            events
                .iter()
                .any(|e| e["what"] == "kubelet" && e["node"] == *n && e["value"] == "v1.37.2")
        })
    };
    kill_when(child, "the first batch was upgraded", first_batch_done);
    let (code, out, err) = eco(
        &next,
        &state,
        &["--output", "json", "upgrade", "--max-unavailable", &mu],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"event\":\"stage_done\""), "{out}");
    let evictions = check_invariants(&api);
    assert_eq!(evictions.get("k8s-api-auth"), Some(&2), "{evictions:?}");
    assert_eq!(evictions.get("k8s-api-my"), Some(&1), "{evictions:?}");
    let journal: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("sesacthon/state.json")).unwrap())
            .unwrap();
    let record = &journal["outputs"]["upgrade"];
    assert_eq!(record["to"], "1.37.2");
    for (node, phase) in record["nodes"].as_object().unwrap() {
        assert_eq!(phase, "done", "{node}");
        assert_eq!(record["drains"][node], 1, "{node} drained once: {record}");
    }
    for node in api.objects("Node").unwrap() {
        assert_eq!(
            node["status"]["nodeInfo"]["kubeletVersion"], "v1.37.2",
            "{node}"
        );
        assert_ne!(node["spec"]["unschedulable"], true, "{node}");
    }
    // The same upgrade again is nothing to do.
    let (code, out, err) = eco(&next, &state, &["upgrade"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("nothing to do"), "{out}");
    // The upgraded cluster and the updated config agree: nothing left for prepare-nodes.
    let (code, out, err) = eco(
        &next,
        &state,
        &["plan", "--from", "prepare-nodes", "--to", "prepare-nodes"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done already"), "{out}");

    // A node back on Ubuntu's containerd 1.7: prepare-nodes' preflight names it and changes
    // nothing; `migrate-runtime` drains it alone and brings it to the pinned containerd 2.x.
    fleet.ssh(
        5,
        "mv /usr/local/bin/containerd /usr/local/bin/containerd.off && echo 1.7.24-0ubuntu1~24.04.2 > /var/lib/ecoboot-sim/pkgs/containerd",
    );
    let (code, _, err) = eco(
        &next,
        &state,
        &["plan", "--from", "prepare-nodes", "--to", "prepare-nodes"],
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("k8s-api-character: runs containerd 1.7.24"),
        "{err}"
    );
    assert!(err.contains("ecoboot migrate-runtime"), "{err}");
    let (code, out, err) = eco(&next, &state, &["migrate-runtime", "--dry-run"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("k8s-api-character: would 1. cordon and drain"),
        "{out}"
    );
    assert!(
        !out.contains("k8s-api-auth: would"),
        "only the node on containerd 1.x: {out}"
    );
    let (code, _, err) = eco(&next, &state, &["migrate-runtime"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        fleet
            .file(5, "/usr/local/bin/containerd")
            .is_some_and(|b| b.contains("v2.3.4")),
        "containerd 2.3.4 on the migrated node"
    );
    assert!(
        fleet
            .file(5, "/var/lib/ecoboot-sim/pkgs/containerd")
            .is_none()
    );
    check_invariants(&api);
    let (code, out, err) = eco(
        &next,
        &state,
        &["plan", "--from", "prepare-nodes", "--to", "prepare-nodes"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("done already"), "{out}");
    rolling_reboot_of_exactly_the_nodes_that_need_it(&api, &fleet, &next, &state);
}

/// #29: unattended upgrades are configured on every node; two nodes (one of them
/// infrastructure) say they need a reboot: `status` lists them, `reboot --only-needed`
/// reboots exactly those, each drained and alone, and they come back Ready with a new boot.
fn rolling_reboot_of_exactly_the_nodes_that_need_it(
    api: &KubeApi,
    fleet: &Fleet,
    config: &Path,
    state: &Path,
) {
    let conf = fleet
        .file(3, "/etc/apt/apt.conf.d/52ecoboot-unattended-upgrades")
        .unwrap();
    assert!(
        conf.contains("-security") && conf.contains("Automatic-Reboot \"false\""),
        "{conf}"
    );
    assert!(
        conf.contains("\"kubelet\""),
        "Kubernetes packages move only with `ecoboot upgrade`"
    );
    let boot = |i: usize| {
        fleet
            .file(i, "/var/lib/ecoboot-sim/boots")
            .map_or(0, |b| b.lines().count())
    };
    let before: Vec<usize> = (1..=NODES).map(boot).collect();
    for i in [4, 12] {
        fleet.ssh(i, "touch /var/run/reboot-required");
    }
    let (code, out, err) = eco(config, state, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("REBOOT REQUIRED (2): k8s-api-scan, k8s-postgresql"),
        "{out}"
    );
    let (code, out, err) = eco(
        config,
        state,
        &[
            "reboot",
            "--only-needed",
            "--dry-run",
            "--max-unavailable",
            "3",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("k8s-api-scan: would 2. cordon and drain, reboot"),
        "{out}"
    );
    assert!(
        out.contains("k8s-postgresql: would 1. cordon and drain, reboot"),
        "infrastructure alone: {out}"
    );
    assert!(!out.contains("k8s-api-auth: would"), "{out}");
    let (code, out, err) = eco(
        config,
        state,
        &["reboot", "--only-needed", "--max-unavailable", "3"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let after: Vec<usize> = (1..=NODES).map(boot).collect();
    for i in 1..=NODES {
        let rebooted = after[i - 1] - before[i - 1];
        assert_eq!(
            rebooted,
            usize::from(i == 4 || i == 12),
            "node {i} rebooted {rebooted} time(s)"
        );
    }
    fleet.ssh(4, "! test -e /var/run/reboot-required");
    check_invariants(api);
    let (code, out, _) = eco(config, state, &["reboot", "--only-needed", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");
}
