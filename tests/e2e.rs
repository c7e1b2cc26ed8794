//! The whole pipeline, all 12 stages (one control plane: load-balancer and join-control-plane have nothing to do), on the sandbox parts: moto behind the AWS fault proxy (with
//! AWS-like idempotent ClientTokens), 14 real sshd nodes with simulators, and the API double.
//! kill -9 at 11 points spread over every stage with a rerun after each; convergence to exactly
//! one cluster; an idempotent rerun; a lost state directory; a vanished node; a scan of every
//! byte ecoboot wrote for secrets; GitHub Actions output; `down`. From join-workers on, the
//! crash loop keeps its state in S3 (moto): the local journal is uploaded, each kill leaves a
//! remote lock removed with `unlock --force`, and with the local directory lost the journal and
//! the pinned host keys come back from S3 (a changed host key is refused, `forget-host` frees it).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use common::aws::{AwsSandbox, aws_calls, events};
use common::fleet::{Fleet, console_fingerprints, faults_with_console};
use common::kube::KubeApi;
use common::{ecoboot, run};

const NODES: usize = 14;

/// Where the second half of the crash loop keeps its state.
const S3_STATE: &str = "s3://ecoboot-e2e-state/platform";

struct World {
    aws: AwsSandbox,
    api: KubeApi,
    fleet: Fleet,
    config: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
    /// Everything ecoboot printed, for the secret scan.
    printed: String,
    /// The S3 state URL while the world runs on the S3 backend.
    s3: Option<&'static str>,
}

impl World {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = ecoboot(&self.state);
        self.aws.env(&mut cmd);
        // `validate` after each completed `up` is covered by tests/deployer.rs; the dozens of
        // kill-and-resume runs here skip it to keep the suite fast.
        cmd.env("ECOBOOT_NO_VALIDATE", "1");
        if let Some(url) = self.s3 {
            cmd.env("ECOBOOT_STATE", url);
        }
        cmd.arg("-c").arg(&self.config).args(args);
        cmd
    }

    /// On the S3 backend, removes a lock a killed run left, as an operator would: the id from
    /// `state show`, then `unlock --force ID`. Returns whether there was one.
    fn unlock_after_kill(&mut self) -> bool {
        if self.s3.is_none() {
            return false;
        }
        let (code, show, err) = self.run(&["state", "show"]);
        assert_eq!(code, 0, "{err}");
        let Some(id) = show
            .lines()
            .find_map(|l| l.strip_prefix("lock: "))
            .filter(|l| l.contains(" held by "))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string)
        else {
            return false;
        };
        let (code, out, err) = self.run(&["unlock", "--force", &id]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains(&format!("removed lock {id}")), "{out}");
        true
    }

    fn run(&mut self, args: &[&str]) -> (i32, String, String) {
        let (code, out, err) = run(&mut self.cmd(args));
        self.printed.push_str(&out);
        self.printed.push_str(&err);
        (code, out, err)
    }

    fn api_writes(&self) -> Option<u64> {
        self.api.stats().map(|s| {
            ["creates", "updates", "deletes", "applies_changed"]
                .iter()
                .map(|k| s[k].as_u64().unwrap())
                .sum()
        })
    }

    fn ssh_changes(&self) -> usize {
        (1..=NODES)
            .map(|i| self.fleet.mutating_calls(i).len())
            .sum()
    }
}

/// Where a run is killed: at the first event matching `stage`/`event`/`message`, after `delay`.
struct KillPoint {
    stage: &'static str,
    event: &'static str,
    message: &'static str,
    delay_ms: u64,
}

