//! The SSH engine and `prepare-nodes` on a fleet of 14 real sshd nodes (scripts/fleet.sh), each
//! with its own address, host key and private filesystem; node tools are simulated.

mod common;

use common::fleet::Fleet;
use common::{ecoboot, run};

const NODES: usize = 14;

fn stage(
    fleet_config: &std::path::Path,
    state: &std::path::Path,
    extra: &[&str],
) -> (i32, String, String) {
    run(ecoboot(state)
        .arg("-c")
        .arg(fleet_config)
        .args(["stage", "prepare-nodes"])
        .args(extra))
}

#[test]
fn prepare_nodes_on_14_nodes_then_a_rerun_changes_nothing() {
    let fleet = Fleet::start(NODES);
    let dir = tempfile::tempdir().unwrap();
    let config = fleet.config(dir.path());
    let state = dir.path().join("state");
    // Preflight first: a cgroup v1 node and a node on Ubuntu's containerd 1.7 are both named,
    // and nothing changes anywhere.
    fleet.ssh(
        3,
        "mkdir -p /var/lib/ecoboot-sim && touch /var/lib/ecoboot-sim/cgroup-v1",
    );
    fleet.ssh(
        7,
        "mkdir -p /var/lib/ecoboot-sim/pkgs && echo 1.7.24-0ubuntu1~24.04.2 > /var/lib/ecoboot-sim/pkgs/containerd",
    );
    let (code, _, err) = stage(&config, &state, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("preflight: 2 problem(s)"), "{err}");
    assert!(
        err.contains(
            "k8s-api-my: cgroup v1 (/sys/fs/cgroup is tmpfs): kubelet 1.36 needs cgroup v2"
        ),
        "{err}"
    );
    assert!(
        err.contains("runs containerd 1.7.24; Kubernetes 1.36 needs containerd 2.0 or newer"),
        "{err}"
    );
    assert!(
        (1..=NODES).all(|i| fleet.mutating_calls(i).is_empty()),
        "the preflight changes nothing"
    );
    fleet.ssh(3, "rm /var/lib/ecoboot-sim/cgroup-v1");
    fleet.ssh(7, "rm /var/lib/ecoboot-sim/pkgs/containerd");
    let (code, plan, err) = run(ecoboot(&state).arg("-c").arg(&config).args([
        "plan",
        "--from",
        "prepare-nodes",
        "--to",
        "prepare-nodes",
        "--detail",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(
        plan.contains(
            "[prepare-nodes] k8s-redis: would run 13 step(s): disable swap, load kernel modules"
        ),
        "{plan}"
    );
    assert!(
        (1..=NODES).all(|i| fleet.mutating_calls(i).is_empty()),
        "plan changes nothing on the nodes"
    );
    let (code, out, err) = stage(&config, &state, &[]);
    assert_eq!(code, 0, "{out}{err}");
    for i in 1..=NODES {
        assert_eq!(
            fleet
                .file(i, "/var/lib/ecoboot-sim/pkgs/kubelet")
                .as_deref(),
            Some("1.36.2-1.1\n"),
            "node {i}"
        );
        assert!(
            fleet
                .file(i, "/var/lib/ecoboot-sim/holds/kubeadm")
                .is_some(),
            "node {i} holds kubeadm"
        );
        let toml = fleet.file(i, "/etc/containerd/config.toml").unwrap();
        assert!(toml.starts_with("# Written by ecoboot") && toml.contains("version = 3"));
        assert!(toml.contains("SystemdCgroup = true") && toml.contains("pause:3.10.2"));
        assert!(
            fleet
                .file(i, "/usr/local/bin/containerd")
                .is_some_and(|b| b.contains("v2.3.4")),
            "node {i}: containerd 2.3.4 from the release tarball"
        );
        assert!(
            fleet
                .file(i, "/usr/local/bin/runc")
                .is_some_and(|b| b.contains("1.4.3")),
            "node {i}: runc 1.4.3"
        );
        assert_eq!(
            fleet.file(i, "/etc/modules-load.d/k8s.conf").as_deref(),
            Some("overlay\nbr_netfilter\n")
        );
        assert!(
            fleet.file(i, "/var/lib/ecoboot-sim/swap").is_none(),
            "swap off on node {i}"
        );
        assert!(
            fleet
                .file(i, "/var/lib/ecoboot-sim/units/kubelet.enabled")
                .is_some()
        );
        assert_eq!(
            fleet
                .mutating_calls(i)
                .iter()
                .filter(|c| c.starts_with("systemctl restart containerd"))
                .count(),
            1
        );
    }
    let before: Vec<usize> = (1..=NODES).map(|i| fleet.mutating_calls(i).len()).collect();
    let (code, out, err) = stage(&config, &state, &["--output", "json"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\"event\":\"stage_skipped\""), "{out}");
    let after: Vec<usize> = (1..=NODES).map(|i| fleet.mutating_calls(i).len()).collect();
    assert_eq!(
        before, after,
        "a rerun on finished nodes executes no mutating command"
    );
    let logs = std::fs::read_dir(state.join("sesacthon/logs/nodes"))
        .unwrap()
        .count();
    assert_eq!(logs, NODES, "one command log per node");
    assert!(
        std::fs::read_to_string(state.join("sesacthon/known_hosts"))
            .unwrap()
            .lines()
            .count()
            >= NODES
    );
}

#[test]
fn a_node_down_fails_naming_it_while_the_others_finish_and_rerun_touches_only_it() {
    let fleet = Fleet::start(NODES);
    let dir = tempfile::tempdir().unwrap();
    let config = fleet.config(dir.path());
    let state = dir.path().join("state");
    fleet.down(5); // k8s-api-character
    let (code, _, err) = stage(&config, &state, &[]);
    assert_eq!(code, 1);
    assert!(err.contains("1 of 14 node(s) did not finish"), "{err}");
    assert!(
        err.contains("k8s-api-character: step `connect` failed"),
        "{err}"
    );
    for i in (1..=NODES).filter(|i| *i != 5) {
        assert!(
            fleet.file(i, "/var/lib/ecoboot-sim/pkgs/kubeadm").is_some(),
            "node {i} finished"
        );
    }
    fleet.up(5);
    let before: Vec<usize> = (1..=NODES).map(|i| fleet.mutating_calls(i).len()).collect();
    let (code, out, err) = stage(&config, &state, &[]);
    assert_eq!(code, 0, "{out}{err}");
    for i in 1..=NODES {
        let grew = fleet.mutating_calls(i).len() > before[i - 1];
        assert_eq!(
            grew,
            i == 5,
            "node {i}: only the node that was down is touched"
        );
    }
}

#[test]
fn a_changed_host_key_is_refused_with_both_fingerprints() {
    let fleet = Fleet::start(NODES);
    let dir = tempfile::tempdir().unwrap();
    let config = fleet.config(dir.path());
    let state = dir.path().join("state");
    terminal_up_shows_a_compact_plan_and_asks(&config, &state);
    let (code, out, err) = stage(&config, &state, &[]);
    assert_eq!(code, 0, "{out}{err}");
    let known = std::fs::read_to_string(state.join("sesacthon/known_hosts")).unwrap();
    fleet.rekey(2); // k8s-api-auth
    let (code, _, err) = stage(&config, &state, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("HOST KEY CHANGED"), "{err}");
    assert!(err.contains("k8s-api-auth"), "{err}");
    assert!(
        err.matches("SHA256:").count() >= 2,
        "both fingerprints: {err}"
    );
    assert_eq!(
        std::fs::read_to_string(state.join("sesacthon/known_hosts")).unwrap(),
        known,
        "known_hosts is never rewritten"
    );
    // A deliberate replacement: forget the node's key, and the next contact pins the new one.
    let (code, out, err) = run(ecoboot(&state)
        .arg("-c")
        .arg(&config)
        .args(["forget-host", "k8s-api-auth"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("forgot the host key of k8s-api-auth"), "{out}");
    let (code, _, err) = stage(&config, &state, &[]);
    assert_eq!(code, 0, "{err}");
    let after = std::fs::read_to_string(state.join("sesacthon/known_hosts")).unwrap();
    assert_ne!(after, known, "the new key is pinned");
    assert_eq!(
        after.lines().count(),
        known.lines().count(),
        "one entry per host"
    );
}

#[test]
fn secrets_in_step_output_never_reach_logs_or_output() {
    let fleet = Fleet::start(NODES);
    let dir = tempfile::tempdir().unwrap();
    let config = fleet.config(dir.path());
    let state = dir.path().join("state");
    let books = dir.path().join("playbooks");
    std::fs::create_dir_all(&books).unwrap();
    let token = "k3x9qa.8f7e6d5c4b3a2910";
    std::fs::write(
        books.join("prepare-nodes.yaml"),
        format!("name: prepare-nodes\nsteps:\n  - name: join with a token\n    unless: test -e /etc/never\n    run: |\n      echo \"kubeadm join --token {token}\"\n      echo \"bad token {token}\" >&2\n      exit 3\n"),
    )
    .unwrap();
    let (code, out, err) = stage(
        &config,
        &state,
        &["--playbooks", books.to_str().unwrap(), "--output", "json"],
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("step `join with a token` failed (exit 3)"),
        "{err}"
    );
    assert!(err.contains("bad token [REDACTED]"), "{err}");
    let mut written = out + &err;
    for entry in walk(&state) {
        written.push_str(&String::from_utf8_lossy(&std::fs::read(entry).unwrap()));
    }
    assert!(written.contains("[REDACTED]"));
    assert!(!written.contains(token), "the token leaked");
}

#[test]
fn a_malformed_playbook_is_a_diagnostic_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_with_key(dir.path());
    let books = dir.path().join("playbooks");
    std::fs::create_dir_all(&books).unwrap();
    std::fs::write(
        books.join("prepare-nodes.yaml"),
        "name: prepare-nodes\nsteps:\n  - name: a\n    run: true\n    retry: 3\n",
    )
    .unwrap();
    let (code, _, err) = run(ecoboot(&dir.path().join("state"))
        .arg("-c")
        .arg(&config)
        .args([
            "--playbooks",
            books.to_str().unwrap(),
            "stage",
            "prepare-nodes",
        ]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("prepare-nodes.yaml:5:"), "{err}");
    assert!(err.contains("retry"), "{err}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path))
        } else {
            out.push(path)
        }
    }
    out
}

/// `up` on a real pseudo-terminal (util-linux `script`): the plan of 14 fresh nodes is grouped
/// into a few lines before the question, and answering no changes nothing (exit 2).
fn terminal_up_shows_a_compact_plan_and_asks(config: &std::path::Path, state: &std::path::Path) {
    let line = format!(
        "{} -c {} up --from prepare-nodes --to prepare-nodes",
        env!("CARGO_BIN_EXE_ecoboot"),
        config.display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("ECOBOOT_STATE_DIR", state)
        .env("ECOBOOT_TODAY", common::TODAY)
        .env_remove("ECOBOOT_YES")
        .env_remove("CI")
        .env_remove("GITHUB_ACTIONS")
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            // The terminal keeps the answer until the question reads it.
            c.stdin.take().unwrap().write_all(b"n\n")?;
            c.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let plan_lines = text.matches("~ [prepare-nodes]").count();
    assert!(
        (1..=40).contains(&plan_lines),
        "{plan_lines} plan lines on the terminal"
    );
    let plan: Vec<&str> = text
        .split('\n')
        .flat_map(|l| l.split("\u{1b}"))
        .filter(|l| l.contains("~ ["))
        .collect();
    assert!(
        text.contains(
            "14 nodes (k8s-api-auth, k8s-api-character, k8s-api-chat, …): run 13 step(s)"
        ),
        "{plan:?}"
    );
    assert!(text.contains("Apply these changes? [y/N]"), "{text}");
    assert!(text.contains("cancelled; nothing was changed"), "{text}");
    assert_eq!(out.status.code(), Some(2), "{text}");
}
