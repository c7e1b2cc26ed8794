//! Playbooks: plain YAML step lists run on nodes over SSH. Embedded in the binary, overridable
//! with `--playbooks DIR`. Parsing is strict: unknown keys and unknown `{{ variables }}` are
//! load-time errors pointing at their line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Config, ConfigProblems, Problem, Role};
use crate::error::{Error, Result};

/// Playbooks shipped in the binary, by name.
const EMBEDDED: &[(&str, &str)] = &[(
    "prepare-nodes",
    include_str!("../playbooks/prepare-nodes.yaml"),
)];

/// Variables every playbook may use.
pub const VARIABLES: &[&str] = &[
    "cluster",
    "node",
    "role",
    "k8s_version",
    "k8s_minor",
    "k8s_apt_version",
    "pod_cidr",
    "service_cidr",
    "containerd_version",
    "containerd_url",
    "containerd_sha256",
    "containerd_config_b64",
    "containerd_unit_b64",
    "runc_version",
    "runc_url",
    "runc_sha256",
    "unattended_b64",
    "auto_upgrades_b64",
];

/// One playbook.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Playbook {
    /// Name (the file stem).
    pub name: String,
    /// `all`, `control-plane`, `worker`, or a comma-separated list of node names.
    #[serde(default = "all")]
    pub hosts: String,
    /// Steps in order.
    pub steps: Vec<Step>,
}

fn all() -> String {
    "all".into()
}

fn yes() -> bool {
    true
}

fn default_timeout() -> u64 {
    300
}

fn default_delay() -> u64 {
    5
}

/// One step: a guarded shell script.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Human name, shown in progress and errors.
    pub name: String,
    /// The script (bash).
    pub run: String,
    /// Skip when this path exists on the node.
    pub creates: Option<String>,
    /// Skip when this read-only command succeeds on the node.
    pub unless: Option<String>,
    /// Run through `sudo -n` for non-root users.
    #[serde(rename = "become", default = "yes")]
    pub elevate: bool,
    /// Seconds before the step is abandoned.
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    /// Extra attempts after a failure.
    #[serde(default)]
    pub retries: u32,
    /// Seconds between attempts.
    #[serde(default = "default_delay")]
    pub delay: u64,
}

