//! The operator's first minutes: `version`, completions, the man page, `init`, the config
//! schema, and the consent rule for commands that change things.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{ecoboot, run, shipped_config};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ecoboot")
}

#[test]
fn version_in_text_json_and_every_run_s_first_event() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(ecoboot(dir.path()).arg("version"));
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("ecoboot {} (", env!("CARGO_PKG_VERSION"))),
        "{out}"
    );
    let (code, out, _) = run(ecoboot(dir.path()).args(["version", "--output", "json"]));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    for key in ["version", "commit", "build_date", "target", "rustc"] {
        assert!(v[key].as_str().is_some_and(|s| !s.is_empty()), "{key}: {v}");
    }
    assert!(v["rustc"].as_str().unwrap().starts_with("rustc "), "{v}");
    let (_, out, _) = run(ecoboot(dir.path())
        .arg("-c")
        .arg(shipped_config())
        .args(["plan", "--from", "root-app", "--output", "json"]));
    let first: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(first["event"], "run_started");
    assert_eq!(first["ecoboot"], v, "the run names the binary that made it");
}

#[test]
fn completions_load_in_bash_and_the_man_page_renders() {
    let script = format!(
        "source <({} completions bash) && complete -p ecoboot",
        bin()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ecoboot"),
        "a completion is registered for ecoboot"
    );
    for shell in ["zsh", "fish"] {
        let dir = tempfile::tempdir().unwrap();
        let (code, out, _) = run(ecoboot(dir.path()).args(["completions", shell]));
        assert_eq!(code, 0);
        assert!(
            out.contains("init") && out.contains("completions"),
            "{shell}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let (code, man, _) = run(ecoboot(dir.path()).arg("man"));
    assert_eq!(code, 0);
    assert!(
        man.starts_with(".ie") || man.contains(".TH ecoboot"),
        "{}",
        &man[..200]
    );
}

/// Validates YAML documents against the schema with the reference Python implementation;
/// returns one line per document: `ok` or the first error with its path.
fn validate(schema: &Path, docs: &[PathBuf]) -> Vec<String> {
    let moto = std::env::var("MOTO_SERVER")
        .unwrap_or_else(|_| "/var/cache/ecoboot/venv/bin/moto_server".into());
    let python = Path::new(&moto).with_file_name("python");
    let code = r#"
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
v = jsonschema.Draft202012Validator(schema)
for path in sys.argv[2:]:
    errors = sorted(v.iter_errors(yaml.safe_load(open(path))), key=lambda e: list(e.path))
    print("ok" if not errors else "/".join(map(str, errors[0].path)) + ": " + errors[0].message)
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(code)
        .arg(schema)
        .args(docs)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect()
}

#[test]
fn init_writes_valid_configs_and_the_schema_accepts_them_and_catches_wrong_types() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The committed schema is what the binary prints (it cannot drift from the types).
    let (code, schema, _) = run(ecoboot(dir.path()).arg("schema"));
    assert_eq!(code, 0);
    let committed = std::fs::read_to_string(root.join("schema/cluster.schema.json")).unwrap();
    assert!(
        schema == committed,
        "schema/cluster.schema.json is stale: `ecoboot schema > schema/cluster.schema.json`"
    );
    let mut docs = vec![
        root.join("inventory/cluster.yaml"),
        root.join("inventory/sandbox.yaml"),
    ];
    for topology in ["reference", "minimal"] {
        let path = dir.path().join(topology).join("cluster.yaml");
        let (code, out, err) = run(ecoboot(dir.path()).arg("-c").arg(&path).args([
            "init",
            "--topology",
            topology,
            "--region",
            "eu-west-1",
            "--name",
            "demo",
        ]));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out.trim(), path.display().to_string());
        // It loads as written (inventory fails only for lack of instances, never on the config).
        let (code, _, err) = run(ecoboot(dir.path()).arg("-c").arg(&path).arg("inventory"));
        assert_eq!(code, 1, "{err}");
        assert!(err.contains("instances"), "{err}");
        // Never overwritten.
        let before = std::fs::read_to_string(&path).unwrap();
        let (code, _, err) = run(ecoboot(dir.path()).arg("-c").arg(&path).arg("init"));
        assert_eq!(code, 2);
        assert!(err.contains("never overwrites"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
        assert!(path.with_file_name("cluster.schema.json").exists());
        docs.push(path);
    }
    let shipped = std::fs::read_to_string(&docs[0]).unwrap();
    for (name, from, to) in [
        ("wrong-type", "diskGb: 80", "diskGb: eighty"),
        (
            "unknown-key",
            "instanceType: t3.xlarge",
            "instanceTyp: t3.xlarge",
        ),
        ("bad-enum", "apiAccess: tunnel", "apiAccess: vpn"),
    ] {
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, shipped.replacen(from, to, 1)).unwrap();
        docs.push(path);
    }
    let verdicts = validate(&root.join("schema/cluster.schema.json"), &docs);
    assert_eq!(verdicts[..4], ["ok", "ok", "ok", "ok"], "{verdicts:?}");
    assert!(
        verdicts[4].starts_with("spec/nodes/0/diskGb: 'eighty' is not of type 'integer'"),
        "{verdicts:?}"
    );
    assert!(
        verdicts[5]
            .starts_with("spec/nodes/0: Additional properties are not allowed ('instanceTyp'"),
        "{verdicts:?}"
    );
    assert!(
        verdicts[6].starts_with("spec/kubernetes/apiAccess: 'vpn' is not valid"),
        "{verdicts:?}"
    );
}

#[test]
fn changing_commands_need_yes_or_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_with_key(dir.path());
    for args in [
        &["stage", "install-cni"][..],
        &["up", "--from", "install-cni"],
        &["down"],
    ] {
        let (code, _, err) = run(ecoboot(dir.path())
            .env_remove("ECOBOOT_YES")
            .arg("-c")
            .arg(&config)
            .args(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains("pass --yes"), "{args:?}: {err}");
    }
    // `--yes` is accepted by every one of them (install-cni then fails for lack of admin.conf).
    let (code, _, err) = run(ecoboot(dir.path())
        .env_remove("ECOBOOT_YES")
        .arg("-c")
        .arg(&config)
        .args(["stage", "install-cni", "--yes"]));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("admin.conf"), "{err}");
    // Read-only commands never ask.
    let (code, _, err) = run(ecoboot(dir.path())
        .env_remove("ECOBOOT_YES")
        .arg("-c")
        .arg(&config)
        .args(["plan", "--from", "root-app"]));
    assert_ne!(code, 2, "{err}");
}
