//! Stage `install-cni`: Calico from its pinned manifest, rendered for the settings the reference
//! system reached after its BGP and probe incidents (VXLAN Always, IPIP Never, no BGP/BIRD,
//! felix-only probes, the configured pod CIDR), applied with server-side apply; then a bounded
//! wait until every calico-node pod is ready.

use async_trait::async_trait;
use k8s_openapi::api::apps::v1::DaemonSet;
use kube::api::{Api, DynamicObject};
use serde_json::{Value, json};

use crate::api::manifest;
use crate::config::{Config, Manifest};
use crate::error::{Error, Result};
use crate::stages::shared::ids;
use crate::stages::shared::manifest::{Bundle, ManifestStage};

/// Stage id.
pub const ID: &str = ids::INSTALL_CNI;
const NAMESPACE: &str = "kube-system";

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

/// The Calico manifest as a [`Bundle`].
pub struct Calico;

/// The `install-cni` stage.
pub type InstallCni = ManifestStage<Calico>;

#[async_trait]
impl Bundle for Calico {
    const ID: &'static str = ID;
    const TITLE: &'static str = "Install Calico (VXLAN) with server-side apply";
    const TARGET: &'static str = "calico";
    const NAME: &'static str = "Calico";

    fn source(config: &Config) -> (&Manifest, String) {
        let k = &config.cluster.spec.kubernetes;
        (&k.calico, format!("Calico {}", k.calico.version))
    }

    fn namespace(_: &Config) -> &str {
        NAMESPACE
    }

    fn render(text: &str, config: &Config) -> Result<Vec<DynamicObject>> {
        render(text, &config.cluster.spec.kubernetes.pod_cidr.value)
    }

    /// What is missing until every calico-node pod is ready.
    async fn waiting(client: &kube::Client, _: &Config) -> Result<Vec<String>> {
        let api: Api<DaemonSet> = Api::namespaced(client.clone(), NAMESPACE);
        let ds = api
            .get_opt("calico-node")
            .await
            .map_err(|e| crate::api::error("get", "DaemonSet kube-system/calico-node", e))?;
        let Some(ds) = ds else {
            return Ok(vec!["DaemonSet calico-node does not exist".into()]);
        };
        let s = ds.status.unwrap_or_default();
        Ok(
            if s.desired_number_scheduled > 0 && s.number_ready == s.desired_number_scheduled {
                Vec::new()
            } else {
                vec![format!(
                    "calico-node ready on {}/{} node(s)",
                    s.number_ready, s.desired_number_scheduled
                )]
            },
        )
    }

    fn wait_seconds(config: &Config) -> u64 {
        config.cluster.spec.kubernetes.wait_seconds
    }

    fn help(_: &Config) -> String {
        "look at the calico-node pods: `kubectl -n kube-system get pods -l k8s-app=calico-node` and their logs; a node security group must allow VXLAN (UDP 4789) between nodes".into()
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
