//! #27 The deployer policy is complete and enforced: moto authorises every request against an
//! IAM user that holds only `ecoboot iam-policy`'s output, and with its keys the whole life of
//! a cluster runs (state init, up through all stages on the 14-node fleet, a rerun,
//! backup to S3, down). A user missing one action fails naming it. The SSH rule for the
//! machine running ecoboot (`allowedSshCidrs: self`) is there only while a command runs: a
//! killed run's rule is revoked by the next run, Ctrl-C revokes it, and none is left after
//! any command.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};

use common::aws::AwsSandbox;
use common::deployer::{parts, user};
use common::fleet::Fleet;
use common::kube::KubeApi;
use common::{ecoboot, run};

const NODES: usize = 14;
const STATE: &str = "s3://ecoboot-deployer-state/teams";
const BACKUPS: &str = "s3://ecoboot-deployer-backups/etcd";
const RUNNER_IP: &str = "198.51.100.7";

/// A what's-my-IP service on loopback that answers every request with `ip`.
fn my_ip_service(ip: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let body = format!("{ip}\n");
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

struct Env<'a> {
    sb: &'a AwsSandbox,
    config: &'a Path,
    state: &'a Path,
    ip_url: String,
}

impl Env<'_> {
    fn cmd(&self, key: &(String, String), args: &[&str]) -> Command {
        let mut cmd = ecoboot(self.state);
        self.sb.env(&mut cmd);
        cmd.env("AWS_ACCESS_KEY_ID", &key.0)
            .env("AWS_SECRET_ACCESS_KEY", &key.1)
            .env("ECOBOOT_MY_IP_URL", &self.ip_url)
            .arg("-c")
            .arg(self.config)
            .args(args);
        cmd
    }

    fn ok(&self, key: &(String, String), args: &[&str]) -> String {
        let (code, out, err) = run(&mut self.cmd(key, args));
        assert_eq!(code, 0, "ecoboot {args:?}:\n{out}\n{err}");
        assert!(
            !err.contains("AccessDenied") && !out.contains("not authorized"),
            "{err}"
        );
        format!("{out}{err}")
    }

    /// Runner rules in the cluster's security group (read with the admin's key).
    fn runner_rules(&self, admin: &(String, String)) -> Vec<String> {
        let out = self.sb.boto_script_as(
            (&admin.0, &admin.1),
            "ec2",
            "rules = c.describe_security_group_rules()['SecurityGroupRules']\n\
             print(json.dumps([r.get('Description', '') + ' ' + r.get('CidrIpv4', '') for r in rules if r.get('Description', '').startswith('ecoboot-runner')]))",
        );
        serde_json::from_str(&out).unwrap()
    }
}

