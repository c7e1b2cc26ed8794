//! The layer rule of ARCHITECTURE.md, checked on the source: config → node facts → clients
//! (aws, ssh, api, fetch) → engine → stages → commands → main. A lower module never names a
//! higher one.

use std::path::Path;

/// (module path under src/, the higher layers it must not mention).
const RULES: &[(&str, &[&str])] = &[
    (
        "config",
        &[
            "crate::nodes",
            "crate::aws",
            "crate::ssh",
            "crate::api",
            "crate::fetch",
            "crate::engine",
            "crate::stages",
            "crate::commands",
        ],
    ),
    (
        "nodes.rs",
        &[
            "crate::aws",
            "crate::ssh",
            "crate::api",
            "crate::fetch",
            "crate::engine",
            "crate::stages",
            "crate::commands",
        ],
    ),
    (
        "aws",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "ssh",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "api",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "fetch.rs",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "inventory.rs",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "remote_state.rs",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "state_sync.rs",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "containerd.rs",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "kubeadm.rs",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    ("engine", &["crate::stages", "crate::commands"]),
    (
        "stages",
        &["crate::commands", "crate::upgrade", "crate::prune"],
    ),
    ("upgrade", &["crate::commands", "crate::prune"]),
    ("prune", &["crate::commands"]),
    (
        "certs",
        &["crate::commands", "crate::upgrade", "crate::prune"],
    ),
];

fn sources(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            sources(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_path_buf());
    }
}

/// Lines (1-based number, text) of `text` that name one of `forbidden` outside a comment.
fn mentions<'a>(text: &'a str, forbidden: &[&str]) -> Vec<(usize, &'a str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .filter(|(_, l)| forbidden.iter().any(|f| l.contains(f)))
        .map(|(n, l)| (n + 1, l.trim()))
        .collect()
}

#[test]
fn the_scan_finds_a_planted_violation() {
    let planted = "use crate::config::Config;\n// crate::engine in a comment is fine\nuse crate::engine::Ctx;\n";
    assert_eq!(
        mentions(planted, &["crate::engine"]),
        vec![(3, "use crate::engine::Ctx;")]
    );
}

#[test]
fn lower_layers_never_import_higher_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut violations = Vec::new();
    for (module, forbidden) in RULES {
        let mut files = Vec::new();
        sources(&src.join(module), &mut files);
        assert!(!files.is_empty(), "no sources for {module}");
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap();
            for (n, line) in mentions(&text, forbidden) {
                violations.push(format!("{}:{}: {}", file.display(), n, line));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "layer violations:\n{}",
        violations.join("\n")
    );
}
