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
        &format!("\nspec:\n  backup:\n    to: s3://{BUCKET}/e2e\n    keep: 2\n"),
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
    let (code, out, err) = eco(&sb, &config, &state, &["--output", "json", "status"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["api"], "reachable", "{status}");
}