const KILL_POINTS: [KillPoint; 11] = [
    KillPoint {
        stage: "network",
        event: "stage_started",
        message: "",
        delay_ms: 300,
    },
    KillPoint {
        stage: "iam",
        event: "stage_started",
        message: "",
        delay_ms: 150,
    },
    KillPoint {
        stage: "instances",
        event: "stage_started",
        message: "",
        delay_ms: 900,
    },
    KillPoint {
        stage: "prepare-nodes",
        event: "stage_started",
        message: "",
        delay_ms: 1500,
    },
    KillPoint {
        stage: "init-master",
        event: "progress",
        message: "kubeadm init",
        delay_ms: 50,
    },
    KillPoint {
        stage: "join-workers",
        event: "progress",
        message: "kubeadm join",
        delay_ms: 100,
    },
    KillPoint {
        stage: "install-cni",
        event: "progress",
        message: "applying",
        delay_ms: 200,
    },
    KillPoint {
        stage: "label-nodes",
        event: "stage_started",
        message: "",
        delay_ms: 400,
    },
    KillPoint {
        stage: "install-argocd",
        event: "progress",
        message: "applying",
        delay_ms: 50,
    },
    KillPoint {
        stage: "install-argocd",
        event: "progress",
        message: "waiting",
        delay_ms: 0,
    },
    KillPoint {
        stage: "root-app",
        event: "stage_started",
        message: "",
        delay_ms: 600,
    },
];

type Events = std::io::Lines<BufReader<ChildStdout>>;

/// Starts `up --output json` and reads its events until one matches `point` (an empty stage
/// matches any), then waits `delay_ms`. Returns the running child, the rest of its events (None
/// if it finished first) and the stage it was in.
fn up_until(w: &mut World, point: &KillPoint) -> (Child, Option<Events>, String) {
    // Stage by stage, so each kill lands inside its stage (tests/pipeline.rs kills a pipelined
    // run).
    let mut child = w
        .cmd(&["--output", "json", "up", "--no-pipeline"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut current = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        w.printed.push_str(&line);
        let Ok(e) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if e["event"] == "stage_started" {
            current = e["stage"].as_str().unwrap_or_default().to_string();
        }
        let hit = e["event"] == point.event
            && (point.stage.is_empty() || e["stage"] == point.stage)
            && e["message"].as_str().unwrap_or("").contains(point.message);
        if hit {
            std::thread::sleep(Duration::from_millis(point.delay_ms));
            return (child, Some(lines), current);
        }
    }
    (child, None, current)
}

/// Reads the rest of a run's events and waits for its exit code.
fn finish(w: &mut World, mut child: Child, rest: Option<Events>) -> (i32, String) {
    let mut out = String::new();
    for line in rest.into_iter().flatten() {
        out.push_str(&line.unwrap());
        out.push('\n');
    }
    w.printed.push_str(&out);
    (child.wait().unwrap().code().unwrap_or(-1), out)
}

/// Runs `up`, kills it with SIGKILL at `point`; returns what happened.
fn up_killed_at(w: &mut World, point: &KillPoint) -> String {
    let (mut child, rest, stage) = up_until(w, point);
    let outcome = match rest {
        Some(_) => {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            format!("killed during {stage}")
        }
        None => format!(
            "finished before the kill point (exit {:?})",
            child.wait().unwrap().code()
        ),
    };
    let state = std::fs::read_to_string(w.state.join("sesacthon/state.json")).unwrap_or_default();
    if !state.is_empty() {
        let parsed: Result<serde_json::Value, _> = serde_json::from_str(&state);
        assert!(
            parsed.is_ok(),
            "state file valid after the kill at {}",
            point.stage
        );
    }
    outcome
}

/// Moves every local file the config names (SSH key, public key, pinned manifests) to paths
/// full of shell syntax, adds tag values with unicode and punctuation AWS allows, and returns
/// the canary file any executed path would create. These are the hostile values validation
/// accepts, all in one config: the rest of the test is the proof that they stay data.
fn hostile_local_paths(config: &Path, dir: &Path) -> PathBuf {
    let canary = std::env::temp_dir().join(format!("ecoboot-canary-{}", std::process::id()));
    let c = canary.display();
    let hostile = dir.join(format!("x $(touch {c}) `touch {c}` ';touch {c};' \"q\" -V"));
    std::fs::create_dir_all(&hostile).unwrap();
    let mut text = std::fs::read_to_string(config).unwrap();
    let mut moved = Vec::new();
    for key in ["identityFile:", "publicKeyPath:", "path:"] {
        for line in text.lines().filter(|l| l.trim_start().starts_with(key)) {
            let value = line.trim_start()[key.len()..].trim();
            if !Path::new(value).is_absolute() || !Path::new(value).is_file() {
                continue;
            }
            moved.push((line.to_string(), key, value.to_string()));
        }
    }
    assert!(
        moved.len() >= 4,
        "key, public key and two manifests: {moved:?}"
    );
    for (line, key, value) in moved {
        let from = Path::new(&value);
        let to = hostile.join(from.file_name().unwrap());
        std::fs::copy(from, &to).unwrap();
        if key == "identityFile:" {
            std::fs::set_permissions(&to, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        let indent = &line[..line.len() - line.trim_start().len()];
        let quoted = serde_json::to_string(to.to_str().unwrap()).unwrap();
        text = text.replace(&line, &format!("{indent}{key} {quoted}"));
    }
    text = text.replace(
        "      Team: Backend",
        "      Team: \"Ωmega naïve :/=+-@ . _ 한글\"",
    );
    std::fs::write(config, text).unwrap();
    canary
}

fn assert_one_cluster(w: &World) {
    let inv = w.aws.inventory("sesacthon");
    let live = w.aws.live_instances("sesacthon");
    assert_eq!(live.len(), NODES, "exactly 14 instances: {live:?}");
    let mut nodes: Vec<&str> = live.iter().filter_map(|i| i["node"].as_str()).collect();
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), NODES, "one instance per node");
    for (what, n) in [
        ("vpcs", 1),
        ("subnets", 3),
        ("internet_gateways", 1),
        ("key_pairs", 1),
        ("roles", 1),
        ("instance_profiles", 1),
    ] {
        assert_eq!(inv[what], n, "{what}: {inv}");
    }
    for i in 1..=NODES {
        assert!(
            w.fleet.file(i, "/etc/kubernetes/kubelet.conf").is_some(),
            "node {i} joined"
        );
        let joins = w
            .fleet
            .calls(i)
            .iter()
            .filter(|c| c.starts_with("kubeadm join"))
            .count();
        let resets = w
            .fleet
            .calls(i)
            .iter()
            .filter(|c| c.starts_with("kubeadm reset"))
            .count();
        assert!(
            i == 1 || joins == resets + 1,
            "node {i}: {joins} joins, {resets} resets"
        );
    }
    if let Some(nodes) = w.api.objects("Node") {
        assert_eq!(nodes.len(), NODES, "14 Node objects");
        let deployments = w.api.objects("Deployment").unwrap();
        let argocd = deployments
            .iter()
            .filter(|d| d["metadata"]["namespace"] == "argocd")
            .count();
        assert_eq!(argocd, 6, "one ArgoCD install");
        assert_eq!(
            w.api.objects("Application").unwrap().len(),
            9,
            "root app + 8 children"
        );
    }
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(w.state.join("sesacthon/state.json")).unwrap(),
    )
    .unwrap();
    for (id, record) in state["stages"].as_object().unwrap() {
        assert_eq!(record["status"], "done", "{id}");
    }
}

