//! #27 README's "Running from GitHub Actions: one-time setup" runs as written: every `sh` block
//! of that section, in order, in a fresh home and checkout, against the AWS emulator with IAM
//! enforced (an administrator's key, as the section asks), with a recording `gh` (GitHub
//! itself cannot be reached here). Then: the account holds what the workflow needs, `gh` was
//! asked to set exactly the variables and secret bootstrap.yml reads, the dispatches name
//! real inputs, and a second `github setup` changes nothing.

mod common;

use std::path::Path;

use common::aws::AwsSandbox;

const SECTION: &str = "### Running from GitHub Actions: one-time setup";

/// The `sh` blocks of README's setup section, unindented, in order.
fn commands() -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme.find(SECTION).expect("the section");
    let rest = &readme[start..];
    let end = rest[SECTION.len()..]
        .find("\n## ")
        .map_or(rest.len(), |i| i + SECTION.len());
    let mut out = Vec::new();
    let mut block: Option<Vec<String>> = None;
    for line in rest[..end].lines() {
        let t = line.trim_start();
        match (&mut block, t) {
            (None, "```sh") => block = Some(Vec::new()),
            (Some(b), "```") => {
                out.append(b);
                block = None;
            }
            (Some(b), _) => b.push(t.to_string()),
            _ => {}
        }
    }
    assert!(out.len() >= 5, "{out:?}");
    out
}

const GH: &str = r#"#!/bin/sh
# A recording gh: one line per call, and what came on stdin for `secret set`/`variable set`
# without --body.
if [ "$1" = "--version" ]; then echo "gh version 2.63.0 (recording)"; exit 0; fi
printf '%s\n' "$*" >> "$GH_LOG"
case "$*" in *"--body"*) ;; *" set "*) printf 'stdin:%s\n' "$(cat | head -c 40)" >> "$GH_LOG" ;; esac
"#;

