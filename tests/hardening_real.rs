//! #29 The hardening files ecoboot generates, given to a real kube-apiserver 1.36 + etcd
//! (`../shared/tools/kube-apiserver`, built with its build.sh): the server starts with them, a
//! Secret written through it is stored encrypted (secretbox) in etcd, the audit log records
//! requests, and Pod Security refuses a privileged pod in an ordinary namespace while
//! kube-system stays exempt. Skipped (saying why) where that server is not built or its ports
//! are taken.

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, PostParams};

fn tool() -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/kube-apiserver");
    let work = std::env::var("KUBE136")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/ecoboot-kube136")
        });
    (dir.join("start.sh").exists() && work.join("bin/kube-apiserver").exists())
        .then_some((dir, work))
}

fn free(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// Stops what start.sh started (by the PIDs it recorded), whatever happens.
struct Running(PathBuf);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(self.0.join("stop.sh")).status();
    }
}

fn etcd_value(key: &str) -> Vec<u8> {
    let body = serde_json::json!({"key": base64::engine::general_purpose::STANDARD.encode(key)})
        .to_string();
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "http://127.0.0.1:23379/v3/kv/range",
            "-d",
            &body,
        ])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let value = v["kvs"][0]["value"].as_str().unwrap_or_default();
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap()
}

fn privileged_pod(name: &str) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
            "securityContext": {"privileged": true}}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn a_real_kube_apiserver_accepts_the_hardening_and_enforces_it() {
    let Some((tool, work)) = tool() else {
        eprintln!("skipped: ../shared/tools/kube-apiserver is not built (see its README)");
        return;
    };
    if ![26443, 23379, 23380, 23381].into_iter().all(free) {
        eprintln!("skipped: the real API server's ports are in use");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let enc = dir.path().join("encryption.yaml");
    let out = Command::new("bash")
        .arg("-c")
        .arg(ecoboot::hardening::encryption_script(enc.to_str().unwrap()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let audit = dir.path().join("audit-policy.yaml");
    std::fs::write(
        &audit,
        ecoboot::hardening::yaml(&ecoboot::hardening::default_audit_policy()),
    )
    .unwrap();
    let admission = dir.path().join("admission.yaml");
    let hardening = ecoboot::config::Hardening::default();
    std::fs::write(
        &admission,
        ecoboot::hardening::yaml(&ecoboot::hardening::admission_config(&hardening)),
    )
    .unwrap();
    let log = dir.path().join("audit.log");
    let started = Command::new("bash")
        .arg(tool.join("start.sh"))
        .env("FRESH", "1")
        .env("KUBE_ENCRYPTION_CONFIG", &enc)
        .env("KUBE_AUDIT_POLICY", &audit)
        .env("KUBE_AUDIT_LOG", &log)
        .env("KUBE_ADMISSION_CONFIG", &admission)
        .output()
        .unwrap();
    let _running = Running(tool.clone());
    assert!(
        started.status.success(),
        "the API server refused ecoboot's files: {}{}",
        String::from_utf8_lossy(&started.stdout),
        String::from_utf8_lossy(&started.stderr)
    );
    let kubeconfig = kube::config::Kubeconfig::read_from(work.join("admin.conf")).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();

    // A Secret is stored encrypted, and reads back in clear through the API.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "repo-token"},
        "stringData": {"token": "plain-text-canary-7f3a"}
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let stored = etcd_value("/registry/secrets/default/repo-token");
    assert!(
        stored.starts_with(b"k8s:enc:secretbox:v1:"),
        "{:?}",
        String::from_utf8_lossy(&stored[..stored.len().min(40)])
    );
    assert!(!String::from_utf8_lossy(&stored).contains("plain-text-canary"));
    let read = secrets.get("repo-token").await.unwrap();
    assert_eq!(read.data.unwrap()["token"].0, b"plain-text-canary-7f3a");

    // Pod Security: baseline enforced in an ordinary namespace; kube-system exempt.
    let ns: Namespace = serde_json::from_value(
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}),
    )
    .unwrap();
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap();
    for namespace in ["apps", "kube-system"] {
        let sa: ServiceAccount = serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}})).unwrap();
        let _ = Api::<ServiceAccount>::namespaced(client.clone(), namespace)
            .create(&PostParams::default(), &sa)
            .await;
    }
    let refused = Api::<Pod>::namespaced(client.clone(), "apps")
        .create(&PostParams::default(), &privileged_pod("p"))
        .await;
    match refused {
        Err(kube::Error::Api(e)) => {
            assert_eq!(e.code, 403, "{e:?}");
            assert!(
                e.message
                    .contains("violates PodSecurity \"baseline:latest\""),
                "{}",
                e.message
            );
        }
        other => panic!("a privileged pod in `apps` must be refused: {other:?}"),
    }
    Api::<Pod>::namespaced(client.clone(), "kube-system")
        .create(&PostParams::default(), &privileged_pod("p"))
        .await
        .expect("kube-system is exempt");

    // The audit log: metadata for the Secret, never its value.
    let audit_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        audit_log.contains("\"resource\":\"secrets\""),
        "audit log has the Secret's create"
    );
    assert!(
        !audit_log.contains("plain-text-canary"),
        "no bodies for Secrets"
    );
}
