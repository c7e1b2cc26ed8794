//! The cluster API the tests talk to: the API double (tests/support/kube_api_double.py) on
//! 127.0.0.1, started per test and stopped by PID when dropped; or, when
//! `ECOBOOT_TEST_KUBECONFIG` names a kubeconfig, that (real) API server instead.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A running API double, or an external API server.
pub struct KubeApi {
    child: Option<Child>,
    /// The admin kubeconfig the node simulators hand out.
    pub admin_conf: PathBuf,
    /// The double's test-hook address (`None` for an external server).
    pub hooks: Option<String>,
    _dir: tempfile::TempDir,
}

/// Where the real upstream manifests are: `ECOBOOT_TESTDATA` (`scripts/test.sh` sets it to what
/// `scripts/testdata.sh` resolved), else `../shared/testdata`.
pub fn testdata(name: &str) -> PathBuf {
    let dir = std::env::var("ECOBOOT_TESTDATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata"));
    let path = dir.join(name);
    assert!(
        path.exists(),
        "test data {} is missing: run the suite with `bash scripts/test.sh` (it resolves the files with scripts/testdata.sh), or set ECOBOOT_TESTDATA to a folder holding them",
        path.display()
    );
    path
}

/// The upstream file of a test-data file (a 4-line provenance header, as `../shared/testdata`
/// copies carry, removed; `scripts/testdata.sh` already resolves them without), written to
/// `dir/name`; its sha256 is then the upstream one.
pub fn upstream_copy(name: &str, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(testdata(name)).unwrap();
    let body: String = match text.starts_with("# Source: ") {
        true => text.split_inclusive('\n').skip(4).collect(),
        false => text,
    };
    let out = dir.join(name);
    std::fs::write(&out, body).unwrap();
    out
}

/// The fleet's config with the Calico and ArgoCD manifests read from upstream test copies (as
/// air-gapped runs do) and 60 s waits.
pub fn config(fleet: &super::fleet::Fleet, dir: &Path) -> PathBuf {
    let path = fleet.config(dir);
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (file, sha) in [
        (
            "calico-v3.32.1.yaml",
            "a1df919d9721cf667accdc3e72848911b0cb25cfab7d2478ad0c996302c95744",
        ),
        (
            "argocd-install-v3.5.1.yaml",
            "795a3a972224da6a7f9d32c3e946445f062b60fb46028476715affeb688236e3",
        ),
    ] {
        let copy = upstream_copy(file, dir);
        let line = format!("      sha256: {sha}\n");
        assert!(text.contains(&line));
        text = text.replace(&line, &format!("{line}      path: {}\n", copy.display()));
    }
    text = text.replace("    waitSeconds: 600\n", "    waitSeconds: 60\n");
    std::fs::write(&path, text).unwrap();
    path
}

impl KubeApi {
    /// Starts the double (or adopts `ECOBOOT_TEST_KUBECONFIG`).
    pub fn start() -> KubeApi {
        let dir = tempfile::Builder::new()
            .prefix("ek")
            .tempdir_in("/tmp")
            .unwrap();
        if let Ok(external) = std::env::var("ECOBOOT_TEST_KUBECONFIG") {
            return KubeApi {
                child: None,
                admin_conf: PathBuf::from(external),
                hooks: None,
                _dir: dir,
            };
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/kube_api_double.py");
        let mut child = Command::new(super::aws::venv_python())
            .arg(script)
            .arg(dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the API double");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(
            words.first(),
            Some(&"ready"),
            "API double did not start: {line}"
        );
        KubeApi {
            child: Some(child),
            admin_conf: dir.path().join("admin.conf"),
            hooks: Some(format!("127.0.0.1:{}", words[2])),
            _dir: dir,
        }
    }

    /// A test hook call on the double; `None` against an external server.
    pub fn hook(&self, method: &str, path: &str, body: &str) -> Option<serde_json::Value> {
        let addr = self.hooks.as_ref()?;
        let (status, text) = super::aws::http(addr, method, path, body);
        assert_eq!(status, 200, "{path}: {text}");
        Some(serde_json::from_str(&text).unwrap())
    }

    /// The double's counters (see the script's docstring).
    pub fn stats(&self) -> Option<serde_json::Value> {
        self.hook("GET", "/_double/stats", "")
    }

    /// Stored objects of `kind`.
    pub fn objects(&self, kind: &str) -> Option<Vec<serde_json::Value>> {
        self.hook("GET", &format!("/_double/objects?kind={kind}"), "")
            .map(|v| v.as_array().unwrap().clone())
    }
}

impl Drop for KubeApi {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