impl Step {
    /// The read-only guard script, if the step has one (exit 0 = already done).
    pub fn guard(&self) -> Option<String> {
        match (&self.creates, &self.unless) {
            (None, None) => None,
            (Some(path), None) => Some(format!("test -e {}", shell_quote(path))),
            (None, Some(cmd)) => Some(cmd.clone()),
            (Some(path), Some(cmd)) => Some(format!("test -e {} && ( {cmd} )", shell_quote(path))),
        }
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Playbook {
    /// Loads playbook `name` from `dir` (if given and the file exists) or the embedded copy.
    pub fn load(name: &str, dir: Option<&Path>) -> Result<Playbook> {
        if let Some(dir) = dir {
            let path = dir.join(format!("{name}.yaml"));
            if path.exists() {
                let text =
                    std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
                return Self::parse(&path, text);
            }
        }
        let (_, text) = EMBEDDED
            .iter()
            .find(|(n, _)| *n == name)
            .expect("embedded playbook");
        Self::parse(
            &PathBuf::from(format!("playbooks/{name}.yaml")),
            text.to_string(),
        )
    }

    /// Parses and checks playbook text.
    pub fn parse(path: &Path, text: String) -> Result<Playbook> {
        let fail = |problems: Vec<Problem>, text: String| -> Error {
            let mut problems = problems;
            problems.sort_by_key(|p| p.span.map_or(usize::MAX, |s| s.offset()));
            Error::Config(Box::new(ConfigProblems {
                path: path.to_path_buf(),
                source_code: miette::NamedSource::new(path.display().to_string(), text),
                problems,
            }))
        };
        let book: Playbook = match serde_saphyr::from_str(&text) {
            Ok(b) => b,
            Err(e) => {
                let span = e.location().and_then(|l| {
                    l.span().byte_offset().map(|o| {
                        miette::SourceSpan::from((
                            o as usize,
                            l.span().byte_len().unwrap_or(0) as usize,
                        ))
                    })
                });
                let msg = e.to_string();
                let msg = msg.lines().next().unwrap_or("invalid YAML").to_string();
                return Err(fail(vec![Problem::new(span, format!("invalid playbook: {msg}")).help("a playbook has `name`, `hosts` and `steps`; a step has name, run, creates, unless, become, timeout, retries, delay")], text));
            }
        };
        let mut problems = Vec::new();
        for step in &book.steps {
            for field in [Some(&step.run), step.creates.as_ref(), step.unless.as_ref()]
                .into_iter()
                .flatten()
            {
                for var in variables(field) {
                    if !VARIABLES.contains(&var.as_str()) {
                        let offset = text
                            .find(&format!("{{{{ {var} }}}}"))
                            .or_else(|| text.find(&format!("{{{{{var}}}}}")));
                        problems.push(
                            Problem::new(
                                offset.map(|o| miette::SourceSpan::from((o, var.len() + 6))),
                                format!("unknown variable `{var}` in step `{}`", step.name),
                            )
                            .help(format!("known variables: {}", VARIABLES.join(", "))),
                        );
                    }
                }
            }
        }
        if problems.is_empty() {
            Ok(book)
        } else {
            Err(fail(problems, text))
        }
    }

    /// Whether the playbook runs on a node.
    pub fn targets(&self, node: &str, role: Role) -> bool {
        match self.hosts.as_str() {
            "all" => true,
            "control-plane" => role == Role::ControlPlane,
            "worker" => role == Role::Worker,
            list => list.split(',').any(|n| n.trim() == node),
        }
    }
}

/// The `{{ name }}` references in `text`.
fn variables(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { break };
        out.push(after[..end].trim().to_string());
        rest = &after[end + 2..];
    }
    out
}

/// Values of the playbook variables for one node.
pub fn values(config: &Config, node: &str, role: Role) -> BTreeMap<&'static str, String> {
    let k = &config.cluster.spec.kubernetes;
    let version = k.version.trim_start_matches('v').to_string();
    let minor = version.split('.').take(2).collect::<Vec<_>>().join(".");
    let apt = if version == minor {
        format!("{minor}.*")
    } else {
        format!("{version}-*")
    };
    BTreeMap::from([
        ("cluster", config.name().to_string()),
        ("node", node.to_string()),
        ("role", role.as_str().to_string()),
        ("k8s_version", version),
        ("k8s_minor", minor),
        ("k8s_apt_version", apt),
        ("pod_cidr", k.pod_cidr.value.clone()),
        ("service_cidr", k.service_cidr.value.clone()),
        ("containerd_version", k.containerd.version.value.clone()),
        ("containerd_url", k.containerd.url.value.clone()),
        ("containerd_sha256", k.containerd.sha256.value.clone()),
        (
            "containerd_config_b64",
            b64(&crate::containerd::config_toml(config)),
        ),
        (
            "containerd_unit_b64",
            b64(&crate::containerd::systemd_unit()),
        ),
        ("runc_version", k.runc.version.value.clone()),
        ("runc_url", k.runc.url.value.clone()),
        ("runc_sha256", k.runc.sha256.value.clone()),
        (
            "unattended_b64",
            b64(crate::os_updates::UNATTENDED_UPGRADES),
        ),
        (
            "auto_upgrades_b64",
            b64(&crate::os_updates::auto_upgrades(config)),
        ),
    ])
}

fn b64(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `text` with every `{{ name }}` replaced (names were checked at load time).
pub fn render(text: &str, values: &BTreeMap<&'static str, String>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        out.push_str(values.get(name).map(String::as_str).unwrap_or_default());
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_playbook_loads_and_renders() {
        let book = Playbook::load("prepare-nodes", None).unwrap();
        assert!(book.steps.len() >= 8);
        assert!(
            book.steps.iter().all(|s| s.guard().is_some()),
            "every step is guarded"
        );
        let config = crate::config::tests_support::config();
        let vals = values(&config, "k8s-master", Role::ControlPlane);
        assert_eq!(vals["k8s_apt_version"], "1.36.*");
        assert_eq!(
            render("v{{ k8s_minor }}/deb {{node}}", &vals),
            "v1.36/deb k8s-master"
        );
    }

    #[test]
    fn unknown_key_and_unknown_variable_point_at_their_lines() {
        let text =
            "name: x\nsteps:\n  - name: a\n    run: echo {{ nope }}\n    unles: true\n".to_string();
        let err = Playbook::parse(Path::new("x.yaml"), text).unwrap_err();
        let Error::Config(p) = err else { panic!() };
        assert_eq!(p.line_of(&p.problems[0]), Some(5), "{:?}", p.problems);
        let text = "name: x\nsteps:\n  - name: a\n    run: echo {{ nope }}\n".to_string();
        let Error::Config(p) = Playbook::parse(Path::new("x.yaml"), text).unwrap_err() else {
            panic!()
        };
        assert!(p.problems[0].message.contains("unknown variable `nope`"));
        assert_eq!(p.line_of(&p.problems[0]), Some(4));
    }
}
