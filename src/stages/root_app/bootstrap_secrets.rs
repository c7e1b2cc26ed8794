//! The Secrets the GitOps tree needs before its first sync (`spec.gitops`): ArgoCD repository
//! credentials and registry pull secrets. Their values are read from the environment or files
//! at run time, compared with what the cluster holds, and applied by server-side apply. Values
//! never reach events, logs, the journal or the plan: actions name Secrets only.

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

use crate::config::{Config, SecretSource};
use crate::error::{Error, Result};
use crate::event::Action;

/// One Secret as the config wants it (with its values: keep it in memory only).
#[derive(Clone)]
pub struct Wanted {
    /// The Secret (namespace and name set).
    pub secret: Secret,
    /// What it is for, for plans: "repository credentials", "pull secret for ghcr.io".
    pub purpose: String,
}

impl Wanted {
    fn namespace(&self) -> &str {
        self.secret
            .metadata
            .namespace
            .as_deref()
            .unwrap_or_default()
    }

    fn name(&self) -> &str {
        self.secret.metadata.name.as_deref().unwrap_or_default()
    }
}

/// Reads one secret value; `what` names it in errors.
fn read(config: &Config, src: &SecretSource, what: &str, stage: &str) -> Result<String> {
    let missing = |why: String, help: String| Error::StageFailed {
        stage: stage.into(),
        message: format!("{what}: {why}"),
        help,
    };
    if let Some(env) = &src.env {
        return match std::env::var(env.as_str()) {
            Ok(v) if !v.trim().is_empty() => Ok(v),
            _ => Err(missing(
                format!("environment variable {env} is not set"),
                format!(
                    "export {env} (in GitHub Actions: `env: {env}: ${{{{ secrets.{env} }}}}` on the ecoboot step) and rerun"
                ),
            )),
        };
    }
    let file = src
        .file
        .as_ref()
        .map(|f| config.resolve_path(f))
        .unwrap_or_default();
    match crate::config::read_regular(&file, 64 * 1024) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes)
            .trim_end_matches(['\n', '\r'])
            .to_string()),
        Err(e) => Err(missing(
            format!("cannot read {}: {e}", file.display()),
            "check the path in the config (relative to the config file)".into(),
        )),
    }
}

fn secret(
    ns: &str,
    name: &str,
    kind: &str,
    labels: &[(&str, &str)],
    data: BTreeMap<String, String>,
) -> Secret {
    let mut all = BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "ecoboot".to_string(),
    )]);
    all.extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Secret {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            labels: Some(all),
            ..ObjectMeta::default()
        },
        type_: Some(kind.into()),
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        ..Secret::default()
    }
}

/// Every Secret `spec.gitops` asks for, with its values read now.
pub fn wanted(config: &Config, stage: &str) -> Result<Vec<Wanted>> {
    let g = &config.cluster.spec.gitops;
    let argocd = config.cluster.spec.argocd.namespace.as_str();
    let mut out = Vec::new();
    for r in &g.repositories {
        let what = format!("repository `{}`", r.name);
        let mut data = BTreeMap::from([
            ("type".to_string(), "git".to_string()),
            ("url".to_string(), r.url.value.clone()),
        ]);
        if let Some(p) = &r.password {
            let user = r.username.as_ref().map_or("git", |u| u.as_str());
            data.insert("username".into(), user.into());
            data.insert("password".into(), read(config, p, &what, stage)?);
        }
        if let Some(k) = &r.ssh_private_key {
            data.insert(
                "sshPrivateKey".into(),
                format!("{}\n", read(config, k, &what, stage)?),
            );
        }
        let labels = [("argocd.argoproj.io/secret-type", "repository")];
        out.push(Wanted {
            secret: secret(argocd, &format!("repo-{}", r.name), "Opaque", &labels, data),
            purpose: format!("credentials of {}", r.url),
        });
    }
    for p in &g.image_pull_secrets {
        let what = format!("pull secret `{}`", p.name);
        let password = read(config, &p.password, &what, stage)?;
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{}:{password}", p.username));
        let docker = serde_json::json!({"auths": {p.registry.as_str(): {
            "username": p.username.as_str(), "password": password, "auth": auth}}});
        for ns in &p.namespaces {
            let data = BTreeMap::from([(".dockerconfigjson".to_string(), docker.to_string())]);
            out.push(Wanted {
                secret: secret(ns, &p.name, "kubernetes.io/dockerconfigjson", &[], data),
                purpose: format!("pull secret for {}", p.registry),
            });
        }
    }
    Ok(out)
}

/// Read-only: the wanted Secrets that are missing or hold other values, as actions (and the
/// namespaces that do not exist yet).
pub async fn diff(
    client: &kube::Client,
    wanted: &[Wanted],
    target: &str,
) -> Result<(Vec<Wanted>, Vec<Action>)> {
    let mut todo = Vec::new();
    let mut actions = Vec::new();
    let mut namespaces_seen = std::collections::BTreeSet::new();
    for w in wanted {
        let (ns, name) = (w.namespace(), w.name());
        if namespaces_seen.insert(ns.to_string()) {
            let api: Api<Namespace> = Api::all(client.clone());
            let found = api
                .get_opt(ns)
                .await
                .map_err(|e| crate::api::error("get", &format!("namespace/{ns}"), e))?;
            if found.is_none() {
                actions.push(Action::new(target, format!("create namespace {ns}")));
            }
        }
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        let live = api
            .get_opt(name)
            .await
            .map_err(|e| crate::api::error("get", &format!("secret/{ns}/{name}"), e))?;
        let state = match live {
            None => "missing",
            Some(live) if live.data != w.secret.data || live.type_ != w.secret.type_ => "differs",
            Some(_) => continue,
        };
        actions.push(Action::new(
            target,
            format!("apply Secret {ns}/{name} ({}): {state}", w.purpose),
        ));
        todo.push(w.clone());
    }
    Ok((todo, actions))
}

/// Applies `todo` (namespaces first, created if missing) by server-side apply; returns how
/// many Secrets were written.
pub async fn apply(client: &kube::Client, todo: &[Wanted]) -> Result<usize> {
    let params = PatchParams::apply(crate::api::FIELD_MANAGER).force();
    let namespaces: std::collections::BTreeSet<&str> = todo.iter().map(Wanted::namespace).collect();
    for ns in namespaces {
        let api: Api<Namespace> = Api::all(client.clone());
        let obj =
            serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        api.patch(ns, &params, &Patch::Apply(&obj))
            .await
            .map_err(|e| crate::api::error("apply", &format!("namespace/{ns}"), e))?;
    }
    for w in todo {
        let (ns, name) = (w.namespace(), w.name());
        let mut value = serde_json::to_value(&w.secret).expect("a Secret serializes");
        value["apiVersion"] = "v1".into();
        value["kind"] = "Secret".into();
        let api: Api<Secret> = Api::namespaced(client.clone(), ns);
        api.patch(name, &params, &Patch::Apply(&value))
            .await
            .map_err(|e| crate::api::error("apply", &format!("secret/{ns}/{name}"), e))?;
    }
    Ok(todo.len())
}
