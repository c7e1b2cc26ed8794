//! The repository stands alone (#28): `scripts/testdata.sh` fills an empty cache from a mirror
//! (a loopback HTTP server standing in for the upstream hosts) with every file of
//! `testdata/upstream.tsv`, checked by sha256; a mirror serving a wrong file is refused with the
//! file, the URL and the variable to set. No `../shared` is consulted.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// (name, sha256) of every pinned upstream file.
fn pinned() -> Vec<(String, String)> {
    std::fs::read_to_string(Path::new(ROOT).join("testdata/upstream.tsv"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            (f[0].to_string(), f[2].to_string())
        })
        .collect()
}

/// A loopback HTTP server over `dir`, stopped (by PID) when dropped.
struct Mirror {
    child: Child,
    url: String,
}

impl Mirror {
    fn serve(dir: &Path) -> Mirror {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                &port.to_string(),
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the mirror did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Mirror {
            child,
            url: format!("http://127.0.0.1:{port}/upstream/"),
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs scripts/testdata.sh with only the mirror to draw from: (exit code, stdout, stderr).
fn resolve(cache: &Path, mirror: &str) -> (i32, String, String) {
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("scripts/testdata.sh"))
        .env("ECOBOOT_CACHE", cache)
        .env_remove("ECOBOOT_TESTDATA")
        .env("ECOBOOT_SHARED_TESTDATA", cache.join("no-shared-here"))
        .env("ECOBOOT_TESTDATA_MIRROR", mirror)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The upstream files this suite already resolved (`ECOBOOT_TESTDATA`, provenance headers
/// removed), copied as a mirror serves them.
fn mirror_tree(dir: &Path) -> PathBuf {
    let served = dir.join("www/upstream");
    std::fs::create_dir_all(&served).unwrap();
    for (name, _) in pinned() {
        common::kube::upstream_copy(&name, &served);
    }
    dir.join("www")
}

#[test]
fn an_empty_cache_fills_from_a_mirror_and_a_wrong_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let www = mirror_tree(dir.path());
    let mirror = Mirror::serve(&www);

    let cache = dir.path().join("cache");
    let (code, out, err) = resolve(&cache, &mirror.url);
    assert_eq!(code, 0, "{err}");
    let resolved = PathBuf::from(out.trim());
    assert_eq!(resolved, cache.join("testdata"));
    for (name, sha) in pinned() {
        assert_eq!(sha256(&resolved.join(&name)), sha, "{name}");
        assert!(
            err.contains(&format!("downloading {name} from {}{name}", mirror.url)),
            "{err}"
        );
    }
    // Already in the cache: nothing is downloaded again.
    let (code, _, err) = resolve(&cache, &mirror.url);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("downloading"), "{err}");

    // A mirror serving another file: refused, naming the file, the URL and what to set.
    let (name, sha) = pinned().remove(0);
    std::fs::write(www.join("upstream").join(&name), "tampered\n").unwrap();
    let fresh = dir.path().join("fresh");
    let (code, _, err) = resolve(&fresh, &mirror.url);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains(&format!("cannot get {name}")), "{err}");
    assert!(err.contains(&format!("{}{name}", mirror.url)), "{err}");
    assert!(
        err.contains("ECOBOOT_TESTDATA_MIRROR") && err.contains(&sha),
        "{err}"
    );
    assert!(
        !fresh.join("testdata").join(&name).exists(),
        "nothing unverified is kept"
    );

    // A mirror without the file at all.
    std::fs::remove_file(www.join("upstream").join(&name)).unwrap();
    let (code, _, err) = resolve(&fresh, &mirror.url);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("the download from") && err.contains("failed"),
        "{err}"
    );
}

/// The sandbox's fixed home (inventory/sandbox.yaml names files under it).
const SANDBOX: &str = "/tmp/ecoboot-sandbox";

fn sandbox(args: &str, envs: &[(&str, String)]) -> (i32, String, String) {
    let mut cmd = Command::new("bash");
    cmd.arg("-c").arg(args).current_dir(ROOT);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd
        .env_remove("ECOBOOT_TESTDATA")
        .env("ECOBOOT_YES", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_sandbox_runs_from_mirrored_test_data_alone() {
    let pid = std::fs::read_to_string(format!("{SANDBOX}/moto.pid")).unwrap_or_default();
    if !pid.trim().is_empty() && Path::new(&format!("/proc/{}", pid.trim())).exists() {
        eprintln!("skipped: a sandbox is running in {SANDBOX}; this test would replace it");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mirror = Mirror::serve(&mirror_tree(dir.path()));
    let moto_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let envs = [
        (
            "ECOBOOT_TESTDATA_DIR",
            dir.path().join("empty-cache").display().to_string(),
        ),
        (
            "ECOBOOT_SHARED_TESTDATA",
            dir.path().join("no-shared").display().to_string(),
        ),
        ("ECOBOOT_TESTDATA_MIRROR", mirror.url.clone()),
        ("SANDBOX_MOTO_PORT", moto_port.to_string()),
    ];
    let (code, out, err) = sandbox(
        "bash scripts/sandbox.sh down && bash scripts/sandbox.sh up",
        &envs,
    );
    assert_eq!(code, 0, "{out}{err}");
    for (name, _) in pinned() {
        assert!(
            err.contains(&format!("downloading {name} from {}", mirror.url)),
            "{err}"
        );
    }
    let bin = Path::new(env!("CARGO_BIN_EXE_ecoboot"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let (code, out, err) = sandbox(
        &format!(
            ". {SANDBOX}/env && export PATH={bin}:$PATH && ecoboot -c inventory/sandbox.yaml up --yes && ecoboot -c inventory/sandbox.yaml status"
        ),
        &envs,
    );
    let (down, _, down_err) = sandbox("bash scripts/sandbox.sh down", &envs);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("NODES (14/14 Ready)"), "{out}");
    assert_eq!(down, 0, "{down_err}");
}
