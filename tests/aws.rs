//! The provisioning stages and `down` against a real AWS API emulator (moto_server) behind a
//! fault-injecting proxy (tests/support/aws_fault_proxy.py), running the real binary.
//!
//! Emulator gaps, covered by the proxy instead of trusting moto:
//! - RunInstances ClientToken is not idempotent in moto → `idempotent_tokens` models AWS.
//! - Instances are visible at once in moto → `describe_lag` models EC2 eventual consistency.
//! - No IAM propagation delay → `profile_delay`. No throttling → `throttle_every`.
//! - Deleting an SG in use succeeds in moto → `dependency` answers DependencyViolation.
//! - moto's DeleteKeyPair ignores KeyPairId, so ecoboot deletes key pairs by name.
//! - moto is more permissive than AWS about delete order in general; `down` follows AWS's order.
//! - moto keeps an instance's old IamInstanceProfile in DescribeInstances after its association
//!   was replaced; ecoboot and the proxy's inventory read the association, as AWS reports it.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::aws::{AwsSandbox, aws_calls, events};
use common::{config_named, ecoboot, run};

fn up(
    sb: &AwsSandbox,
    dir: &std::path::Path,
    config: &std::path::Path,
    args: &[&str],
) -> (i32, Vec<serde_json::Value>, String) {
    let (code, out, err) = run(sb.env(
        ecoboot(&dir.join("state"))
            .arg("-c")
            .arg(config)
            .args(args)
            .args(["--output", "json"]),
    ));
    (code, events(&out), err)
}

/// `ecoboot down --yes` against the sandbox: (exit code, stdout, stderr).
fn down(sb: &AwsSandbox, dir: &std::path::Path, config: &std::path::Path) -> (i32, String, String) {
    run(sb.env(
        ecoboot(&dir.join("state"))
            .arg("-c")
            .arg(config)
            .args(["down", "--yes"]),
    ))
}

