//! `ecoboot init`: writes a commented starter config (the 14-node reference topology, or one
//! control plane and two workers) to the `--config` path. It never overwrites a file, and what it
//! writes passes validation as written.

use std::io::Write;
use std::path::Path;

use crate::cli::{Global, Topology};
use crate::config::{Config, FileChecks};
use crate::error::{Error, Result};

/// The reference topology, as shipped.
const REFERENCE: &str = include_str!("../../inventory/cluster.yaml");
/// The node list of the minimal topology (the rest comes from the reference).
const MINIMAL_NODES: &str = include_str!("../../templates/minimal-nodes.yaml");
/// The region and cluster name of the reference file, replaced by the caller's.
const REFERENCE_REGION: &str = "ap-northeast-2";
const REFERENCE_NAME: &str = "sesacthon";
/// The schema file `init` writes next to the config (named by the config's modeline).
const SCHEMA_FILE: &str = "cluster.schema.json";

/// The starter config text for `topology` in `region` named `name`.
pub fn starter(topology: Topology, region: &str, name: &str) -> String {
    let mut text = match topology {
        Topology::Reference => REFERENCE.to_string(),
        Topology::Minimal => {
            let nodes = REFERENCE
                .find("\n  nodes:\n")
                .expect("the reference lists nodes");
            format!("{}\n{MINIMAL_NODES}", &REFERENCE[..nodes])
        }
    };
    let header = match topology {
        Topology::Reference => {
            "the 14-node reference topology (1 control plane, 7 API nodes, 2 workers, 4 infra nodes)"
        }
        Topology::Minimal => "a minimal topology (1 control plane, 2 workers)",
    };
    let first = text.find('\n').map_or(0, |i| i + 1);
    text.replace_range(
        ..first,
        &format!(
            "# yaml-language-server: $schema={SCHEMA_FILE}\n# ecoboot cluster config written by `ecoboot init`: {header}.\n# Check every line marked REPLACE, then `ecoboot plan`. Reference: README.md (Configuration).\n"
        ),
    );
    let text = text.replace(REFERENCE_REGION, region);
    replace_ignore_case(&text, REFERENCE_NAME, name)
}

fn replace_ignore_case(text: &str, from: &str, to: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (i, _) in lower.match_indices(from) {
        out.push_str(&text[last..i]);
        out.push_str(to);
        last = i + from.len();
    }
    out.push_str(&text[last..]);
    out
}

/// Runs `ecoboot init`.
pub(super) fn init(g: &Global, topology: Topology, region: &str, name: &str) -> Result<()> {
    let path = &g.config;
    let mut text = starter(topology, region, name);
    if let Some(loc) = g
        .state
        .as_deref()
        .and_then(crate::remote_state::Location::parse)
    {
        text = with_state(&text, &loc);
    }
    // What we write must load: a bad --region or --name is reported against the text.
    Config::parse(path, text.clone(), FileChecks::Skip, "init")?;
    write_new(path, &text)?;
    let schema = path.with_file_name(SCHEMA_FILE);
    if !schema.exists() {
        let text = serde_json::to_string_pretty(&super::info::config_schema()).expect("serializes");
        crate::fsutil::write_atomic(&schema, format!("{text}\n").as_bytes(), 0o644)?;
    }
    println!("{}", path.display());
    eprintln!(
        "wrote a starter config for cluster `{name}` in {region}; check the lines marked REPLACE (keyPair, ssh.identityFile, the root app), then run `ecoboot -c {} plan`",
        path.display()
    );
    Ok(())
}

/// `text` with a `spec.state` block for `loc` (`ecoboot --state s3://bucket/prefix init`).
fn with_state(text: &str, loc: &crate::remote_state::Location) -> String {
    let key = match loc.prefix.as_str() {
        "" => String::new(),
        p => format!("    key: {p}\n"),
    };
    let block = format!(
        "spec:\n  # The journal, pinned host keys and the run lock, in S3 (what CI runners need; create\n  # the bucket once with `ecoboot state init` or `ecoboot github setup`).\n  state:\n    backend: s3\n    bucket: {}\n{key}",
        loc.bucket
    );
    text.replacen("\nspec:\n", &format!("\n{block}"), 1)
}

/// Creates `path` (and its directory) with `text`; never replaces an existing file.
fn write_new(path: &Path, text: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("create", dir, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => Error::Usage(format!(
                "{} exists; `ecoboot init` never overwrites a config: pass another path with -c, or move it away",
                path.display()
            )),
            _ => Error::io("create", path, e),
        })?;
    file.write_all(text.as_bytes())
        .map_err(|e| Error::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_topologies_validate_as_written() {
        crate::config::support::pin_today(crate::config::tests_support::TODAY);
        for (topology, nodes) in [(Topology::Reference, 14), (Topology::Minimal, 3)] {
            let text = starter(topology, "eu-west-1", "demo");
            assert!(text.starts_with("# yaml-language-server: $schema="));
            assert!(!text.to_ascii_lowercase().contains("sesacthon"));
            let c = Config::parse(Path::new("x.yaml"), text, FileChecks::Skip, "t").unwrap();
            assert_eq!(c.nodes().count(), nodes);
            assert_eq!(c.cluster.spec.aws.region.as_str(), "eu-west-1");
            assert_eq!(c.name(), "demo");
        }
        let loc = crate::remote_state::Location::parse("s3://b-state/teams/x").unwrap();
        let text = with_state(&starter(Topology::Minimal, "eu-west-1", "demo"), &loc);
        let c = Config::parse(Path::new("x.yaml"), text, FileChecks::Skip, "t").unwrap();
        let st = &c.cluster.spec.state;
        assert_eq!(st.bucket.as_ref().unwrap().value, "b-state");
        assert_eq!(st.key.as_ref().unwrap().value, "teams/x");
    }
}
