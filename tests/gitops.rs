//! `install-argocd` and `root-app` with the real ArgoCD v3.5.1 manifest, on the 14-node fleet and
//! the API double with its fake ArgoCD controller (or the API server in ECOBOOT_TEST_KUBECONFIG),
//! then `ecoboot status`, `ecoboot argocd password` and `ecoboot argocd ui`.

mod common;

use std::path::Path;

use common::fleet::Fleet;
use common::kube::KubeApi;
use common::{ecoboot, run};

fn ecoboot_with(config: &Path, state: &Path, args: &[&str]) -> (i32, String, String) {
    run(ecoboot(state).arg("-c").arg(config).args(args))
}

fn edit(config: &Path, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains(from), "{from}");
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let out = config.with_file_name(format!("edited-{n}.yaml"));
    std::fs::write(&out, text.replacen(from, to, 1)).unwrap();
    out
}

#[test]
fn argocd_and_the_root_app_converge_and_failures_are_named() {
    let api = KubeApi::start();
    let fleet = Fleet::start_with(14, Some(&api.admin_conf));
    let dir = tempfile::tempdir().unwrap();
    let config = common::kube::config(&fleet, dir.path());
    let state = dir.path().join("state");

    let (code, out, err) = ecoboot_with(
        &config,
        &state,
        &["--output", "json", "up", "--from", "prepare-nodes"],
    );
    assert_eq!(code, 0, "{err}");
    let events = common::aws::events(&out);
    let done = |stage: &str| {
        events
            .iter()
            .find(|e| e["event"] == "stage_done" && e["stage"] == stage)
            .unwrap_or_else(|| panic!("{stage} done"))
            .clone()
    };
    let argocd = done("install-argocd");
    assert_eq!(
        argocd["counters"]["api.created"], 62,
        "59 manifest objects + namespace + AppProjects dev and prod"
    );
    done("root-app");
    let progress: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "progress" && e["stage"] == "root-app")
        .filter_map(|e| {
            Some(format!(
                "{} {}",
                e["node"].as_str()?,
                e["message"].as_str()?
            ))
        })
        .collect();
    assert!(
        progress.iter().any(|p| p == "root-app Synced / Healthy"),
        "{progress:?}"
    );
    assert!(
        progress.iter().any(|p| p == "monitoring Synced / Healthy"),
        "{progress:?}"
    );

    if let Some(stats) = api.stats() {
        let log: Vec<String> = serde_json::from_value(stats["log"].clone()).unwrap();
        let pos = |line: &str| {
            log.iter()
                .position(|l| l == line)
                .unwrap_or_else(|| panic!("{line} in {log:?}"))
        };
        assert!(
            pos("established applications.argoproj.io") < pos("created AppProject dev"),
            "custom resources only after their CRD is in discovery: {log:?}"
        );
        assert!(pos("created AppProject dev") < pos("created Application root-app"));
        let objects = |kind: &str| api.objects(kind).unwrap();
        assert_eq!(objects("NetworkPolicy").len(), 7, "kept by default");
        let crds = objects("CustomResourceDefinition");
        let appset = crds
            .iter()
            .find(|c| c["metadata"]["name"] == "applicationsets.argoproj.io")
            .unwrap();
        assert!(
            appset.to_string().len() > 262_144,
            "the big CRD went in with server-side apply"
        );
        let cm = objects("ConfigMap");
        let params = cm
            .iter()
            .find(|c| c["metadata"]["name"] == "argocd-cmd-params-cm")
            .unwrap();
        assert_eq!(params["data"]["server.insecure"], "true");
        assert_eq!(params["metadata"]["namespace"], "argocd");
        let svc = objects("Service");
        let server = svc
            .iter()
            .find(|s| s["metadata"]["name"] == "argocd-server")
            .unwrap();
        assert_eq!(server["spec"]["type"], "NodePort");
        assert_eq!(server["spec"]["ports"][0]["nodePort"], 30080);
        let sts = &objects("StatefulSet")[0];
        assert_eq!(
            sts["spec"]["template"]["spec"]["nodeSelector"]["role"],
            "control-plane"
        );
    }

    argocd_ui_forwards_through_the_control_plane(&api, &config, &state);

    // Rerun: everything done, nothing written.
    let writes = |api: &KubeApi| {
        api.stats().map(|s| {
            ["creates", "updates", "applies_changed"]
                .iter()
                .map(|k| s[k].as_u64().unwrap())
                .sum::<u64>()
        })
    };
    let before = writes(&api);
    let (code, out, err) = ecoboot_with(
        &config,
        &state,
        &["--output", "json", "up", "--from", "install-cni"],
    );
    assert_eq!(code, 0, "{err}");
    let skipped = common::aws::events(&out)
        .iter()
        .filter(|e| e["event"] == "stage_skipped")
        .count();
    assert_eq!(skipped, 4, "{out}");
    assert_eq!(writes(&api), before, "a rerun writes nothing");

    // status lists stages, nodes and applications.
    let (code, out, err) = ecoboot_with(&config, &state, &["--output", "json", "status"]);
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["stages"].as_array().unwrap().len(), 12);
    assert_eq!(status["api"], "reachable");
    assert_eq!(status["nodes"].as_array().unwrap().len(), 14);
    let apps = status["apps"].as_array().unwrap();
    assert!(
        apps.iter()
            .any(|a| a["name"] == "root-app" && a["health"] == "Healthy"),
        "{apps:?}"
    );
    let (code, human, _) = ecoboot_with(&config, &state, &["status"]);
    assert_eq!(code, 0);
    assert!(
        human.contains("NODES (14/14 Ready)") && human.contains("APPLICATIONS"),
        "{human}"
    );

    // The password only when asked, and never in what ecoboot wrote otherwise.
    let (code, password, err) = ecoboot_with(&config, &state, &["argocd", "password"]);
    assert_eq!(code, 0, "{err}");
    let password = password.trim();
    assert!(password.len() >= 12, "{password}");
    let logs = common::read_tree(&state);
    assert!(
        !logs.contains(password),
        "the admin password is in the state dir"
    );

    bootstrap_secrets_from_env_and_files(&api, &config, &state);

    if api.hooks.is_none() {
        return;
    }
    // An application held Degraded fails the stage after its timeout, named in a table.
    api.hook("POST", "/_double/hold", r#"{"kind":"Application","name":"monitoring","health":"Degraded","sync":"OutOfSync","message":"Deployment prometheus: ImagePullBackOff"}"#);
    let short = edit(
        &config,
        "    waitSeconds: 60\n  nodes:",
        "    waitSeconds: 3\n  nodes:",
    );
    let (code, _, err) = ecoboot_with(&short, &state, &["stage", "root-app"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("applications not Synced and Healthy after 3s"),
        "{err}"
    );
    assert!(
        err.contains("monitoring") && err.contains("Degraded") && err.contains("ImagePullBackOff"),
        "{err}"
    );
    assert!(
        !err.contains("foundations"),
        "only the offending apps are listed: {err}"
    );

    // A source ArgoCD cannot render fails at once (not after waitSeconds) with its message.
    api.hook(
        "POST",
        "/_double/unhold",
        r#"{"kind":"Application","name":"monitoring"}"#,
    );
    api.hook("POST", "/_double/hold", r#"{"kind":"Application","name":"workers","condition":{"type":"ComparisonError","message":"Failed to load target state: failed to generate manifest for source 1 of 1: rpc error: code = Unknown desc = k8s/workers: app path does not exist"}}"#);
    let long = edit(
        &config,
        "    waitSeconds: 60\n  nodes:",
        "    waitSeconds: 120\n  nodes:",
    );
    let started = std::time::Instant::now();
    let (code, _, err) = ecoboot_with(&long, &state, &["stage", "root-app"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "fails fast, not after 120 s"
    );
    assert!(
        err.contains("application `workers` cannot sync: ComparisonError:")
            && err.contains("app path does not exist"),
        "{err}"
    );
    api.hook(
        "POST",
        "/_double/unhold",
        r#"{"kind":"Application","name":"workers"}"#,
    );

    // An ArgoCD workload that never becomes available fails install-argocd, named with why.
    api.hook(
        "POST",
        "/_double/hold",
        r#"{"kind":"Deployment","name":"argocd-server","ready":false}"#,
    );
    let (code, _, err) = ecoboot_with(&short, &state, &["stage", "install-argocd"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("ArgoCD is not available after 3s"), "{err}");
    assert!(
        err.contains("Deployment argocd-server: 0/1 available (Deployment does not have minimum availability.)"),
        "{err}"
    );
    assert!(
        !err.contains("argocd-repo-server"),
        "only the unavailable one: {err}"
    );
    api.hook(
        "POST",
        "/_double/unhold",
        r#"{"kind":"Deployment","name":"argocd-server"}"#,
    );

    // A checksum mismatch and an unreachable URL each say what is wrong.
    let pinned = "795a3a972224da6a7f9d32c3e946445f062b60fb46028476715affeb688236e3";
    let wrong = edit(
        &config,
        &format!("sha256: {pinned}"),
        &format!("sha256: {}", "0".repeat(64)),
    );
    let (code, _, err) = ecoboot_with(&wrong, &state, &["stage", "install-argocd"]);
    assert_eq!(code, 1);
    assert!(
        err.contains(&format!(
            "has sha256 {pinned}, but the config pins {}",
            "0".repeat(64)
        )),
        "{err}"
    );
    let text = std::fs::read_to_string(&config).unwrap();
    let path_line = text
        .lines()
        .find(|l| l.contains("argocd-install-v3.5.1.yaml"))
        .unwrap()
        .to_string();
    let offline = edit(&wrong, &format!("{path_line}\n"), "");
    let offline = edit(
        &offline,
        "url: https://raw.githubusercontent.com/argoproj/argo-cd/v3.5.1/manifests/install.yaml",
        "url: https://127.0.0.1:9/install.yaml",
    );
    let (code, _, err) = ecoboot_with(&offline, &state, &["stage", "install-argocd"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("cannot download ArgoCD v3.5.1 from https://127.0.0.1:9/install.yaml"),
        "{err}"
    );
    assert!(err.contains("set `path:`"), "{err}");
}

/// `ecoboot argocd ui`: a loopback port forwarded through the control plane's SSH connection to
/// the argocd-server Service. The fleet has no cluster network behind the nodes, so after
/// checking that the API allocated a cluster IP, the Service is pointed (by a hand edit) at a
/// stand-in web server on 127.0.0.1; the SSH forward, the local listener and the command's
/// lifecycle are the real ones.
fn argocd_ui_forwards_through_the_control_plane(api: &KubeApi, config: &Path, state: &Path) {
    use std::io::{BufRead, BufReader, Read, Write};
    let Some(services) = api.objects("Service") else {
        return; // a real API server: its cluster network is not reachable from here
    };
    let server = services
        .iter()
        .find(|s| s["metadata"]["name"] == "argocd-server")
        .unwrap();
    assert!(
        server["spec"]["clusterIP"]
            .as_str()
            .unwrap()
            .starts_with("10.96."),
        "the API allocated a cluster IP: {server}"
    );
    let web = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let web_port = web.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in web.incoming().take(4) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 14\r\nConnection: close\r\n\r\nArgo CD (fake)",
            );
        }
    });
    let edit = serde_json::json!({"kind": "Service", "name": "argocd-server", "namespace": "argocd",
        "merge": {"spec": {"clusterIP": "127.0.0.1",
                           "ports": [{"name": "http", "port": web_port, "targetPort": 8080}]}}});
    api.hook("POST", "/_double/edit", &edit.to_string());
    let mut child = ecoboot(state)
        .arg("-c")
        .arg(config)
        .args(["argocd", "ui", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"));
    let addr = url.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut page = String::new();
    conn.read_to_string(&mut page).unwrap();
    assert!(page.contains("Argo CD (fake)"), "{page}");
    let stopped = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(stopped.success());
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(0),
        "Ctrl-C/SIGTERM closes the UI tunnel cleanly"
    );
}

/// `spec.gitops`: an HTTPS token from an environment variable, an SSH deploy key from a file and
/// a registry token become ArgoCD repository Secrets and dockerconfigjson pull secrets (their
/// namespaces created); a missing variable is named; a rerun writes nothing; a rotated token is
/// applied again; no value shows in output, the state directory or the double's log.
fn bootstrap_secrets_from_env_and_files(api: &KubeApi, config: &Path, state: &Path) {
    const TOKEN: &str = "ghp_TestToken0123456789abcdefABCDEF";
    const REGISTRY: &str = "ghcr_RegistryToken9876543210zyx";
    let key = config.with_file_name("deploy_key");
    std::fs::write(&key, "-----BEGIN OPENSSH PRIVATE KEY-----\nZmFrZSBkZXBsb3kga2V5\n-----END OPENSSH PRIVATE KEY-----\n").unwrap();
    let gitops = edit(
        config,
        "\n  argocd:\n",
        "\n  gitops:\n    repositories:\n      - name: backend\n        url: https://github.com/SeSACTHON/backend\n        username: ecoboot\n        password: { env: ECOBOOT_TEST_GITOPS_TOKEN }\n      - name: infra\n        url: git@github.com:SeSACTHON/infra.git\n        sshPrivateKey: { file: deploy_key }\n    imagePullSecrets:\n      - name: ghcr\n        registry: ghcr.io\n        username: sesacthon-bot\n        password: { env: ECOBOOT_TEST_GHCR_TOKEN }\n        namespaces: [api, workers]\n  argocd:\n",
    );
    let with_env = |args: &[&str], token: &str| {
        run(ecoboot(state)
            .env("ECOBOOT_TEST_GITOPS_TOKEN", token)
            .env("ECOBOOT_TEST_GHCR_TOKEN", REGISTRY)
            .arg("-c")
            .arg(&gitops)
            .args(args))
    };
    let mut printed = String::new();
    let (code, _, err) = ecoboot_with(&gitops, state, &["up", "--from", "root-app"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("environment variable ECOBOOT_TEST_GITOPS_TOKEN is not set"),
        "{err}"
    );
    let (code, out, err) = with_env(&["plan", "--from", "root-app", "--detail"], TOKEN);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("apply Secret argocd/repo-backend"), "{out}");
    assert!(out.contains("create namespace api"), "{out}");
    printed.push_str(&(out + &err));
    let (code, out, err) = with_env(&["up", "--from", "root-app"], TOKEN);
    assert_eq!(code, 0, "{err}");
    printed.push_str(&(out + &err));

    if let Some(secrets) = api.objects("Secret") {
        let find = |ns: &str, name: &str| {
            secrets
                .iter()
                .find(|s| s["metadata"]["namespace"] == ns && s["metadata"]["name"] == name)
                .unwrap_or_else(|| panic!("secret {ns}/{name}"))
                .clone()
        };
        let b64 = |v: &serde_json::Value| {
            use base64::Engine as _;
            let raw = base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap();
            String::from_utf8(raw).unwrap()
        };
        let repo = find("argocd", "repo-backend");
        assert_eq!(
            repo["metadata"]["labels"]["argocd.argoproj.io/secret-type"],
            "repository"
        );
        assert_eq!(b64(&repo["data"]["password"]), TOKEN);
        assert_eq!(b64(&repo["data"]["username"]), "ecoboot");
        assert_eq!(
            b64(&repo["data"]["url"]),
            "https://github.com/SeSACTHON/backend"
        );
        let infra = find("argocd", "repo-infra");
        assert!(b64(&infra["data"]["sshPrivateKey"]).contains("ZmFrZSBkZXBsb3kga2V5"));
        for ns in ["api", "workers"] {
            let pull = find(ns, "ghcr");
            assert_eq!(pull["type"], "kubernetes.io/dockerconfigjson");
            let docker: serde_json::Value =
                serde_json::from_str(&b64(&pull["data"][".dockerconfigjson"])).unwrap();
            assert_eq!(docker["auths"]["ghcr.io"]["password"], REGISTRY);
        }
        let namespaces = api.objects("Namespace").unwrap();
        assert!(
            namespaces
                .iter()
                .any(|n| n["metadata"]["name"] == "workers")
        );
        let log = api.stats().unwrap()["log"].to_string();
        assert!(
            !log.contains(TOKEN) && !log.contains(REGISTRY),
            "the double's log"
        );
    }
    // A rerun writes nothing; a rotated token is applied again (and only that Secret).
    let writes = || api.stats().map(|s| s["applies_changed"].as_u64().unwrap());
    let before = writes();
    let (code, out, err) = with_env(&["up", "--from", "root-app"], TOKEN);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("root-app") && !out.contains("applied 1 Secret"),
        "{out}"
    );
    assert_eq!(writes(), before, "a rerun writes nothing");
    printed.push_str(&(out + &err));
    let rotated = "ghp_RotatedToken0123456789abcdefXYZ";
    let (code, out, err) = with_env(&["up", "--from", "root-app"], rotated);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("applied 1 Secret(s) from spec.gitops"),
        "{out}{err}"
    );
    printed.push_str(&(out + &err));
    let written = format!("{printed}{}", common::read_tree(state));
    for secret in [TOKEN, REGISTRY, rotated, "ZmFrZSBkZXBsb3kga2V5"] {
        assert!(
            !written.contains(secret),
            "a secret value leaked into output or state"
        );
    }
}
