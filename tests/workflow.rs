//! #27 bootstrap.yml's `bootstrap` job, run step by step from the YAML against the sandbox
//! (moto, the 14-node fleet, the API double) as GitHub would run it: each `run:` with the env
//! GitHub gives it, GITHUB_OUTPUT/ENV/STEP_SUMMARY files, and the `uses:` steps replaced by
//! their local equivalents (checkout: the workspace; download-artifact: the built binary;
//! configure-aws-credentials: the sandbox's keys, its inputs checked; upload-artifact: a copy).
//! Each dispatch starts on a fresh workspace, as on a hosted runner: only S3 carries state.
//! Dispatches: a repository missing its settings (preflight names each, nothing else runs),
//! plan, up, `down` with dry_run (nothing deleted), `down` with a wrong name (refused), `down`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::actions::{Context, Record, Uses, run_job};
use common::aws::AwsSandbox;
use common::fleet::Fleet;
use common::kube::KubeApi;
use serde_json::{Value, json};

const NODES: usize = 14;
const STATE: &str = "s3://ecoboot-workflow-state/ci";

struct Repo {
    workflow: Value,
    config_text: String,
    private_key: String,
    public_key: String,
    sb: AwsSandbox,
    ip_url: String,
    artifacts: Vec<String>,
    run_id: u32,
}

fn my_ip_service() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            let _ = s.read(&mut [0u8; 1024]);
            let _ = s.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nConnection: close\r\n\r\n203.0.113.99\n",
            );
        }
    });
    url
}