fn by_node(instances: &[serde_json::Value]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for i in instances {
        *m.entry(i["node"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    m
}

#[test]
fn fresh_provision_rerun_status_inventory_and_down() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "fresh");

    let (code, ev, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let (mutating, read) = aws_calls(&ev);
    println!("fresh provision: {mutating} mutating + {read} read AWS calls");
    // 59 calls with one role; the controller role (for the master's AWS-facing controllers)
    // adds its create, attach, profile and lookups; the LB controller's inline policy and
    // the control plane's Elastic IP a few more.
    assert!(
        mutating + read <= 85,
        "fresh provision took {} calls",
        mutating + read
    );

    let inv = sb.inventory("fresh");
    let live = sb.live_instances("fresh");
    assert_eq!(live.len(), 14);
    assert!(by_node(&live).values().all(|n| *n == 1));
    let text = std::fs::read_to_string(&config).unwrap();
    for i in &live {
        let node = i["node"].as_str().unwrap();
        assert_eq!(i["name"], node);
        assert_eq!(i["state"], "running");
        let role = if node == "k8s-master" {
            "controller"
        } else {
            "node"
        };
        assert!(
            i["profile"]
                .as_str()
                .unwrap()
                .ends_with(&format!("instance-profile/ecoboot-fresh-{role}")),
            "{i}"
        );
        assert_eq!(
            i["image"], "ami-0a1b2c3d4e5f60006",
            "newest noble (24.04) amd64 image"
        );
        let block = text
            .split("- name: ")
            .find(|b| b.starts_with(node))
            .unwrap();
        assert!(
            block.contains(&format!("instanceType: {}", i["type"].as_str().unwrap())),
            "{node}"
        );
    }
    // The control plane's stable endpoint: one tagged Elastic IP on the master, recorded as
    // its public address (the SAN, kubeconfig server and SSH address follow it).
    let master = live.iter().find(|i| i["node"] == "k8s-master").unwrap();
    let addresses = inv["addresses"].as_array().unwrap();
    assert_eq!(addresses.len(), 1, "{addresses:?}");
    assert_eq!(addresses[0]["instance"], master["id"]);
    assert_eq!(addresses[0]["node"], "k8s-master");
    let eip = addresses[0]["ip"].as_str().unwrap().to_string();
    let recorded = |dir: &std::path::Path| -> String {
        let state: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("state/fresh/state.json")).unwrap(),
        )
        .unwrap();
        state["outputs"]["instances"]["nodes"]["k8s-master"]["public_ip"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(recorded(dir.path()), eip);
    let volumes = inv["volumes"].as_array().unwrap();
    assert_eq!(volumes.len(), 14);
    assert!(
        volumes
            .iter()
            .all(|v| v["encrypted"] == true && v["type"] == "gp3")
    );
    assert!(
        volumes
            .iter()
            .any(|v| v["node"] == "k8s-master" && v["size"] == 80)
    );
    for key in [
        "vpcs",
        "internet_gateways",
        "route_tables",
        "security_groups",
        "key_pairs",
        "roles",
        "instance_profiles",
    ] {
        assert_eq!(inv[key], 1, "{key}: {inv}");
    }
    assert_eq!(inv["subnets"], 3);

    // The tags the Kubernetes AWS integrations look for, set at creation.
    let tagged = |key: &str, value: &str| -> Vec<(String, String)> {
        let found = sb.boto(
            "ec2",
            &format!("describe_tags(Filters=[{{'Name': 'key', 'Values': ['{key}']}}, {{'Name': 'value', 'Values': ['{value}']}}])"),
        );
        let mut out: Vec<(String, String)> = found["Tags"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                let kind = t["ResourceType"].as_str().unwrap().to_string();
                (kind, t["ResourceId"].as_str().unwrap().to_string())
            })
            .collect();
        out.sort();
        out
    };
    let owned = tagged("kubernetes.io/cluster/fresh", "owned");
    let kinds =
        |list: &[(String, String)], kind: &str| list.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(
        (
            kinds(&owned, "vpc"),
            kinds(&owned, "subnet"),
            kinds(&owned, "security-group"),
            kinds(&owned, "instance")
        ),
        (1, 3, 1, 14),
        "{owned:?}"
    );
    let elb = tagged("kubernetes.io/role/elb", "1");
    assert_eq!(kinds(&elb, "subnet"), 3, "{elb:?}");
    // Tags removed out of band: the probe plans them back, one CreateTags per set of missing
    // tags (the network's resources) plus one per untagged instance, and then nothing again.
    let subnet = elb[0].1.clone();
    let instance = owned
        .iter()
        .find(|(k, _)| k == "instance")
        .unwrap()
        .1
        .clone();
    sb.boto(
        "ec2",
        &format!("delete_tags(Resources=['{subnet}', '{instance}'], Tags=[{{'Key': 'kubernetes.io/cluster/fresh'}}, {{'Key': 'kubernetes.io/role/elb'}}])"),
    );
    // ... and the Elastic IP loses its association: it is given back to the master.
    let allocation = sb.boto(
        "ec2",
        &format!("describe_addresses(PublicIps=['{eip}'])"),
    )["Addresses"][0]["AssociationId"]
        .as_str()
        .unwrap()
        .to_string();
    sb.boto(
        "ec2",
        &format!("disassociate_address(AssociationId='{allocation}')"),
    );
    let (code, ev, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let calls = |name: &str| -> u64 {
        ev.iter()
            .filter_map(|e| e["aws_calls"][name].as_u64())
            .sum()
    };
    assert_eq!(
        calls("CreateTags"),
        2,
        "one for the subnet, one for the instance"
    );
    assert_eq!(calls("AssociateAddress"), 1);
    assert_eq!(aws_calls(&ev).0, 3, "and nothing else mutating");
    assert_eq!(
        sb.inventory("fresh")["addresses"][0]["instance"],
        master["id"]
    );
    assert_eq!(recorded(dir.path()), eip, "the same address, not a new one");
    assert_eq!(tagged("kubernetes.io/cluster/fresh", "owned"), owned);
    assert_eq!(tagged("kubernetes.io/role/elb", "1"), elb);

    let (code, ev, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let (mutating, read) = aws_calls(&ev);
    println!("idempotent rerun: {mutating} mutating + {read} read AWS calls");
    assert_eq!(mutating, 0);
    // 15 before policy documents and the Elastic IP; they read inline policies (2 roles + 1
    // document), the managed-policy path and the addresses.
    assert!(read <= 20, "{read} read calls");
    assert_eq!(
        ev.iter().filter(|e| e["event"] == "stage_skipped").count(),
        3
    );

    let (code, out, _) = run(sb.env(
        ecoboot(&dir.path().join("state"))
            .arg("-c")
            .arg(&config)
            .arg("inventory"),
    ));
    assert_eq!(code, 0);
    assert_eq!(out.matches("ansible_host=").count(), 14);
    assert!(
        out.contains("[control_plane]\nk8s-master ansible_host="),
        "{out}"
    );
    let ini = std::fs::read_to_string(dir.path().join("state/fresh/hosts.ini")).unwrap();
    assert_eq!(ini, out);

    let (code, out, _) = run(sb.env(
        ecoboot(&dir.path().join("state"))
            .arg("-c")
            .arg(&config)
            .args(["status", "--output", "json"]),
    ));
    assert_eq!(code, 0);
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["stages"][2]["status"], "done");
    assert!(
        status["stages"][2]["probe"]
            .as_str()
            .unwrap()
            .starts_with("done: 14 instances running")
    );

    // What the in-cluster controllers would leave in the VPC, made out of band: an ALB with a
    // target group and its own security group, a detached interface, and a CSI volume.
    let net: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/fresh/state.json")).unwrap(),
    )
    .unwrap();
    let net = &net["outputs"]["network"];
    let vpc = net["vpc_id"].as_str().unwrap().to_string();
    let subnets: Vec<String> = (net["subnets"].as_object().unwrap().values())
        .map(|s| format!("'{}'", s["id"].as_str().unwrap()))
        .collect();
    let lb_sg = sb.boto("ec2", &format!("create_security_group(GroupName='k8s-traefik-lb', Description='lb', VpcId='{vpc}', TagSpecifications=[{{'ResourceType': 'security-group', 'Tags': [{{'Key': 'elbv2.k8s.aws/cluster', 'Value': 'fresh'}}]}}])"))["GroupId"].as_str().unwrap().to_string();
    sb.boto("elbv2", &format!("create_load_balancer(Name='k8s-api-ingress', Subnets=[{}], SecurityGroups=['{lb_sg}'], Tags=[{{'Key': 'elbv2.k8s.aws/cluster', 'Value': 'fresh'}}])", subnets.join(", ")));
    sb.boto("elbv2", &format!("create_target_group(Name='k8s-api-tg', Protocol='HTTP', Port=80, VpcId='{vpc}', TargetType='ip')"));
    sb.boto(
        "ec2",
        &format!(
            "create_network_interface(SubnetId={}, Description='left by a controller')",
            subnets[0]
        ),
    );
    let volume = sb.boto("ec2", "create_volume(AvailabilityZone='ap-northeast-2a', Size=8, TagSpecifications=[{'ResourceType': 'volume', 'Tags': [{'Key': 'kubernetes.io/cluster/fresh', 'Value': 'owned'}, {'Key': 'kubernetes.io/created-for/pvc/name', 'Value': 'data-postgresql-0'}]}])")["VolumeId"].as_str().unwrap().to_string();
    let (code, out, err) = run(sb.env(
        ecoboot(&dir.path().join("state"))
            .arg("-c")
            .arg(&config)
            .args(["down", "--dry-run"]),
    ));
    assert_eq!(code, 0, "{err}");
    for line in [
        "delete load balancer k8s-api-ingress",
        "delete target group k8s-api-tg",
        "delete controller security group k8s-traefik-lb",
        "delete detached network interface left by a controller",
        "keep volume (pass --delete-volumes to delete it) 8 GiB",
        "terminate instance of k8s-master",
    ] {
        assert!(out.contains(line), "{line} in {out}");
    }
    assert_eq!(
        sb.live_instances("fresh").len(),
        14,
        "--dry-run deleted nothing"
    );

    // The controller lets its load balancers' group into the nodes' group; AWS then refuses to
    // delete the load balancers' group until that rule is gone (the proxy models it).
    let cluster_sg = net["security_group_id"].as_str().unwrap();
    sb.boto("ec2", &format!("authorize_security_group_ingress(GroupId='{cluster_sg}', IpPermissions=[{{'IpProtocol': 'tcp', 'FromPort': 30000, 'ToPort': 32767, 'UserIdGroupPairs': [{{'GroupId': '{lb_sg}'}}]}}])"));
    sb.faults(r#"{"sg_references": true}"#);
    let started = std::time::Instant::now();
    let (code, out, err) = down(&sb, dir.path(), &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("revoked 1 rule(s) of other groups that referenced it"),
        "{out}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "no DependencyViolation retries"
    );
    assert!(
        sb.stats().get("fault:DeleteSecurityGroup").is_none(),
        "never refused"
    );
    assert!(out.contains(&format!("{volume}: kept")), "{out}");
    let left = |call: &str, key: &str| sb.boto("elbv2", call)[key].as_array().unwrap().len();
    assert_eq!(left("describe_load_balancers()", "LoadBalancers"), 0);
    assert_eq!(left("describe_target_groups()", "TargetGroups"), 0);
    let in_vpc = sb.boto(
        "ec2",
        &format!(
            "describe_network_interfaces(Filters=[{{'Name': 'vpc-id', 'Values': ['{vpc}']}}, {{'Name': 'status', 'Values': ['available']}}])"
        ),
    );
    assert_eq!(
        in_vpc["NetworkInterfaces"].as_array().unwrap().len(),
        0,
        "{in_vpc}"
    );
    let vols = |id: &str| {
        sb.boto(
            "ec2",
            &format!("describe_volumes(Filters=[{{'Name': 'volume-id', 'Values': ['{id}']}}])"),
        )["Volumes"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(
        vols(&volume),
        1,
        "the CSI volume is kept without --delete-volumes"
    );
    let (code, out, err) = run(sb.env(
        ecoboot(&dir.path().join("state"))
            .arg("-c")
            .arg(&config)
            .args(["down", "--yes", "--delete-volumes"]),
    ));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(vols(&volume), 0, "deleted with --delete-volumes");
    let inv = sb.inventory("fresh");
    assert!(sb.live_instances("fresh").is_empty());
    for key in [
        "vpcs",
        "subnets",
        "internet_gateways",
        "route_tables",
        "security_groups",
        "key_pairs",
        "roles",
        "instance_profiles",
    ] {
        assert_eq!(inv[key], 0, "{key} left after down: {inv}");
    }
    assert_eq!(
        inv["addresses"],
        serde_json::json!([]),
        "the Elastic IP is released"
    );
    let (code, out, _) = down(&sb, dir.path(), &config);
    assert_eq!(code, 0);
    assert!(out.contains("nothing to do"), "{out}");
}

#[test]
fn plan_on_the_shipped_topology_changes_nothing() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "planned");
    let (code, out, err) = run(sb.env(
        ecoboot(&dir.path().join("state"))
            .arg("-c")
            .arg(&config)
            .arg("plan"),
    ));
    // The configured node addresses answer nothing here: the plan says what it could not see
    // and exits 5 instead of passing off an incomplete plan as complete.
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("the plan is incomplete") && err.contains("node k8s-master"),
        "{err}"
    );
    for id in ["network", "iam", "instances", "prepare-nodes", "root-app"] {
        assert!(out.contains(&format!("[{id}]")), "plan lacks {id}");
    }
    assert!(
        out.contains(
            "[instances] k8s-monitoring: would launch t3.large (60 GiB gp3, encrypted) in public-b"
        ),
        "{out}"
    );
    assert!(
        out.contains("[network] vpc: would create VPC 10.0.0.0/16"),
        "{out}"
    );
    let stats = sb.stats();
    let mutating: Vec<&String> = stats
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| {
            !k.starts_with("Describe")
                && !k.starts_with("Get")
                && !k.starts_with("List")
                && !k.is_empty()
        })
        .collect();
    assert!(
        mutating.is_empty(),
        "plan made mutating calls: {mutating:?}"
    );
    assert!(!dir.path().join("state/planned/state.json").exists());
}

