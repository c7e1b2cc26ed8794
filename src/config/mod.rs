//! Loading and validating the cluster config (`inventory/cluster.yaml`).
//!
//! All YAML parsing of ecoboot's own files lives here and in the playbook module.

mod cidr;
mod locate;
mod located;
mod model;
mod model_argocd;
mod model_gitops;
mod model_hardening;
mod model_iam;
mod model_state;
mod problems;
mod strings;
pub mod support;
pub mod syntax;
mod syntax_aws;
mod validate;
mod validate_access;
mod validate_gitops;
mod validate_iam;
mod validate_nodes;

use std::path::{Path, PathBuf};

use miette::SourceSpan;
use sha2::{Digest, Sha256};

pub use cidr::Cidr;
pub use locate::Seg;
pub use model::*;
pub use model_argocd::*;
pub use model_gitops::{Gitops, PullSecret, Repository, SecretSource};
pub use model_hardening::{Hardening, LEVELS as POD_SECURITY_LEVELS, PodSecurity};
pub use model_iam::{PolicyDocument, policy_json};
pub use model_state::{State as StateConfig, StateBackend};
pub use problems::{ConfigProblems, Problem};
pub use syntax::{Effect, Taint};
pub use validate_access::world_open;

/// The largest config file ecoboot reads.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// The longest line (miette's renderer cannot point into longer ones).
const MAX_LINE: usize = 16 * 1024;
/// At most this many problems are rendered; the rest are counted.
pub const MAX_PROBLEMS: usize = 50;

/// The supported `apiVersion`.
pub const API_VERSION: &str = "ecoboot.io/v1alpha1";

/// A loaded, validated cluster config. Immutable once built.
#[derive(Debug, Clone)]
pub struct Config {
    /// The parsed document.
    pub cluster: Cluster,
    /// Where it was read from.
    pub path: PathBuf,
    /// sha256 of the file's bytes, recorded in the state journal.
    pub digest: String,
}

/// Whether validation also checks files the config points at (public key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileChecks {
    /// Check that referenced files are readable (commands that will use them).
    Check,
    /// Skip file checks (plan, status, listing commands).
    Skip,
}

impl Config {
    /// A diagnostic about one value of this config, rendered against the file (exit 2): for
    /// problems found after loading, such as a version the running cluster contradicts.
    pub fn problem_at<T>(
        &self,
        at: &Located<T>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) -> Box<ConfigProblems> {
        let source = std::fs::read_to_string(&self.path).unwrap_or_default();
        let problem = Problem::new(at.span, message).help(help.into());
        ConfigProblems::new(&self.path, source, vec![problem])
    }

    /// Reads, parses and validates the config at `path`.
    pub fn load(path: &Path, files: FileChecks) -> Result<Config, Box<ConfigProblems>> {
        let refuse = |message: String| {
            ConfigProblems::new(
                path,
                String::new(),
                vec![
                    Problem::new(None, message)
                        .help("pass the right file with -c/--config or ECOBOOT_CONFIG"),
                ],
            )
        };
        let bytes = read_regular(path, MAX_CONFIG_BYTES)
            .map_err(|e| refuse(format!("cannot read the config file: {e}")))?;
        let source = String::from_utf8_lossy(&bytes).into_owned();
        Self::parse(path, source, files, &hex::encode(Sha256::digest(&bytes)))
    }

