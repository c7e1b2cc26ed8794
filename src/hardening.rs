//! The control plane's hardening files and the API server flags that use them: Secrets
//! encrypted at rest (an EncryptionConfiguration whose key is made on the node and never
//! leaves it), the audit policy and log, Pod Security Admission defaults
//! (`spec.kubernetes.hardening`). Files live in [`DIR`], mounted read-only into the API server.

use serde_json::{Value, json};

use crate::config::{Config, Hardening};
use crate::ssh::script;

/// Where the files live on the control plane.
pub const DIR: &str = "/etc/kubernetes/ecoboot";
/// The EncryptionConfiguration (0600, root).
pub const ENCRYPTION: &str = "/etc/kubernetes/ecoboot/encryption.yaml";
/// The audit Policy.
pub const AUDIT_POLICY: &str = "/etc/kubernetes/ecoboot/audit-policy.yaml";
/// The AdmissionConfiguration (Pod Security defaults).
pub const ADMISSION: &str = "/etc/kubernetes/ecoboot/admission.yaml";
/// Where the audit log goes.
pub const AUDIT_LOG_DIR: &str = "/var/log/kubernetes/audit";

/// ecoboot's default audit policy: no events, leases or health checks; metadata (never
/// bodies) for Secrets, ConfigMaps and token reviews and for everything else.
pub fn default_audit_policy() -> Value {
    json!({
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": [
            {"level": "None", "resources": [
                {"group": "", "resources": ["events"]},
                {"group": "events.k8s.io", "resources": ["events"]},
                {"group": "coordination.k8s.io", "resources": ["leases"]}]},
            {"level": "None", "nonResourceURLs": ["/healthz*", "/readyz*", "/livez*", "/version", "/metrics"]},
            {"level": "None", "users": ["system:kube-proxy"], "verbs": ["watch"]},
            {"level": "Metadata", "resources": [
                {"group": "", "resources": ["secrets", "configmaps", "serviceaccounts/token"]},
                {"group": "authentication.k8s.io", "resources": ["tokenreviews"]}]},
            {"level": "Metadata"},
        ],
    })
}

/// The AdmissionConfiguration with the Pod Security defaults of `h`.
pub fn admission_config(h: &Hardening) -> Value {
    let p = &h.pod_security;
    let namespaces: Vec<&str> = p.exempt_namespaces.iter().map(|n| n.as_str()).collect();
    json!({
        "apiVersion": "apiserver.config.k8s.io/v1",
        "kind": "AdmissionConfiguration",
        "plugins": [{
            "name": "PodSecurity",
            "configuration": {
                "apiVersion": "pod-security.admission.config.k8s.io/v1",
                "kind": "PodSecurityConfiguration",
                "defaults": {
                    "enforce": p.enforce.as_str(), "enforce-version": "latest",
                    "audit": p.audit.as_str(), "audit-version": "latest",
                    "warn": p.warn.as_str(), "warn-version": "latest",
                },
                "exemptions": {"usernames": [], "runtimeClasses": [], "namespaces": namespaces},
            },
        }],
    })
}

/// The audit policy the config asks for: `None` when off, ecoboot's default, or the user's
/// file (read as text; checked by the API server when it starts).
pub fn audit_policy(config: &Config) -> std::io::Result<Option<String>> {
    let h = &config.cluster.spec.kubernetes.hardening;
    match h.audit.as_str() {
        "off" => Ok(None),
        "default" => Ok(Some(yaml(&default_audit_policy()))),
        path => {
            let bytes = crate::config::read_regular(&config.resolve_path(path), 1 << 20)?;
            Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
        }
    }
}

/// `value` as YAML (JSON is YAML; one line per document keeps diffs stable).
pub fn yaml(value: &Value) -> String {
    format!(
        "{}\n",
        serde_json::to_string_pretty(value).unwrap_or_default()
    )
}

/// A node script that writes the EncryptionConfiguration at `path` (0600) with a fresh
/// 32-byte secretbox key, only when no such file exists: the key is made on the node and
/// never crosses the SSH connection. `identity` stays as the last provider so Secrets written
/// before encryption was on can still be read (and are rewritten encrypted).
pub fn encryption_script(path: &str) -> String {
    let q = script::quote(path);
    format!(
        "set -e\nif [ ! -s {q} ]; then\n  umask 077\n  mkdir -p \"$(dirname {q})\"\n  key=\"$(head -c 32 /dev/urandom | base64 -w0)\"\n  name=\"key-$(date -u +%Y%m%dT%H%M%SZ)\"\n  printf 'apiVersion: apiserver.config.k8s.io/v1\\nkind: EncryptionConfiguration\\nresources:\\n  - resources: [secrets]\\n    providers:\\n      - secretbox:\\n          keys:\\n            - name: %s\\n              secret: %s\\n      - identity: {{}}\\n' \"$name\" \"$key\" > {q}.ecoboot-tmp\n  chmod 600 {q}.ecoboot-tmp\n  mv -f {q}.ecoboot-tmp {q}\nfi\nchmod 600 {q}\n"
    )
}

