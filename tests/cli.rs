//! The real binary: help, stage listing, plan, exit codes, output modes.

mod common;

use common::{config_with_key, ecoboot, run, shipped_config};

const IDS: [&str; 12] = [
    "network",
    "iam",
    "instances",
    "load-balancer",
    "prepare-nodes",
    "init-master",
    "join-control-plane",
    "join-workers",
    "install-cni",
    "label-nodes",
    "install-argocd",
    "root-app",
];

#[test]
fn help_lists_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(ecoboot(dir.path()).arg("--help"));
    assert_eq!(code, 0);
    for cmd in ["up", "stage", "plan", "stages", "status", "down"] {
        assert!(
            out.contains(&format!("  {cmd}")),
            "--help lacks {cmd}:\n{out}"
        );
    }
}

#[test]
fn stages_prints_ids_in_order_with_titles() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(ecoboot(dir.path()).arg("stages"));
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 12);
    for (line, id) in lines.iter().zip(IDS) {
        let mut parts = line.splitn(2, char::is_whitespace);
        assert_eq!(parts.next(), Some(id));
        assert!(
            !parts.next().unwrap().trim().is_empty(),
            "title missing in `{line}`"
        );
    }
}

#[test]
fn bad_config_exits_2_with_every_diagnostic_on_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shipped_config())
        .unwrap()
        .replace("name: k8s-api-my", "name: k8s-api-auth")
        .replacen(
            "        tier: \"platform\"",
            "        node-role.kubernetes.io/control-plane: \"\"",
            1,
        );
    let lines: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| {
            l.contains("node-role.kubernetes.io/control-plane: \"\"")
                || l.contains("name: k8s-api-auth")
        })
        .map(|(i, _)| i + 1)
        .collect();
    let (label_line, dup_line) = (lines[0], lines[2]);
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, text).unwrap();
    let (code, out, err) = run(ecoboot(dir.path()).arg("-c").arg(&bad).arg("plan"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("2 problems in"), "{err}");
    assert!(
        err.contains("reserved prefix `node-role.kubernetes.io/`"),
        "{err}"
    );
    assert!(err.contains("duplicate node name `k8s-api-auth`"), "{err}");
    assert!(
        err.contains(&format!("bad.yaml:{label_line}:")),
        "label span line {label_line}:\n{err}"
    );
    assert!(
        err.contains(&format!("bad.yaml:{dup_line}:")),
        "duplicate span line {dup_line}:\n{err}"
    );
}

#[test]
fn unknown_stage_and_bad_flags_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(shipped_config())
        .args(["stage", "nope"]));
    assert_eq!(code, 2);
    assert!(err.contains("unknown stage `nope`"), "{err}");
    let (code, _, _) = run(ecoboot(dir.path()).arg("--frobnicate"));
    assert_eq!(code, 2);
    let (code, _, err) = run(ecoboot(dir.path())
        .env_remove("ECOBOOT_YES")
        .arg("-c")
        .arg(shipped_config())
        .arg("down"));
    assert_eq!(code, 2, "down without --yes and without a terminal refuses");
    assert!(err.contains("--yes"), "{err}");
}

#[test]
fn missing_config_file_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(ecoboot(dir.path()).args(["-c", "/nonexistent/cluster.yaml", "plan"]));
    assert_eq!(code, 2);
    assert!(err.contains("cannot read the config file"), "{err}");
}

#[test]
fn a_stage_without_its_prerequisite_fails_naming_it_and_journals_it() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    let (code, out, err) =
        run(ecoboot(dir.path())
            .arg("-c")
            .arg(&config)
            .args(["up", "--from", "install-cni"]));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("needs the cluster's admin.conf, which stage `init-master` provides"),
        "{err}"
    );
    let state_path = dir.path().join("sesacthon/state.json");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_path).unwrap()).unwrap();
    assert_eq!(state["stages"]["install-cni"]["status"], "failed");
    assert_eq!(state["stages"]["install-cni"]["attempts"], 1);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(&state_path).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
    let logs = std::fs::read_dir(dir.path().join("sesacthon/logs"))
        .unwrap()
        .count();
    assert_eq!(logs, 1, "one debug log per run");
    let (_, status, _) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(&config)
        .args(["status", "--output", "json"])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_MAX_ATTEMPTS", "1"));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["stages"][8]["id"], "install-cni");
    assert_eq!(status["stages"][8]["status"], "failed");
    let probe = status["stages"][0]["probe"].as_str().unwrap();
    assert!(
        probe.starts_with("cannot probe: AWS DescribeVpcs"),
        "{probe}"
    );
    assert_eq!(status["stages"].as_array().unwrap().len(), 12);
}

#[test]
fn corrupt_or_newer_state_exits_4_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    let state = dir.path().join("sesacthon/state.json");
    std::fs::create_dir_all(state.parent().unwrap()).unwrap();
    for text in [
        "{\"schema\": 1, \"cluster\": \"sesac",
        "{\"schema\": 7, \"cluster\": \"sesacthon\"}",
    ] {
        std::fs::write(&state, text).unwrap();
        let (code, _, err) = run(ecoboot(dir.path()).arg("-c").arg(&config).arg("up"));
        assert_eq!(code, 4, "{err}");
        assert!(
            err.contains(state.to_str().unwrap()),
            "message names the path: {err}"
        );
        assert_eq!(
            std::fs::read_to_string(&state).unwrap(),
            text,
            "state file untouched"
        );
    }
}