impl Repo {
    /// One dispatch of `inputs` with the repository settings `vars`/`secrets`, attempt
    /// `attempt`, on a fresh workspace. Returns the step records.
    fn dispatch(
        &mut self,
        inputs: Value,
        vars: &[(&str, &str)],
        secrets: bool,
        attempt: u32,
    ) -> Vec<Record> {
        let ws = tempfile::tempdir().unwrap();
        let home = ws.path().join("home");
        std::fs::create_dir_all(ws.path().join("inventory")).unwrap();
        std::fs::create_dir_all(&home).unwrap();
        std::fs::write(ws.path().join("inventory/cluster.yaml"), &self.config_text).unwrap();
        let mut cx = Context::default();
        let defaults = self.workflow["on"]["workflow_dispatch"]["inputs"]
            .as_object()
            .unwrap()
            .clone();
        for (k, spec) in defaults {
            let v = inputs.get(&k).cloned().unwrap_or(spec["default"].clone());
            cx.inputs.insert(k, v);
        }
        cx.vars = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        if secrets {
            cx.secrets
                .insert("SSH_PRIVATE_KEY".into(), self.private_key.clone());
        }
        if attempt == 1 {
            self.run_id += 1;
        }
        cx.github = [
            ("run_id", self.run_id.to_string().as_str()),
            ("workspace", ws.path().to_str().unwrap()),
            ("repository", "octo-org/platform"),
            ("token", "ghs_not-a-real-token"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        cx.github.insert("run_attempt".into(), attempt.to_string());
        let artifact = cx.render(
            self.workflow["jobs"]["build"]["outputs"]["artifact"]
                .as_str()
                .unwrap(),
        );
        cx.needs.insert(
            "build".into(),
            [("artifact".to_string(), artifact.clone())].into(),
        );
        let mut base: BTreeMap<String, String> = [
            ("PATH", std::env::var("PATH").unwrap()),
            ("HOME", home.display().to_string()),
            ("NO_COLOR", "1".into()),
            ("ECOBOOT_TODAY", "2026-11-23".into()),
            // The runner's internet: the what's-my-IP service (loopback here).
            ("ECOBOOT_MY_IP_URL", self.ip_url.clone()),
            (
                "ECOBOOT_TESTDATA",
                std::env::var("ECOBOOT_TESTDATA").unwrap_or_default(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let mut aws_env = BTreeMap::new();
        self.sb
            .env(&mut std::process::Command::new("true"))
            .get_envs()
            .for_each(|(k, v)| {
                if let Some(v) = v {
                    aws_env.insert(
                        k.to_string_lossy().into_owned(),
                        v.to_string_lossy().into_owned(),
                    );
                }
            });
        base.extend(
            aws_env
                .iter()
                .filter(|(k, _)| {
                    k.starts_with("AWS_ENDPOINT") || k.contains("FILE") || k.contains("METADATA")
                })
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let job = &self.workflow["jobs"]["bootstrap"];
        let timeout = job["timeout-minutes"].as_u64().unwrap();
        let artifacts = &mut self.artifacts;
        let mut uses = |u: &Uses, _cx: &Context| -> Result<BTreeMap<String, String>, String> {
            match u.action.as_str() {
                "actions/checkout" => {
                    assert_eq!(
                        u.with.get("persist-credentials").map(String::as_str),
                        Some("false")
                    );
                    Ok(BTreeMap::new())
                }
                "actions/download-artifact" => {
                    assert_eq!(
                        u.with["name"], artifact,
                        "the build job's artifact of this run"
                    );
                    let dir = ws.path().join(&u.with["path"]);
                    std::fs::create_dir_all(&dir).unwrap();
                    std::fs::copy(env!("CARGO_BIN_EXE_ecoboot"), dir.join("ecoboot")).unwrap();
                    Ok(BTreeMap::new())
                }
                "aws-actions/configure-aws-credentials" => {
                    let w = &u.with;
                    if w["role-to-assume"].is_empty() {
                        return Err("role-to-assume is empty".into());
                    }
                    let duration: u64 = w["role-duration-seconds"].parse().unwrap();
                    assert_eq!(
                        duration, 7200,
                        "the role's MaxSessionDuration (github setup)"
                    );
                    assert!(timeout * 60 <= duration, "the job outlives its credentials");
                    assert!(
                        !w["aws-region"].is_empty(),
                        "no region: never a silent default"
                    );
                    let mut env = aws_env.clone();
                    env.insert("AWS_REGION".into(), w["aws-region"].clone());
                    Ok(env)
                }
                "actions/upload-artifact" => {
                    let name = u.with["name"].clone();
                    assert!(
                        !artifacts.contains(&name),
                        "artifact {name} uploaded twice (409)"
                    );
                    artifacts.push(name);
                    Ok(BTreeMap::new())
                }
                other => Err(format!("no local equivalent for {other}")),
            }
        };
        run_job(
            &self.workflow,
            "bootstrap",
            &mut cx,
            ws.path(),
            &base,
            &mut uses,
        )
    }
}

fn outcome<'a>(records: &'a [Record], prefix: &str) -> &'a Record {
    records
        .iter()
        .find(|r| r.name.starts_with(prefix))
        .unwrap_or_else(|| panic!("no step {prefix}: {records:#?}"))
}

fn failed(records: &[Record]) -> bool {
    records.iter().any(|r| r.outcome == "failure")
}

fn all_output(records: &[Record]) -> String {
    records
        .iter()
        .map(|r| format!("--- {} [{}]\n{}\n", r.name, r.outcome, r.output))
        .collect()
}

#[test]
fn bootstrap_yml_steps_plan_up_and_down_on_the_sandbox() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/workflows/bootstrap.yml");
    let workflow: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let api = KubeApi::start();
    let sb = AwsSandbox::start();
    let fleet = Fleet::start_with(NODES, Some(&api.admin_conf));
    let dir = tempfile::tempdir().unwrap();
    let config = common::kube::config(&fleet, dir.path());
    sb.faults(&common::fleet::console_faults(&fleet, &config));
    let key = fleet.dir.path().join("keys/id_ed25519");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replace("knownHosts: accept-new ", "knownHosts: console ")
        .replace(
            &format!("identityFile: {}", key.display()),
            "identityFile: ~/.ssh/deploy.pem",
        )
        .replace(
            "allowedSshCidrs: [203.0.113.7/32]",
            "allowedSshCidrs: [self]",
        );
    let text = regex_free_public_key(&text);
    assert!(
        text.contains("identityFile: ~/.ssh/deploy.pem") && text.contains("[self]"),
        "{text}"
    );
    let mut repo = Repo {
        workflow,
        config_text: text,
        private_key: std::fs::read_to_string(&key).unwrap(),
        public_key: std::fs::read_to_string(key.with_extension("pub")).unwrap(),
        sb,
        ip_url: my_ip_service(),
        artifacts: Vec::new(),
        run_id: 4241,
    };
    let public_key = repo.public_key.clone();
    let vars = [
        (
            "AWS_ROLE_ARN",
            "arn:aws:iam::123456789012:role/ecoboot-deployer/ecoboot-github-sesacthon",
        ),
        ("ECOBOOT_STATE", STATE),
        ("SSH_PUBLIC_KEY", public_key.trim()),
    ];
    repo.sb.boto("s3", "create_bucket(Bucket='ecoboot-workflow-state', CreateBucketConfiguration={'LocationConstraint': 'ap-northeast-2'})");

    // A repository without its settings: preflight names each one, nothing else runs.
    let r = repo.dispatch(json!({"command": "up"}), &[], false, 1);
    let pre = outcome(&r, "Preflight");
    assert_eq!(pre.outcome, "failure", "{}", all_output(&r));
    for missing in [
        "AWS_ROLE_ARN",
        "ECOBOOT_STATE",
        "SSH_PRIVATE_KEY",
        "SSH_PUBLIC_KEY",
    ] {
        assert!(
            pre.output.contains(missing),
            "names {missing}: {}",
            pre.output
        );
    }
    assert_eq!(outcome(&r, "AWS credentials").outcome, "skipped");
    assert_eq!(outcome(&r, "ecoboot up").outcome, "skipped");

    // plan, then up. (On the sandbox the nodes have fixed addresses, so a plan past
    // `instances` would try their consoles before they exist; on AWS it waits for them.)
    let r = repo.dispatch(
        json!({"command": "plan", "to": "instances"}),
        &vars,
        true,
        1,
    );
    assert!(!failed(&r), "{}", all_output(&r));
    assert!(
        outcome(&r, "ecoboot plan").output.contains("create VPC"),
        "{}",
        all_output(&r)
    );
    let r = repo.dispatch(json!({"command": "up"}), &vars, true, 1);
    assert!(!failed(&r), "{}", all_output(&r));
    let up = outcome(&r, "ecoboot up");
    assert!(
        up.output
            .contains("port 22 open to this machine (203.0.113.99/32)"),
        "{}",
        up.output
    );
    let summary = &r.last().unwrap().output;
    assert!(
        summary.contains("root-app"),
        "the step summary has the stage table: {summary}"
    );
    assert_eq!(repo.sb.live_instances("sesacthon").len(), NODES);
    // "Re-run failed jobs": attempt 2 of the same run uploads under its own name.
    let r = repo.dispatch(json!({"command": "status"}), &vars, true, 2);
    assert!(!failed(&r), "{}", all_output(&r));

    // down with dry_run previews and deletes nothing; a wrong name is refused before AWS.
    let r = repo.dispatch(json!({"command": "down", "dry_run": true}), &vars, false, 1);
    assert!(!failed(&r), "{}", all_output(&r));
    assert!(
        outcome(&r, "ecoboot down").output.contains("delete"),
        "the plan is shown"
    );
    assert_eq!(
        repo.sb.live_instances("sesacthon").len(),
        NODES,
        "dry run deleted nothing"
    );
    let r = repo.dispatch(
        json!({"command": "down", "confirm": "production"}),
        &vars,
        false,
        1,
    );
    assert_eq!(outcome(&r, "Preflight").outcome, "failure");
    assert!(outcome(&r, "Preflight").output.contains("type `sesacthon`"));
    assert_eq!(repo.sb.live_instances("sesacthon").len(), NODES);
    let r = repo.dispatch(
        json!({"command": "down", "confirm": "sesacthon"}),
        &vars,
        false,
        1,
    );
    assert!(!failed(&r), "{}", all_output(&r));
    assert_eq!(repo.sb.live_instances("sesacthon").len(), 0);
    let journal = repo
        .artifacts
        .iter()
        .filter(|a| a.starts_with("ecoboot-journal-and-logs-"))
        .count();
    assert_eq!(
        journal, 7,
        "one journal artifact per dispatch: {:?}",
        repo.artifacts
    );
    let _ = api;
}

/// The config with its public key path in the runner's home (the workflow writes it there
/// from the SSH_PUBLIC_KEY variable).
fn regex_free_public_key(text: &str) -> String {
    text.lines()
        .map(|l| match l.trim_start().strip_prefix("publicKeyPath: ") {
            Some(_) => format!(
                "{}publicKeyPath: ~/.ssh/deploy.pub",
                &l[..l.len() - l.trim_start().len()]
            ),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}