/// The kube-apiserver flags the hardening settings add (kubeadm v1beta4 `extraArgs`).
pub fn api_server_args(config: &Config) -> Vec<(String, String)> {
    let h = &config.cluster.spec.kubernetes.hardening;
    let mut out = vec![(
        "admission-control-config-file".to_string(),
        ADMISSION.to_string(),
    )];
    if h.encrypt_secrets {
        out.push(("encryption-provider-config".into(), ENCRYPTION.into()));
    }
    if h.audit.as_str() != "off" {
        for (k, v) in [
            ("audit-policy-file", AUDIT_POLICY.to_string()),
            ("audit-log-path", format!("{AUDIT_LOG_DIR}/audit.log")),
            ("audit-log-maxage", "30".into()),
            ("audit-log-maxbackup", "10".into()),
            ("audit-log-maxsize", "100".into()),
        ] {
            out.push((k.into(), v));
        }
    }
    out
}

/// The API server's hostPath mounts for [`DIR`] (read-only) and the audit log directory.
pub fn api_server_volumes(config: &Config) -> Vec<Value> {
    let mut out = vec![
        json!({"name": "ecoboot-hardening", "hostPath": DIR, "mountPath": DIR,
        "readOnly": true, "pathType": "DirectoryOrCreate"}),
    ];
    if config.cluster.spec.kubernetes.hardening.audit.as_str() != "off" {
        out.push(
            json!({"name": "audit-log", "hostPath": AUDIT_LOG_DIR, "mountPath": AUDIT_LOG_DIR,
            "readOnly": false, "pathType": "DirectoryOrCreate"}),
        );
    }
    out
}

/// The node script that puts every hardening file in place before `kubeadm init` (and again
/// on reruns, so a changed audit policy or Pod Security default is written).
pub fn files_script(config: &Config) -> std::io::Result<String> {
    let h = &config.cluster.spec.kubernetes.hardening;
    let mut lines = vec![
        format!(
            "mkdir -p {} {}",
            script::quote(DIR),
            script::quote(AUDIT_LOG_DIR)
        ),
        format!(
            "chmod 700 {} {}",
            script::quote(DIR),
            script::quote(AUDIT_LOG_DIR)
        ),
        script::write_file(ADMISSION, yaml(&admission_config(h)).as_bytes(), 0o600),
    ];
    if let Some(policy) = audit_policy(config)? {
        lines.push(script::write_file(AUDIT_POLICY, policy.as_bytes(), 0o600));
    }
    if h.encrypt_secrets {
        lines.push(encryption_script(ENCRYPTION));
    }
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_turn_everything_on_and_off_turns_each_off() {
        let mut config = crate::config::tests_support::config();
        let args = api_server_args(&config);
        let names: Vec<&str> = args.iter().map(|(k, _)| k.as_str()).collect();
        for flag in [
            "encryption-provider-config",
            "audit-policy-file",
            "audit-log-path",
            "admission-control-config-file",
        ] {
            assert!(names.contains(&flag), "{flag}");
        }
        let h = &mut config.cluster.spec.kubernetes.hardening;
        h.encrypt_secrets = false;
        h.audit.value = "off".into();
        let args = api_server_args(&config);
        assert_eq!(args.len(), 1, "{args:?}");
        assert_eq!(api_server_volumes(&config).len(), 1);
        let doc = admission_config(&config.cluster.spec.kubernetes.hardening).to_string();
        assert!(
            doc.contains("\"enforce\":\"baseline\"") && doc.contains("kube-system"),
            "{doc}"
        );
    }

    #[test]
    fn the_encryption_key_is_made_on_the_node_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enc/encryption.yaml");
        let path = path.to_str().unwrap();
        let run = || {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(encryption_script(path))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            std::fs::read_to_string(path).unwrap()
        };
        let first = run();
        assert!(
            first.contains("secretbox") && first.contains("identity: {}"),
            "{first}"
        );
        let key = first
            .lines()
            .find_map(|l| l.trim().strip_prefix("secret: "))
            .unwrap();
        assert_eq!(
            base64::Engine::decode(&base64::engine::general_purpose::STANDARD, key)
                .unwrap()
                .len(),
            32
        );
        assert_eq!(run(), first, "kept on rerun");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
}
