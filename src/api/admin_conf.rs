//! The admin.conf a control-plane node hands over is untrusted input: a compromised node could
//! serve one with an `exec` credential plugin (kube-rs would run it on the operator's machine),
//! an `auth-provider`, a token file path or extra users. ecoboot keeps exactly what kubeadm
//! writes (one cluster: server + CA data; one user: client certificate + key data) and refuses
//! everything else before the file is stored or used.

use serde_json::{Map, Value, json};

/// Keys a cluster entry may have.
const CLUSTER_KEYS: [&str; 2] = ["server", "certificate-authority-data"];
/// Keys a user entry may have.
const USER_KEYS: [&str; 2] = ["client-certificate-data", "client-key-data"];

/// Returns a minimal kubeconfig with the one cluster and one user of `text`, or why it was
/// refused (never echoing credential values).
pub fn sanitize(text: &str) -> Result<String, String> {
    let doc: Value =
        serde_saphyr::from_str(text).map_err(|_| "it is not valid YAML".to_string())?;
    let list = |key: &str| -> Result<Vec<Value>, String> {
        match &doc[key] {
            Value::Null => Ok(Vec::new()),
            Value::Array(items) => Ok(items.clone()),
            _ => Err(format!("`{key}` is not a list")),
        }
    };
    let clusters = list("clusters")?;
    let users = list("users")?;
    let contexts = list("contexts")?;
    if clusters.len() != 1 || users.len() != 1 || contexts.len() > 1 {
        return Err(format!(
            "it has {} clusters, {} users and {} contexts; kubeadm writes exactly one of each",
            clusters.len(),
            users.len(),
            contexts.len()
        ));
    }
    let cluster = entry(&clusters[0], "cluster", &CLUSTER_KEYS)?;
    let user = entry(&users[0], "user", &USER_KEYS)?;
    let server = cluster
        .get("server")
        .and_then(Value::as_str)
        .filter(|s| s.starts_with("https://") && !s.contains(char::is_whitespace))
        .ok_or("its cluster has no https:// server")?;
    for (map, key) in [
        (&cluster, "certificate-authority-data"),
        (&user, "client-certificate-data"),
        (&user, "client-key-data"),
    ] {
        let ok = map.get(key).and_then(Value::as_str).is_some_and(|v| {
            !v.is_empty()
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c))
        });
        if !ok {
            return Err(format!("`{key}` is missing or not base64"));
        }
    }
    let name = |v: &Value| {
        v["name"]
            .as_str()
            .filter(|n| crate::config::syntax::plain_token(n, 253).is_ok() || n.contains('@'))
            .filter(|n| !n.contains(char::is_whitespace))
            .unwrap_or("kubernetes")
            .to_string()
    };
    let (cluster_name, user_name) = (name(&clusters[0]), name(&users[0]));
    let context = format!("{user_name}@{cluster_name}");
    let out = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster_name, "cluster": {
            "server": server,
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": user_name, "user": {
            "client-certificate-data": user["client-certificate-data"],
            "client-key-data": user["client-key-data"],
        }}],
        "contexts": [{"name": context, "context": {"cluster": cluster_name, "user": user_name}}],
        "current-context": context,
    });
    Ok(serde_saphyr::to_string(&out).expect("JSON values serialise"))
}

/// The sanitised kubeconfig with its cluster's server set to `server` (the public endpoint: the
/// API certificate carries it as a SAN, so TLS verification keeps working).
pub fn with_server(text: &str, server: &str) -> Result<String, String> {
    let clean = sanitize(text)?;
    let mut doc: Value = serde_saphyr::from_str(&clean).map_err(|e| e.to_string())?;
    doc["clusters"][0]["cluster"]["server"] = Value::String(server.to_string());
    Ok(serde_saphyr::to_string(&doc).expect("JSON values serialise"))
}

/// The `what` mapping of a named list entry, refused if it has a key outside `allowed`.
fn entry(item: &Value, what: &str, allowed: &[&str]) -> Result<Map<String, Value>, String> {
    let map = item[what]
        .as_object()
        .ok_or_else(|| format!("its {what} entry has no `{what}` mapping"))?;
    if let Some(key) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        let key = crate::config::syntax::clip(key);
        return Err(format!(
            "its {what} has `{key}`, which ecoboot does not accept (only {})",
            allowed.join(", ")
        ));
    }
    Ok(map.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBEADM: &str = "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: QUJD\n    server: https://10.0.1.10:6443\n  name: sandbox\ncontexts:\n- context:\n    cluster: sandbox\n    user: kubernetes-admin\n  name: kubernetes-admin@sandbox\ncurrent-context: kubernetes-admin@sandbox\nkind: Config\nusers:\n- name: kubernetes-admin\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";

    #[test]
    fn keeps_what_kubeadm_writes() {
        let out = sanitize(KUBEADM).unwrap();
        let v: Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://10.0.1.10:6443"
        );
        assert_eq!(v["users"][0]["user"]["client-key-data"], "S0VZ");
        assert_eq!(v["current-context"], "kubernetes-admin@sandbox");
    }

    #[test]
    fn server_is_replaced() {
        let out = with_server(KUBEADM, "https://54.180.0.10:6443").unwrap();
        let v: Value = serde_saphyr::from_str(&out).unwrap();
        assert_eq!(
            v["clusters"][0]["cluster"]["server"],
            "https://54.180.0.10:6443"
        );
        assert_eq!(
            v["clusters"][0]["cluster"]["certificate-authority-data"],
            "QUJD"
        );
    }

    #[test]
    fn refuses_plugins_tokens_and_extra_entries() {
        let exec = KUBEADM.replace(
            "    client-key-data: S0VZ\n",
            "    client-key-data: S0VZ\n    exec:\n      command: /bin/sh\n      args: [-c, touch /tmp/pwned]\n",
        );
        assert!(sanitize(&exec).unwrap_err().contains("`exec`"));
        let token = KUBEADM.replace(
            "    client-key-data: S0VZ\n",
            "    client-key-data: S0VZ\n    tokenFile: /etc/shadow\n",
        );
        assert!(sanitize(&token).unwrap_err().contains("tokenFile"));
        let provider = KUBEADM.replace(
            "    client-key-data: S0VZ\n",
            "    client-key-data: S0VZ\n    auth-provider: {name: gcp}\n",
        );
        assert!(sanitize(&provider).is_err());
        let two = format!("{KUBEADM}- name: other\n  user: {{token: abc}}\n");
        assert!(sanitize(&two).unwrap_err().contains("2 users"));
        let insecure = KUBEADM.replace(
            "    server:",
            "    insecure-skip-tls-verify: true\n    server:",
        );
        assert!(sanitize(&insecure).is_err());
        let http = KUBEADM.replace("https://10.0.1.10", "http://10.0.1.10");
        assert!(sanitize(&http).is_err());
    }
}