/// Every file under the state dir except the two kubeconfigs (admin credentials by design, 0600).
fn state_bytes(state: &Path) -> String {
    let mut all = String::new();
    let mut stack = vec![state.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                stack.push(path);
            } else if name == "admin.conf" || name == "kubeconfig" {
                let mode = std::os::unix::fs::PermissionsExt::mode(
                    &std::fs::metadata(&path).unwrap().permissions(),
                );
                assert_eq!(mode & 0o777, 0o600, "{name} is private");
            } else {
                all.push_str(&String::from_utf8_lossy(&std::fs::read(&path).unwrap()));
            }
        }
    }
    all
}

#[test]
fn crash_anywhere_then_converge_rerun_rebuild_scan_and_down() {
    let aws = AwsSandbox::start();
    let api = KubeApi::start();
    let fleet = Fleet::start_with(NODES, Some(&api.admin_conf));
    let dir = tempfile::tempdir().unwrap();
    let config = common::kube::config(&fleet, dir.path());
    // Host keys are verified out of band, as on AWS: the proxy answers GetConsoleOutput with
    // the fingerprints of each fleet node's real host key.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("knownHosts: accept-new ", "knownHosts: console "),
    )
    .unwrap();
    let canary = hostile_local_paths(&config, dir.path());
    aws.faults(&common::fleet::console_faults(&fleet, &config));
    let state = dir.path().join("state");
    let mut w = World {
        aws,
        api,
        fleet,
        config,
        state,
        _dir: dir,
        printed: String::new(),
        s3: None,
    };

    // kill -9 at every point in turn, each run resuming the previous one.
    let mut table = vec![format!(
        "{:<3} {:<16} {:<14} {:>6}  outcome",
        "#", "stage", "trigger", "delay"
    )];
    for (n, point) in KILL_POINTS.iter().enumerate() {
        if point.stage == "join-workers" {
            // From here on the state lives in S3: the first locked run uploads the local journal,
            // and every kill -9 leaves a remote lock that `unlock --force` removes.
            let (code, _, err) = w.run(&["--state", S3_STATE, "state", "init"]);
            assert_eq!(code, 0, "{err}");
            w.s3 = Some(S3_STATE);
            table.push("-   (state moves to S3)".into());
        }
        if point.stage == "prepare-nodes" {
            // A node vanishes mid-run (its sshd stops): the run fails naming it, the others go on.
            let start = KillPoint {
                stage: "prepare-nodes",
                event: "stage_started",
                message: "",
                delay_ms: 0,
            };
            let (child, rest, _) = up_until(&mut w, &start);
            w.fleet.down(7);
            let (code, out) = finish(&mut w, child, rest);
            w.fleet.up(7);
            assert_eq!(code, 1, "{out}");
            let failed = events(&out)
                .into_iter()
                .find(|e| e["event"] == "stage_failed")
                .unwrap_or_else(|| panic!("a stage failed: {out}"));
            assert!(
                failed["message"]
                    .as_str()
                    .unwrap()
                    .contains("k8s-api-image"),
                "the failure names the node: {failed}"
            );
            table.push(format!(
                "-   prepare-nodes    node 7 sshd stopped    exit {code}, names k8s-api-image"
            ));
        }
        let mut outcome = up_killed_at(&mut w, point);
        if w.unlock_after_kill() {
            outcome.push_str(", S3 lock removed by unlock --force");
        }
        let trigger = if point.message.is_empty() {
            point.event
        } else {
            point.message
        };
        table.push(format!(
            "{:<3} {:<16} {:<14} {:>4}ms  {outcome}",
            n + 1,
            point.stage,
            trigger,
            point.delay_ms
        ));
    }
    // The final run, with a second `up` started while it holds the lock.
    let started = Instant::now();
    let first = KillPoint {
        stage: "",
        event: "run_started",
        message: "",
        delay_ms: 0,
    };
    let (child, rest, _) = up_until(&mut w, &first);
    let (second, _, err2) = w.run(&["up"]);
    let (code, out) = finish(&mut w, child, rest);
    table.push(format!(
        "final up: exit {code} in {:.1}s; a second `up` meanwhile: exit {second}",
        started.elapsed().as_secs_f64()
    ));
    eprintln!("kill points:\n{}", table.join("\n"));
    assert_eq!(code, 0, "{out}");
    assert_eq!(second, 3, "the second run exits with the lock code: {err2}");
    assert!(err2.contains("locked by another ecoboot run"), "{err2}");
    let killed = table.iter().filter(|l| l.contains("killed during")).count();
    assert!(
        killed >= 10,
        "at least 10 runs were killed mid-stage:\n{}",
        table.join("\n")
    );
    assert_one_cluster(&w);

    // An idempotent rerun: every stage done, no mutating AWS call, no node change, no API write.
    let (ssh_before, api_before) = (w.ssh_changes(), w.api_writes());
    let started = Instant::now();
    let (code, out, err) = w.run(&["--output", "json", "up"]);
    eprintln!("idempotent rerun: {:.1}s", started.elapsed().as_secs_f64());
    assert_eq!(code, 0, "{err}");
    let ev = events(&out);
    assert_eq!(
        ev.iter().filter(|e| e["event"] == "stage_skipped").count(),
        12,
        "{out}"
    );
    assert_eq!(aws_calls(&ev).0, 0, "no mutating AWS call");
    assert_eq!(w.ssh_changes(), ssh_before, "no mutating step on any node");
    assert_eq!(w.api_writes(), api_before, "no API write");

    // GitHub Actions output: groups, and the stage table in the step summary.
    let summary = w.state.with_file_name("summary.md");
    let (code, out, _) = run(w
        .cmd(&["up"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary));
    assert_eq!(code, 0);
    assert!(out.contains("::group::"), "{out}");
    let table_md = std::fs::read_to_string(&summary).unwrap();
    assert!(table_md.contains("root-app"), "{table_md}");

    // The state directory lost: `up` rebuilds it from probes and changes nothing.
    std::fs::remove_dir_all(&w.state).unwrap();
    let (code, out, err) = w.run(&["--output", "json", "up"]);
    assert_eq!(code, 0, "{err}");
    let ev = events(&out);
    assert_eq!(
        aws_calls(&ev).0,
        0,
        "no mutating AWS call after losing the state"
    );
    assert_eq!(
        w.ssh_changes(),
        ssh_before,
        "no node change after losing the state"
    );
    assert_eq!(
        w.api_writes(),
        api_before,
        "no API write after losing the state"
    );
    assert_one_cluster(&w);
    let journal = w.run(&["state", "show"]).1;
    assert!(
        journal.contains("journal: "),
        "the journal is in S3: {journal}"
    );

    // Host keys come from S3 and are verified strictly: a node whose key changed behind
    // ecoboot's back is refused naming both fingerprints, and known_hosts is not rewritten.
    std::fs::remove_dir_all(&w.state).unwrap();
    let calls_before: Vec<usize> = (1..=NODES)
        .map(|i| w.fleet.mutating_calls(i).len())
        .collect();
    w.fleet.rekey(4);
    let (code, _, err) = w.run(&["up"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("HOST KEY CHANGED"), "{err}");
    assert!(
        err.matches("SHA256:").count() >= 2,
        "both fingerprints: {err}"
    );
    // A deliberate replacement: forget-host (local and S3), then the new key is verified
    // against the console and pinned again.
    let rekeyed = console_fingerprints(&w.fleet, &w.config)[3].0.clone();
    let (code, out, err) = w.run(&["forget-host", &rekeyed]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("forgot the host key"), "{out}");
    w.aws.faults(&faults_with_console(&console_fingerprints(
        &w.fleet, &w.config,
    )));
    let (code, _, err) = w.run(&["up"]);
    assert_eq!(code, 0, "{err}");
    let changed: Vec<String> = (1..=NODES)
        .flat_map(|i| {
            let new = w.fleet.mutating_calls(i).split_off(calls_before[i - 1]);
            new.into_iter().map(move |c| format!("node {i}: {c}"))
        })
        .collect();
    assert_eq!(
        w.ssh_changes(),
        ssh_before,
        "a new host key changes nothing on the node: {calls_before:?} {:?} {changed:?}",
        (1..=NODES)
            .map(|i| w.fleet.mutating_calls(i).len())
            .collect::<Vec<_>>()
    );
    // Back to local state: the working copy is complete.
    w.s3 = None;

    // A node that disappears: a clear failure naming it; back again, the rerun has nothing to do.
    w.fleet.down(7);
    let (code, _, err) = w.run(&["up"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("k8s-api-image"), "{err}");
    w.fleet.up(7);
    let (code, _, err) = w.run(&["up"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(w.ssh_changes(), ssh_before);

    // A node whose console printed other fingerprints than the key it presents is refused on
    // first contact, naming both; with the right console it is verified and pinned again.
    let mut wrong = console_fingerprints(&w.fleet, &w.config);
    wrong[2].1 = "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into();
    w.aws.faults(&faults_with_console(&wrong));
    std::fs::remove_file(w.state.join("sesacthon/known_hosts")).unwrap();
    let (code, _, err) = w.run(&["up"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("k8s-api-my") && err.contains("does not match its instance's console"),
        "{err}"
    );
    assert!(
        err.contains(&wrong[2].1) && err.contains(&console_fingerprints(&w.fleet, &w.config)[2].1),
        "{err}"
    );
    let known = std::fs::read_to_string(w.state.join("sesacthon/known_hosts")).unwrap();
    assert!(
        !known.contains("127.0.1.3]"),
        "the refused key was not recorded:\n{known}"
    );
    w.aws.faults(&faults_with_console(&console_fingerprints(
        &w.fleet, &w.config,
    )));
    let (code, _, err) = w.run(&["up"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(w.ssh_changes(), ssh_before);

    // `plan` is read-only: with the host keys forgotten it verifies them again against the
    // console, but records nothing and writes no log into the state directory.
    let cluster_dir = w.state.join("sesacthon");
    std::fs::remove_file(cluster_dir.join("known_hosts")).unwrap();
    let before = state_bytes(&w.state);
    let (code, _, err) = w.run(&["plan"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !cluster_dir.join("known_hosts").exists(),
        "plan recorded host keys"
    );
    assert_eq!(
        state_bytes(&w.state),
        before,
        "plan wrote into the state directory"
    );
    let (code, _, err) = w.run(&["up"]);
    assert_eq!(code, 0, "{err}");

    prune_two_api_nodes_then_add_them_back(&mut w);

    // No join token, no admin key, no ArgoCD password in anything ecoboot printed or wrote.
    let (code, password, _) = run(&mut w.cmd(&["argocd", "password"]));
    assert_eq!(code, 0);
    let password = password.trim().to_string();
    let admin = std::fs::read_to_string(w.state.join("sesacthon/admin.conf")).unwrap();
    let key = admin
        .lines()
        .find_map(|l| l.trim().strip_prefix("client-key-data: "))
        .unwrap()
        .to_string();
    let written = format!("{}{}", w.printed, state_bytes(&w.state));
    assert!(!common::has_token(&written), "a bootstrap token leaked");
    assert!(!written.contains(&password), "the ArgoCD password leaked");
    assert!(!written.contains(&key), "the admin client key leaked");

    // The hostile file names the config points at never ran as code, here or on a node
    // (the fleet's nodes share this machine's /tmp).
    assert!(
        !canary.exists(),
        "a config value was executed: {}",
        canary.display()
    );

    // down leaves nothing tagged.
    let (code, _, err) = w.run(&["down", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let inv = w.aws.inventory("sesacthon");
    assert!(w.aws.live_instances("sesacthon").is_empty(), "{inv}");
    for what in [
        "vpcs",
        "subnets",
        "internet_gateways",
        "security_groups",
        "key_pairs",
        "roles",
        "instance_profiles",
    ] {
        assert_eq!(inv[what], 0, "{what}: {inv}");
    }
}

/// `text` without the `spec.nodes` entries named `names` (each entry runs from its
/// `- name:` line to the next one at the same indentation).
fn without_nodes(text: &str, names: &[&str]) -> String {
    let mut out = String::new();
    let mut skipping: Option<usize> = None;
    for line in text.split_inclusive('\n') {
        let indent = line.len() - line.trim_start().len();
        let entry = line.trim_start().strip_prefix("- name: ");
        if let Some(name) = entry {
            skipping = names
                .contains(&name.trim().trim_matches('"'))
                .then_some(indent);
        } else if skipping.is_some_and(|i| indent <= i && !line.trim().is_empty()) {
            skipping = None;
        }
        if skipping.is_none() {
            out.push_str(line);
        }
    }
    out
}

/// #15 scale-in: two API nodes leave the config. `plan` lists them, `up` only reports them,
/// `up --prune` drains, deletes, resets and terminates them (killed -9 in the middle and
/// resumed), and added back they join as fresh instances.
fn prune_two_api_nodes_then_add_them_back(w: &mut World) {
    let gone = ["k8s-api-chat", "k8s-api-scan"];
    let original = std::fs::read_to_string(&w.config).unwrap();
    // Fingerprints and fleet addresses by the full config's order (node i is 127.0.1.i).
    let console = console_fingerprints(&w.fleet, &w.config);
    let fleet_host = |node: &str| {
        let i = console.iter().position(|(n, _)| n == node).unwrap() + 1;
        format!("127.0.1.{i}]")
    };
    let smaller = without_nodes(&original, &gone);
    assert_eq!(
        smaller.matches("- name: k8s-").count() + 2,
        original.matches("- name: k8s-").count()
    );
    std::fs::write(&w.config, &smaller).unwrap();
    let ids = |w: &World| -> std::collections::BTreeMap<String, String> {
        w.aws
            .live_instances("sesacthon")
            .iter()
            .map(|i| {
                (
                    i["node"].as_str().unwrap().to_string(),
                    i["id"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let before = ids(w);
    let node_names = |w: &World| -> Vec<String> {
        let nodes = w.api.objects("Node").unwrap_or_default();
        nodes
            .iter()
            .map(|n| n["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (code, out, err) = w.run(&["plan", "--detail"]);
    assert_eq!(code, 0, "{err}");
    for n in gone {
        let line = format!(
            "[prune] {n}: would be removed by `up --prune` (node not in the config: drain, delete Node, kubeadm reset, terminate i-"
        );
        assert!(out.contains(&line), "{out}");
    }
    let (code, out, err) = w.run(&["up", "--output", "json"]);
    assert_eq!(code, 0, "{err}");
    let warned = common::aws::events(&out)
        .iter()
        .filter(|e| {
            e["event"] == "warning" && e["message"].as_str().unwrap_or("").contains("left as is")
        })
        .count();
    assert_eq!(warned, 2, "{out}");
    assert_eq!(ids(w), before, "up without --prune terminates nothing");
    if w.api.hooks.is_some() {
        assert_eq!(node_names(w).len(), NODES);
    }

    // kill -9 while the first node's instance is being terminated (the call is slowed down).
    let mut faults: serde_json::Value =
        serde_json::from_str(&faults_with_console(&console)).unwrap();
    faults["delay"] = serde_json::json!({"TerminateInstances": 3});
    w.aws.faults(&faults.to_string());
    let journal = w.state.join("sesacthon/state.json");
    let phase = |node: &str| -> String {
        let text = std::fs::read_to_string(&journal).unwrap_or_default();
        let state: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        state["outputs"]["prune"]["nodes"][node]["phase"]
            .as_str()
            .unwrap_or("")
            .to_string()
    };
    let mut child = w
        .cmd(&["up", "--prune"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..600 {
        if phase("k8s-api-chat") == "reset" || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(phase("k8s-api-chat"), "reset", "killed mid-prune");
    child.kill().unwrap();
    let _ = child.wait();
    assert!(
        ids(w).contains_key("k8s-api-scan"),
        "the second node was not reached yet"
    );
    w.aws.faults(&faults_with_console(&console));
    let (code, out, err) = w.run(&["up", "--prune"]);
    assert_eq!(code, 0, "{out}{err}");
    let after = ids(w);
    assert_eq!(after.len(), NODES - 2, "{after:?}");
    for n in gone {
        assert!(!after.contains_key(n), "{n} still runs");
        assert_eq!(phase(n), "done");
        let terminated = w.aws.boto(
            "ec2",
            &format!("describe_instances(InstanceIds=['{}'])", before[n]),
        );
        assert_eq!(
            terminated["Reservations"][0]["Instances"][0]["State"]["Name"],
            "terminated"
        );
    }
    if w.api.hooks.is_some() {
        let names = node_names(w);
        assert_eq!(names.len(), NODES - 2, "{names:?}");
        assert!(gone.iter().all(|n| !names.contains(&n.to_string())));
    }
    let known = std::fs::read_to_string(w.state.join("sesacthon/known_hosts")).unwrap();
    for n in gone {
        assert!(
            !known.contains(&fleet_host(n)),
            "{n}'s host key is forgotten:\n{known}"
        );
    }
    assert!(
        known.contains(&fleet_host("k8s-api-auth")),
        "the others stay"
    );
    let (code, out, err) = w.run(&["up", "--prune"]);
    assert_eq!(code, 0, "{err}");
    assert!(!out.contains("[prune]"), "nothing left to prune: {out}");

    // Back in the config: fresh instances that join again.
    std::fs::write(&w.config, &original).unwrap();
    let (code, out, err) = w.run(&["up"]);
    assert_eq!(code, 0, "{out}{err}");
    let back = ids(w);
    assert_eq!(back.len(), NODES);
    for n in gone {
        assert_ne!(back[n], before[n], "{n} is a fresh instance");
    }
    if w.api.hooks.is_some() {
        assert_eq!(node_names(w).len(), NODES);
    }
}
