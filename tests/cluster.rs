//! `init-master` and `join-workers` on the 14-node sshd fleet with simulated kubeadm/kubectl
//! (scripts/sim): generated kubeadm configs, a fresh in-memory token, half-joined and
//! half-initialised nodes.

mod common;

use common::fleet::Fleet;
use common::{ecoboot, run};

const NODES: usize = 14;

fn up(config: &std::path::Path, state: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    run(ecoboot(state)
        .arg("-c")
        .arg(config)
        .args(["up", "--from", "prepare-nodes", "--to", "join-workers"])
        .args(args))
}

fn kubeadm_calls(fleet: &Fleet, i: usize) -> usize {
    fleet
        .calls(i)
        .iter()
        .filter(|c| c.starts_with("kubeadm ") && !c.starts_with("kubeadm version"))
        .count()
}

fn everything_written(state: &std::path::Path, out: &str, err: &str) -> String {
    format!("{out}{err}{}", common::read_tree(state))
}

#[test]
fn init_and_join_14_nodes_then_rerun_calls_no_kubeadm() {
    let fleet = Fleet::start(NODES);
    let dir = tempfile::tempdir().unwrap();
    let config = fleet.config(dir.path());
    let state = dir.path().join("state");
    let (code, out, err) = up(&config, &state, &["--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let init = fleet
        .file(1, "/var/lib/ecoboot-sim/init-config.yaml")
        .expect("kubeadm init ran on the master");
    assert!(
        init.contains("kubernetesVersion: v1.36.2"),
        "version resolved on the node:\n{init}"
    );
    let docs: Vec<serde_json::Value> = init
        .split("\n---\n")
        .map(|d| serde_saphyr::from_str(d).expect("kubeadm config is YAML"))
        .collect();
    assert_eq!(
        docs[1]["apiServer"]["certSANs"][0], "127.0.1.1",
        "the address ecoboot uses is a certificate SAN"
    );
    assert!(
        docs[0]["nodeRegistration"]["kubeletExtraArgs"][0]["value"]
            .as_str()
            .unwrap()
            .starts_with("domain=control-plane,phase=0,role=control-plane"),
        "{init}"
    );
    assert_eq!(
        docs[0]["bootstrapTokens"][0]["ttl"], "15m0s",
        "init token lives 15 minutes"
    );
    assert!(init.contains("- addon/kube-proxy"));
    assert!(fleet.calls(1).iter().any(|c| c == "kubeadm init phase addon kube-proxy --config /etc/kubernetes/ecoboot/kubeadm-init.yaml"));
    let admin = state.join("sesacthon/admin.conf");
    assert!(
        std::fs::read_to_string(&admin)
            .unwrap()
            .contains("kind: Config")
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&admin).unwrap().permissions())
            & 0o777,
        0o600
    );
    for i in 2..=NODES {
        assert!(
            fleet.file(i, "/etc/kubernetes/kubelet.conf").is_some(),
            "node {i} joined"
        );
        assert_eq!(
            fleet
                .calls(i)
                .iter()
                .filter(|c| c.starts_with("kubeadm join"))
                .count(),
            1,
            "node {i} joined once"
        );
        assert!(
            fleet
                .file(i, "/etc/kubernetes/ecoboot/kubeadm-join.yaml")
                .is_none(),
            "join config (with the token) removed"
        );
    }
    let postgres = fleet
        .file(12, "/var/lib/ecoboot-sim/join-config.yaml")
        .unwrap();
    assert!(
        postgres.contains("infra-type=postgresql") && postgres.contains("key: domain"),
        "{postgres}"
    );
    let tokens = std::fs::read_dir(
        fleet
            .dir
            .path()
            .join("nodes/1/ov/var/upper/lib/ecoboot-sim/tokens"),
    )
    .unwrap()
    .count();
    assert_eq!(tokens, 0, "the bootstrap token was deleted after the stage");
    assert!(
        !common::has_token(&everything_written(&state, &out, &err)),
        "a bootstrap token leaked into output, logs or state"
    );

    let mine = dir.path().join("kubeconfig");
    let (code, printed, err) = run(ecoboot(&state)
        .arg("-c")
        .arg(&config)
        .args(["kubeconfig", "--file"])
        .arg(&mine));
    assert_eq!(code, 0, "{err}");
    assert_eq!(printed.trim(), mine.to_str().unwrap());
    let text = std::fs::read_to_string(&mine).unwrap();
    assert!(
        text.contains("server: https://127.0.1.1:6443"),
        "public endpoint of the control plane:\n{text}"
    );
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&mine).unwrap().permissions())
            & 0o777,
        0o600
    );

    let before: Vec<usize> = (1..=NODES).map(|i| kubeadm_calls(&fleet, i)).collect();
    let (code, out, err) = up(&config, &state, &["--output", "json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.matches("\"event\":\"stage_skipped\"").count(),
        4,
        "{out}"
    );
    let after: Vec<usize> = (1..=NODES).map(|i| kubeadm_calls(&fleet, i)).collect();
    assert_eq!(before, after, "no kubeadm call on a rerun");
}