    /// Parses and validates config text (`path` is used for messages and relative paths).
    // Long by design: read → YAML with spans → unknown keys → types → validation, in order.
    pub fn parse(
        path: &Path,
        source: String,
        files: FileChecks,
        digest: &str,
    ) -> Result<Config, Box<ConfigProblems>> {
        if source.len() as u64 > MAX_CONFIG_BYTES {
            let problem = Problem::new(
                None,
                format!("the config is larger than {MAX_CONFIG_BYTES} bytes"),
            );
            return Err(ConfigProblems::new(path, String::new(), vec![problem]));
        }
        if let Some((n, _)) = source.lines().enumerate().find(|(_, l)| l.len() > MAX_LINE) {
            let problem = Problem::new(
                None,
                format!("line {} is longer than {MAX_LINE} bytes", n + 1),
            )
            .help("config values are short single-line text; check that this is the right file");
            return Err(ConfigProblems::new(path, String::new(), vec![problem]));
        }
        let tags = yaml_tags(&source);
        if !tags.is_empty() {
            return Err(ConfigProblems::new(path, source, tags));
        }
        let mut unknown: Vec<Vec<Seg>> = Vec::new();
        let mut unknown_more = 0usize;
        let parsed = serde_saphyr::with_deserializer_from_str(&source, |de| {
            serde_ignored::deserialize(de, |p| {
                if unknown.len() < MAX_PROBLEMS - 10 {
                    unknown.extend(segments(&p));
                } else {
                    unknown_more += 1;
                }
            })
        });
        let cluster: Cluster = match parsed {
            Ok(cluster) => cluster,
            Err(err) => {
                let span = err.location().and_then(|loc| {
                    let s = loc.span();
                    s.byte_offset()
                        .map(|o| SourceSpan::from((o as usize, s.byte_len().unwrap_or(0) as usize)))
                });
                let message = err.to_string();
                let message = message.lines().next().unwrap_or("invalid YAML").to_string();
                let problem = Problem::new(span, format!("cannot parse the config: {message}"))
                    .help("see README.md#configuration for the expected shape");
                return Err(ConfigProblems::new(path, source, vec![problem]));
            }
        };
        let mut problems: Vec<Problem> = unknown
            .iter()
            .map(|segs| {
                let name = segs
                    .iter()
                    .map(|s| match s {
                        Seg::Key(k) => k.clone(),
                        Seg::Index(i) => i.to_string(),
                    })
                    .collect::<Vec<_>>()
                    .join(".");
                Problem::new(
                    locate::locate(&source, segs),
                    format!("unknown key `{name}`"),
                )
                .label("not a known key")
                .help("check the spelling; see README.md#configuration for every key")
            })
            .collect();
        if unknown_more > 0 {
            problems.push(
                Problem::new(None, format!("and {unknown_more} more unknown keys"))
                    .help("check that this is an ecoboot cluster config"),
            );
        }
        let base = path.parent().unwrap_or(Path::new("."));
        let hostile = strings::check(&source);
        if !hostile.is_empty() {
            // Values with control characters would only produce confusing follow-up errors.
            problems.extend(hostile);
        } else {
            problems.extend(validate::validate(&cluster, &source, base, files));
        }
        if problems.is_empty() {
            Ok(Config {
                cluster,
                path: path.to_path_buf(),
                digest: digest.to_string(),
            })
        } else {
            Err(ConfigProblems::new(path, source, problems))
        }
    }

    /// The cluster name.
    pub fn name(&self) -> &str {
        &self.cluster.metadata.name
    }

    /// The nodes in config order.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.cluster.spec.nodes.iter().map(|n| &n.value)
    }

    /// The versions the config asks for that have support windows (Kubernetes, containerd,
    /// the Ubuntu release of the AMI filter).
    pub fn versions(&self) -> Vec<(support::Component, String)> {
        let spec = &self.cluster.spec;
        let mut out = vec![
            (
                support::Component::Kubernetes,
                spec.kubernetes.version.value.clone(),
            ),
            (
                support::Component::Containerd,
                spec.kubernetes.containerd.version.value.clone(),
            ),
        ];
        if let Some(release) = support::ubuntu_release(&spec.aws.ami.name_filter) {
            out.push((support::Component::Ubuntu, release));
        }
        out
    }

    /// The first control-plane node in the config: the one `kubeadm init` runs on when no
    /// control plane holds a cluster yet (the only one without HA).
    pub fn control_plane(&self) -> &Node {
        self.control_planes()
            .next()
            .expect("validated: at least one control-plane node")
    }

    /// The configured node named `name`.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes().find(|n| n.name.as_str() == name)
    }

    /// Every control-plane node, in config order.
    pub fn control_planes(&self) -> impl Iterator<Item = &Node> {
        self.nodes().filter(|n| n.role == Some(Role::ControlPlane))
    }

    /// Several control planes behind a load balancer (`spec.nodes` has 3 or 5 of them).
    pub fn is_ha(&self) -> bool {
        self.control_planes().nth(1).is_some()
    }

    /// Resolves a path from the config (`~/` = home, relative = next to the config file).
    pub fn resolve_path(&self, raw: &str) -> PathBuf {
        resolve_path(self.path.parent().unwrap_or(Path::new(".")), raw)
    }
}

