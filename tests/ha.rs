//! Three control planes on the sandbox (the shipped 14 nodes, two API nodes made control
//! planes), every command with only the deployer policy's key under moto's IAM enforcement: `up` with kill -9 at points inside the load balancer and the control-plane joins,
//! then converged (a Network Load Balancer in moto with the three instances as targets, three
//! etcd members, the uploaded certificates gone, the same Secrets key everywhere, the
//! certificate key nowhere); a rerun that changes nothing; a control plane lost (validate and
//! status name it, the API answers through the others), its instance terminated and its disk
//! gone, then replaced and re-joined by `up` (three members, no stale one); `upgrade` (apply on
//! the first, `upgrade node` on the others one at a time, before any worker); `certs renew` on
//! each; `secrets rotate-key` on all three; `backup`, and `restore` onto three new, prepared control planes; `down`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::aws::AwsSandbox;
use common::deployer::{parts, user};
use common::fleet::Fleet;
use common::kube::KubeApi;
use common::{ecoboot, run};

const NODES: usize = 14;
const CLUSTER: &str = "sesacthon";
const BUCKET: &str = "ecoboot-ha-backups";
const CONTROL_PLANES: [(&str, usize); 3] =
    [("k8s-master", 1), ("k8s-master-b", 3), ("k8s-master-c", 4)];

struct World {
    aws: AwsSandbox,
    /// The deployer's key: only `ecoboot iam-policy`'s parts, enforced by moto.
    deployer: (String, String),
    /// An administrator's key, for the test's own reads.
    admin: (String, String),
    api: KubeApi,
    fleet: Fleet,
    config: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = ecoboot(&self.state);
        self.aws.env(&mut cmd);
        cmd.env("AWS_ACCESS_KEY_ID", &self.deployer.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.deployer.1)
            .arg("-c")
            .arg(&self.config)
            .args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> (i32, String, String) {
        run(&mut self.cmd(args))
    }

    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "{args:?}:\n{out}\n{err}");
        assert!(
            !err.contains("AccessDenied") && !err.contains("not authorized"),
            "{err}"
        );
        out
    }

    /// [`World::ok`] for an `up` whose end needs no validation (checked otherwise).
    fn ok_unvalidated(&self, args: &[&str]) -> String {
        let (code, out, err) = run(self.cmd(args).env("ECOBOOT_NO_VALIDATE", "1"));
        assert_eq!(code, 0, "{args:?}:\n{out}\n{err}");
        out
    }

    /// One boto3 call with the administrator's key, printed as JSON.
    fn boto(&self, service: &str, call: &str) -> serde_json::Value {
        let out = self.aws.boto_script_as(
            (&self.admin.0, &self.admin.1),
            service,
            &format!("r = c.{call}\nprint(json.dumps(r, default=str))"),
        );
        serde_json::from_str(&out).unwrap()
    }

    /// The fleet's etcd members: (name, peer IP).
    fn members(&self) -> Vec<(String, String)> {
        let path = self.fleet.dir.path().join("shared/etcd-members.json");
        let list: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        (list.as_array().unwrap().iter())
            .map(|m| {
                let url = m["peerURLs"][0].as_str().unwrap();
                let ip = url
                    .trim_start_matches("https://")
                    .rsplit_once(':')
                    .unwrap()
                    .0;
                (m["name"].as_str().unwrap().to_string(), ip.to_string())
            })
            .collect()
    }

    /// The live instance of `node`: (id, private IP).
    fn instance(&self, node: &str) -> (String, String) {
        let all = self.boto(
            "ec2",
            &format!("describe_instances(Filters=[{{'Name': 'tag:ecoboot.io/node', 'Values': ['{node}']}}, {{'Name': 'instance-state-name', 'Values': ['running', 'pending']}}])"),
        );
        let i = &all["Reservations"][0]["Instances"][0];
        (
            i["InstanceId"].as_str().unwrap().to_string(),
            i["PrivateIpAddress"].as_str().unwrap().to_string(),
        )
    }

    /// The API load balancers in moto and the instance ids behind the first.
    fn load_balancer(&self) -> (usize, BTreeSet<String>) {
        let lbs = self.boto("elbv2", "describe_load_balancers()");
        let n = lbs["LoadBalancers"].as_array().unwrap().len();
        let tgs = self.boto("elbv2", "describe_target_groups()");
        let Some(tg) = tgs["TargetGroups"].as_array().unwrap().first() else {
            return (n, BTreeSet::new());
        };
        let arn = tg["TargetGroupArn"].as_str().unwrap();
        let health = self.boto(
            "elbv2",
            &format!("describe_target_health(TargetGroupArn='{arn}')"),
        );
        let ids = (health["TargetHealthDescriptions"]
            .as_array()
            .unwrap()
            .iter())
        .map(|d| d["Target"]["Id"].as_str().unwrap().to_string())
        .collect();
        (n, ids)
    }

    /// Node `i` as a new instance's disk: stopped, its overlays gone, started empty.
    fn wipe(&self, i: usize) {
        self.fleet.wipe(i);
        self.fleet.restart_all();
    }

    /// Runs `up --output json`, kills it with SIGKILL at the first event of `stage` whose
    /// message contains `message`; returns whether it was killed (false: it ended first).
    fn up_killed_at(&self, stage: &str, message: &str) -> bool {
        self.killed_at(&["up"], stage, message)
    }

    /// Runs `args` with `--output json`, kills it with SIGKILL at the first event of `stage`
    /// whose message contains `message`; returns whether it was killed.
    fn killed_at(&self, args: &[&str], stage: &str, message: &str) -> bool {
        let mut child = self
            .cmd(&[&["--output", "json"][..], args].concat())
            .env("ECOBOOT_NO_VALIDATE", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for line in lines {
            let Ok(e) = serde_json::from_str::<serde_json::Value>(&line.unwrap()) else {
                continue;
            };
            if e["stage"] == stage && e["message"].as_str().unwrap_or("").contains(message) {
                child.kill().unwrap();
                child.wait().unwrap();
                return true;
            }
        }
        child.wait().unwrap();
        false
    }
}

