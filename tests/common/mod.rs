//! Helpers for tests that run the real `ecoboot` binary.
#![allow(dead_code)]

pub mod actions;
pub mod aws;
pub mod deployer;
pub mod fleet;
pub mod kube;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The shipped config, by absolute path.
pub fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/cluster.yaml")
}

/// The day every test runs on (support windows, warnings).
pub const TODAY: &str = "2026-11-23";

/// A `Command` for the built binary with a clean, non-interactive environment.
pub fn ecoboot(state_dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ecoboot"));
    cmd.env("ECOBOOT_STATE_DIR", state_dir)
        .env_remove("ECOBOOT_CONFIG")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("ECOBOOT_LOG")
        .env("NO_COLOR", "1")
        // Support windows are judged on a fixed day: the tests never read the clock.
        .env("ECOBOOT_TODAY", TODAY)
        // Commands that change things need consent; the tests give it once here (the refusal
        // without it is tested with this variable removed).
        .env("ECOBOOT_YES", "1")
        // Loopback only: no instance-metadata probe, and AWS calls go nowhere unless the test
        // points them at its sandbox (`AwsSandbox::env` overrides both).
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        // `allowedSshCidrs: self` never asks the internet for this machine's address.
        .env("ECOBOOT_MY_IP_URL", "http://127.0.0.1:9/")
        .stdin(std::process::Stdio::null());
    // A real API server has no kubelet to run `validate`'s probe pods: `up` skips it there.
    if std::env::var_os("ECOBOOT_TEST_KUBECONFIG").is_some() {
        cmd.env("ECOBOOT_NO_VALIDATE", "1");
    }
    cmd
}

/// Runs and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run ecoboot");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A copy of the shipped config in `dir` whose public key is a freshly generated one.
pub fn config_with_key(dir: &Path) -> PathBuf {
    config_named(dir, "sesacthon")
}

/// `text` with the runtime artefacts (containerd, runc) fetched from the sandbox mirror that the
/// simulated `curl` serves, pinned by the sha256 of what it serves (the same as in
/// inventory/sandbox.yaml): the test nodes have no internet.
pub fn sandbox_mirror(text: &str) -> String {
    let sandbox = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("inventory/sandbox.yaml"),
    )
    .unwrap();
    let mut out = text.to_string();
    for what in ["containerd", "runc"] {
        let pick = |t: &str, key: &str| -> String {
            let start = t.find(&format!("\n    {what}:")).expect(what);
            t[start..]
                .lines()
                .find(|l| l.trim_start().starts_with(key))
                .unwrap()
                .to_string()
        };
        for key in ["url:", "sha256:"] {
            out = out.replacen(&pick(text, key), &pick(&sandbox, key), 1);
        }
    }
    out
}

/// Like [`config_with_key`], with cluster name `name`.
pub fn config_named(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join("id");
    if !key.exists() {
        let ok = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "ecoboot-test", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen")
            .success();
        assert!(ok);
    }
    let text = std::fs::read_to_string(shipped_config())
        .unwrap()
        .replace("~/.ssh/sesacthon.pub", dir.join("id.pub").to_str().unwrap())
        .replace(
            "metadata:\n  name: sesacthon",
            &format!("metadata:\n  name: {name}"),
        )
        .replace("connectTimeoutSeconds: 300", "connectTimeoutSeconds: 1")
        // The emulator has no real console; the e2e test switches back to `console` with the
        // fleet's real fingerprints served by the fault proxy.
        .replace("knownHosts: console ", "knownHosts: accept-new ")
        // A fixed SSH CIDR: the tests of `self` (deployer.rs, workflow.rs) switch back and
        // serve the what's-my-IP answer on loopback.
        .replace(
            "allowedSshCidrs: [self]",
            "allowedSshCidrs: [203.0.113.7/32]",
        );
    assert!(text.contains("allowedSshCidrs: [203.0.113.7/32]"));
    let text = sandbox_mirror(&text);
    // The load balancer controller's policy from its upstream test copy (no download).
    let lb = "        sha256: 16f232c9d9f79366fe949c4550ad517a202380058a9e48d45a4e215044a20a6a\n";
    assert!(
        text.contains(lb),
        "the shipped config pins the LB controller policy"
    );
    let lb_path = kube::testdata("aws-load-balancer-controller-iam-policy-v3.5.0.json");
    let text = text.replace(lb, &format!("{lb}        path: {}\n", lb_path.display()));
    // Every node gets a loopback SSH address (port 1: nothing listens), so no stage or probe
    // ever connects to the 10.x / public addresses the AWS emulator hands out.
    let mut out = String::new();
    let mut n = 0;
    for line in text.lines() {
        out.push_str(line);
        out.push('\n');
        if line.starts_with("      subnet: ") {
            n += 1;
            out.push_str(&format!("      address: \"127.0.1.{n}:1\"\n"));
        }
    }
    assert_loopback_only(&out);
    let path = dir.join("cluster.yaml");
    std::fs::write(&path, out).unwrap();
    path
}

/// Panics unless every node has an `address:` on 127.0.0.0/8.
pub fn assert_loopback_only(config_text: &str) {
    let nodes = config_text.matches("\n    - name: ").count();
    let addresses: Vec<&str> = config_text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("address: "))
        .collect();
    assert_eq!(
        addresses.len(),
        nodes,
        "every node has a static test address"
    );
    for a in addresses {
        assert!(
            a.trim_matches('"').starts_with("127."),
            "SSH test target {a} is not loopback"
        );
    }
}

/// Every byte of every file under `dir`, as (lossy) text: for scanning what ecoboot wrote.
pub fn read_tree(dir: &Path) -> String {
    let mut all = String::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path)
            } else {
                all.push_str(&String::from_utf8_lossy(&std::fs::read(path).unwrap()))
            }
        }
    }
    all
}

/// True if `text` holds something shaped like a kubeadm bootstrap token (abcdef.0123456789abcdef).
pub fn has_token(text: &str) -> bool {
    let b = text.as_bytes();
    let w = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    (0..b.len().saturating_sub(22)).any(|i| {
        (i == 0 || !w(b[i - 1]))
            && b[i..i + 6].iter().all(|c| w(*c))
            && b[i + 6] == b'.'
            && b[i + 7..i + 23].iter().all(|c| w(*c))
            && (i + 23 == b.len() || !w(b[i + 23]))
    })
}
