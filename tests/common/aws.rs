//! A real AWS API emulator (moto_server) behind the fault-injecting proxy, both on 127.0.0.1,
//! started per test and stopped (by PID) when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// moto + proxy for one test.
pub struct AwsSandbox {
    moto: Child,
    proxy: Child,
    /// The proxy's address: what ecoboot talks to.
    pub endpoint: String,
    /// moto itself (S3 goes straight to it: the proxy models EC2 and IAM).
    pub moto_url: String,
    _dir: tempfile::TempDir,
}

/// The venv's Python (has PyYAML, which the API double uses for YAML apply bodies).
pub fn venv_python() -> PathBuf {
    venv_bin("python")
}

fn venv_bin(name: &str) -> PathBuf {
    let cache = std::env::var("ECOBOOT_CACHE").unwrap_or_else(|_| "/var/cache/ecoboot".into());
    Path::new(&cache).join("venv/bin").join(name)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Plain HTTP/1.1 request to a loopback address; returns (status, body).
pub fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    let host = addr.trim_start_matches("http://");
    assert!(
        host.starts_with("127."),
        "tests only talk to loopback, not {host}"
    );
    let mut stream = TcpStream::connect(host).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

impl AwsSandbox {
    /// Starts moto with the settings the tests need, then the proxy in front of it.
    pub fn start() -> AwsSandbox {
        Self::start_with(false)
    }

    /// Like [`AwsSandbox::start`]; with `iam`, moto can enforce IAM: every request is
    /// authorised against its IAM user's policies once [`AwsSandbox::enforce_iam`] is called
    /// (until then nothing is checked, so a test can create its users). Signatures are not
    /// re-checked: moto recomputes some of the Rust SDK's wrongly (see build-notes).
    pub fn start_with(iam: bool) -> AwsSandbox {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let moto_url = format!("http://127.0.0.1:{port}");
        let amis = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/amis.json");
        let mut moto = match iam {
            false => Command::new(
                std::env::var("MOTO_SERVER")
                    .map(PathBuf::from)
                    .unwrap_or_else(|_| venv_bin("moto_server")),
            ),
            true => {
                let mut c = Command::new(venv_bin("python"));
                c.args([
                    "-c",
                    "import sys, moto.iam.access_control as a\n\
                     a.IAMRequestBase.check_signature = lambda self: None\n\
                     from moto.server import main\n\
                     sys.argv[0] = 'moto_server'\n\
                     main()",
                ]);
                c
            }
        };
        let moto = moto
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .env("MOTO_AMIS_PATH", amis)
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("moto.log")).unwrap())
            .spawn()
            .expect("start moto_server (run scripts/setup.sh)");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok()
                && http(&moto_url, "GET", "/moto-api/", "").0 == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not answer on {moto_url}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/aws_fault_proxy.py");
        let mut proxy = Command::new(venv_bin("python"))
            .arg(script)
            .arg(&moto_url)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(dir.path().join("proxy.log")).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(proxy.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let proxy_port = line
            .trim()
            .strip_prefix("ready ")
            .expect("proxy ready line")
            .to_string();
        AwsSandbox {
            moto,
            proxy,
            endpoint: format!("http://127.0.0.1:{proxy_port}"),
            moto_url,
            _dir: dir,
        }
    }

    /// Points `cmd` at the sandbox with dummy credentials and nothing from the user's AWS setup.
    pub fn env<'c>(&self, cmd: &'c mut Command) -> &'c mut Command {
        cmd.env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ENDPOINT_URL_S3", &self.moto_url)
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_CONFIG_FILE", "/dev/null")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_REGION")
            .env_remove("AWS_SESSION_TOKEN")
    }

    /// From now on moto authorises every request against its caller's IAM policies.
    pub fn enforce_iam(&self) {
        assert_eq!(
            http(&self.moto_url, "POST", "/moto-api/reset-auth", "0").0,
            200
        );
    }

    /// Replaces the proxy's fault config.
    pub fn faults(&self, json: &str) {
        assert_eq!(http(&self.endpoint, "POST", "/_proxy/config", json).0, 200);
    }

    /// Another client: one boto3 call on `service` straight against moto (signed, as any real
    /// client; out of band for ecoboot), printed as JSON.
    pub fn boto(&self, service: &str, call: &str) -> serde_json::Value {
        let out = self.boto_script(
            service,
            &format!("r = c.{call}\nprint(json.dumps(r, default=str))"),
        );
        serde_json::from_str(&out).unwrap()
    }

    /// A Python script with `c`, a boto3 client of `service` against moto (and `json`, `io`
    /// imported); returns what it printed.
    pub fn boto_script(&self, service: &str, body: &str) -> String {
        self.boto_script_as(("testing", "testing"), service, body)
    }

    /// [`AwsSandbox::boto_script`] with an IAM user's access key (`(id, secret)`).
    pub fn boto_script_as(&self, key: (&str, &str), service: &str, body: &str) -> String {
        let code = format!(
            "import boto3, io, json\nc = boto3.client('{service}', endpoint_url='{}', region_name='ap-northeast-2', aws_access_key_id='{}', aws_secret_access_key='{}')\n{body}",
            self.moto_url, key.0, key.1
        );
        let out = std::process::Command::new(venv_python())
            .args(["-c", &code])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Per-action counts seen by the proxy.
    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&http(&self.endpoint, "GET", "/_proxy/stats", "").1).unwrap()
    }

    /// Everything tagged for `cluster`, read from moto directly.
    pub fn inventory(&self, cluster: &str) -> serde_json::Value {
        let (status, body) = http(
            &self.endpoint,
            "GET",
            &format!("/_proxy/inventory?cluster={cluster}"),
            "",
        );
        assert_eq!(status, 200, "{body}");
        serde_json::from_str(&body).unwrap()
    }

    /// Live (not terminated) instances tagged for `cluster`.
    pub fn live_instances(&self, cluster: &str) -> Vec<serde_json::Value> {
        self.inventory(cluster)["instances"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["state"] != "terminated")
            .cloned()
            .collect()
    }
}

impl Drop for AwsSandbox {
    fn drop(&mut self) {
        for child in [&mut self.proxy, &mut self.moto] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The JSON events of one `--output json` run.
pub fn events(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Sum of AWS calls over all stage events: (mutating, read).
pub fn aws_calls(events: &[serde_json::Value]) -> (u64, u64) {
    let mut calls = (0, 0);
    for e in events {
        if let Some(map) = e["aws_calls"].as_object() {
            for (op, n) in map {
                let n = n.as_u64().unwrap();
                if ["Describe", "Get", "List"]
                    .iter()
                    .any(|p| op.starts_with(p))
                {
                    calls.1 += n;
                } else {
                    calls.0 += n;
                }
            }
        }
    }
    calls
}