/// The shipped config for the fleet with k8s-api-my and k8s-api-scan (nodes 3 and 4, zones b
/// and c) made control planes, as inventory/sandbox-ha.yaml does, and backups to `BUCKET`.
fn ha_config(fleet: &Fleet, dir: &Path) -> PathBuf {
    let path = common::kube::config(fleet, dir);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (old, new) in [
        ("k8s-api-my", "k8s-master-b"),
        ("k8s-api-scan", "k8s-master-c"),
    ] {
        let start = text.find(&format!("    - name: {old}\n")).unwrap();
        let end = start + 10 + text[start + 10..].find("    - name:").unwrap();
        let keep: Vec<&str> = (text[start..end].lines())
            .filter(|l| {
                l.trim_start().starts_with("subnet:") || l.trim_start().starts_with("address:")
            })
            .collect();
        let block = format!(
            "    - name: {new}\n      role: control-plane\n      instanceType: t3.xlarge\n      diskGb: 80\n{}\n      labels:\n        role: \"control-plane\"\n        domain: \"control-plane\"\n        service: \"platform-system\"\n        workload: \"control-plane\"\n        tier: \"platform\"\n        phase: \"0\"\n      taints: [role=control-plane:NoSchedule]\n",
            keep.join("\n")
        );
        text.replace_range(start..end, &block);
    }
    let text = text.replacen(
        "\nspec:\n",
        &format!(
            "\nspec:\n  backup:\n    to: s3://{BUCKET}/ha\n    keep: 2\n    schedule: daily\n"
        ),
        1,
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn three_control_planes_converge_survive_a_loss_and_run_every_day_2_command() {
    let api = KubeApi::start();
    if api.hook("GET", "/_double/stats", "").is_none() {
        eprintln!("skipped: needs the API double (a real API server has no kubelets)");
        return;
    }
    let aws = AwsSandbox::start_with(true);
    let fleet = Fleet::start_with(NODES, Some(&api.admin_conf));
    let dir = tempfile::tempdir().unwrap();
    let config = ha_config(&fleet, dir.path());
    let state = dir.path().join("state");
    // Every command below runs with the deployer policy's key under moto's IAM enforcement:
    // the load balancer's calls are in it.
    let policy = parts(&aws, &config, dir.path());
    let everything = serde_json::json!({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let admin = user(&aws, "admin", &[everything]);
    let deployer = user(&aws, "deployer", &policy);
    aws.boto("s3", &format!("create_bucket(Bucket='{BUCKET}', CreateBucketConfiguration={{'LocationConstraint': 'ap-northeast-2'}})"));
    // The NLB registers its targets with a delay, as AWS does (3-5 minutes; 8 s here).
    let credentials = serde_json::json!({"credentials": {"key": admin.0, "secret": admin.1},
        "registration_lag": 8});
    aws.faults(&credentials.to_string());
    aws.enforce_iam();
    let w = World {
        aws,
        deployer,
        admin,
        api,
        fleet,
        config,
        state,
        _dir: dir,
    };

    // The plan names the new stages; kill -9 inside them, then converge.
    let plan = w.ok(&["plan"]);
    assert!(
        plan.contains("[load-balancer] load-balancer: would run after `instances`"),
        "{plan}"
    );
    assert!(plan.contains("[join-control-plane] 2 nodes (k8s-master-b, k8s-master-c): would kubeadm join --control-plane"), "{plan}");
    for (stage, message) in [
        ("load-balancer", "created"),
        ("join-control-plane", "certificates uploaded"),
        ("join-control-plane", "joined (etcd member added)"),
    ] {
        w.up_killed_at(stage, message);
    }
    let out = w.ok(&["up"]);
    assert!(out.contains("ok    etcd"), "up validated etcd: {out}");
    // kubeadm init waited for the load balancer to register the first control plane.
    let logs = std::fs::read_dir(w.state.join("sesacthon/logs")).unwrap();
    let waited = logs.flatten().any(|f| {
        std::fs::read_to_string(f.path())
            .is_ok_and(|t| t.contains("waiting for the load balancer to register"))
    });
    assert!(waited, "init-master waited for the NLB registration");

    let names = |m: &[(String, String)]| m.iter().map(|(n, _)| n.clone()).collect::<BTreeSet<_>>();
    let members = w.members();
    assert_eq!(members.len(), 3, "{members:?}");
    assert_eq!(
        names(&members),
        CONTROL_PLANES.iter().map(|(n, _)| n.to_string()).collect()
    );
    let (lbs, targets) = w.load_balancer();
    assert_eq!(lbs, 1);
    let cp_ids: BTreeSet<String> = CONTROL_PLANES
        .iter()
        .map(|(n, _)| w.instance(n).0)
        .collect();
    assert_eq!(targets, cp_ids);
    // kubeadm's endpoint is the load balancer, in every API server certificate's SANs.
    let init = w
        .fleet
        .file(1, "/var/lib/ecoboot-sim/init-config.yaml")
        .unwrap();
    let endpoint = init
        .lines()
        .find_map(|l| l.strip_prefix("controlPlaneEndpoint: "))
        .unwrap()
        .trim_matches('"')
        .to_string();
    assert!(endpoint.contains(".elb.amazonaws.com:6443"), "{endpoint}");
    let host = endpoint.trim_end_matches(":6443");
    assert!(init.contains(&format!("  - {host}")), "SANs: {init}");
    // Same Secrets key on every control plane; the join and upload files gone; the uploaded
    // certificates deleted; the certificate key in nothing ecoboot wrote.
    let key = |i| {
        w.fleet
            .file(i, "/etc/kubernetes/ecoboot/encryption.yaml")
            .unwrap()
    };
    assert_eq!(key(1), key(3));
    assert_eq!(key(1), key(4));
    for i in [1, 3, 4] {
        for f in ["kubeadm-join.yaml", "kubeadm-upload-certs.yaml"] {
            assert!(
                w.fleet
                    .file(i, &format!("/etc/kubernetes/ecoboot/{f}"))
                    .is_none(),
                "{f} on node {i}"
            );
        }
    }
    let secrets = w.api.objects("Secret").unwrap();
    assert!(
        !secrets
            .iter()
            .any(|s| s["metadata"]["name"] == "kubeadm-certs"),
        "kubeadm-certs deleted"
    );
    let uploaded = std::fs::read_to_string(w.fleet.dir.path().join("shared/certs-key")).unwrap();
    let written = common::read_tree(&w.state);
    for word in written
        .split(|c: char| !c.is_ascii_hexdigit())
        .filter(|s| s.len() == 64)
    {
        use sha2::Digest;
        let hash = hex::encode(sha2::Sha256::digest(word.as_bytes()));
        assert_ne!(
            hash,
            uploaded.trim(),
            "the certificate key was written to the state"
        );
    }

    // The scheduled backup: a timer on every control plane; only the etcd leader's run backs up.
    for (name, i) in CONTROL_PLANES {
        let timer = w.fleet.file(i, "/etc/systemd/system/ecoboot-backup.timer");
        assert!(
            timer.is_some_and(|t| t.contains("OnCalendar=daily")),
            "{name}"
        );
    }
    let service = w
        .fleet
        .file(3, "/etc/systemd/system/ecoboot-backup.service")
        .unwrap();
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let follower = w.fleet.ssh_output(3, exec);
    assert!(follower.contains("not the etcd leader"), "{follower}");

    // A hardening change reaches every control plane (Pod Security `warn` level).
    let text = std::fs::read_to_string(&w.config).unwrap();
    let changed = text.replacen(
        "  kubernetes:\n",
        "  kubernetes:\n    hardening:\n      podSecurity: {warn: baseline}\n",
        1,
    );
    std::fs::write(&w.config, &changed).unwrap();
    let out = w.ok_unvalidated(&["up"]);
    for (name, i) in CONTROL_PLANES {
        let admission = w
            .fleet
            .file(i, "/etc/kubernetes/ecoboot/admission.yaml")
            .unwrap();
        assert!(
            admission.contains(r#""warn": "baseline""#),
            "{name}: {admission}"
        );
        assert!(
            out.contains(&format!("[init-master] {name}: hardening reconciled")),
            "{out}"
        );
    }
    assert_eq!(key(1), key(3), "the key stays the same everywhere");

    // A rerun changes nothing.
    let (code, out, err) = w.run(&["--output", "json", "up"]);
    assert_eq!(code, 0, "{err}");
    let events = common::aws::events(&out);
    let skipped = events
        .iter()
        .filter(|e| e["event"] == "stage_skipped")
        .count();
    assert_eq!(skipped, 12, "{out}");

    // One control plane lost: validate and status name it; the API answers through the others.
    w.fleet.down(3);
    let (code, out, _) = w.run(&["validate"]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL  control planes k8s-master-b: unreachable"),
        "{out}"
    );
    assert!(
        out.contains("FAIL  etcd           k8s-master-b: member"),
        "{out}"
    );
    assert!(out.contains("ok    nodes"), "the API answered: {out}");
    // Its instance is terminated and its disk gone: `up` replaces, re-registers and re-joins it.
    let (old_id, old_ip) = w.instance("k8s-master-b");
    w.boto(
        "ec2",
        &format!("terminate_instances(InstanceIds=['{old_id}'])"),
    );
    w.wipe(3);
    let out = w.ok(&["up"]);
    assert!(out.contains("removed etcd member"), "{out}");
    let (new_id, new_ip) = w.instance("k8s-master-b");
    assert_ne!(old_id, new_id);
    let members = w.members();
    assert_eq!(members.len(), 3, "no stale member: {members:?}");
    assert!(
        members.contains(&("k8s-master-b".into(), new_ip.clone())),
        "{members:?}"
    );
    assert!(!members.iter().any(|(_, ip)| *ip == old_ip) || old_ip == new_ip);
    let (_, targets) = w.load_balancer();
    assert!(
        targets.contains(&new_id) && !targets.contains(&old_id),
        "{targets:?}"
    );
    for check in ["ok    control planes", "ok    etcd", "ok    load balancer"] {
        assert!(
            out.contains(check),
            "up validated the replaced control plane: {out}"
        );
    }

    // Upgrade: apply on the first, `upgrade node` on the others one at a time, before workers.
    let text = std::fs::read_to_string(&w.config).unwrap();
    std::fs::write(
        &w.config,
        text.replacen("version: \"1.36\"", "version: \"1.37\"", 1),
    )
    .unwrap();
    let (code, out, err) = w.run(&["--output", "json", "upgrade", "--max-unavailable", "3"]);
    assert_eq!(code, 0, "{out}{err}");
    let calls = |i: usize, what: &str| {
        w.fleet
            .calls(i)
            .iter()
            .filter(|c| c.starts_with(what))
            .count()
    };
    assert_eq!(calls(1, "kubeadm upgrade apply"), 1);
    for i in [3, 4] {
        assert_eq!(calls(i, "kubeadm upgrade apply"), 0, "node {i}");
        assert_eq!(calls(i, "kubeadm upgrade node"), 1, "node {i}");
    }
    let order: Vec<String> = (common::aws::events(&out).iter())
        .filter(|e| {
            e["message"]
                .as_str()
                .unwrap_or("")
                .starts_with("upgraded to")
        })
        .map(|e| e["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        order[..3],
        ["k8s-master", "k8s-master-b", "k8s-master-c"],
        "{order:?}"
    );
    assert_eq!(order.len(), NODES);

    // Certificates renewed on each control plane.
    let out = w.ok(&["certs", "renew"]);
    for (name, i) in CONTROL_PLANES {
        assert_eq!(calls(i, "kubeadm certs renew all"), 1, "{name}");
        assert!(
            out.contains(&format!("{name}: kube-apiserver restarted")),
            "{out}"
        );
    }

    // The Secrets key rotated on all three: one new key, the same file everywhere, and the
    // Secrets still read back through the API.
    // Killed once the new key is readable everywhere but before it is first: the rerun
    // continues from the files (two keys, the older first) and ends with one key.
    let before = key(1);
    assert!(w.killed_at(
        &["secrets", "rotate-key"],
        "secrets-rotate-key",
        "kube-apiserver restarted (it reads the new key)"
    ));
    let out = w.ok(&["secrets", "rotate-key", "--dry-run"]);
    assert!(out.contains("put the new key first"), "{out}");
    assert!(
        !out.contains("make a new key"),
        "the rerun continues, it does not start over: {out}"
    );
    let out = w.ok(&["secrets", "rotate-key"]);
    assert!(out.contains("rotated on 3 control planes"), "{out}");
    assert_ne!(key(1), before);
    assert_eq!(key(1), key(3));
    assert_eq!(key(1), key(4));
    assert_eq!(key(1).matches("- name: key-").count(), 1, "{}", key(1));
    assert!(
        !out.contains(
            key(1)
                .lines()
                .find_map(|l| l.trim().strip_prefix("secret: "))
                .unwrap()
        )
    );

    // Backup from a healthy member; restore onto three fresh control planes.
    let out = w.ok(&["backup"]);
    let url = out
        .split_whitespace()
        .find(|w| {
            w.starts_with(&format!("s3://{BUCKET}/ha/{CLUSTER}/backups/")) && w.ends_with(".tar.gz")
        })
        .unwrap_or_else(|| panic!("{out}"))
        .to_string();
    // All three lost: new disks on the same instances, prepared, then the restore.
    for (_, i) in CONTROL_PLANES {
        w.wipe(i);
    }
    w.ok(&["up", "--to", "prepare-nodes"]);
    let out = w.ok(&["restore", "--from", &url]);
    assert!(out.contains("joined (etcd member added)"), "{out}");
    assert_eq!(names(&w.members()).len(), 3);
    w.ok(&["validate"]);

    // `down` deletes the load balancer with the rest.
    w.ok(&["down"]);
    assert_eq!(w.load_balancer(), (0, BTreeSet::new()));
    assert!(w.aws.live_instances(CLUSTER).is_empty());
}