#[test]
fn kill_9_during_instances_then_rerun_never_duplicates() {
    let sb = AwsSandbox::start();
    // AWS-like: tokens are idempotent and new instances are invisible to Describe for a while,
    // so only the journaled ClientToken prevents duplicates after a crash.
    sb.faults(r#"{"idempotent_tokens": true, "describe_lag": 3, "delay": {"RunInstances": 0.15}}"#);
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "crashy");
    let (code, _, err) = up(&sb, dir.path(), &config, &["up", "--to", "iam"]);
    assert_eq!(code, 0, "{err}");
    let mut table = Vec::new();
    let launches = |sb: &AwsSandbox| sb.stats()["RunInstances"].as_u64().unwrap_or(0);
    // Each round is killed right after the proxy received its k-th launch (a readiness signal,
    // not a sleep): that call is still in flight, so its instance exists but its answer is lost.
    for (round, after) in [1u64, 3, 2, 4].into_iter().enumerate() {
        let before = launches(&sb);
        let mut child = sb
            .env(
                ecoboot(&dir.path().join("state"))
                    .arg("-c")
                    .arg(&config)
                    .args(["up", "--to", "instances", "--output", "json"]),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while launches(&sb) < before + after
            && child.try_wait().unwrap().is_none()
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        let killed = child.try_wait().unwrap().is_none();
        let _ = child.kill();
        let _ = child.wait();
        let live = sb.live_instances("crashy");
        table.push(format!(
            "round {round}: kill -9 after launch {after} of this run (killed: {killed}) -> {} instances",
            live.len()
        ));
        assert!(
            by_node(&live).values().all(|n| *n == 1),
            "duplicate after kill: {:?}",
            by_node(&live)
        );
    }
    let (code, _, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let live = sb.live_instances("crashy");
    println!("{}", table.join("\n"));
    assert_eq!(live.len(), 14, "{:?}", by_node(&live));
    assert!(by_node(&live).values().all(|n| *n == 1));
    assert!(
        sb.stats()["replayed:RunInstances"].as_u64().unwrap_or(0) > 0,
        "a crash landed mid-launch at least once"
    );
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/crashy/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["stages"]["instances"]["status"], "done");
}

#[test]
fn instance_terminated_out_of_band_is_replaced_alone() {
    let sb = AwsSandbox::start();
    sb.faults(r#"{"idempotent_tokens": true}"#);
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "oob");
    assert_eq!(
        up(&sb, dir.path(), &config, &["up", "--to", "instances"]).0,
        0
    );
    let victim = sb
        .live_instances("oob")
        .into_iter()
        .find(|i| i["node"] == "k8s-redis")
        .unwrap();
    let id = victim["id"].as_str().unwrap();
    // Host keys pinned for every node (the nodes' loopback addresses, 127.0.1.N:1).
    let pub_key = std::fs::read_to_string(dir.path().join("id.pub")).unwrap();
    let known_hosts = dir.path().join("state/oob/known_hosts");
    let pinned: String = (1..=14)
        .map(|n| format!("[127.0.1.{n}]:1 {}", pub_key.trim()))
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&known_hosts, format!("{pinned}\n")).unwrap();
    let text = std::fs::read_to_string(&config).unwrap();
    let redis_at = text
        .split("- name: k8s-redis")
        .nth(1)
        .and_then(|rest| rest.split("address: \"").nth(1))
        .and_then(|a| a.split(':').next())
        .unwrap()
        .to_string();
    let body = format!("Action=TerminateInstances&Version=2016-11-15&InstanceId.1={id}");
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-X", "POST", "-H", "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/ap-northeast-2/ec2/aws4_request", "-d", &body])
        .arg(&sb.endpoint)
        .status()
        .unwrap();
    assert!(status.success());
    let (code, ev, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let launches = ev
        .iter()
        .filter(|e| {
            e["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("launched "))
        })
        .count();
    assert_eq!(launches, 1);
    let live = sb.live_instances("oob");
    assert_eq!(live.len(), 14);
    let redis = live.iter().find(|i| i["node"] == "k8s-redis").unwrap();
    assert_ne!(redis["id"], id, "a new instance, not the terminated one");
    // ecoboot replaced k8s-redis's instance, so it forgot exactly that node's old host key.
    let known = std::fs::read_to_string(&known_hosts).unwrap();
    assert_eq!(known.lines().count(), 13, "{known}");
    assert!(!known.contains(&format!("[{redis_at}]:1 ")), "{known}");
    assert!(
        ev.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("its old host key is forgotten"))),
        "the replacement is reported"
    );

    // Terminated out of band a second time, and the journal (with its launch generations) is
    // lost: the rerun learns the spent tokens from AWS and launches a third instance.
    let second = redis["id"].as_str().unwrap().to_string();
    let body = format!("Action=TerminateInstances&Version=2016-11-15&InstanceId.1={second}");
    let status = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-X", "POST", "-H", "Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/ap-northeast-2/ec2/aws4_request", "-d", &body])
        .arg(&sb.endpoint)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (code, _, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let live = sb.live_instances("oob");
    assert_eq!(live.len(), 14);
    let third = live.iter().find(|i| i["node"] == "k8s-redis").unwrap();
    assert!(
        third["id"] != id && third["id"] != second.as_str(),
        "{third}"
    );
}

#[test]
fn throttling_iam_propagation_and_dependency_violations_do_not_fail_runs() {
    let sb = AwsSandbox::start();
    sb.faults(r#"{"throttle_every": 6, "profile_delay": 3}"#);
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "bumpy");
    let (code, _, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let stats = sb.stats();
    let throttled: u64 = stats
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("fault:"))
        .map(|(_, v)| v.as_u64().unwrap())
        .sum();
    assert!(throttled >= 5, "faults were injected: {stats}");
    assert!(
        stats["fault:RunInstances"].as_u64().unwrap_or(0) > 0,
        "IAM propagation errors were injected: {stats}"
    );
    assert_eq!(sb.live_instances("bumpy").len(), 14);

    sb.faults(r#"{"dependency": {"DeleteSecurityGroup": 2, "DeleteVpc": 1}}"#);
    let (code, out, err) = down(&sb, dir.path(), &config);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("still in use; retrying"), "{out}");
    assert_eq!(sb.inventory("bumpy")["vpcs"], 0);
}

#[test]
fn named_aws_errors_get_their_own_diagnostics() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "errs");
    let cases = [
        (
            r#"{"fail": {"DescribeVpcs": ["UnauthorizedOperation", -1]}}"#,
            "not allowed to call DescribeVpcs",
        ),
        (
            r#"{"fail": {"DescribeVpcs": ["ExpiredToken", -1]}}"#,
            "credentials have expired",
        ),
        (
            r#"{"fail": {"CreateRole": ["EntityAlreadyExists", -1]}}"#,
            "does not adopt",
        ),
        (
            r#"{"fail": {"ImportKeyPair": ["InvalidKeyPair.Duplicate", -1]}}"#,
            "never overwrites key pairs",
        ),
        (
            r#"{"fail": {"RunInstances": ["VcpuLimitExceeded", -1]}}"#,
            "L-1216C47A",
        ),
    ];
    for (faults, advice) in cases {
        sb.faults(faults);
        let (code, out, err) = run(sb.env(
            ecoboot(&dir.path().join("state"))
                .arg("-c")
                .arg(&config)
                .args(["up", "--to", "instances"]),
        ));
        assert_eq!(code, 1, "{faults}: {out}{err}");
        assert!(
            err.contains(advice),
            "{faults}: expected `{advice}` in:\n{err}"
        );
    }
    sb.faults("{}");
    assert_eq!(
        up(&sb, dir.path(), &config, &["up", "--to", "instances"]).0,
        0,
        "recovers once the cause is gone"
    );
}

