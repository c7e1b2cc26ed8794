//! What ecoboot wants on a Node object, as pure functions: the labels and taints a configured
//! node should carry, the merge patch that brings a live Node there (removing what ecoboot set
//! earlier and the config no longer lists, keeping what others set), and readiness.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Node as KubeNode, Taint};
use serde_json::{Map, Value, json};

use crate::config::Node;

/// Node annotation: the label keys ecoboot set (comma-separated).
pub const OWNED_LABELS: &str = "ecoboot.io/labels";
/// Node annotation: the taints ecoboot set (`key:Effect`, comma-separated).
pub const OWNED_TAINTS: &str = "ecoboot.io/taints";

/// Labels a node should carry: its configured labels plus `node-role.kubernetes.io/<role>`
/// (the `role` label when set, else the config role).
pub fn desired_labels(node: &Node) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = node
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), v.value.clone()))
        .collect();
    let role = labels
        .get("role")
        .cloned()
        .unwrap_or_else(|| node.role.unwrap_or_default().as_str().to_string());
    labels.insert(format!("node-role.kubernetes.io/{role}"), String::new());
    labels
}

/// A config taint (`key[=value]:Effect`, validated at load) as a Kubernetes taint.
pub fn taint(spec: &str) -> Taint {
    let parsed: crate::config::Taint = spec.parse().unwrap_or(crate::config::Taint {
        key: spec.into(),
        value: String::new(),
        effect: crate::config::Effect::NoSchedule,
    });
    Taint {
        key: parsed.key,
        value: Some(parsed.value).filter(|v| !v.is_empty()),
        effect: parsed.effect.as_str().into(),
        time_added: None,
    }
}

fn taint_id(t: &Taint) -> String {
    format!("{}:{}", t.key, t.effect)
}

