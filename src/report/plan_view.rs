//! How a stage's plan reads on a terminal. The compact view (the default for humans) groups
//! nodes whose plans are identical and sums object applies per kind; the detail view (`-v`,
//! `plan --detail`) is one line per action. JSON events always carry every action.

use std::collections::BTreeMap;

use crate::event::Action;

/// The longest compact line (longer ones end in `…`).
const WIDTH: usize = 110;
/// Node names listed in a group before `…`.
const NAMES: usize = 3;

/// The plan as lines: `(target, what)` pairs, or compact groups.
pub fn render(actions: &[Action], detail: bool) -> Vec<(String, String)> {
    if detail {
        return (actions.iter())
            .map(|a| (a.target.clone(), a.what.clone()))
            .collect();
    }
    let mut out = Vec::new();
    let mut applies: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for a in actions {
        if let Some(object) = a.what.strip_prefix("apply ") {
            applies.entry(&a.target).or_default().push(object);
            continue;
        }
        match groups.iter_mut().find(|(what, _)| *what == a.what) {
            Some((_, targets)) => targets.push(&a.target),
            None => groups.push((&a.what, vec![&a.target])),
        }
    }
    for (target, objects) in applies {
        out.push((target.to_string(), clip(&summarise_objects(&objects))));
    }
    for (what, targets) in groups {
        let who = match targets.as_slice() {
            [one] => one.to_string(),
            many => {
                let shown: Vec<&str> = many.iter().take(NAMES).copied().collect();
                let more = if many.len() > NAMES { ", …" } else { "" };
                format!("{} {} ({}{more})", many.len(), noun(many), shown.join(", "))
            }
        };
        out.push((who, clip(what)));
    }
    out
}

/// What a group of targets is called: `roles`, `instance profiles`, `resources` (AWS ids,
/// ARNs, URLs) or `nodes`.
fn noun(targets: &[&str]) -> &'static str {
    let all = |f: &dyn Fn(&str) -> bool| targets.iter().all(|t| f(t));
    if all(&|t| t.starts_with("role/")) {
        "roles"
    } else if all(&|t| t.starts_with("instance-profile/")) {
        "instance profiles"
    } else if all(&|t| {
        let aws_id = t.split_once('-').is_some_and(|(_, h)| h.len() >= 8);
        t.contains('/')
            || t.contains(':')
            || (aws_id && crate::journal_check::resource_id(t).is_ok())
    }) {
        "resources"
    } else {
        "nodes"
    }
}

/// `apply 62 objects (59 missing, 3 kind not served yet): 20 CustomResourceDefinition, …` from
/// the applier's `Kind ns/name: state` lines.
fn summarise_objects(objects: &[&str]) -> String {
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    for o in objects {
        let (object, state) = o.rsplit_once(": ").unwrap_or((o, "changed"));
        *states.entry(state).or_default() += 1;
        *kinds
            .entry(object.split(' ').next().unwrap_or("?"))
            .or_default() += 1;
    }
    let states: Vec<String> = states.iter().map(|(s, n)| format!("{n} {s}")).collect();
    let mut kinds: Vec<(&str, usize)> = kinds.into_iter().collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let kinds: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect();
    format!(
        "apply {} object(s) ({}): {}",
        objects.len(),
        states.join(", "),
        kinds.join(", ")
    )
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(WIDTH) {
        None => text.to_string(),
        Some((i, _)) => format!("{}…", &text[..i]),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn groups_are_named_by_what_they_hold() {
        assert_eq!(super::noun(&["role/a", "role/b"]), "roles");
        assert_eq!(
            super::noun(&["eipalloc-0123456789abcdef0", "sg-0123abcd"]),
            "resources"
        );
        assert_eq!(super::noun(&["k8s-api-auth", "web-1"]), "nodes");
    }

    use super::*;
    use crate::testutil::snapshot;

    fn sample() -> Vec<Action> {
        let mut actions = Vec::new();
        let steps = "run 11 step(s): disable swap, load kernel modules overlay and br_netfilter, sysctl for bridged traffic and forwarding, install runc 1.4.3, install containerd 2.3.4 from its release tarball";
        for i in 0..13 {
            actions.push(Action::new(format!("k8s-node-{i:02}"), steps));
        }
        actions.push(Action::new(
            "k8s-redis",
            "run 2 step(s): hold kubelet, kubeadm and kubectl, enable kubelet",
        ));
        actions.push(Action::new(
            "k8s-rabbitmq",
            "unreachable: connection refused",
        ));
        for i in 0..20 {
            actions.push(Action::new(
                "argocd",
                format!("apply CustomResourceDefinition crd-{i}.argoproj.io: missing"),
            ));
        }
        for i in 0..7 {
            actions.push(Action::new(
                "argocd",
                format!("apply Deployment argocd/argocd-{i}: kind not served yet"),
            ));
        }
        actions.push(Action::new(
            "argocd",
            "apply ConfigMap argocd/argocd-cm: differs",
        ));
        actions.push(Action::new("argocd", "wait until every workload is ready"));
        actions
    }

    fn text(lines: &[(String, String)]) -> String {
        lines.iter().map(|(t, w)| format!("{t}: {w}\n")).collect()
    }

    #[test]
    fn compact_and_detail_renderings() {
        let compact = render(&sample(), false);
        assert!(compact.len() <= 6, "{compact:?}");
        snapshot("plan-compact.txt", &text(&compact));
        let detail = render(&sample(), true);
        assert_eq!(detail.len(), sample().len());
        snapshot("plan-detail.txt", &text(&detail));
    }
}