#[test]
fn the_deployer_policy_runs_a_whole_cluster_life_under_iam_enforcement() {
    let api = KubeApi::start();
    let sb = AwsSandbox::start_with(true);
    let fleet = Fleet::start_with(NODES, Some(&api.admin_conf));
    let dir = tempfile::tempdir().unwrap();
    let config = common::kube::config(&fleet, dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("knownHosts: accept-new ", "knownHosts: console ")
        .replace(
            "allowedSshCidrs: [203.0.113.7/32]",
            "allowedSshCidrs: [self]",
        );
    assert!(
        text.contains("allowedSshCidrs: [self]"),
        "the shipped config's SSH CIDRs moved"
    );
    let (bucket, key) = STATE.trim_start_matches("s3://").split_once('/').unwrap();
    let text = text.replacen(
        "\nspec:\n",
        &format!(
            "\nspec:\n  state:\n    backend: s3\n    bucket: {bucket}\n    key: {key}\n  backup:\n    to: {BACKUPS}\n    keep: 2\n"
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let state = dir.path().join("state");
    let env = Env {
        sb: &sb,
        config: &config,
        state: &state,
        ip_url: my_ip_service(RUNNER_IP),
    };

    // Before enforcement: the policy (moto's STS answers the account), the users, the
    // backups bucket (made once by an administrator, like the state bucket by `state init`).
    let policy = parts(&sb, &config, dir.path());
    let admin = user(
        &sb,
        "admin",
        &[serde_json::json!({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]})],
    );
    let deployer = user(&sb, "deployer", &policy);
    let minus: Vec<serde_json::Value> = policy
        .iter()
        .map(|p| {
            let mut p = p.clone();
            for s in p["Statement"].as_array_mut().unwrap() {
                let a: Vec<String> = serde_json::from_value(s["Action"].clone()).unwrap();
                s["Action"] = serde_json::json!(
                    a.into_iter()
                        .filter(|a| a != "ec2:CreateSubnet")
                        .collect::<Vec<_>>()
                );
            }
            p["Statement"] = serde_json::json!(
                p["Statement"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|s| !s["Action"].as_array().unwrap().is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
            );
            p
        })
        .collect();
    let short = user(&sb, "deployer-minus-create-subnet", &minus);
    sb.boto("s3", "create_bucket(Bucket='ecoboot-deployer-backups', CreateBucketConfiguration={'LocationConstraint': 'ap-northeast-2'})");
    let console = common::fleet::console_faults(&fleet, &config);
    let mut faults: serde_json::Value = serde_json::from_str(&console).unwrap();
    faults["credentials"] = serde_json::json!({"key": admin.0, "secret": admin.1});
    sb.faults(&faults.to_string());
    sb.enforce_iam();

    // Enforcement is on: a stranger's key and a policy short of one action are refused.
    let stranger = ("testing".to_string(), "testing".to_string());
    let (code, _, err) = run(&mut env.cmd(&stranger, &["up", "--to", "network", "--yes"]));
    assert_ne!(code, 0, "an unknown key must be refused: {err}");
    env.ok(&deployer, &["state", "init"]);
    let (code, out, err) = run(&mut env.cmd(&short, &["up", "--to", "network", "--yes"]));
    assert_ne!(code, 0, "{out}{err}");
    assert!(
        err.contains("ec2:CreateSubnet"),
        "names the missing action: {err}"
    );

    // The whole life with the deployer's key alone.
    let up = env.ok(&deployer, &["up", "--yes"]);
    assert!(
        up.contains(&format!("port 22 open to this machine ({RUNNER_IP}/32)")),
        "{up}"
    );
    assert!(
        up.contains(&format!("port 22 closed to {RUNNER_IP}/32")),
        "{up}"
    );
    assert_eq!(
        env.runner_rules(&admin),
        Vec::<String>::new(),
        "nothing left open after up"
    );
    assert!(
        up.contains("pod network") && up.contains("passed"),
        "up ends with the validation table: {up}"
    );
    env.ok(&deployer, &["up", "--yes"]);
    env.ok(&deployer, &["status"]);
    validate_names_what_breaks(&env, &deployer, &api);

    // kill -9 while the rule is open: the next run (after the operator's unlock) revokes it.
    let mut child = env
        .cmd(&deployer, &["up", "--yes", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(
        lines.any(|l| l.unwrap().contains("port 22 open to this machine")),
        "the run opened port 22"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    let left = env.runner_rules(&admin);
    assert_eq!(left.len(), 1, "{left:?}");
    let show = env.ok(&deployer, &["state", "show"]);
    let id = show
        .lines()
        .find_map(|l| l.strip_prefix("lock: "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    env.ok(&deployer, &["unlock", "--force", &id]);
    let backup = env.ok(&deployer, &["backup"]);
    assert!(
        backup.contains("uploaded s3://ecoboot-deployer-backups/etcd/sesacthon/backups/"),
        "{backup}"
    );
    assert_eq!(
        env.runner_rules(&admin),
        Vec::<String>::new(),
        "the killed run's rule and backup's own are gone"
    );

    // Ctrl-C: `argocd ui` holds the rule until interrupted.
    let mut child = env
        .cmd(&deployer, &["argocd", "ui", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert!(lines.any(|l| l.unwrap().starts_with("ArgoCD UI:")));
    assert_eq!(
        env.runner_rules(&admin).len(),
        1,
        "open while the tunnel runs"
    );
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert!(child.wait().unwrap().success());
    assert_eq!(
        env.runner_rules(&admin),
        Vec::<String>::new(),
        "Ctrl-C revoked it"
    );

    let down = env.ok(&deployer, &["down", "--yes"]);
    assert!(
        down.contains("deleted") || down.contains("delete"),
        "{down}"
    );
    let vpcs = sb.boto_script_as(
        (&admin.0, &admin.1),
        "ec2",
        "print(json.dumps(c.describe_vpcs(Filters=[{'Name': 'tag:ecoboot.io/cluster', 'Values': ['sesacthon']}])['Vpcs']))",
    );
    assert_eq!(
        vpcs.trim(),
        "[]",
        "down removed the VPC (and its group with every rule)"
    );
    let _ = std::io::stdout().flush();
}

/// #29 `ecoboot validate` after `up`: passes; Calico unready on one node fails the pod-network
/// probes through that node, naming it and the cause; a stopped kubelet fails naming the node;
/// both back, it passes again. Probe pods are gone after every run.
fn validate_names_what_breaks(env: &Env, key: &(String, String), api: &KubeApi) {
    let validate = |args: &[&str]| run(&mut env.cmd(key, &[&["validate"], args].concat()));
    let (code, out, err) = validate(&["--output", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    let report: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let checks = report["checks"].as_array().unwrap();
    for kind in [
        "nodes",
        "static pods",
        "critical pods",
        "pod network",
        "dns",
        "applications",
    ] {
        assert!(
            checks.iter().any(|c| c["check"] == kind && c["ok"] == true),
            "{kind}: {report}"
        );
    }
    let probes = |api: &KubeApi| {
        (api.objects("Pod").unwrap().into_iter())
            .filter(|p| p["metadata"]["namespace"] == "ecoboot-validate")
            .count()
    };
    assert_eq!(probes(api), 0, "probe pods removed");

    let hold = r#"{"kind": "Node", "name": "k8s-api-scan", "calico": false}"#;
    api.hook("POST", "/_double/hold", hold);
    let (code, out, err) = validate(&[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL  pod network    k8s-api-my → k8s-api-scan"),
        "{out}"
    );
    assert!(out.contains("Calico is not Ready on k8s-api-scan"), "{out}");
    assert!(err.contains("check(s) failed"), "{err}");
    api.hook("POST", "/_double/unhold", hold);
    let stopped = r#"{"kind": "Node", "name": "k8s-worker-ai", "ready": false}"#;
    api.hook("POST", "/_double/hold", stopped);
    let (code, out, _) = validate(&[]);
    assert_eq!(code, 1);
    assert!(
        out.contains("FAIL  nodes          k8s-worker-ai: NotReady"),
        "{out}"
    );
    api.hook("POST", "/_double/unhold", stopped);
    env.ok(key, &["up", "--yes"]);
    let (code, out, err) = validate(&["--wait", "30s"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(probes(api), 0);
}
