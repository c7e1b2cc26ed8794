//! `up`'s per-node pipelining (issue #31) on the sandbox: with EC2 slow to list the new
//! instances and one worker's package mirror slow, nodes are prepared while `instances` still
//! waits, the control plane is initialised and the other nodes join while that worker still
//! prepares, then it joins too; the output still reads stage by stage, and the journal keeps one
//! record per stage. Then a second cluster's pipelined run is killed with SIGKILL while the
//! control plane is initialised and the slow worker still prepares: the rerun converges with
//! one `kubeadm init`, 14 instances and every node joined once.

mod common;

use std::collections::BTreeMap;

use common::aws::{AwsSandbox, events};
use common::fleet::Fleet;
use common::kube::KubeApi;
use common::{ecoboot, run};

/// The fleet, AWS, API and config of one cluster, the slow node's apt slowed by `slow` s.
struct World {
    aws: AwsSandbox,
    _api: KubeApi,
    fleet: Fleet,
    config: std::path::PathBuf,
    state: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    fn start(slow: &str) -> World {
        let api = KubeApi::start();
        let aws = AwsSandbox::start();
        let fleet = Fleet::start_with(14, Some(&api.admin_conf));
        let dir = tempfile::tempdir().unwrap();
        let config = common::kube::config(&fleet, dir.path());
        let sim = fleet
            .dir
            .path()
            .join(format!("nodes/{SLOW}/ov/var/upper/lib/ecoboot-sim"));
        std::fs::create_dir_all(&sim).unwrap();
        std::fs::write(sim.join("slow-apt"), slow).unwrap();
        aws.faults(r#"{"idempotent_tokens": true, "describe_lag": 3}"#);
        World {
            aws,
            _api: api,
            fleet,
            config,
            state: dir.path().join("state"),
            _dir: dir,
        }
    }

    fn up(&self) -> std::process::Command {
        let mut cmd = ecoboot(&self.state);
        self.aws
            .env(&mut cmd)
            .env("ECOBOOT_NO_VALIDATE", "1")
            .arg("-c")
            .arg(&self.config)
            .args(["--output", "json", "up", "--to", "join-workers", "--yes"]);
        cmd
    }

    fn journal(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state.join("sesacthon/state.json"))
            .unwrap_or_else(|_| "{}".into());
        serde_json::from_str(&text).unwrap_or_default()
    }
}

/// The slow worker's fleet node (k8s-worker-ai).
const SLOW: usize = 10;

#[test]
fn up_prepares_initialises_and_joins_per_node_and_reports_stage_by_stage() {
    let w = World::start("4");
    let mut cmd = w.up();
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "{out}\n{err}");

    // Stage by stage: each stage's events form one block, in run order.
    let order = [
        "network",
        "iam",
        "instances",
        "load-balancer",
        "prepare-nodes",
        "init-master",
        "join-control-plane",
        "join-workers",
    ];
    let seen: Vec<usize> = (events(&out).iter())
        .filter_map(|e| e["stage"].as_str())
        .filter_map(|s| order.iter().position(|o| *o == s))
        .collect();
    assert!(seen.windows(2).all(|p| p[0] <= p[1]), "{seen:?}\n{out}");
    assert_eq!(*seen.last().unwrap(), order.len() - 1);

    // The journal says they overlapped.
    let journal = w.journal();
    let at = |stage: &str, field: &str| -> std::time::SystemTime {
        let r = &journal["stages"][stage];
        assert_eq!(r["status"], "done", "{stage}: {r}");
        humantime::parse_rfc3339(r[field].as_str().unwrap()).unwrap()
    };
    let times: BTreeMap<&str, _> = order
        .iter()
        .filter(|s| **s != "load-balancer" && **s != "join-control-plane")
        .map(|s| (*s, (at(s, "started"), at(s, "finished"))))
        .collect();
    let (instances, prepare) = (times["instances"], times["prepare-nodes"]);
    let (init, join) = (times["init-master"], times["join-workers"]);
    assert!(
        prepare.0 < instances.1,
        "nodes were prepared while instances waited: {times:?}"
    );
    assert!(
        init.1 < prepare.1,
        "the control plane was initialised while the slow worker prepared: {times:?}"
    );
    assert!(
        join.0 < prepare.1,
        "the joins began before every node was prepared: {times:?}"
    );

    // Every worker joined, the slow one too.
    for i in 2..=14 {
        assert!(
            w.fleet.file(i, "/etc/kubernetes/kubelet.conf").is_some(),
            "node {i} joined"
        );
    }
}

#[test]
fn a_pipelined_run_killed_mid_segment_converges_on_rerun_without_duplicates() {
    let w = World::start("6");
    let mut child = w
        .up()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // SIGKILL once the control plane is initialised while the slow worker still prepares.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let killed_mid = loop {
        let j = w.journal();
        let status = |s: &str| j["stages"][s]["status"].as_str().unwrap_or("").to_string();
        if status("init-master") == "done" && status("prepare-nodes") == "running" {
            child.kill().unwrap();
            child.wait().unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() || std::time::Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(
        killed_mid,
        "the run was killed with init-master done and prepare-nodes running"
    );
    let (code, out, err) = run(&mut w.up());
    assert_eq!(code, 0, "{out}\n{err}");
    let inits = (w.fleet.calls(1).iter())
        .filter(|c| c.starts_with("kubeadm init") && !c.contains("phase"))
        .count();
    assert_eq!(inits, 1, "one kubeadm init");
    assert_eq!(
        w.aws.live_instances("sesacthon").len(),
        14,
        "no instance twice"
    );
    for i in 2..=14 {
        let joins = (w.fleet.calls(i).iter())
            .filter(|c| c.starts_with("kubeadm join"))
            .count();
        assert!(joins >= 1, "node {i} joined");
        assert!(w.fleet.file(i, "/etc/kubernetes/kubelet.conf").is_some());
    }
    // A rerun changes nothing.
    let (code, out, _) = run(&mut w.up());
    assert_eq!(code, 0);
    assert_eq!(
        events(&out)
            .iter()
            .filter(|e| e["event"] == "stage_skipped")
            .count(),
        8,
        "{out}"
    );
}