/// Reads `path` if it is a regular file of at most `max` bytes (never a FIFO, device or
/// directory), without following a symlink's target type checks twice.
pub fn read_regular(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let real = std::fs::canonicalize(path)?;
    if let Some(why) = pseudo_filesystem(&real) {
        return Err(std::io::Error::other(why));
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&real)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    if meta.len() > max {
        return Err(std::io::Error::other(format!(
            "{} bytes is larger than the {max} bytes a config may have",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(bytes)
}

/// Every explicit YAML tag beyond the core schema's (`!!str`, `!!int` …): `!ruby/object`,
/// `!!binary`, `!custom`. A cluster config needs none, and a parser that silently ignores them would read something other than what the
/// author (or an attacker who edited the file) meant.
fn yaml_tags(source: &str) -> Vec<Problem> {
    use granit_parser::{Event, Parser};
    let mut problems = Vec::new();
    // A tag starts with `!`: a config without one needs no second pass.
    if !source.contains('!') {
        return problems;
    }
    for item in Parser::new_from_str(source) {
        let Ok((event, span)) = item else { break };
        let tag = match &event {
            Event::Scalar(_, _, _, Some(t))
            | Event::SequenceStart(_, _, Some(t))
            | Event::MappingStart(_, _, Some(t)) => t.to_string(),
            _ => continue,
        };
        let core = ["str", "int", "bool", "null", "float", "map", "seq"];
        if tag
            .strip_prefix("tag:yaml.org,2002:")
            .is_some_and(|t| core.contains(&t))
        {
            continue;
        }
        let at = span
            .start
            .byte_offset()
            .map(|o| SourceSpan::from((o, span.byte_range().map_or(0, |r| r.len()))));
        problems.push(
            Problem::new(
                at,
                format!("the YAML tag `{}` is not accepted", syntax::clip(&tag)),
            )
            .label("a tag")
            .help("remove the tag: every config value is a plain string, number, list or mapping"),
        );
        if problems.len() >= MAX_PROBLEMS {
            break;
        }
    }
    problems
}

/// Why a file under `/proc`, `/sys` or `/dev` is no config or secret file (process
/// environments, kernel state and devices look like regular files there), if `path` is one.
pub fn pseudo_filesystem(path: &Path) -> Option<String> {
    ["/proc", "/sys", "/dev"]
        .iter()
        .find(|p| path.starts_with(p))
        .map(|p| format!("{} is under {p}: not a file ecoboot reads", path.display()))
}

/// Resolves `raw` against `base`, expanding a leading `~/`.
pub fn resolve_path(base: &Path, raw: &str) -> PathBuf {
    if let Some(rest) = raw.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    base.join(raw)
}

/// Turns a serde_ignored path into key/index segments; `None` for the internal fields of
/// serde-saphyr's span wrapper, which are not keys of the document.
fn segments(path: &serde_ignored::Path) -> Option<Vec<Seg>> {
    use serde_ignored::Path as P;
    let mut rev = Vec::new();
    let mut cur = path;
    loop {
        match cur {
            P::Root => break,
            P::Seq { parent, index } => {
                rev.push(Seg::Index(*index));
                cur = parent;
            }
            P::Map { parent, key } => {
                if key.starts_with("__serde_saphyr") {
                    return None;
                }
                rev.push(Seg::Key(key.clone()));
                cur = parent;
            }
            P::NewtypeStruct { parent } => {
                // `Located` wraps values in a synthesized `{value, ...}` map.
                if rev.last() == Some(&Seg::Key("value".into())) {
                    rev.pop();
                }
                cur = parent;
            }
            P::Some { parent } | P::NewtypeVariant { parent } => cur = parent,
        }
    }
    rev.reverse();
    Some(rev)
}

/// A config for unit tests: the shipped `inventory/cluster.yaml`.
#[cfg(test)]
pub mod tests_support;
