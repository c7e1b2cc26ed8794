//! State in S3 (moto, which enforces `If-None-Match` and `If-Match` on PutObject and
//! DeleteObject): `state init`, the lock against a second real process, kill -9 of the holder and
//! `unlock --force`, a journal changed behind a run's back (exit 4, nothing overwritten), and a
//! lost local directory with the S3 state intact (0 changes), `state pull`/`push`, and an expired
//! lease taken over only with `--steal-expired-lock`.

mod common;

use std::path::Path;
use std::time::Duration;

use common::aws::{AwsSandbox, aws_calls, events};
use common::{config_named, ecoboot, run};

const STATE: &str = "s3://ecoboot-state/teams/platform";

fn eco(sb: &AwsSandbox, dir: &Path, config: &Path, args: &[&str]) -> (i32, String, String) {
    let mut cmd = ecoboot(&dir.join("state"));
    sb.env(&mut cmd);
    run(cmd
        .env("ECOBOOT_STATE", STATE)
        .arg("-c")
        .arg(config)
        .args(args))
}

fn spawn(sb: &AwsSandbox, dir: &Path, config: &Path, args: &[&str]) -> std::process::Child {
    let mut cmd = ecoboot(&dir.join("state"));
    sb.env(&mut cmd);
    cmd.env("ECOBOOT_STATE", STATE)
        .arg("-c")
        .arg(config)
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// Another writer: one boto3 S3 call against moto; a string result as it is.
fn s3(sb: &AwsSandbox, call: &str) -> String {
    match sb.boto("s3", call) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

/// Waits until `state show` reports a lock; returns its line.
fn wait_for_lock(sb: &AwsSandbox, dir: &Path, config: &Path) -> String {
    for _ in 0..200 {
        let (_, out, _) = eco(sb, dir, config, &["state", "show"]);
        if let Some(line) = out
            .lines()
            .find(|l| l.starts_with("lock: ") && l.contains(" held by "))
        {
            return line.to_string();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no lock appeared");
}

#[test]
fn s3_state_locks_refuses_stale_writes_and_survives_a_lost_local_dir() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "remote");

    // The bucket, once (idempotent).
    for _ in 0..2 {
        let (code, out, err) = eco(&sb, dir.path(), &config, &["state", "init"]);
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("versioning on"), "{out}");
    }
    let (code, _, err) = eco(&sb, dir.path(), &config, &["up", "--to", "network"]);
    assert_eq!(code, 0, "{err}");
    let (_, show, _) = eco(&sb, dir.path(), &config, &["state", "show"]);
    assert!(show.contains("lock: free"), "released at the end: {show}");
    assert!(show.contains("journal: "), "{show}");

    // A second process while the first holds the lock: exit 3 naming the holder.
    sb.faults(r#"{"delay": {"RunInstances": 6}}"#);
    let mut first = spawn(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    let lock = wait_for_lock(&sb, dir.path(), &config);
    assert!(lock.contains(&format!("pid {}", first.id())), "{lock}");
    let (code, _, err) = eco(&sb, dir.path(), &config, &["up", "--to", "network"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&format!("pid {}", first.id())), "{err}");
    assert!(err.contains("wait for that run to finish"), "{err}");

    // kill -9 of the holder: its lock stays (lease not expired), is never taken silently, and
    // `unlock --force ID` removes exactly it.
    first.kill().unwrap();
    let _ = first.wait();
    let (code, _, err) = eco(
        &sb,
        dir.path(),
        &config,
        &["--steal-expired-lock", "up", "--to", "network"],
    );
    assert_eq!(code, 3, "a live lease is not stolen: {err}");
    let id = err
        .split("unlock --force ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the id to unlock")
        .trim_matches('`')
        .to_string();
    let (code, _, err) = eco(
        &sb,
        dir.path(),
        &config,
        &["unlock", "--force", "0000000000000000"],
    );
    assert_eq!(code, 2, "another id removes nothing: {err}");
    let (code, out, err) = eco(&sb, dir.path(), &config, &["unlock", "--force", &id]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("removed lock {id}")), "{out}");
    sb.faults("{}");
    let (code, _, err) = eco(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");

    // The journal changed behind a run's back (another writer bypassed the lock): the run's next
    // write is refused (exit 4) and the other writer's object is left as it was.
    // (the probe waits 8 s on DescribeVpcs, then fails on DescribeSubnets: the failure is journaled;
    // 8 s leaves room for the other writer's put even when the test binaries share the CPU)
    sb.faults(
        r#"{"delay": {"DescribeVpcs": 8}, "fail": {"DescribeSubnets": ["UnauthorizedOperation", -1]}}"#,
    );
    let racer = spawn(
        &sb,
        dir.path(),
        &config,
        &["--output", "json", "up", "--to", "network"],
    );
    wait_for_lock(&sb, dir.path(), &config);
    let key = "/ecoboot-state/teams/platform/remote/state.json";
    let theirs =
        r#"{"schema": 1, "cluster": "remote", "config_digest": "", "stages": {}, "outputs": {}}"#;
    s3(
        &sb,
        &format!(
            "put_object(Bucket='ecoboot-state', Key='{}', Body=b'{theirs}')",
            &key[15..]
        ),
    );
    let out = racer.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let body = s3(
        &sb,
        &format!(
            "get_object(Bucket='ecoboot-state', Key='{}')['Body'].read().decode()",
            &key[15..]
        ),
    );
    assert_eq!(body.trim(), theirs, "nothing overwritten");
    sb.faults("{}");

    // Lost local directory, S3 intact: the rerun rebuilds nothing.
    let (code, _, err) = eco(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (code, out, err) = eco(
        &sb,
        dir.path(),
        &config,
        &["--output", "json", "up", "--to", "instances"],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(aws_calls(&events(&out)).0, 0, "0 mutating calls");
    let local = std::fs::read_to_string(dir.path().join("state/remote/state.json")).unwrap();
    assert!(
        local.contains("\"instances\""),
        "the journal came back from S3"
    );

    // `state pull` into an empty working copy, then `state push` of a changed one: refused
    // without consent, then the remote object is exactly the local file.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (code, out, err) = eco(&sb, dir.path(), &config, &["state", "pull"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pulled state.json: s3://"), "{out}");
    let pulled = std::fs::read_to_string(dir.path().join("state/remote/state.json")).unwrap();
    assert_eq!(pulled, local, "the pulled journal is the remote one");
    let (_, out, _) = eco(&sb, dir.path(), &config, &["state", "push"]);
    assert!(out.contains("state.json: already the same"), "{out}");
    let changed = format!("{}\n", pulled.trim_end());
    std::fs::write(
        dir.path().join("state/remote/state.json"),
        format!("{changed}\n"),
    )
    .unwrap();
    let mut cmd = ecoboot(&dir.path().join("state"));
    sb.env(&mut cmd);
    let (code, _, err) = run(cmd
        .env_remove("ECOBOOT_YES")
        .env("ECOBOOT_STATE", STATE)
        .arg("-c")
        .arg(&config)
        .args(["state", "push"]));
    assert_eq!(code, 2, "no consent, no push: {err}");
    assert!(err.contains("pass --yes"), "{err}");
    let (code, out, err) = eco(&sb, dir.path(), &config, &["state", "push", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pushed state.json"), "{out}");
    let body = s3(
        &sb,
        "get_object(Bucket='ecoboot-state', Key='teams/platform/remote/state.json')['Body'].read().decode()",
    );
    assert_eq!(
        body.trim_end(),
        changed.trim_end(),
        "S3 holds the pushed file"
    );

    // A holder killed with kill -9 whose (short) lease then runs out: still refused without
    // `--steal-expired-lock`, which then takes it over.
    sb.faults(r#"{"delay": {"DescribeVpcs": 30}}"#);
    let mut cmd = ecoboot(&dir.path().join("state"));
    sb.env(&mut cmd);
    let mut holder = cmd
        .env("ECOBOOT_STATE", STATE)
        .env("ECOBOOT_LOCK_LEASE_SECONDS", "5")
        .arg("-c")
        .arg(&config)
        .args(["up", "--to", "network"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = wait_for_lock(&sb, dir.path(), &config);
    assert!(lock.contains(&format!("pid {}", holder.id())), "{lock}");
    holder.kill().unwrap();
    let _ = holder.wait();
    sb.faults("{}");
    std::thread::sleep(Duration::from_secs(7));
    let (_, show, _) = eco(&sb, dir.path(), &config, &["state", "show"]);
    assert!(show.contains("(lease expired)"), "{show}");
    let (code, _, err) = eco(&sb, dir.path(), &config, &["up", "--to", "network"]);
    assert_eq!(code, 3, "an expired lock is never taken silently: {err}");
    assert!(err.contains("its lease has expired"), "{err}");
    let (code, _, err) = eco(
        &sb,
        dir.path(),
        &config,
        &["--steal-expired-lock", "up", "--to", "network"],
    );
    assert_eq!(code, 0, "{err}");
    let (_, show, _) = eco(&sb, dir.path(), &config, &["state", "show"]);
    assert!(show.contains("lock: free"), "{show}");
}
