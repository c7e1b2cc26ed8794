//! `install-cni` and `label-nodes` (and the kubeadm stages before them) on the 14-node sshd fleet
//! with the Kubernetes API double (or the API server named by ECOBOOT_TEST_KUBECONFIG): the
//! simulated kubeadm hands out the API's admin.conf and registers Nodes, ecoboot reaches the API
//! through an SSH tunnel to the control plane, applies the real Calico v3.32.1 manifest rendered
//! for VXLAN, reconciles labels and taints, and waits until every node is Ready.

mod common;

use std::path::Path;

use common::fleet::Fleet;
use common::kube::KubeApi;
use common::{ecoboot, run};

const NODES: usize = 14;

fn up(config: &Path, state: &Path, to: &str) -> (i32, String, String) {
    run(ecoboot(state).arg("-c").arg(config).args([
        "--output",
        "json",
        "up",
        "--from",
        "prepare-nodes",
        "--to",
        to,
    ]))
}

fn kubeadm_calls(fleet: &Fleet) -> usize {
    (1..=NODES)
        .map(|i| {
            fleet
                .calls(i)
                .iter()
                .filter(|c| c.starts_with("kubeadm ") && !c.starts_with("kubeadm version"))
                .count()
        })
        .sum()
}

fn writes(api: &KubeApi) -> Option<u64> {
    let s = api.stats()?;
    Some(
        ["creates", "updates", "deletes", "applies_changed"]
            .iter()
            .map(|k| s[k].as_u64().unwrap())
            .sum(),
    )
}

