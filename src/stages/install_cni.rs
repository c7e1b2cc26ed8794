//! Stage `install-cni`: Calico from its pinned manifest, rendered for the settings the reference
//! system reached after its BGP and probe incidents (VXLAN Always, IPIP Never, no BGP/BIRD,
//! felix-only probes, the configured pod CIDR), applied with server-side apply; then a bounded
//! wait until every calico-node pod is ready.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

use crate::api::{apply::Applier, manifest};
use crate::engine::{Ctx, Found, Stage};
use crate::error::{Error, Result};
use crate::event::Action;

/// Stage id.
pub const ID: &str = "install-cni";
const NAMESPACE: &str = "kube-system";

/// The `install-cni` stage.
#[derive(Default)]
pub struct InstallCni {
    rendered: tokio::sync::OnceCell<Vec<DynamicObject>>,
}

/// Parses the Calico manifest and renders it for VXLAN with `pod_cidr`.
pub fn render(text: &str, pod_cidr: &str) -> Result<Vec<DynamicObject>> {
    let source = "the Calico manifest";
    let mut objs = manifest::objects(manifest::documents(text, source)?, source)?;
    let (mut config, mut node) = (false, false);
    for obj in &mut objs {
        match (manifest::kind(obj), obj.metadata.name.as_deref()) {
            ("ConfigMap", Some("calico-config")) => {
                obj.data["data"]["calico_backend"] = json!("vxlan");
                config = true;
            }
            ("DaemonSet", Some("calico-node")) => {
                let containers = obj.data["spec"]["template"]["spec"]["containers"]
                    .as_array_mut()
                    .into_iter()
                    .flatten();
                for c in containers.filter(|c| c["name"] == "calico-node") {
                    set_env(c, "CALICO_IPV4POOL_IPIP", "Never");
                    set_env(c, "CALICO_IPV4POOL_VXLAN", "Always");
                    set_env(c, "CALICO_IPV6POOL_VXLAN", "Never");
                    set_env(c, "CALICO_IPV4POOL_CIDR", pod_cidr);
                    drop_arg(&mut c["livenessProbe"], "-bird-live");
                    drop_arg(&mut c["readinessProbe"], "-bird-ready");
                    node = true;
                }
            }
            _ => {}
        }
    }
    if !(config && node) {
        return Err(Error::StageFailed {
            stage: ID.into(),
            message: "the Calico manifest has no ConfigMap calico-config or DaemonSet calico-node with a calico-node container".into(),
            help: "pin the upstream manifests/calico.yaml of a Calico 3.x release".into(),
        });
    }
    Ok(objs)
}

fn set_env(container: &mut Value, name: &str, value: &str) {
    if !container["env"].is_array() {
        container["env"] = json!([]);
    }
    let env = container["env"].as_array_mut().expect("array");
    match env.iter_mut().find(|e| e["name"] == name) {
        Some(e) => *e = json!({"name": name, "value": value}),
        None => env.push(json!({"name": name, "value": value})),
    }
}

fn drop_arg(probe: &mut Value, arg: &str) {
    if let Some(cmd) = probe["exec"]["command"].as_array_mut() {
        cmd.retain(|a| a != arg);
    }
}

impl InstallCni {
    /// The rendered manifest, fetched and parsed once per run (probe, apply and re-probe
    /// all use it).
    async fn objects(&self, cx: &Ctx) -> Result<&[DynamicObject]> {
        let objs = self
            .rendered
            .get_or_try_init(|| async {
                let k = &cx.config.cluster.spec.kubernetes;
                let text = cx
                    .manifest(&k.calico, &format!("Calico {}", k.calico.version), ID)
                    .await?;
                render(&text, &k.pod_cidr.value)
            })
            .await?;
        Ok(objs)
    }
}

