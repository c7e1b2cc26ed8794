//! #15 etcd backups: `ecoboot backup` to S3 (moto) from the 14-node fleet and the API double
//! (the simulated etcdctl saves the double's object store, so a restore really brings objects
//! back), `keep` pruning, encryption and tags, then `ecoboot restore` onto a replaced control
//! plane: a damaged backup is refused before anything is touched, a good one brings back five
//! deleted objects with every node Ready.

mod common;

use std::path::Path;

use common::aws::AwsSandbox;
use common::fleet::Fleet;
use common::kube::KubeApi;
use common::{ecoboot, run};

const NODES: usize = 14;
const BUCKET: &str = "ecoboot-backups";

fn eco(sb: &AwsSandbox, config: &Path, state: &Path, args: &[&str]) -> (i32, String, String) {
    run(sb.env(ecoboot(state).arg("-c").arg(config).args(args)))
}

fn config_maps(api: &KubeApi) -> Vec<String> {
    let all = api.objects("ConfigMap").unwrap();
    all.iter()
        .filter(|c| c["metadata"]["namespace"] == "default")
        .map(|c| c["metadata"]["name"].as_str().unwrap().to_string())
        .filter(|n| n.starts_with("app-settings-"))
        .collect()
}

fn backups(sb: &AwsSandbox) -> Vec<String> {
    let listed = sb.boto(
        "s3",
        &format!("list_objects_v2(Bucket='{BUCKET}', Prefix='e2e/sesacthon/backups/')"),
    );
    let mut keys: Vec<String> = (listed["Contents"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter())
    .map(|o| o["Key"].as_str().unwrap().to_string())
    .collect();
    keys.sort();
    keys
}

/// A copy of backup `key` whose etcd snapshot has a flipped byte (the archive itself intact).
fn damaged_copy(sb: &AwsSandbox, key: &str) -> String {
    let damaged = "e2e/sesacthon/backups/00000000T000000Z-damaged.tar.gz";
    let body = format!(
        r#"import tarfile
src = tarfile.open(fileobj=io.BytesIO(c.get_object(Bucket='{BUCKET}', Key='{key}')['Body'].read()), mode='r:gz')
out = io.BytesIO()
with tarfile.open(fileobj=out, mode='w:gz') as dst:
    for m in src.getmembers():
        data = src.extractfile(m).read() if m.isfile() else None
        if m.name.endswith('etcd.db'):
            data = bytearray(data); data[len(data) // 2] ^= 0xFF; data = bytes(data)
        dst.addfile(m, io.BytesIO(data) if data is not None else None)
c.put_object(Bucket='{BUCKET}', Key='{damaged}', Body=out.getvalue())"#
    );
    sb.boto_script("s3", &body);
    format!("s3://{BUCKET}/{damaged}")
}

/// Copies of backup `key`, each with one hostile member added: (s3 URL, what the refusal names).
fn hostile_copies(sb: &AwsSandbox, key: &str) -> Vec<(String, &'static str)> {
    let cases: [(&str, &str, &'static str); 6] = [
        (
            "symlink",
            "m = tarfile.TarInfo('etc/kubernetes/pki/sa.key'); m.type = tarfile.SYMTYPE; m.linkname = '/etc/shadow'",
            "symbolic link",
        ),
        (
            "dirlink",
            "m = tarfile.TarInfo('etc/kubernetes/pki/etcd2'); m.type = tarfile.SYMTYPE; m.linkname = '/'",
            "symbolic link",
        ),
        (
            "setuid",
            "m = tarfile.TarInfo('etc/kubernetes/pki/helper'); m.mode = 0o4755; data = b'#!/bin/sh'",
            "setuid",
        ),
        (
            "device",
            "m = tarfile.TarInfo('etc/kubernetes/pki/mem'); m.type = tarfile.CHRTYPE; m.devmajor = 1; m.devminor = 1",
            "device node",
        ),
        (
            "outside",
            "m = tarfile.TarInfo('etc/cron.d/ecoboot'); data = b'* * * * * root touch /tmp/pwned'",
            "outside",
        ),
        (
            "escape",
            "m = tarfile.TarInfo('../../root/.ssh/authorized_keys'); data = b'ssh-ed25519 AAAA evil'",
            "`..`",
        ),
    ];
    let mut out = Vec::new();
    for (name, member, why) in cases {
        let dest = format!("e2e/sesacthon/backups/00000000T000000Z-{name}.tar.gz");
        let body = format!(
            r#"import tarfile
src = tarfile.open(fileobj=io.BytesIO(c.get_object(Bucket='{BUCKET}', Key='{key}')['Body'].read()), mode='r:gz')
buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode='w:gz') as dst:
    for m in src.getmembers():
        dst.addfile(m, src.extractfile(m) if m.isfile() else None)
    data = None
    {member}
    if data is not None:
        m.size = len(data)
    dst.addfile(m, io.BytesIO(data) if data is not None else None)
c.put_object(Bucket='{BUCKET}', Key='{dest}', Body=buf.getvalue())"#
        );
        sb.boto_script("s3", &body);
        out.push((format!("s3://{BUCKET}/{dest}"), why));
    }
    out
}

#[test]
fn backup_to_s3_then_restore_onto_a_replaced_control_plane() {
    let api = KubeApi::start();
    if api.hooks.is_none() {
        eprintln!("skipped: needs the API double's object store");
        return;
    }
    let sb = AwsSandbox::start();
    sb.boto("s3", &format!("create_bucket(Bucket='{BUCKET}', CreateBucketConfiguration={{'LocationConstraint': 'ap-northeast-2'}})"));
    let fleet = Fleet::start_with(NODES, Some(&api.admin_conf));
    let dir = tempfile::tempdir().unwrap();
    let config = common::kube::config(&fleet, dir.path());
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("\nspec:\n"));
    let text = text.replacen(
        "\nspec:\n",
        &format!(
            "\nspec:\n  backup:\n    to: s3://{BUCKET}/e2e\n    keep: 2\n    schedule: daily\n"
        ),
        1,
    );
    std::fs::write(&config, text).unwrap();
    let state = dir.path().join("state");
    let (code, _, err) = eco(
        &sb,
        &config,
        &state,
        &["up", "--from", "prepare-nodes", "--to", "label-nodes"],
    );
    assert_eq!(code, 0, "{err}");
    // Hardened by default: the API server's flags and their files, the key only on the node.
    let manifest = fleet
        .file(1, "/etc/kubernetes/manifests/kube-apiserver.yaml")
        .unwrap();
    for flag in [
        "--encryption-provider-config=/etc/kubernetes/ecoboot/encryption.yaml",
        "--audit-policy-file=/etc/kubernetes/ecoboot/audit-policy.yaml",
        "--audit-log-path=/var/log/kubernetes/audit/audit.log",
        "--admission-control-config-file=/etc/kubernetes/ecoboot/admission.yaml",
    ] {
        assert!(manifest.contains(flag), "{flag} in {manifest}");
    }
    for f in ["encryption.yaml", "audit-policy.yaml", "admission.yaml"] {
        let mode = fleet.mode(1, &format!("/etc/kubernetes/ecoboot/{f}"));
        assert_eq!(mode, Some(0o600), "{f}");
    }
    let key = fleet
        .file(1, "/etc/kubernetes/ecoboot/encryption.yaml")
        .unwrap();
    assert!(key.contains("secretbox"), "{key}");
    let secret = key
        .lines()
        .find_map(|l| l.trim().strip_prefix("secret: "))
        .unwrap()
        .to_string();
    assert!(
        !common::read_tree(&state).contains(&secret),
        "the key is never in the state"
    );
    for i in 1..=5 {
        let cm = serde_json::json!({"object": {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("app-settings-{i}"), "namespace": "default"}, "data": {"n": i.to_string()}}});
        api.hook("POST", "/_double/create", &cm.to_string());
    }
    assert_eq!(config_maps(&api).len(), 5);

    // Three backups, the newest two kept; encrypted and tagged; nothing left behind.
    for _ in 0..3 {
        let (code, out, err) = eco(&sb, &config, &state, &["backup"]);
        assert_eq!(code, 0, "{out}{err}");
        assert!(
            out.contains(&format!("uploaded s3://{BUCKET}/e2e/sesacthon/backups/")),
            "{out}"
        );
        std::thread::sleep(std::time::Duration::from_millis(1100)); // names are per second
    }
    let keys = backups(&sb);
    assert_eq!(keys.len(), 2, "keep: 2 -> {keys:?}");
    let newest = keys.last().unwrap().clone();
    let head = sb.boto(
        "s3",
        &format!("head_object(Bucket='{BUCKET}', Key='{newest}')"),
    );
    assert_eq!(head["ServerSideEncryption"], "AES256", "{head}");
    assert!(
        head["Metadata"]["sha256"].as_str().unwrap().len() == 64,
        "{head}"
    );
    let tags = sb.boto(
        "s3",
        &format!("get_object_tagging(Bucket='{BUCKET}', Key='{newest}')"),
    );
    assert_eq!(tags["TagSet"][0]["Key"], "ecoboot.io/cluster", "{tags}");
    assert_eq!(tags["TagSet"][0]["Value"], "sesacthon");
    scheduled_backup_runs_on_the_node(&sb, &fleet);
    let newest = planted_keys_never_make_backup_delete_the_new_one(&sb, &config, &state);
    let local = std::fs::read_dir(state.join("sesacthon/backups"))
        .unwrap()
        .count();
    assert_eq!(local, 0, "no local copy is kept");
    assert!(
        fleet.file(1, "/var/lib/ecoboot/backup/etcd.db").is_none(),
        "removed from the node"
    );

    // Five objects are lost; a restore over a running control plane is refused.
    for i in 1..=5 {
        let body = serde_json::json!({"kind": "ConfigMap", "name": format!("app-settings-{i}"), "namespace": "default"});
        api.hook("POST", "/_double/delete", &body.to_string());
    }
    assert!(config_maps(&api).is_empty());
    let from = format!("s3://{BUCKET}/{newest}");
    let (code, _, err) = eco(&sb, &config, &state, &["restore", "--from", &from]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("runs a control plane"), "{err}");

    // The control plane is lost and replaced by a fresh one.
    fleet.ssh(1, "kubeadm reset -f && rm -rf /etc/kubernetes/ecoboot");
    // A damaged snapshot is refused before anything on the node is touched.
    let damaged = damaged_copy(&sb, &newest);
    let (code, out, err) = eco(&sb, &config, &state, &["restore", "--from", &damaged]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("the etcd snapshot is damaged") && err.contains("integrity"),
        "{err}"
    );
    assert!(
        fleet.file(1, "/etc/kubernetes/pki/ca.crt").is_none(),
        "nothing touched"
    );
    assert!(fleet.file(1, "/etc/kubernetes/ecoboot/restored").is_none());

    // Finding 6 of #25: hostile archives (a good backup plus one planted member each) are
    // refused before a byte reaches the node.
    let hostile = hostile_copies(&sb, &newest);
    for (url, why) in &hostile {
        let (code, out, err) = eco(&sb, &config, &state, &["restore", "--from", url]);
        assert_eq!(code, 1, "{url}: {out}{err}");
        assert!(
            err.contains("not a backup ecoboot would write") && err.contains(why),
            "{url}: {err}"
        );
        assert!(
            fleet.file(1, "/etc/kubernetes/pki/ca.crt").is_none(),
            "nothing touched"
        );
        assert!(
            fleet.file(1, "/var/lib/ecoboot/restore/etcd.db").is_none(),
            "nothing sent"
        );
    }
    println!(
        "hostile archives: {} tried, {} refused",
        hostile.len(),
        hostile.len()
    );
    // The backup object replaced together with its own sha256 metadata (what a writer of the
    // backups prefix can do): refused against the digest the backup run recorded.
    let evil = damaged.strip_prefix(&format!("s3://{BUCKET}/")).unwrap();
    sb.boto_script(
        "s3",
        &format!(
            r#"import hashlib
orig = c.get_object(Bucket='{BUCKET}', Key='{newest}')
c.put_object(Bucket='{BUCKET}', Key='{newest}.orig', Body=orig['Body'].read(), Metadata=orig['Metadata'])
data = c.get_object(Bucket='{BUCKET}', Key='{evil}')['Body'].read()
c.put_object(Bucket='{BUCKET}', Key='{newest}', Body=data, Metadata={{'sha256': hashlib.sha256(data).hexdigest()}})"#
        ),
    );
    let (code, out, err) = eco(&sb, &config, &state, &["restore", "--from", &from]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("the object was replaced"), "{err}");
    assert!(
        fleet.file(1, "/etc/kubernetes/pki/ca.crt").is_none(),
        "nothing touched"
    );
    sb.boto_script(
        "s3",
        &format!(
            r#"o = c.get_object(Bucket='{BUCKET}', Key='{newest}.orig')
c.put_object(Bucket='{BUCKET}', Key='{newest}', Body=o['Body'].read(), Metadata=o['Metadata'])
c.delete_object(Bucket='{BUCKET}', Key='{newest}.orig')"#
        ),
    );

    // The good backup: the five objects are back and all 14 nodes Ready.
    let (code, out, err) = eco(
        &sb,
        &config,
        &state,
        &["--output", "json", "restore", "--from", &from],
    );
    assert_eq!(code, 0, "{out}{err}");
    let mut names = config_maps(&api);
    names.sort();
    assert_eq!(
        names,
        (1..=5)
            .map(|i| format!("app-settings-{i}"))
            .collect::<Vec<_>>()
    );
    let nodes = api.objects("Node").unwrap();
    assert_eq!(nodes.len(), NODES);
    let ready = nodes
        .iter()
        .filter(|n| {
            (n["status"]["conditions"].as_array().into_iter().flatten())
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
        .count();
    assert_eq!(ready, NODES);
    assert!(
        fleet.file(1, "/etc/kubernetes/ecoboot/restored").is_none(),
        "the marker is gone after init"
    );
    assert_eq!(
        fleet
            .file(1, "/etc/kubernetes/ecoboot/encryption.yaml")
            .as_deref(),
        Some(key.as_str()),
        "the restore put the Secrets key back (the restored etcd's Secrets need it)"
    );
    let (code, out, err) = eco(&sb, &config, &state, &["--output", "json", "status"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["api"], "reachable", "{status}");
    hardening_is_reconciled_on_rerun(&sb, &fleet, &config, &state);
}

/// Turning encryption and the audit log off, then on again, on an initialised control plane:
/// init-master regenerates the API server manifest each time, and turning encryption on
/// rewrites every Secret.
fn hardening_is_reconciled_on_rerun(sb: &AwsSandbox, fleet: &Fleet, config: &Path, state: &Path) {
    let text = std::fs::read_to_string(config).unwrap();
    let off = text.replacen(
        "\n  kubernetes:\n",
        "\n  kubernetes:\n    hardening:\n      encryptSecrets: false\n      audit: \"off\"\n",
        1,
    );
    assert_ne!(off, text);
    let manifest = || {
        fleet
            .file(1, "/etc/kubernetes/manifests/kube-apiserver.yaml")
            .unwrap()
    };
    let stage = ["up", "--from", "init-master", "--to", "init-master"];
    std::fs::write(config, &off).unwrap();
    let (code, out, err) = eco(sb, config, state, &stage);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        !manifest().contains("--encryption-provider-config") && !manifest().contains("--audit-")
    );
    assert!(
        manifest().contains("--admission-control-config-file"),
        "Pod Security stays"
    );
    std::fs::write(config, &text).unwrap();
    let (code, out, err) = eco(sb, config, state, &stage);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("existing Secret(s) rewritten encrypted"),
        "{out}"
    );
    assert!(
        manifest().contains("--encryption-provider-config=")
            && manifest().contains("--audit-log-maxage=30")
    );
    let (code, out, _) = eco(
        sb,
        config,
        state,
        &["plan", "--from", "init-master", "--to", "init-master"],
    );
    assert_eq!(code, 0);
    assert!(!out.contains("hardening"), "converged: {out}");

    // Key rotation: a new key made on the node, Secrets rewritten, the old key dropped.
    let keys = || -> Vec<String> {
        let f = fleet
            .file(1, "/etc/kubernetes/ecoboot/encryption.yaml")
            .unwrap();
        f.lines()
            .filter_map(|l| l.strip_prefix("            - name: "))
            .map(str::to_string)
            .collect()
    };
    let before = keys();
    assert_eq!(before.len(), 1, "{before:?}");
    let (code, out, err) = eco(sb, config, state, &["secrets", "rotate-key", "--dry-run"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("put it before {}", before[0])),
        "{out}"
    );
    std::thread::sleep(std::time::Duration::from_millis(1100)); // key names are per second
    let (code, out, err) = eco(sb, config, state, &["secrets", "rotate-key"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("Secret(s) rewritten with the new key"),
        "{out}"
    );
    let after = keys();
    assert_eq!(after.len(), 1, "{after:?}");
    assert_ne!(after, before, "a new key");
    assert!(
        !out.contains(
            &fleet
                .file(1, "/etc/kubernetes/ecoboot/encryption.yaml")
                .unwrap()
                .lines()
                .find_map(|l| l.trim().strip_prefix("secret: ").map(str::to_string))
                .unwrap()
        ),
        "the key is never printed"
    );
    // A rotation stopped after the new key went in (two keys) is continued, not restarted.
    fleet.ssh(1, "f=/etc/kubernetes/ecoboot/encryption.yaml; awk '/^            - name: / && !d {print \"            - name: key-next\"; print \"              secret: bmV4dC1rZXktMzItYnl0ZXMtbG9uZy1lbm91Z2gh\"; d=1} {print}' $f > $f.t && mv $f.t $f");
    let (code, out, err) = eco(sb, config, state, &["secrets", "rotate-key"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(keys(), vec!["key-next".to_string()]);
    let (code, out, err) = eco(sb, config, state, &["status"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("HARDENING: Secrets encrypted at rest (key key-next); audit log default; Pod Security enforce=baseline"), "{out}");
}

/// A metadata service on loopback answering IMDSv2 as EC2 does: a session token (PUT), the
/// instance profile's role and its temporary credentials, the region. Serves `n` requests
/// (or stops after 60 s).
fn fake_imds(n: usize) -> (String, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let handle = std::thread::spawn(move || {
        let mut seen = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while seen.len() < n && std::time::Instant::now() < deadline {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(_) => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
            };
            stream.set_nonblocking(false).unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            reader.read_line(&mut first).unwrap();
            let mut token = false;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line.trim().is_empty() {
                    break;
                }
                token |= line
                    .to_ascii_lowercase()
                    .starts_with("x-aws-ec2-metadata-token: imds-token");
            }
            let path = first
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let body = match path.as_str() {
                "/latest/api/token" if first.starts_with("PUT") => "imds-token".to_string(),
                _ if !token => String::new(),
                "/latest/meta-data/iam/security-credentials/" => {
                    "ecoboot-sesacthon-controller".into()
                }
                "/latest/meta-data/iam/security-credentials/ecoboot-sesacthon-controller" => {
                    r#"{"Code":"Success","AccessKeyId":"ASIATESTING","SecretAccessKey":"testing","Token":"session","Expiration":"2030-01-01T00:00:00Z"}"#.into()
                }
                "/latest/meta-data/placement/region" => "ap-northeast-2".into(),
                _ => String::new(),
            };
            let status = if body.is_empty() {
                "401 Unauthorized"
            } else {
                "200 OK"
            };
            write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            seen.push(format!(
                "{} {path}",
                first.split_whitespace().next().unwrap_or_default()
            ));
        }
        seen
    });
    (url, handle)
}

/// spec.backup.schedule: init-master installed the timer and its uploader on the control
/// plane; run as the timer would (metadata service and S3 endpoint pointed at loopback), it
/// uploads a backup with the instance profile's credentials and keeps the newest two.
/// Finding 7 of #25: keys planted in the prefix (`zz-…` sorts last, an ecoboot-looking name
/// from the far future sorts first) never make `ecoboot backup` delete the backup it just took,
/// and a key outside ecoboot's own pattern is never touched.
fn planted_keys_never_make_backup_delete_the_new_one(
    sb: &AwsSandbox,
    config: &Path,
    state: &Path,
) -> String {
    let prefix = "e2e/sesacthon/backups/";
    for planted in ["zz-evil.tar.gz", "99999999T999999Z-rev999.tar.gz"] {
        sb.boto(
            "s3",
            &format!("put_object(Bucket='{BUCKET}', Key='{prefix}{planted}', Body=b'x')"),
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (code, out, err) = eco(sb, config, state, &["backup"]);
    assert_eq!(code, 0, "{out}{err}");
    let keys = backups(sb);
    let new = out
        .split(&format!("uploaded s3://{BUCKET}/"))
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the uploaded key")
        .to_string();
    assert!(
        keys.contains(&new),
        "the new backup survives its own pruning: {keys:?}"
    );
    assert!(
        keys.contains(&format!("{prefix}zz-evil.tar.gz")),
        "not ecoboot's pattern: never deleted: {keys:?}"
    );
    let ours: Vec<&String> = keys
        .iter()
        .filter(|k| !k.ends_with("zz-evil.tar.gz"))
        .collect();
    assert_eq!(ours.len(), 2, "keep: 2 of ecoboot's own names: {keys:?}");
    // The far-future name counted by S3's time (planted before the new backup), not its name.
    for planted in ["zz-evil.tar.gz", "99999999T999999Z-rev999.tar.gz"] {
        sb.boto(
            "s3",
            &format!("delete_object(Bucket='{BUCKET}', Key='{prefix}{planted}')"),
        );
    }
    new
}

fn scheduled_backup_runs_on_the_node(sb: &AwsSandbox, fleet: &Fleet) {
    let timer = fleet
        .file(1, "/etc/systemd/system/ecoboot-backup.timer")
        .expect("timer installed");
    assert!(
        timer.contains("OnCalendar=daily") && timer.contains("Persistent=true"),
        "{timer}"
    );
    assert!(
        fleet
            .file(1, "/var/lib/ecoboot-sim/units/ecoboot-backup.timer.enabled")
            .is_some()
    );
    let service = fleet
        .file(1, "/etc/systemd/system/ecoboot-backup.service")
        .unwrap();
    let exec = service
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap()
        .to_string();
    assert!(
        exec.contains("ecoboot-backups") && exec.contains("e2e/sesacthon/backups/"),
        "{exec}"
    );
    let before = backups(sb);
    let (imds, served) = fake_imds(4);
    fleet.ssh(
        1,
        &format!(
            "ECOBOOT_IMDS={imds} ECOBOOT_S3_ENDPOINT={} {exec}",
            sb.moto_url
        ),
    );
    let seen = served.join().unwrap();
    assert_eq!(seen[0], "PUT /latest/api/token", "IMDSv2: {seen:?}");
    let after = backups(sb);
    assert_eq!(
        after.len(),
        before.len() + 1,
        "the node adds a backup and deletes nothing (its credentials cannot): {after:?}"
    );
    let newest = after.last().unwrap();
    assert!(
        !before.contains(newest),
        "a new backup: {before:?} -> {after:?}"
    );
    let head = sb.boto(
        "s3",
        &format!("head_object(Bucket='{BUCKET}', Key='{newest}')"),
    );
    assert_eq!(head["ServerSideEncryption"], "AES256", "{head}");
    let tags = sb.boto(
        "s3",
        &format!("get_object_tagging(Bucket='{BUCKET}', Key='{newest}')"),
    );
    assert_eq!(tags["TagSet"][0]["Value"], "sesacthon", "{tags}");
    assert!(fleet.file(1, "/var/lib/etcd/ecoboot-snapshot.db").is_none());
}
