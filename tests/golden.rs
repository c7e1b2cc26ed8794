//! Golden images (issue #31), every command with only the deployer policy's key under moto's
//! IAM enforcement: `image build` on a fresh account (the network made for it, the builder on a
//! fifteenth fleet node prepared and its images pre-pulled, stopped, imaged, terminated),
//! failing at CreateImage and resumed without a second builder; a rerun that changes nothing;
//! `up` launching the 14 nodes from the golden image (whose disk the proxy captured at
//! CreateImage), so prepare-nodes executes no step and no node installs a package; `image
//! list`; `down` keeping the image; a config change making it stale, `image prune` removing it
//! with its snapshot; a rebuild; `down --images`.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::aws::{AwsSandbox, events};
use common::deployer::{parts, user};
use common::fleet::Fleet;
use common::{ecoboot, run};

const NODES: usize = 14;
/// The builder's fleet node.
const BUILDER: usize = 15;

struct World {
    aws: AwsSandbox,
    deployer: (String, String),
    admin: (String, String),
    fleet: Fleet,
    config: PathBuf,
    state: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    fn cmd(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = ecoboot(&self.state);
        self.aws.env(&mut cmd);
        cmd.env("AWS_ACCESS_KEY_ID", &self.deployer.0)
            .env("AWS_SECRET_ACCESS_KEY", &self.deployer.1)
            .env("ECOBOOT_NO_VALIDATE", "1")
            .arg("-c")
            .arg(config)
            .args(args);
        cmd
    }

    fn ok_with(&self, config: &Path, args: &[&str]) -> String {
        let (code, out, err) = run(&mut self.cmd(config, args));
        assert_eq!(code, 0, "{args:?}:\n{out}\n{err}");
        assert!(!err.contains("not authorized"), "{err}");
        out
    }

    fn ok(&self, args: &[&str]) -> String {
        self.ok_with(&self.config, args)
    }

    fn boto(&self, service: &str, call: &str) -> serde_json::Value {
        let out = self.aws.boto_script_as(
            (&self.admin.0, &self.admin.1),
            service,
            &format!("r = c.{call}\nprint(json.dumps(r, default=str))"),
        );
        serde_json::from_str(&out).unwrap()
    }

    /// The account's own images: (id, hash tag, state, snapshot ids).
    fn images(&self) -> Vec<(String, String, String, Vec<String>)> {
        let r = self.boto("ec2", "describe_images(Owners=['self'])");
        (r["Images"].as_array().unwrap().iter())
            .map(|i| {
                let tag = (i["Tags"].as_array().into_iter().flatten())
                    .find(|t| t["Key"] == "ecoboot.io/golden-hash")
                    .map(|t| t["Value"].as_str().unwrap().to_string())
                    .unwrap_or_default();
                let snaps = (i["BlockDeviceMappings"].as_array().into_iter().flatten())
                    .filter_map(|m| m["Ebs"]["SnapshotId"].as_str().map(str::to_string))
                    .collect();
                let state = i["State"].as_str().unwrap().to_string();
                (
                    i["ImageId"].as_str().unwrap().to_string(),
                    tag,
                    state,
                    snaps,
                )
            })
            .collect()
    }

    /// Builder instances by state.
    fn builders(&self) -> Vec<String> {
        let r = self.boto(
            "ec2",
            "describe_instances(Filters=[{'Name': 'tag:ecoboot.io/role', 'Values': ['image-builder']}])",
        );
        (r["Reservations"].as_array().unwrap().iter())
            .flat_map(|r| r["Instances"].as_array().unwrap().iter())
            .map(|i| i["State"]["Name"].as_str().unwrap().to_string())
            .collect()
    }

    fn faults(&self, extra: serde_json::Value) {
        let names: Vec<String> = std::fs::read_to_string(&self.config)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("    - name: ").map(str::to_string))
            .collect();
        let mut nodes = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            nodes.insert(n.clone(), (i + 1).into());
        }
        nodes.insert("image-builder".into(), BUILDER.into());
        let mut f = serde_json::json!({
            "credentials": {"key": self.admin.0, "secret": self.admin.1},
            "idempotent_tokens": true,
            "fleet": {"dir": self.fleet.dir.path(), "nodes": nodes},
        });
        for (k, v) in extra.as_object().unwrap() {
            f[k] = v.clone();
        }
        self.aws.faults(&f.to_string());
    }
}