#[test]
fn a_failed_join_names_the_node_and_the_rerun_resets_and_joins_only_it() {
    let fleet = Fleet::start(NODES);
    let dir = tempfile::tempdir().unwrap();
    let config = fleet.config(dir.path());
    let state = dir.path().join("state");
    fleet.ssh(
        7,
        "mkdir -p /var/lib/ecoboot-sim && touch /var/lib/ecoboot-sim/fail-join",
    ); // k8s-api-image
    let (code, _, err) = up(&config, &state, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("1 node(s) did not join")
            && err.contains("k8s-api-image: step `kubeadm join` failed"),
        "{err}"
    );
    fleet.ssh(7, "rm /var/lib/ecoboot-sim/fail-join");
    let before: Vec<usize> = (1..=NODES).map(|i| kubeadm_calls(&fleet, i)).collect();
    let (code, _, err) = up(&config, &state, &[]);
    assert_eq!(code, 0, "{err}");
    for i in 2..=NODES {
        let new: Vec<String> = fleet
            .calls(i)
            .into_iter()
            .filter(|c| c.starts_with("kubeadm "))
            .skip(before[i - 1])
            .collect();
        if i == 7 {
            assert_eq!(
                new,
                [
                    "kubeadm reset -f",
                    "kubeadm join --config /etc/kubernetes/ecoboot/kubeadm-join.yaml"
                ],
                "half-joined node reset, then joined"
            );
        } else {
            assert!(new.is_empty(), "node {i} untouched: {new:?}");
        }
    }
}

#[test]
fn a_half_initialised_master_is_reported_and_reset_only_when_asked() {
    let fleet = Fleet::start(NODES);
    let dir = tempfile::tempdir().unwrap();
    let config = fleet.config(dir.path());
    let state = dir.path().join("state");
    fleet.ssh(
        1,
        "mkdir -p /var/lib/ecoboot-sim && touch /var/lib/ecoboot-sim/fail-init",
    );
    let (code, _, err) = up(&config, &state, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("kubeadm init failed"), "{err}");
    fleet.ssh(1, "rm /var/lib/ecoboot-sim/fail-init");
    let (code, _, err) = up(&config, &state, &[]);
    assert_eq!(code, 1);
    assert!(
        err.contains("half-initialised control plane") && err.contains("kubeadm reset -f"),
        "{err}"
    );
    let (code, _, err) = up(&config, &state, &["--force-reset"]);
    assert_eq!(code, 0, "{err}");
    assert!(fleet.calls(1).iter().any(|c| c == "kubeadm reset -f"));
    assert!(fleet.file(1, "/etc/kubernetes/admin.conf").is_some());
}

#[test]
fn an_init_killed_midway_is_reset_and_repeated_without_asking() {
    let fleet = Fleet::start(NODES);
    let dir = tempfile::tempdir().unwrap();
    let config = fleet.config(dir.path());
    let state = dir.path().join("state");
    let (code, _, err) = run(ecoboot(&state)
        .arg("-c")
        .arg(&config)
        .args(["stage", "prepare-nodes"]));
    assert_eq!(code, 0, "{err}");
    // What a run killed during `kubeadm init` leaves: ecoboot's start marker, certificates and an
    // admin.conf, but no finished init and an API server that never came up.
    fleet.ssh(
        1,
        "mkdir -p /etc/kubernetes/pki /etc/kubernetes/ecoboot && touch /etc/kubernetes/ecoboot/init-started /etc/kubernetes/pki/ca.crt && echo partial > /etc/kubernetes/admin.conf",
    );
    let (code, _, err) = up(&config, &state, &[]);
    assert_eq!(code, 0, "{err}");
    let calls = fleet.calls(1);
    let reset = calls
        .iter()
        .position(|c| c == "kubeadm reset -f")
        .expect("reset");
    let init = calls
        .iter()
        .position(|c| c.starts_with("kubeadm init --config"))
        .expect("init");
    assert!(reset < init, "reset first, then init: {calls:?}");
    assert!(fleet.file(1, "/etc/kubernetes/ecoboot/init-done").is_some());
}