#[test]
fn foreign_key_pair_drift_and_lost_state() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "drifty");
    assert_eq!(
        up(&sb, dir.path(), &config, &["up", "--to", "instances"]).0,
        0
    );

    // Lost state directory: up rebuilds it from tags and changes nothing.
    std::fs::remove_dir_all(dir.path().join("state")).unwrap();
    let (code, ev, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(aws_calls(&ev).0, 0, "no mutating calls after losing state");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/drifty/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        state["outputs"]["instances"]["nodes"]
            .as_object()
            .unwrap()
            .len(),
        14
    );
    assert_eq!(
        state["outputs"]["instances"]["ami_id"], "ami-0a1b2c3d4e5f60006",
        "AMI recovered from the instances"
    );

    // Drift: a changed instance type is reported, not acted on.
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "instanceType: t3.large",
        "instanceType: t3.xlarge",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let (code, out, err) = run(sb.env(
        ecoboot(&dir.path().join("state"))
            .arg("-c")
            .arg(&config)
            .arg("plan"),
    ));
    assert_eq!(code, 5, "nodes at port 1 cannot be looked at: {err}");
    assert!(
        out.contains("drift: k8s-postgresql runs t3.large, config says t3.xlarge (not replaced)"),
        "{out}"
    );

    // A key pair of the same name with another key is never overwritten.
    let other = tempfile::tempdir().unwrap();
    let other_config = config_named(other.path(), "drifty");
    let (code, out, err) = run(sb.env(
        ecoboot(&other.path().join("state"))
            .arg("-c")
            .arg(&other_config)
            .args(["up", "--to", "instances"]),
    ));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("exists with a different public key"), "{err}");
}