#[test]
fn json_output_is_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(ecoboot(dir.path()).arg("-c").arg(shipped_config()).args([
        "plan",
        "--from",
        "prepare-nodes",
        "--output",
        "json",
    ]));
    assert_eq!(code, 0);
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).expect(l))
        .collect();
    assert!(
        events
            .iter()
            .all(|e| e["ts"].is_string() && e["event"].is_string())
    );
    let plans = events.iter().filter(|e| e["event"] == "stage_plan").count();
    assert_eq!(plans, 7);
}

#[test]
fn github_actions_mode_groups_annotates_and_writes_the_summary() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    let summary = dir.path().join("summary.md");
    let (code, out, _) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(&config)
        .args(["up", "--from", "prepare-nodes"])
        .env("GITHUB_ACTIONS", "true")
        .env("CI", "true")
        .env("GITHUB_STEP_SUMMARY", &summary));
    assert_eq!(code, 1);
    assert!(out.contains("::group::prepare-nodes: "), "{out}");
    assert!(out.contains("::endgroup::"), "{out}");
    assert!(
        out.contains("::error title=ecoboot stage prepare-nodes failed::"),
        "{out}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains("| stage | status | duration |") && md.contains("| prepare-nodes | failed |"),
        "{md}"
    );
    assert!(
        !out.contains('\u{1b}'),
        "no control characters in CI output"
    );
}

#[test]
fn missing_aws_credentials_get_a_short_diagnostic() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(shipped_config())
        .arg("plan")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_WEB_IDENTITY_TOKEN_FILE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_MAX_ATTEMPTS", "1"));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no AWS credentials were found"), "{err}");
    assert!(!err.contains("DispatchFailure"), "no debug dump: {err}");
}

#[test]
fn the_public_key_is_required_only_by_runs_that_import_it() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(shipped_config())
        .unwrap()
        .replace("~/.ssh/sesacthon.pub", "/nonexistent/key.pub");
    let config = dir.path().join("cluster.yaml");
    std::fs::write(&config, text).unwrap();
    let (code, _, err) = run(ecoboot(dir.path()).arg("-c").arg(&config).args([
        "up",
        "--from",
        "instances",
        "--to",
        "instances",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cannot read public key /nonexistent/key.pub"),
        "{err}"
    );
    let (code, _, err) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(&config)
        .args(["stage", "prepare-nodes"]));
    assert_eq!(code, 1, "{err}");
    assert!(!err.contains("public key"), "{err}");
    assert!(
        err.contains("needs the address of node `k8s-master`, which stage `instances` provides"),
        "{err}"
    );
}

#[test]
fn support_windows_warn_in_plan_status_and_the_github_summary() {
    let dir = tempfile::tempdir().unwrap();
    let config = config_with_key(dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen("version: \"1.36\"", "version: \"1.35\"", 1),
    )
    .unwrap();
    let soon = "Kubernetes 1.35 leaves upstream support in 58 day(s), on 2027-02-28";
    // On the fixed test day 1.35 has months left: no warning.
    let (code, out, _) = run(ecoboot(dir.path()).arg("-c").arg(&config).args([
        "plan",
        "--from",
        "prepare-nodes",
        "--output",
        "json",
    ]));
    assert_eq!(code, 5, "unreachable test nodes make the plan incomplete");
    assert!(!out.contains("\"event\":\"warning\""), "{out}");
    // Within 60 days of its end: plan (JSON event), up in Actions (annotation and summary).
    let (code, out, _) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(&config)
        .args(["plan", "--from", "prepare-nodes", "--output", "json"])
        .env("ECOBOOT_TODAY", "2027-01-01"));
    assert_eq!(code, 5);
    let warning = out
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|e| e["event"] == "warning")
        .expect("a warning event");
    assert_eq!(warning["message"], soon);
    assert!(
        warning["help"]
            .as_str()
            .unwrap()
            .contains("ecoboot upgrade --to 1.36"),
        "{warning}"
    );
    let summary = dir.path().join("summary.md");
    let (_, out, _) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(&config)
        .args(["up", "--from", "prepare-nodes"])
        .env("ECOBOOT_TODAY", "2027-01-01")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary));
    assert!(
        out.contains(&format!("::warning title=Kubernetes 1.35::{soon}")),
        "{out}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(md.contains(&format!("> [!WARNING]\n> {soon}")), "{md}");
    let (_, status, _) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(&config)
        .args(["status", "--output", "json"])
        .env("ECOBOOT_TODAY", "2027-01-01")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_MAX_ATTEMPTS", "1"));
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["support"][0]["message"], soon, "{status}");
    // Past its end it is refused, unless explicitly allowed (then every run warns).
    let (code, _, err) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(&config)
        .args(["plan", "--from", "prepare-nodes"])
        .env("ECOBOOT_TODAY", "2027-03-01"));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("(supported: 1.36, 1.37)"), "{err}");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replacen(
            "version: \"1.35\"",
            "version: \"1.35\"\n    allowUnsupportedVersion: true",
            1,
        ),
    )
    .unwrap();
    let (code, out, err) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(&config)
        .args(["plan", "--from", "prepare-nodes"])
        .env("ECOBOOT_TODAY", "2027-03-01"));
    assert_eq!(code, 5, "{err}");
    assert!(
        out.contains("warning: Kubernetes 1.35 is out of upstream support since 2027-02-28"),
        "{out}"
    );
}
