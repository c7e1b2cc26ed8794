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
        "remote_state",
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
    (
        "os_updates.rs",
        &[
            "crate::ssh",
            "crate::engine",
            "crate::stages",
            "crate::commands",
        ],
    ),
    (
        "etcd.rs",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "hardening.rs",
        &["crate::engine", "crate::stages", "crate::commands"],
    ),
    (
        "journal_check.rs",
        &[
            "crate::aws",
            "crate::ssh",
            "crate::api",
            "crate::engine",
            "crate::stages",
            "crate::commands",
        ],
    ),
    (
        "lock_health.rs",
        &[
            "crate::aws",
            "crate::ssh",
            "crate::api",
            "crate::engine",
            "crate::stages",
            "crate::commands",
        ],
    ),
    (
        "golden.rs",
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
        "engine",
        &["crate::stages", "crate::commands", "crate::image"],
    ),
    (
        "stages",
        &[
            "crate::commands",
            "crate::upgrade",
            "crate::prune",
            "crate::image",
        ],
    ),
    (
        "image",
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

/// The stage a file under `src/stages/` belongs to (`None` for `stages/mod.rs`; `shared` for
/// the shared module).
fn stage_of(stages: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(stages).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    match first.as_str() {
        "mod.rs" => None,
        f => Some(f.trim_end_matches(".rs").to_string()),
    }
}

/// Stages named by `line` through `crate::stages::<x>` or a `super::<x>` that climbs out of
/// the stage.
fn named_stages(line: &str, climbs_out: &str) -> Vec<String> {
    let mut out = Vec::new();
    for prefix in ["crate::stages::", climbs_out] {
        let mut rest = line;
        while let Some(at) = rest.find(prefix) {
            rest = &rest[at + prefix.len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn the_stage_scan_finds_a_planted_import() {
    assert_eq!(
        named_stages("use crate::stages::init_master::facts;", "super::"),
        vec!["init_master"]
    );
    assert_eq!(
        named_stages("let x = super::super::iam::ID;", "super::super::"),
        vec!["iam"]
    );
}

#[test]
fn no_stage_imports_another_stage() {
    let stages = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/stages");
    let mut files = Vec::new();
    sources(&stages, &mut files);
    let mut violations = Vec::new();
    for file in files {
        let Some(own) = stage_of(&stages, &file) else {
            continue;
        };
        // A single-file stage or a folder's mod.rs climbs out with `super::`; a part of a
        // folder with `super::super::`.
        let depth = file.strip_prefix(&stages).unwrap().components().count();
        let is_mod = file.file_name().is_some_and(|n| n == "mod.rs");
        let climbs_out = if depth == 1 || (depth == 2 && is_mod) {
            "super::"
        } else {
            "super::super::"
        };
        let text = std::fs::read_to_string(&file).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for other in named_stages(line, climbs_out) {
                let allowed = other == own || (other == "shared" && own != "shared");
                // `super::<item>` of a single-file stage names its parent's items (the list);
                // only folder names count as stages there.
                let is_stage =
                    stages.join(&other).is_dir() || stages.join(format!("{other}.rs")).is_file();
                if !allowed && is_stage {
                    violations.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "a stage imports another stage (put what they share in stages/shared/):\n{}",
        violations.join("\n")
    );
}

#[test]
fn stages_is_one_folder_per_stage() {
    let stages = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/stages");
    for entry in std::fs::read_dir(&stages).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                name == "mod.rs" || text.contains("pub const ID: &str = ids::"),
                "{name}: only mod.rs and single-file stages live directly in src/stages/"
            );
        }
    }
}

/// The top-level module (`src/<m>.rs` or `src/<m>/`) each file belongs to, and the top-level
/// modules it names through `crate::<m>`.
fn module_graph() -> std::collections::BTreeMap<String, std::collections::BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let mut graph: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        let own = first.trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(&file).unwrap();
        let edges = graph.entry(own.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                if !name.is_empty() && name != own {
                    edges.insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if the graph has one.
fn cycle_from(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeSet<String>>,
    start: &str,
) -> Option<Vec<String>> {
    let mut stack = vec![(start.to_string(), vec![start.to_string()])];
    let mut seen = std::collections::BTreeSet::new();
    while let Some((node, path)) = stack.pop() {
        for next in graph.get(&node).into_iter().flatten() {
            if next == start {
                return Some(path.clone());
            }
            if seen.insert(next.clone()) {
                let mut p = path.clone();
                p.push(next.clone());
                stack.push((next.clone(), p));
            }
        }
    }
    None
}

#[test]
fn no_import_circle_between_top_level_modules() {
    let graph = module_graph();
    let mut planted = graph.clone();
    planted
        .entry("config".into())
        .or_default()
        .insert("commands".into());
    assert!(
        cycle_from(&planted, "config").is_some(),
        "the scan finds a planted circle"
    );
    let circles: Vec<String> = graph
        .keys()
        .filter_map(|m| cycle_from(&graph, m))
        .map(|c| c.join(" -> "))
        .collect();
    assert!(
        circles.is_empty(),
        "import circles between modules:\n{}",
        circles.join("\n")
    );
}
