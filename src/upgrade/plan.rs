//! What an upgrade will do, as data: the versions, the step check (one minor at a time) and the
//! order of the nodes (the first control plane alone, `kubeadm upgrade apply`; the other control
//! planes one at a time, `kubeadm upgrade node`; then batches of `--max-unavailable` workers,
//! infrastructure nodes always alone).

use std::fmt;

use crate::config::{Config, Node, Role};
use crate::event::Action;

/// A Kubernetes version `1.MINOR[.PATCH]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    /// Minor.
    pub minor: u32,
    /// Patch, when known.
    pub patch: Option<u32>,
}

impl Version {
    /// Parses `1.37`, `v1.37.2`, `1.37.2-1.1` (a package version).
    pub fn parse(text: &str) -> Option<Version> {
        let v = text.trim().trim_start_matches('v');
        let v = v.split(['-', '+']).next()?;
        let mut parts = v.split('.');
        if parts.next()? != "1" {
            return None;
        }
        let minor = parts.next()?.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        Some(Version { minor, patch })
    }

    /// `1.MINOR`.
    pub fn minor_str(&self) -> String {
        format!("1.{}", self.minor)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.patch {
            Some(p) => write!(f, "1.{}.{p}", self.minor),
            None => write!(f, "1.{}", self.minor),
        }
    }
}

/// Why a target cannot be reached in one upgrade.
pub fn step_problem(from: Version, to: Version) -> Option<String> {
    if to.minor < from.minor {
        return Some(format!(
            "Kubernetes {from} cannot be downgraded to {to}; kubeadm supports upgrades only"
        ));
    }
    if to.minor > from.minor + 1 {
        return Some(format!(
            "Kubernetes moves one minor at a time: upgrade {from} to 1.{} first, then to {}",
            from.minor + 1,
            to.minor_str()
        ));
    }
    if to.minor == from.minor && to.patch.is_some_and(|p| from.patch.is_some_and(|f| p <= f)) {
        return Some(format!("the cluster already runs {from}"));
    }
    None
}

/// One group of nodes upgraded together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Node names.
    pub nodes: Vec<String>,
}

/// The whole upgrade.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradePlan {
    /// What the API server runs now.
    pub from: Version,
    /// The target (patch resolved on the control plane when not given).
    pub to: Version,
    /// The control-plane node.
    pub control_plane: String,
    /// The other nodes, batch by batch.
    pub batches: Vec<Batch>,
    /// The cluster already runs the target: nothing to do.
    pub done: bool,
}

/// Infrastructure nodes (stateful services) are always drained alone.
pub(crate) fn infrastructure(node: &Node) -> bool {
    node.labels
        .get("role")
        .is_some_and(|r| r.as_str() == "infrastructure")
}

impl UpgradePlan {
    /// The order for `config`: workers in config order, at most `max_unavailable` at a time.
    pub fn new(config: &Config, from: Version, to: Version, max_unavailable: usize) -> Self {
        let max = max_unavailable.max(1);
        // The other control planes next, one at a time (each is an etcd member and an API
        // server behind the load balancer), before any worker.
        let mut batches: Vec<Batch> = (config.control_planes().skip(1))
            .map(|n| Batch {
                nodes: vec![n.name.value.clone()],
            })
            .collect();
        let mut open: Vec<String> = Vec::new();
        for node in config
            .nodes()
            .filter(|n| n.role != Some(Role::ControlPlane))
        {
            if infrastructure(node) {
                batches.push(Batch {
                    nodes: vec![node.name.value.clone()],
                });
                continue;
            }
            open.push(node.name.value.clone());
            if open.len() == max {
                batches.push(Batch {
                    nodes: std::mem::take(&mut open),
                });
            }
        }
        if !open.is_empty() {
            batches.push(Batch { nodes: open });
        }
        UpgradePlan {
            from,
            to,
            control_plane: config.control_plane().name.value.clone(),
            batches,
            done: false,
        }
    }

    /// The plan as actions, in order (none when the cluster already runs the target).
    pub fn actions(&self) -> Vec<Action> {
        if self.done {
            return Vec::new();
        }
        let mut out = vec![Action::new(
            &self.control_plane,
            format!(
                "1. kubeadm upgrade apply v{} (API server first), drain, kubelet {}, uncordon",
                self.to, self.to
            ),
        )];
        for (i, b) in self.batches.iter().enumerate() {
            out.push(Action::new(
                b.nodes.join(", "),
                format!(
                    "{}. cordon and drain, kubeadm upgrade node, kubelet {}, uncordon",
                    i + 2,
                    self.to
                ),
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_steps() {
        let v = |s| Version::parse(s).unwrap();
        assert_eq!(
            v("v1.36.2"),
            Version {
                minor: 36,
                patch: Some(2)
            }
        );
        assert_eq!(v("1.37.2-1.1").to_string(), "1.37.2");
        assert_eq!(v("1.37").patch, None);
        assert!(Version::parse("2.0").is_none());
        assert_eq!(step_problem(v("1.36.2"), v("1.37")), None);
        assert_eq!(step_problem(v("1.36.2"), v("1.36.4")), None);
        assert!(
            step_problem(v("1.34.2"), v("1.36"))
                .unwrap()
                .contains("to 1.35 first")
        );
        assert!(
            step_problem(v("1.36.2"), v("1.35"))
                .unwrap()
                .contains("downgraded")
        );
        assert!(
            step_problem(v("1.36.2"), v("1.36.2"))
                .unwrap()
                .contains("already")
        );
    }

    #[test]
    fn control_plane_first_then_batches_with_infrastructure_alone() {
        let config = crate::config::tests_support::config();
        let from = Version::parse("1.36.2").unwrap();
        let to = Version::parse("1.37").unwrap();
        let plan = UpgradePlan::new(&config, from, to, 3);
        assert_eq!(plan.control_plane, "k8s-master");
        let sizes: Vec<usize> = plan.batches.iter().map(|b| b.nodes.len()).collect();
        assert!(sizes.iter().all(|s| (1..=3).contains(s)), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 13);
        for b in &plan.batches {
            let infra = b.nodes.iter().filter(|n| {
                [
                    "k8s-postgresql",
                    "k8s-redis",
                    "k8s-rabbitmq",
                    "k8s-monitoring",
                ]
                .contains(&n.as_str())
            });
            assert!(infra.count() == 0 || b.nodes.len() == 1, "{b:?}");
        }
        assert_eq!(plan.actions().len(), plan.batches.len() + 1);
    }

    #[test]
    fn other_control_planes_follow_the_first_alone_before_any_worker() {
        let config = crate::config::tests_support::ha_config();
        assert!(config.is_ha());
        let plan = UpgradePlan::new(
            &config,
            Version::parse("1.36.2").unwrap(),
            Version::parse("1.37").unwrap(),
            3,
        );
        assert_eq!(plan.control_plane, "k8s-master");
        assert_eq!(plan.batches[0].nodes, ["k8s-api-my"]);
        assert_eq!(plan.batches[1].nodes, ["k8s-api-scan"]);
        assert!(plan.batches[2..].iter().all(|b| {
            !b.nodes
                .iter()
                .any(|n| n == "k8s-api-my" || n == "k8s-api-scan")
        }));
    }
}