/// `None` when every calico-node pod is ready, else what is missing.
async fn calico_ready(client: &kube::Client) -> Result<Option<String>> {
    let api: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
    let ds = api
        .get_opt("calico-node")
        .await
        .map_err(|e| crate::api::error("get", "DaemonSet kube-system/calico-node", e))?;
    let Some(ds) = ds else {
        return Ok(Some("DaemonSet calico-node does not exist".into()));
    };
    let s = ds.status.unwrap_or_default();
    Ok(
        if s.desired_number_scheduled > 0 && s.number_ready == s.desired_number_scheduled {
            None
        } else {
            Some(format!(
                "calico-node ready on {}/{} node(s)",
                s.number_ready, s.desired_number_scheduled
            ))
        },
    )
}

#[async_trait]
impl Stage for InstallCni {
    type Plan = Vec<Action>;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Install Calico (VXLAN) with server-side apply"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<Vec<Action>>> {
        let client = cx.kube(ID).await?;
        let objs = self.objects(cx).await?;
        let total = objs.len();
        let mut todo: Vec<Action> = Applier::new(&client, NAMESPACE)
            .plan(objs, "calico")
            .await?;
        if let Some(waiting) = calico_ready(&client).await? {
            todo.push(Action::new("calico", format!("wait: {waiting}")));
        }
        Ok(if todo.is_empty() {
            Found::done(format!("Calico applied ({total} objects) and ready"))
        } else {
            Found::Todo(todo)
        })
    }

    async fn apply(&self, cx: &Ctx, _plan: Vec<Action>) -> Result<()> {
        let client = cx.kube(ID).await?;
        let objs = self.objects(cx).await?;
        let progress = |m: String| cx.events.progress(ID, None, m);
        let report = Applier::new(&client, NAMESPACE)
            .apply(objs.to_vec(), &progress)
            .await?;
        cx.count_all(report.counters());
        let timeout = Duration::from_secs(cx.config.cluster.spec.kubernetes.wait_seconds);
        let last = crate::api::wait::until(timeout, Duration::from_secs(1), || async {
            let status = calico_ready(&client).await?;
            if let Some(s) = &status {
                cx.events.progress(ID, None, s.clone());
            }
            Ok(status)
        })
        .await?;
        match last {
            None => Ok(()),
            Some(status) => Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("{status} after {}s", timeout.as_secs()),
                help: "look at the calico-node pods: `kubectl -n kube-system get pods -l k8s-app=calico-node` and their logs; a node security group must allow VXLAN (UDP 4789) between nodes".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
kind: ConfigMap
apiVersion: v1
metadata: {name: calico-config, namespace: kube-system}
data: {calico_backend: "bird"}
---
kind: DaemonSet
apiVersion: apps/v1
metadata: {name: calico-node, namespace: kube-system}
spec:
  template:
    spec:
      containers:
        - name: calico-node
          env:
            - {name: CALICO_IPV4POOL_IPIP, value: "Always"}
            - {name: CALICO_IPV4POOL_VXLAN, value: "Never"}
          livenessProbe: {exec: {command: [/bin/calico-node, -felix-live, -bird-live]}}
          readinessProbe: {exec: {command: [/bin/calico-node, -felix-ready, -bird-ready]}}
"#;

    #[test]
    fn renders_vxlan_without_bgp() {
        let objs = render(MINI, "10.244.0.0/16").unwrap();
        assert_eq!(objs[0].data["data"]["calico_backend"], "vxlan");
        let c = &objs[1].data["spec"]["template"]["spec"]["containers"][0];
        let env = |n: &str| {
            c["env"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == n)
                .map(|e| e["value"].clone())
        };
        assert_eq!(env("CALICO_IPV4POOL_IPIP"), Some(json!("Never")));
        assert_eq!(env("CALICO_IPV4POOL_VXLAN"), Some(json!("Always")));
        assert_eq!(env("CALICO_IPV4POOL_CIDR"), Some(json!("10.244.0.0/16")));
        assert_eq!(
            c["livenessProbe"]["exec"]["command"],
            json!(["/bin/calico-node", "-felix-live"])
        );
        assert_eq!(
            c["readinessProbe"]["exec"]["command"],
            json!(["/bin/calico-node", "-felix-ready"])
        );
    }

    #[test]
    fn a_manifest_without_calico_node_is_refused() {
        let err = render(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n",
            "10.0.0.0/16",
        )
        .unwrap_err();
        assert!(err.to_string().contains("calico-node"), "{err}");
    }
}