#[test]
fn the_github_setup_section_of_readme_runs_as_written() {
    let sb = AwsSandbox::start_with(true);
    let admin = sb.boto_script(
        "iam",
        "c.create_user(UserName='admin')\n\
         c.put_user_policy(UserName='admin', PolicyName='all', PolicyDocument=json.dumps({'Version': '2012-10-17', 'Statement': [{'Effect': 'Allow', 'Action': '*', 'Resource': '*'}]}))\n\
         k = c.create_access_key(UserName='admin')['AccessKey']\n\
         print(k['AccessKeyId'] + ' ' + k['SecretAccessKey'])",
    );
    let (key, secret) = admin.trim().split_once(' ').unwrap();
    sb.enforce_iam();

    let dir = tempfile::tempdir().unwrap();
    let (home, checkout, bin) = (
        dir.path().join("home"),
        dir.path().join("repo"),
        dir.path().join("bin"),
    );
    for d in [home.join(".ssh"), checkout.join("inventory"), bin.clone()] {
        std::fs::create_dir_all(&d).unwrap();
    }
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_ecoboot"), bin.join("ecoboot")).unwrap();
    std::fs::write(bin.join("gh"), GH).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(bin.join("gh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = dir.path().join("gh.log");
    let script = format!("set -euo pipefail\n{}\n", commands().join("\n"));
    let run = |script: &str| {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("-c").arg(script);
        sb.env(&mut cmd);
        let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
        cmd.current_dir(&checkout)
            .env("HOME", &home)
            .env("PATH", path)
            .env("GH_LOG", &log)
            .env("AWS_ACCESS_KEY_ID", key)
            .env("AWS_SECRET_ACCESS_KEY", secret)
            .env("ECOBOOT_TODAY", "2026-11-23")
            .env("ECOBOOT_MY_IP_URL", "http://127.0.0.1:9/")
            .env("NO_COLOR", "1")
            .env_remove("ECOBOOT_YES")
            .env_remove("GITHUB_ACTIONS")
            .stdin(std::process::Stdio::null());
        let out = cmd.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "README commands failed:\n{script}\n{text}"
        );
        text
    };
    let first = run(&script);
    assert!(
        first.contains("create role"),
        "the plan is shown first: {first}"
    );

    // The account: the provider, the role (exactly this repository's environment, 7200 s),
    // its policy, the state bucket.
    let iam = sb.boto_script_as(
        (key, secret),
        "iam",
        "r = c.get_role(RoleName='ecoboot-github-prod')['Role']\n\
         att = c.list_attached_role_policies(RoleName='ecoboot-github-prod')['AttachedPolicies']\n\
         p = c.list_open_id_connect_providers()['OpenIDConnectProviderList']\n\
         print(json.dumps({'path': r['Path'], 'max': r['MaxSessionDuration'], 'trust': r['AssumeRolePolicyDocument'], 'attached': len(att), 'providers': [x['Arn'] for x in p]}))",
    );
    let iam: serde_json::Value = serde_json::from_str(&iam).unwrap();
    assert_eq!(iam["path"], "/ecoboot-deployer/");
    assert_eq!(iam["max"], 7200);
    let trust = iam["trust"].to_string();
    assert!(
        trust.contains("repo:my-org/platform:environment:production"),
        "{trust}"
    );
    assert!(trust.contains("sts.amazonaws.com"), "{trust}");
    assert!(iam["attached"].as_u64().unwrap() >= 1);
    assert!(
        iam["providers"][0]
            .as_str()
            .unwrap()
            .ends_with("oidc-provider/token.actions.githubusercontent.com")
    );
    let buckets = sb.boto_script_as(
        (key, secret),
        "s3",
        "print(json.dumps([b['Name'] for b in c.list_buckets()['Buckets']]))",
    );
    assert!(buckets.contains("my-org-ecoboot-state"), "{buckets}");
    let config = std::fs::read_to_string(checkout.join("inventory/prod.yaml")).unwrap();
    assert!(config.contains("backend: s3") && config.contains("bucket: my-org-ecoboot-state"));

    // gh: exactly what bootstrap.yml reads, the secret from the key file, real inputs.
    let gh = std::fs::read_to_string(&log).unwrap();
    let workflow = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(".github/workflows/bootstrap.yml"),
    )
    .unwrap();
    assert!(gh.contains("api --method PUT repos/my-org/platform/environments/production -F deployment_branch_policy[protected_branches]=true"), "{gh}");
    for name in [
        "AWS_ROLE_ARN",
        "ECOBOOT_STATE",
        "SSH_PUBLIC_KEY",
        "ECOBOOT_CONFIG",
    ] {
        assert!(
            gh.contains(&format!("variable set {name} --repo my-org/platform")),
            "{name}: {gh}"
        );
        assert!(
            workflow.contains(&format!("vars.{name}")),
            "bootstrap.yml reads {name}"
        );
    }
    assert!(gh.contains("variable set AWS_ROLE_ARN --repo my-org/platform --env production --body arn:aws:iam::123456789012:role/ecoboot-deployer/ecoboot-github-prod"), "{gh}");
    assert!(gh.contains("secret set SSH_PRIVATE_KEY --repo my-org/platform --env production\nstdin:-----BEGIN OPENSSH PRIVATE KEY-----"), "{gh}");
    assert!(workflow.contains("secrets.SSH_PRIVATE_KEY"));
    assert!(
        !first.contains("BEGIN OPENSSH PRIVATE KEY"),
        "the key never reaches the output"
    );
    let wf: serde_json::Value = serde_saphyr::from_str(&workflow).unwrap();
    let inputs = &wf["on"]["workflow_dispatch"]["inputs"];
    let dispatches: Vec<&str> = gh
        .lines()
        .filter(|l| l.starts_with("workflow run bootstrap.yml"))
        .collect();
    assert_eq!(dispatches.len(), 4, "{gh}");
    for d in dispatches {
        for pair in d.split(" -f ").skip(1) {
            let (name, value) = pair.split_once('=').unwrap();
            let spec = &inputs[name];
            assert!(spec.is_object(), "bootstrap.yml has no input {name}");
            if let Some(options) = spec["options"].as_array() {
                assert!(
                    options.iter().any(|o| o == value),
                    "{name}={value} is not one of {options:?}"
                );
            }
        }
    }

    // Idempotent: a second setup plans nothing for the role and its policy.
    let again = run(
        "ecoboot -c inventory/prod.yaml github setup --repo my-org/platform --environment production --yes",
    );
    assert!(
        !again.contains("create role") && !again.contains("update the deployer policy"),
        "{again}"
    );
}