#[test]
fn ctrl_c_stops_cleanly_journals_interrupted_and_exits_130() {
    let sb = AwsSandbox::start();
    sb.faults(r#"{"delay": {"CreateVpc": 3}}"#);
    let _ = sb.inventory("warmup"); // moto sets the region up on its first EC2 call (~2 s)
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "intr");
    let child = sb
        .env(
            ecoboot(&dir.path().join("state"))
                .arg("-c")
                .arg(&config)
                .args(["up", "--to", "instances"]),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(err.contains("interrupted"), "{err}");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("state/intr/state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(state["stages"]["network"]["status"], "interrupted");
    sb.faults("{}");
    // The killed run's CreateVpc is still in flight at the proxy and lands after the next run's
    // probe, as a request of a dying client can on AWS. The next runs must converge anyway.
    let first = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    std::thread::sleep(Duration::from_secs(2));
    let (code, ev, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(
        code, 0,
        "converges after the interrupt: {err} (first rerun: {})",
        first.2
    );
    let orphan_deleted = ev.iter().any(|e| {
        e["message"]
            .as_str()
            .is_some_and(|m| m.contains("left by an interrupted run"))
    });
    println!(
        "first rerun exit {}, orphan VPC cleaned up: {orphan_deleted}",
        first.0
    );
    assert_eq!(sb.inventory("intr")["vpcs"], 1, "exactly one VPC");
    assert_eq!(sb.live_instances("intr").len(), 14);
}

#[test]
fn imdsv2_required_rules_narrowed_and_policies_detached_in_place() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "tight");
    let text = std::fs::read_to_string(&config).unwrap();
    // One node runs AWS-facing controllers: its pods need a second metadata hop.
    assert!(
        text.contains("awsControllers: true"),
        "the shipped master runs the controllers"
    );
    let (code, _, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let live = sb.live_instances("tight");
    assert_eq!(live.len(), 14);
    for i in &live {
        assert_eq!(i["http_tokens"], "required", "{i}");
        let (hop, role) = if i["node"] == "k8s-master" {
            (2, "controller")
        } else {
            (1, "node")
        };
        assert_eq!(i["hop_limit"], hop, "{i}");
        assert!(
            i["profile"]
                .as_str()
                .unwrap()
                .ends_with(&format!("instance-profile/ecoboot-tight-{role}")),
            "{i}"
        );
    }
    let docs = PolicyDocs { sb: &sb };
    assert_eq!(docs.inline("controller"), ["aws-load-balancer-controller"]);
    assert!(
        docs.inline("node").is_empty(),
        "controllerOnly stays off the node role"
    );
    assert!(docs.managed().is_empty(), "5,196 characters fit inline");
    let inv = sb.inventory("tight");
    let ingress: Vec<String> = serde_json::from_value(inv["ingress"].clone()).unwrap();
    assert!(
        ingress.contains(&"tcp 22-22 203.0.113.7/32".to_string()),
        "{ingress:?}"
    );
    assert!(
        !ingress.iter().any(|r| r.starts_with("tcp 6443")),
        "no API port with the tunnel: {ingress:?}"
    );

    // Narrow SSH, drop a policy, add a ~6,000-character document for every node (inline on
    // the node role; on the controller role, beside the LB policy, past the 10,240 limit:
    // a managed policy), and let an instance lose IMDSv2 behind ecoboot's back.
    let big = dir.path().join("big.json");
    std::fs::write(&big, big_policy(300)).unwrap();
    let narrowed = text
        .replace(
            "    policyDocuments:                    # inline while a role's total fits 10,240 chars, else managed\n",
            &format!("    policyDocuments:\n      - name: big\n        path: {}\n", big.display()),
        )
        .replace(
            "allowedSshCidrs: [203.0.113.7/32]",
            "allowedSshCidrs: [198.51.100.0/24]",
        )
        .replace(
            "      - arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly\n",
            "",
        );
    std::fs::write(&config, &narrowed).unwrap();
    assert_eq!(
        common::aws::http(
            &sb.endpoint,
            "POST",
            "/_proxy/imds_optional?cluster=tight",
            ""
        )
        .0,
        200
    );
    let (code, out, _) = run(sb.env(
        ecoboot(&dir.path().join("state"))
            .arg("-c")
            .arg(&config)
            .args(["plan", "--to", "instances"]),
    ));
    assert_eq!(code, 0);
    assert!(
        out.contains("revoke ingress tcp 22-22 from 203.0.113.7/32"),
        "{out}"
    );
    assert!(
        out.contains("detach arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryReadOnly"),
        "{out}"
    );
    assert!(out.contains("require IMDSv2 with hop limit 1"), "{out}");
    assert!(out.contains("put inline policy big"), "{out}");
    assert!(out.contains("attach managed policy big"), "{out}");
    assert!(out.contains("create managed policy"), "{out}");
    let (code, _, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let inv = sb.inventory("tight");
    let ingress: Vec<String> = serde_json::from_value(inv["ingress"].clone()).unwrap();
    assert!(
        ingress.contains(&"tcp 22-22 198.51.100.0/24".to_string()),
        "{ingress:?}"
    );
    assert!(
        !ingress.iter().any(|r| r.contains("203.0.113.7")),
        "old rule revoked: {ingress:?}"
    );
    let policies: Vec<String> = serde_json::from_value(inv["role_policies"].clone()).unwrap();
    assert_eq!(
        policies,
        ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore"],
        "the node role has exactly what the config lists"
    );
    assert!(
        sb.live_instances("tight")
            .iter()
            .all(|i| i["http_tokens"] == "required")
    );
    assert_eq!(
        sb.live_instances("tight").len(),
        14,
        "fixed in place, nothing relaunched"
    );
    let (code, ev, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(aws_calls(&ev).0, 0, "converged: the rerun changes nothing");
    assert_eq!(docs.inline("node"), ["big"]);
    assert_eq!(docs.inline("controller"), ["aws-load-balancer-controller"]);
    assert_eq!(docs.managed(), ["ecoboot-tight-big"]);
    assert_eq!(docs.attached("controller").len(), 1);
    // The document changes: a new default version of the managed policy, and the inline copy.
    std::fs::write(&big, big_policy(299)).unwrap();
    let (code, ev, err) = up(&sb, dir.path(), &config, &["up", "--to", "iam"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(aws_calls(&ev).0, 2, "PutRolePolicy + CreatePolicyVersion");
    // A node that stops running controllers moves to the node profile in place.
    let moved = narrowed.replace(
        "      awsControllers: true      # runs the load balancer / EBS CSI controllers: controller role, IMDS hop 2\n",
        "",
    );
    std::fs::write(&config, &moved).unwrap();
    let (code, _, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let master = sb
        .live_instances("tight")
        .into_iter()
        .find(|i| i["node"] == "k8s-master")
        .unwrap();
    assert!(
        master["profile"]
            .as_str()
            .unwrap()
            .ends_with("instance-profile/ecoboot-tight-node"),
        "{master}"
    );
    assert_eq!(master["hop_limit"], 1, "{master}");
    assert_eq!(sb.live_instances("tight").len(), 14);
    assert!(
        docs.managed().is_empty(),
        "no role needs the managed copy any more"
    );
    // Back to the controller role: the managed policy is made again, and `down` deletes it.
    std::fs::write(&config, &narrowed).unwrap();
    let (code, _, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(docs.managed(), ["ecoboot-tight-big"]);
    let (code, _, err) = down(&sb, dir.path(), &config);
    assert_eq!(code, 0, "{err}");
    let inv = sb.inventory("tight");
    assert_eq!(inv["controller_roles"], 0, "{inv}");
    assert_eq!(inv["controller_instance_profiles"], 0, "{inv}");
    assert!(
        docs.managed().is_empty(),
        "down deletes the managed policies"
    );
}

/// An IAM policy document of `n` made-up actions (~19 characters each).
fn big_policy(n: usize) -> String {
    let actions: Vec<String> = (0..n).map(|i| format!("\"ec2:DescribeX{i:04}\"")).collect();
    format!(
        "{{\n  \"Version\": \"2012-10-17\",\n  \"Statement\": [{{\"Effect\": \"Allow\", \"Resource\": \"*\", \"Action\": [\n    {}\n  ]}}]\n}}\n",
        actions.join(",\n    ")
    )
}

/// The policy documents of cluster `tight`'s roles, read from moto.
struct PolicyDocs<'a> {
    sb: &'a AwsSandbox,
}

impl PolicyDocs<'_> {
    fn names(&self, call: &str, list: &str, key: &str) -> Vec<String> {
        let out = self.sb.boto("iam", call);
        let items = out[list].as_array().unwrap();
        items
            .iter()
            .map(|i| match key {
                "" => i.as_str().unwrap().to_string(),
                key => i[key].as_str().unwrap().to_string(),
            })
            .collect()
    }

    fn inline(&self, role: &str) -> Vec<String> {
        let call = format!("list_role_policies(RoleName='ecoboot-tight-{role}')");
        self.names(&call, "PolicyNames", "")
    }

    fn attached(&self, role: &str) -> Vec<String> {
        let call = format!(
            "list_attached_role_policies(RoleName='ecoboot-tight-{role}', PathPrefix='/ecoboot/tight/')"
        );
        self.names(&call, "AttachedPolicies", "PolicyArn")
    }

    fn managed(&self) -> Vec<String> {
        let call = "list_policies(Scope='Local', PathPrefix='/ecoboot/tight/')";
        self.names(call, "Policies", "PolicyName")
    }
}

/// The vCPU quota preflight (#16): the shipped topology needs 30 vCPUs (DescribeInstanceTypes);
/// a shortfall is exit 1 with the numbers and the quota code before anything exists, what
/// already runs in the account counts, and a quota that cannot be read is a warning.
#[test]
fn vcpu_quota_shortfall_stops_before_anything_is_created() {
    let sb = AwsSandbox::start();
    let dir = tempfile::tempdir().unwrap();
    let config = config_named(dir.path(), "quota");
    // The reference account's default quota: 16 vCPUs.
    sb.faults(r#"{"quota": 16}"#);
    for args in [&["plan"][..], &["up"][..]] {
        let (code, _, err) = up(&sb, dir.path(), &config, args);
        assert_eq!(code, 1, "{args:?}: {err}");
        assert!(
            err.contains("needs 30 vCPUs")
                && err.contains("16 of its 16")
                && err.contains("L-1216C47A")
                && err.contains("--desired-value 30"),
            "{err}"
        );
    }
    let inv = sb.inventory("quota");
    assert_eq!(inv["vpcs"], 0, "nothing was created: {inv}");
    assert!(sb.stats()["GetServiceQuota"].as_u64().unwrap() >= 2);
    // Someone else's 9 t3.xlarge (36 vCPUs) run in the account: 64 - 36 = 28 < 30.
    let images = sb.boto("ec2", "describe_images(Owners=['099720109477'])");
    let image = images["Images"][0]["ImageId"].as_str().unwrap().to_string();
    let other = sb.boto(
        "ec2",
        &format!(
            "run_instances(ImageId='{image}', InstanceType='t3.xlarge', MinCount=9, MaxCount=9)"
        ),
    );
    sb.faults(r#"{"quota": 64}"#);
    let (code, _, err) = up(&sb, dir.path(), &config, &["up"]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("28 of its 64") || err.contains("(36 running)"),
        "{err}"
    );
    let ids: Vec<String> = other["Instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| format!("'{}'", i["InstanceId"].as_str().unwrap()))
        .collect();
    sb.boto(
        "ec2",
        &format!("terminate_instances(InstanceIds=[{}])", ids.join(", ")),
    );
    // A principal that may not read quotas: a warning, and the run goes on.
    sb.faults(r#"{"quota": "denied"}"#);
    let (code, ev, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(code, 0, "{err}");
    let warning = ev
        .iter()
        .find(|e| e["event"] == "warning" && e["subject"] == "vCPU quota L-1216C47A")
        .unwrap_or_else(|| panic!("no quota warning: {ev:?}"));
    assert!(
        warning["message"]
            .as_str()
            .unwrap()
            .contains("need 30 vCPUs"),
        "{warning}"
    );
    // Once the nodes exist the quota is not even asked: nothing is left to launch.
    sb.faults(r#"{"quota": 1}"#);
    let before = sb.stats()["GetServiceQuota"].as_u64().unwrap();
    let (code, _, err) = up(&sb, dir.path(), &config, &["up", "--to", "instances"]);
    assert_eq!(
        code, 0,
        "all 14 run: nothing to launch, nothing to check: {err}"
    );
    assert_eq!(sb.stats()["GetServiceQuota"].as_u64().unwrap(), before);
    // Instances carry their role; a config that renames the control plane is refused before
    // anything is launched (a second control plane would be a second cluster).
    let roles = sb.boto("ec2", "describe_instances(Filters=[{'Name': 'tag:ecoboot.io/role', 'Values': ['control-plane']}, {'Name': 'tag:ecoboot.io/cluster', 'Values': ['quota']}])");
    assert_eq!(
        roles["Reservations"].as_array().unwrap().len(),
        1,
        "{roles}"
    );
    let renamed = dir.path().join("renamed.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.contains("- name: k8s-master\n"));
    std::fs::write(
        &renamed,
        text.replace("- name: k8s-master\n", "- name: k8s-master-2\n"),
    )
    .unwrap();
    let calls = sb.stats()["RunInstances"].as_u64().unwrap_or(0);
    for args in [&["plan"][..], &["up"][..]] {
        let (code, _, err) = up(&sb, dir.path(), &renamed, args);
        assert_eq!(code, 2, "{err}");
        assert!(
            err.contains("control plane is `k8s-master`") && err.contains("names `k8s-master-2`"),
            "{err}"
        );
    }
    assert_eq!(
        sb.stats()["RunInstances"].as_u64().unwrap_or(0),
        calls,
        "nothing launched"
    );
    let (code, _, err) = down(&sb, dir.path(), &config);
    assert_eq!(code, 0, "{err}");
}