fn owned(node: &KubeNode, annotation: &str) -> BTreeSet<String> {
    node.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(annotation))
        .map(|v| {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// The merge patch that brings `live` to what `node` configures, or `None` when it is there.
/// The second value describes the change.
pub fn reconcile(node: &Node, live: &KubeNode) -> Option<(Value, String)> {
    let want = desired_labels(node);
    let have = live.metadata.labels.clone().unwrap_or_default();
    let mut labels = Map::new();
    let mut notes = Vec::new();
    for (k, v) in &want {
        if have.get(k) != Some(v) {
            labels.insert(k.clone(), json!(v));
            notes.push(format!("set {k}={v}"));
        }
    }
    for k in owned(live, OWNED_LABELS) {
        if !want.contains_key(&k) && have.contains_key(&k) {
            labels.insert(k.clone(), Value::Null);
            notes.push(format!("remove label {k}"));
        }
    }
    let want_taints: Vec<Taint> = node.taints.iter().map(|t| taint(t)).collect();
    let want_ids: BTreeSet<String> = want_taints.iter().map(taint_id).collect();
    let live_taints = live
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    // Keep the taints ecoboot does not own (e.g. node.kubernetes.io/not-ready), then add ours.
    let owned_taints = owned(live, OWNED_TAINTS);
    let mut taints: Vec<Taint> = live_taints
        .iter()
        .filter(|t| {
            let id = taint_id(t);
            !want_ids.contains(&id) && !owned_taints.contains(&id)
        })
        .cloned()
        .collect();
    taints.extend(want_taints.iter().cloned());
    let same = |a: &Taint, b: &Taint| a.key == b.key && a.effect == b.effect && a.value == b.value;
    let taints_match = taints.len() == live_taints.len()
        && taints
            .iter()
            .all(|t| live_taints.iter().any(|l| same(t, l)));
    if !taints_match {
        notes.push(format!(
            "taints [{}]",
            taints
                .iter()
                .map(|t| format!(
                    "{}={}:{}",
                    t.key,
                    t.value.as_deref().unwrap_or(""),
                    t.effect
                ))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let label_keys = want.keys().cloned().collect::<Vec<_>>().join(",");
    let taint_ids = want_ids.iter().cloned().collect::<Vec<_>>().join(",");
    let annotations = live.metadata.annotations.clone().unwrap_or_default();
    let record_stale = annotations.get(OWNED_LABELS) != Some(&label_keys)
        || annotations.get(OWNED_TAINTS) != Some(&taint_ids);
    if notes.is_empty() && !record_stale {
        return None;
    }
    let mut patch = json!({"metadata": {
        "labels": labels,
        "annotations": {OWNED_LABELS: label_keys, OWNED_TAINTS: taint_ids},
    }});
    if !taints_match {
        patch["spec"] = json!({"taints": taints});
    }
    if notes.is_empty() {
        notes.push("record what ecoboot owns".into());
    }
    Some((patch, notes.join(", ")))
}

/// `None` when the node is Ready, else why not.
pub fn not_ready(live: &KubeNode) -> Option<String> {
    let cond = live
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"));
    match cond {
        Some(c) if c.status == "True" => None,
        Some(c) => Some(format!(
            "NotReady: {}",
            c.message.clone().or(c.reason.clone()).unwrap_or_default()
        )),
        None => Some("NotReady: no Ready condition yet".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Located;

    fn node() -> Node {
        let mut n = Node::default();
        n.name.value = "k8s-api-auth".into();
        for (k, v) in [("role", "api"), ("domain", "auth")] {
            n.labels.insert(
                k.into(),
                Located {
                    value: v.into(),
                    span: None,
                },
            );
        }
        n.taints = vec![Located {
            value: "domain=auth:NoSchedule".into(),
            span: None,
        }];
        n
    }

    fn live(labels: &[(&str, &str)], taints: Vec<Taint>, annotations: &[(&str, &str)]) -> KubeNode {
        let mut n = KubeNode::default();
        n.metadata.labels = Some(
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(taints),
            ..Default::default()
        });
        n
    }

    #[test]
    fn adds_the_role_label_and_keeps_foreign_taints() {
        let not_ready = Taint {
            key: "node.kubernetes.io/not-ready".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        let l = live(&[("role", "api"), ("domain", "auth")], vec![not_ready], &[]);
        let (patch, what) = reconcile(&node(), &l).unwrap();
        assert_eq!(
            patch["metadata"]["labels"]["node-role.kubernetes.io/api"],
            ""
        );
        let taints = patch["spec"]["taints"].as_array().unwrap();
        assert_eq!(taints.len(), 2, "{what}");
        assert!(what.contains("node-role.kubernetes.io/api"));
    }

    #[test]
    fn converged_node_needs_nothing_and_dropped_config_entries_are_removed() {
        let t = taint("domain=auth:NoSchedule");
        let owned = [
            (OWNED_LABELS, "domain,node-role.kubernetes.io/api,role"),
            (OWNED_TAINTS, "domain:NoSchedule"),
        ];
        let l = live(
            &[
                ("role", "api"),
                ("domain", "auth"),
                ("node-role.kubernetes.io/api", ""),
            ],
            vec![t.clone()],
            &owned,
        );
        assert!(reconcile(&node(), &l).is_none());
        let mut fewer = node();
        fewer.labels.remove("domain");
        fewer.taints.clear();
        let (patch, _) = reconcile(&fewer, &l).unwrap();
        assert_eq!(patch["metadata"]["labels"]["domain"], Value::Null);
        assert_eq!(patch["spec"]["taints"], json!([]));
    }

    #[test]
    fn a_hand_edited_label_is_set_back() {
        let owned = [
            (OWNED_LABELS, "domain,node-role.kubernetes.io/api,role"),
            (OWNED_TAINTS, "domain:NoSchedule"),
        ];
        let l = live(
            &[
                ("role", "api"),
                ("domain", "hacked"),
                ("node-role.kubernetes.io/api", ""),
            ],
            vec![taint("domain=auth:NoSchedule")],
            &owned,
        );
        let (patch, what) = reconcile(&node(), &l).unwrap();
        assert_eq!(patch["metadata"]["labels"]["domain"], "auth");
        assert!(patch.get("spec").is_none(), "{what}");
    }
}