fn node<'a>(nodes: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    nodes
        .iter()
        .find(|n| n["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("node {name} registered"))
}

#[test]
fn cluster_converges_through_the_api_and_a_rerun_writes_nothing() {
    let api = KubeApi::start();
    let fleet = Fleet::start_with(NODES, Some(&api.admin_conf));
    let dir = tempfile::tempdir().unwrap();
    let config = common::kube::config(&fleet, dir.path());
    let state = dir.path().join("state");

    let (code, out, err) = up(&config, &state, "label-nodes");
    assert_eq!(code, 0, "{err}\n{out}");
    let events = common::aws::events(&out);
    let done: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "stage_done")
        .filter_map(|e| e["stage"].as_str())
        .collect();
    assert_eq!(
        done,
        [
            "prepare-nodes",
            "init-master",
            "join-workers",
            "install-cni",
            "label-nodes"
        ]
    );
    let created = events
        .iter()
        .find(|e| e["event"] == "stage_done" && e["stage"] == "install-cni")
        .unwrap()["counters"]["api.created"]
        .as_u64();
    assert_eq!(
        created,
        Some(38),
        "every object of the Calico manifest was created"
    );

    if let Some(nodes) = api.objects("Node") {
        assert_eq!(
            nodes.len(),
            NODES,
            "13 joins + the control plane registered once each"
        );
        let auth = node(&nodes, "k8s-api-auth");
        let labels = &auth["metadata"]["labels"];
        assert_eq!(labels["domain"], "auth");
        assert_eq!(
            labels["node-role.kubernetes.io/api"], "",
            "role label set through the API"
        );
        assert_eq!(
            auth["spec"]["taints"],
            serde_json::json!([{"key": "domain", "value": "auth", "effect": "NoSchedule"}]),
            "taints came with registration"
        );
        for n in &nodes {
            let ready = n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            assert!(ready, "{} Ready", n["metadata"]["name"]);
        }
        let ds = &api.objects("DaemonSet").unwrap()[0];
        let env = ds["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap();
        let var = |name: &str| {
            env.iter()
                .find(|e| e["name"] == name)
                .map(|e| e["value"].clone())
        };
        assert_eq!(var("CALICO_IPV4POOL_VXLAN"), Some("Always".into()));
        assert_eq!(var("CALICO_IPV4POOL_IPIP"), Some("Never".into()));
        assert_eq!(var("CALICO_IPV4POOL_CIDR"), Some("192.168.0.0/16".into()));
        let cm = api.objects("ConfigMap").unwrap();
        let calico = cm
            .iter()
            .find(|c| c["metadata"]["name"] == "calico-config")
            .unwrap();
        assert_eq!(calico["data"]["calico_backend"], "vxlan");
        let crds = api.objects("CustomResourceDefinition").unwrap();
        assert_eq!(crds.len(), 23);
        let stats = api.stats().unwrap();
        assert_eq!(
            stats["by_manager"]["ecoboot"].as_u64().map(|n| n >= 38),
            Some(true)
        );
        // #29: every kubelet's serving-certificate request was checked and approved.
        let csrs = api.objects("CertificateSigningRequest").unwrap();
        assert_eq!(csrs.len(), NODES, "one serving CSR per kubelet");
        for c in &csrs {
            let approved = (c["status"]["conditions"].as_array().into_iter().flatten())
                .any(|x| x["type"] == "Approved" && x["reason"] == "EcobootApproved");
            assert!(approved, "{c}");
        }
    }
    serving_csr_with_a_foreign_address_is_not_approved(&api, &config, &state);

    // Rerun: every stage is done, no kubeadm call, no API write.
    let (kubeadm_before, writes_before) = (kubeadm_calls(&fleet), writes(&api));
    let (code, out, err) = up(&config, &state, "label-nodes");
    assert_eq!(code, 0, "{err}");
    let skipped = common::aws::events(&out)
        .iter()
        .filter(|e| e["event"] == "stage_skipped")
        .count();
    assert_eq!(skipped, 6, "{out}");
    assert_eq!(
        kubeadm_calls(&fleet),
        kubeadm_before,
        "no kubeadm call on a rerun"
    );
    assert_eq!(writes(&api), writes_before, "no API write on a rerun");

    // `apiAccess: direct` reaches the API at the control plane's address instead of the tunnel.
    let direct = dir.path().join("direct.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &direct,
        text.replace("apiAccess: tunnel", "apiAccess: direct")
            .replace(
                "    allowedSshCidrs:",
                "    allowedApiCidrs: [127.0.0.1/32]\n    allowedSshCidrs:",
            ),
    )
    .unwrap();
    let (code, out, err) = run(ecoboot(&state)
        .arg("-c")
        .arg(&direct)
        .args(["--output", "json", "status"]));
    assert_eq!(code, 0, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["api"], "reachable", "{status}");
    assert_eq!(status["nodes"].as_array().unwrap().len(), NODES);

    // A label changed by hand is set back on the next run; the others are untouched.
    if api.hooks.is_some() {
        api.hook(
            "POST",
            "/_double/edit",
            r#"{"kind":"Node","name":"k8s-api-auth","merge":{"metadata":{"labels":{"domain":"hacked"}}}}"#,
        );
        let (code, out, err) = run(ecoboot(&state).arg("-c").arg(&config).args([
            "--output",
            "json",
            "stage",
            "label-nodes",
        ]));
        assert_eq!(code, 0, "{err}");
        assert!(out.contains("set domain=auth"), "{out}");
        let nodes = api.objects("Node").unwrap();
        assert_eq!(
            node(&nodes, "k8s-api-auth")["metadata"]["labels"]["domain"],
            "auth"
        );
        coredns_blocked_by_taints_is_named(&api, &config, &state);
    }
    certificates_expiry_shown_and_renewed(&fleet, &config, &state);
    worker_joined_elsewhere_is_joined_again(&fleet, &config, &state);
}

/// A worker whose kubelet talks to another API server than the control plane's (what a
/// control plane restored onto a new address leaves behind) is reset and joined again.
fn worker_joined_elsewhere_is_joined_again(fleet: &Fleet, config: &Path, state: &Path) {
    let right = fleet.file(2, "/etc/kubernetes/kubelet.conf").unwrap();
    assert!(right.contains("server: https://"), "{right}");
    fleet.ssh(
        2,
        "sed -i 's#server: https://.*#server: https://10.9.9.9:6443#' /etc/kubernetes/kubelet.conf",
    );
    let (code, out, err) = run(ecoboot(state)
        .arg("-c")
        .arg(config)
        .args(["stage", "join-workers"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("joined to https://10.9.9.9:6443, not to this control plane"),
        "{out}"
    );
    assert_eq!(
        fleet.file(2, "/etc/kubernetes/kubelet.conf").unwrap(),
        right
    );
    let calls = fleet.calls(2);
    assert!(
        calls.iter().any(|c| c.starts_with("kubeadm reset")),
        "{calls:?}"
    );
    let (code, out, err) = run(ecoboot(state)
        .arg("-c")
        .arg(config)
        .args(["stage", "join-workers"]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("14") || out.contains("joined"), "{out}");
}

/// #15: the control plane's certificate expiry in `status` (a warning below 30 days, as a
/// GitHub annotation and in the step summary too), and `certs renew` pushing it out with the
/// API reachable afterwards through the renewed admin.conf. Kubelets rotate their own client
/// certificates: the KubeletConfiguration kubeadm wrote says so.
fn certificates_expiry_shown_and_renewed(fleet: &Fleet, config: &Path, state: &Path) {
    let kubelet = fleet
        .file(1, "/var/lib/kubelet/config.yaml")
        .expect("kubeadm init wrote it");
    assert!(kubelet.contains("rotateCertificates: true"), "{kubelet}");
    assert!(kubelet.contains("cgroupDriver: systemd"), "{kubelet}");
    // The API server's certificate is 10 days from expiry.
    fleet.ssh(
        1,
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout /etc/kubernetes/pki/apiserver.key -out /etc/kubernetes/pki/apiserver.crt -days 10 -subj /CN=kube-apiserver 2>/dev/null",
    );
    let status = |extra: &[&str]| {
        let (code, out, err) = run(ecoboot(state)
            .arg("-c")
            .arg(config)
            .args(extra)
            .arg("status"));
        assert_eq!(code, 0, "{err}");
        out
    };
    let json: serde_json::Value = serde_json::from_str(&status(&["--output", "json"])).unwrap();
    let certs = json["certificates"].as_array().unwrap();
    assert!(certs.len() >= 10, "{certs:?}");
    assert_eq!(
        certs[0]["file"], "/etc/kubernetes/pki/apiserver.crt",
        "soonest first"
    );
    let days = certs[0]["days_left"].as_i64().unwrap();
    assert!((9..=10).contains(&days), "{days}");
    assert_eq!(
        json["certificate_warnings"].as_array().unwrap().len(),
        1,
        "{json}"
    );
    let summary = state.with_file_name("summary.md");
    let (code, out, err) = run(ecoboot(state)
        .arg("-c")
        .arg(config)
        .arg("status")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary));
    assert_eq!(code, 0, "{err}");
    let line = format!("/etc/kubernetes/pki/apiserver.crt expires in {days} day(s)");
    assert!(
        out.contains(&format!(
            "::warning title=ecoboot certificate expiry::{line}"
        )),
        "{out}"
    );
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.contains(&line) && md.contains("ecoboot certs renew"),
        "{md}"
    );

    // A dry run changes nothing; the renewal pushes every certificate out a year.
    let before = fleet.file(1, "/etc/kubernetes/pki/apiserver.crt").unwrap();
    let (code, out, err) =
        run(ecoboot(state)
            .arg("-c")
            .arg(config)
            .args(["certs", "renew", "--dry-run"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("kubeadm certs renew all") && out.contains("apiserver.crt"),
        "{out}"
    );
    assert_eq!(
        fleet.file(1, "/etc/kubernetes/pki/apiserver.crt").unwrap(),
        before
    );
    let admin = state.join("sesacthon/admin.conf");
    let _ = std::fs::remove_file(&admin);
    let (code, out, err) = run(ecoboot(state)
        .arg("-c")
        .arg(config)
        .args(["certs", "renew"]));
    assert_eq!(code, 0, "{out}{err}");
    for said in [
        "kube-apiserver restarted",
        "kube-scheduler restarted",
        "/readyz ok",
        "export them again",
    ] {
        assert!(out.contains(said), "{said} in {out}");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&admin)
        .expect("admin.conf fetched again")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let json: serde_json::Value = serde_json::from_str(&status(&["--output", "json"])).unwrap();
    assert_eq!(
        json["api"], "reachable",
        "through the renewed admin.conf: {json}"
    );
    assert!(
        json["certificate_warnings"].as_array().unwrap().is_empty(),
        "{json}"
    );
    let apiserver = (json["certificates"].as_array().unwrap().iter())
        .find(|c| c["file"] == "/etc/kubernetes/pki/apiserver.crt")
        .unwrap();
    assert!(
        apiserver["days_left"].as_i64().unwrap() >= 364,
        "{apiserver}"
    );
    assert!(
        fleet
            .file(1, "/etc/kubernetes/manifests/kube-apiserver.yaml")
            .is_some(),
        "manifest back"
    );
}

/// #16: `label-nodes` waits for CoreDNS (kubeadm's kube-system/coredns), and when a taint
/// keeps its pods off every node it fails naming the taint instead of leaving the later stages
/// without cluster DNS.
fn coredns_blocked_by_taints_is_named(api: &KubeApi, config: &Path, state: &Path) {
    let coredns = |api: &KubeApi| -> serde_json::Value {
        let all = api.objects("Deployment").unwrap();
        all.into_iter()
            .find(|d| d["metadata"]["name"] == "coredns")
            .expect("kubeadm init created kube-system/coredns")
    };
    assert_eq!(coredns(api)["status"]["availableReplicas"], 2);
    // Someone taints every node NoExecute (maintenance): CoreDNS's pods are evicted and stay
    // Pending; label-nodes keeps foreign taints, so only the wait can tell.
    let before = api.objects("Node").unwrap();
    let edit = |name: &str, taints: &serde_json::Value| {
        let body = serde_json::json!({"kind": "Node", "name": name, "merge": {"spec": {"taints": taints}}});
        api.hook("POST", "/_double/edit", &body.to_string());
    };
    for n in &before {
        let mut taints = n["spec"]["taints"].as_array().cloned().unwrap_or_default();
        taints
            .push(serde_json::json!({"key": "maintenance", "value": "now", "effect": "NoExecute"}));
        edit(
            n["metadata"]["name"].as_str().unwrap(),
            &serde_json::Value::Array(taints),
        );
    }
    let short = config.with_file_name("short-wait.yaml");
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains("    waitSeconds: 60\n"));
    std::fs::write(
        &short,
        text.replacen("    waitSeconds: 60\n", "    waitSeconds: 3\n", 1),
    )
    .unwrap();
    let (code, _, err) = run(ecoboot(state)
        .arg("-c")
        .arg(&short)
        .args(["stage", "label-nodes"]));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("CoreDNS (deployment/kube-system/coredns) is not available")
            && err.contains("14 node(s) have untolerated taint maintenance=now:NoExecute")
            && err.contains("0/14 nodes are available"),
        "{err}"
    );
    // The taints go away: the next run finds CoreDNS available and is done.
    for n in &before {
        edit(
            n["metadata"]["name"].as_str().unwrap(),
            &n["spec"]["taints"],
        );
    }
    let (code, out, err) = run(ecoboot(state)
        .arg("-c")
        .arg(&short)
        .args(["stage", "label-nodes"]));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(coredns(api)["status"]["availableReplicas"], 2);
}

/// A serving CSR claiming node k8s-api-my with an address EC2 does not report for it (8.8.8.8)
/// stays pending, and every run warns naming it.
fn serving_csr_with_a_foreign_address_is_not_approved(api: &KubeApi, config: &Path, state: &Path) {
    if api.hooks.is_none() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
        ])
        .arg(dir.path().join("k"))
        .args([
            "-subj",
            "/O=system:nodes/CN=system:node:k8s-api-my",
            "-addext",
            "subjectAltName=DNS:k8s-api-my,IP:8.8.8.8",
        ])
        .output()
        .unwrap();
    use base64::Engine;
    let request = base64::engine::general_purpose::STANDARD.encode(&out.stdout);
    let csr = serde_json::json!({"object": {"apiVersion": "certificates.k8s.io/v1", "kind": "CertificateSigningRequest",
        "metadata": {"name": "csr-planted"},
        "spec": {"request": request, "signerName": "kubernetes.io/kubelet-serving", "usages": ["server auth"],
                 "username": "system:node:k8s-api-my", "groups": ["system:nodes"]}}});
    api.hook("POST", "/_double/create", &csr.to_string());
    let (code, out, err) = up(config, state, "label-nodes");
    assert_eq!(code, 0, "{err}");
    let all = format!("{out}{err}");
    assert!(
        all.contains("csr/csr-planted")
            && all.contains("asks for 8.8.8.8 that EC2 does not report"),
        "{all}"
    );
    let planted = (api
        .objects("CertificateSigningRequest")
        .unwrap()
        .into_iter())
    .find(|c| c["metadata"]["name"] == "csr-planted")
    .unwrap();
    assert!(
        planted["status"]["conditions"].is_null(),
        "left pending: {planted}"
    );
}