/// The fleet's config with golden images on and the builder on the spare node.
fn golden_config(fleet: &Fleet, dir: &Path) -> PathBuf {
    let path = common::kube::config(fleet, dir);
    let text = std::fs::read_to_string(&path).unwrap();
    let line = "      nameFilter: ubuntu/images/hvm-ssd-gp3/ubuntu-noble-24.04-amd64-server-*\n";
    assert!(text.contains(line));
    let golden = format!(
        "{line}      golden: true\n      builder:\n        address: \"127.0.1.{BUILDER}:{}\"\n",
        fleet.port
    );
    std::fs::write(&path, text.replace(line, &golden)).unwrap();
    path
}

#[test]
fn golden_image_is_built_resumably_used_by_up_and_pruned() {
    let aws = AwsSandbox::start_with(true);
    let mut fleet = Fleet::start(NODES + 1);
    fleet.spare = 1;
    let dir = tempfile::tempdir().unwrap();
    let config = golden_config(&fleet, dir.path());
    let policy = parts(&aws, &config, dir.path());
    let everything = serde_json::json!({"Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]});
    let admin = user(&aws, "admin", &[everything]);
    let deployer = user(&aws, "deployer", &policy);
    aws.enforce_iam();
    let w = World {
        aws,
        deployer,
        admin,
        fleet,
        config,
        state: dir.path().join("state"),
        _dir: dir,
    };

    // The plan on an empty account: the network first, then the whole build.
    w.faults(serde_json::json!({}));
    let plan = w.ok(&["image", "build", "--dry-run"]);
    for step in [
        "network",
        "launch from the base image",
        "prepare-nodes, pull kubeadm's images",
        "create the image",
    ] {
        assert!(plan.contains(step), "{step}: {plan}");
    }
    // Without a golden image `up`'s plan says nothing of it yet; the build fails at
    // CreateImage (after the builder was prepared and stopped) ...
    w.faults(serde_json::json!({"fail": {"CreateImage": ["InvalidParameterValue", 1]}}));
    let (code, _, err) = run(&mut w.cmd(&w.config, &["image", "build", "--yes"]));
    assert_ne!(code, 0);
    assert!(err.contains("CreateImage"), "{err}");
    assert_eq!(w.builders(), ["stopped"]);
    assert!(w.images().is_empty());
    let calls = w.fleet.calls(BUILDER).join("\n");
    for call in [
        "apt-get install",
        "kubeadm config images pull",
        "pull quay.io/calico/node:v3.32.1",
        "pull quay.io/argoproj/argocd:v3.5.1",
        "cloud-init clean --logs --machine-id",
    ] {
        assert!(calls.contains(call), "{call}:\n{calls}");
    }
    // ... and the rerun goes on from the stopped builder: no second launch, no second prepare.
    w.faults(serde_json::json!({}));
    let out = w.ok(&["--output", "json", "image", "build", "--yes"]);
    let text: Vec<String> = events(&out)
        .iter()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect();
    assert!(!text.iter().any(|m| m.starts_with("launched")), "{text:?}");
    assert_eq!(
        w.aws.stats()["RunInstances"],
        1,
        "one builder launched in all"
    );
    let images = w.images();
    assert_eq!(images.len(), 1, "{images:?}");
    let (ami, hash, state, snaps) = images[0].clone();
    assert_eq!((hash.len(), state.as_str()), (64, "available"));
    assert!(
        w.builders()
            .iter()
            .all(|s| s == "terminated" || s == "shutting-down")
    );
    let layer = w.fleet.dir.path().join(format!("shared/images/{ami}.tar"));
    assert!(layer.exists(), "the proxy captured the builder's disk");

    // A rerun finds it up to date and changes nothing.
    let before = w.aws.stats();
    let out = w.ok(&["image", "build", "--yes"]);
    assert!(out.contains("is up to date"), "{out}");
    let after = w.aws.stats();
    for op in [
        "RunInstances",
        "CreateImage",
        "StopInstances",
        "TerminateInstances",
    ] {
        assert_eq!(before[op], after[op], "{op}");
    }

    // `up` launches every node from it: prepare-nodes has nothing to do, no node installs.
    let out = w.ok(&["--output", "json", "up", "--to", "prepare-nodes", "--yes"]);
    let ev = events(&out);
    // (Pipelined, prepare-nodes checks each node as its instance comes up: every guard holds.)
    let prepared = (ev.iter())
        .find(|e| {
            e["stage"] == "prepare-nodes"
                && (e["event"] == "stage_done" || e["event"] == "stage_skipped")
        })
        .unwrap();
    assert!(
        prepared["event"] == "stage_skipped" || prepared["counters"]["steps.executed"] == 0,
        "{prepared}"
    );
    assert!(
        !ev.iter()
            .any(|e| e["event"] == "warning" && e["subject"] == "golden image")
    );
    let r = w.boto("ec2", "describe_instances(Filters=[{'Name': 'tag-key', 'Values': ['ecoboot.io/node']}, {'Name': 'instance-state-name', 'Values': ['running']}])");
    let used: Vec<&str> = (r["Reservations"].as_array().unwrap().iter())
        .flat_map(|r| r["Instances"].as_array().unwrap().iter())
        .map(|i| i["ImageId"].as_str().unwrap())
        .collect();
    assert_eq!(used, vec![ami.as_str(); NODES]);
    for i in 1..=NODES {
        let installs: Vec<String> = (w.fleet.calls(i).into_iter())
            .filter(|c| c.starts_with("apt-get install") || c.contains(" pull "))
            .collect();
        assert!(installs.is_empty(), "node {i}: {installs:?}");
        assert!(
            w.fleet
                .file(i, "/var/lib/ecoboot-sim/images")
                .unwrap()
                .contains("quay.io/calico/node:v3.32.1")
        );
    }
    let list: serde_json::Value =
        serde_json::from_str(&w.ok(&["--output", "json", "image", "list"])).unwrap();
    assert_eq!(list["wanted_hash"], hash.as_str());
    assert_eq!(list["images"][0]["current"], true);
    assert_eq!(
        list["images"][0]["used_by"].as_array().unwrap().len(),
        NODES
    );

    // `down` keeps it (the next `up` reuses it).
    let out = w.ok(&["down", "--yes"]);
    assert!(out.contains("keep golden image"), "{out}");
    assert_eq!(w.images().len(), 1);

    // A config change makes it stale: prune removes it with its snapshot, a build makes the
    // new one, `down --images` removes that.
    let changed = w.config.with_file_name("changed.yaml");
    let text = std::fs::read_to_string(&w.config).unwrap();
    let text = text.replacen(
        "  kubernetes:\n",
        "  kubernetes:\n    hardening:\n      securityUpdates: false\n",
        1,
    );
    std::fs::write(&changed, text).unwrap();
    let out = w.ok_with(&w.config, &["image", "prune", "--yes"]);
    assert!(
        out.contains("nothing to do"),
        "the current image stays: {out}"
    );
    let out = w.ok_with(&changed, &["image", "prune", "--yes"]);
    assert!(out.contains(&ami), "{out}");
    assert!(w.images().is_empty());
    let snapshots = w.boto("ec2", "describe_snapshots(OwnerIds=['self'])");
    let left: Vec<&str> = (snapshots["Snapshots"].as_array().unwrap().iter())
        .filter_map(|s| s["SnapshotId"].as_str())
        .filter(|s| snaps.iter().any(|x| x == s))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    w.ok_with(&changed, &["image", "build", "--yes"]);
    let images = w.images();
    assert_eq!(images.len(), 1);
    assert_ne!(images[0].1, hash, "another config, another hash");
    w.ok_with(&changed, &["down", "--images", "--yes"]);
    assert!(w.images().is_empty());
    assert!(
        w.builders()
            .iter()
            .all(|s| s == "terminated" || s == "shutting-down")
    );
}
