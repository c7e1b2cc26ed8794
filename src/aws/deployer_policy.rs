//! The deployer's IAM policy (`ecoboot iam-policy`), derived from [`super::permissions::CALLS`]
//! and scoped to one cluster: EC2 changes by the cluster tag, IAM by the cluster's names and
//! policy path, `iam:PassRole` only to EC2, S3 only the state and backup prefixes.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::permissions::{CALLS, Scope};
use super::tags::CLUSTER;

/// What the policy is scoped to.
#[derive(Debug, Clone, Default)]
pub struct Input {
    /// Cluster name.
    pub cluster: String,
    /// AWS account id (`*` when not known).
    pub account: String,
    /// The cluster's region.
    pub region: String,
    /// S3 `(bucket, prefix)` places ecoboot writes: the state and the backups. The prefix
    /// is the configured one (the cluster's objects live under `<prefix>/<cluster>/`).
    pub buckets: Vec<(String, String)>,
    /// Managed policy ARNs the config attaches to its roles.
    pub attach: BTreeSet<String>,
}

/// The `Sid`s and conditions each scope turns into (one statement per entry).
fn statements(scope: Scope, i: &Input, actions: Vec<&str>) -> Vec<Value> {
    let tag = |kind: &str, key: &str, value: &str| json!({ "StringEquals": { format!("aws:{kind}/{key}"): value } });
    let ours = tag("ResourceTag", CLUSTER, &i.cluster);
    let (account, region, cluster) = (&i.account, &i.region, &i.cluster);
    let ec2 = |kind: &str| format!("arn:aws:ec2:{region}:{account}:{kind}/*");
    let iam = |kind: &str| format!("arn:aws:iam::{account}:{kind}");
    let one = |sid: &str, resource: Value, condition: Option<Value>| {
        let mut s =
            json!({ "Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resource });
        if let Some(c) = condition {
            s["Condition"] = c;
        }
        s
    };
    match scope {
        Scope::Read => vec![one("Read", json!("*"), None)],
        Scope::TagOnCreate => {
            // Tags are written at creation, and on the SSH rule for the machine running
            // ecoboot (`allowedSshCidrs: self`), which AuthorizeSecurityGroupIngress tags.
            let created: Vec<&str> = (CALLS.iter())
                .filter(|c| matches!(c.scope, Scope::TagOnCreate | Scope::Launch | Scope::Image))
                .map(|c| c.operation)
                .chain(["AuthorizeSecurityGroupIngress"])
                .collect();
            vec![
                one(
                    "CreateTagged",
                    json!("*"),
                    Some(tag("RequestTag", CLUSTER, cluster)),
                ),
                json!({
                    "Sid": "TagOnCreate", "Effect": "Allow", "Action": ["ec2:CreateTags"],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {
                            "ec2:CreateAction": created,
                            format!("aws:RequestTag/{CLUSTER}"): cluster,
                        }
                    }
                }),
            ]
        }
        Scope::Tagged => vec![one("ChangeTagged", json!("*"), Some(ours))],
        Scope::Launch => vec![
            one(
                "LaunchTagged",
                json!([ec2("instance"), ec2("volume"), ec2("network-interface")]),
                Some(tag("RequestTag", CLUSTER, cluster)),
            ),
            one(
                "LaunchInto",
                json!([ec2("subnet"), ec2("security-group"), ec2("key-pair")]),
                Some(ours),
            ),
            one("LaunchImage", json!("arn:aws:ec2:*::image/*"), None),
        ],
        Scope::Image => vec![
            one("ImageOfOurInstance", json!(ec2("instance")), Some(ours)),
            one(
                "ImageTagged",
                json!([
                    format!("arn:aws:ec2:{region}::image/*"),
                    format!("arn:aws:ec2:{region}::snapshot/*")
                ]),
                Some(tag("RequestTag", CLUSTER, cluster)),
            ),
        ],
        Scope::ControllerTagged => vec![
            one("DeleteTagged", json!("*"), Some(ours)),
            one(
                "DeleteControllerMade",
                json!("*"),
                Some(tag("ResourceTag", "elbv2.k8s.aws/cluster", cluster)),
            ),
            one(
                "DeleteKubernetesMade",
                json!("*"),
                Some(json!({ "StringLike": {
                    format!("aws:ResourceTag/kubernetes.io/cluster/{cluster}"): "*" } })),
            ),
        ],
        Scope::CsiVolume => vec![
            one(
                "DeleteCsiVolume",
                json!(ec2("volume")),
                Some(json!({ "StringLike": {
                    format!("aws:ResourceTag/kubernetes.io/cluster/{cluster}"): "*" } })),
            ),
            one(
                "DeleteCsiVolumeLegacy",
                json!(ec2("volume")),
                Some(tag("ResourceTag", "KubernetesCluster", cluster)),
            ),
        ],
        Scope::Interface => vec![one(
            "DeleteDetachedInterface",
            json!(ec2("network-interface")),
            None,
        )],
        Scope::Role => vec![one(
            "ClusterRoles",
            json!(iam(&format!("role/ecoboot-{cluster}-*"))),
            None,
        )],
        Scope::AttachPolicy => {
            let mut allowed: Vec<String> = i.attach.iter().cloned().collect();
            allowed.push(iam(&format!("policy/ecoboot/{cluster}/*")));
            vec![one(
                "AttachKnownPolicies",
                json!(iam(&format!("role/ecoboot-{cluster}-*"))),
                Some(json!({ "ArnLike": { "iam:PolicyARN": allowed } })),
            )]
        }
        Scope::Profile => vec![one(
            "ClusterInstanceProfiles",
            json!(iam(&format!("instance-profile/ecoboot-{cluster}-*"))),
            None,
        )],
        Scope::ManagedPolicy => vec![one(
            "ClusterPolicies",
            json!(iam(&format!("policy/ecoboot/{cluster}/*"))),
            None,
        )],
        Scope::PassRole => vec![one(
            "PassClusterRolesToEc2",
            json!(iam(&format!("role/ecoboot-{cluster}-*"))),
            Some(json!({ "StringEquals": { "iam:PassedToService": "ec2.amazonaws.com" } })),
        )],
        Scope::Bucket => {
            let buckets: BTreeSet<String> = (i.buckets.iter())
                .map(|(b, _)| format!("arn:aws:s3:::{b}"))
                .collect();
            match buckets.is_empty() {
                true => vec![],
                false => vec![one("StateAndBackupBuckets", json!(buckets), None)],
            }
        }
        Scope::Objects => {
            let keys: BTreeSet<String> = (i.buckets.iter())
                .map(|(b, p)| match p.trim_matches('/') {
                    "" => format!("arn:aws:s3:::{b}/{cluster}/*"),
                    p => format!("arn:aws:s3:::{b}/{p}/{cluster}/*"),
                })
                .collect();
            match keys.is_empty() {
                true => vec![],
                false => vec![one("StateAndBackupObjects", json!(keys), None)],
            }
        }
        Scope::Free | Scope::Setup => vec![],
    }
}

/// The deployer policy for `input`.
pub fn document(input: &Input) -> Value {
    let mut scopes: Vec<Scope> = CALLS.iter().map(|c| c.scope).collect();
    scopes.sort();
    scopes.dedup();
    let mut out = Vec::new();
    for scope in scopes {
        let actions: BTreeSet<&str> = (CALLS.iter())
            .filter(|c| c.scope == scope)
            .flat_map(|c| c.actions.iter().copied())
            .collect();
        let prefix = |s: &Value| s["Sid"].as_str().unwrap_or_default().to_string();
        for mut s in statements(scope, input, actions.into_iter().collect()) {
            s["Sid"] = json!(format!("Ecoboot{}", prefix(&s)));
            out.push(s);
        }
    }
    json!({ "Version": "2012-10-17", "Statement": out })
}

/// Every action the policy allows somewhere, sorted.
pub fn actions(policy: &Value) -> BTreeSet<String> {
    let statements = policy["Statement"].as_array().cloned().unwrap_or_default();
    (statements.iter())
        .flat_map(|s| s["Action"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> Input {
        Input {
            cluster: "prod".into(),
            account: "123456789012".into(),
            region: "eu-west-1".into(),
            buckets: vec![("state-b".into(), "ecoboot".into())],
            attach: ["arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore".to_string()].into(),
        }
    }

    #[test]
    fn every_mutation_is_scoped_and_pass_role_goes_to_ec2_only() {
        let doc = document(&input());
        let text = doc.to_string();
        for s in doc["Statement"].as_array().unwrap() {
            let actions: Vec<&str> = s["Action"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let open = s["Resource"] == json!("*") && s.get("Condition").is_none();
            let reads = actions.iter().all(|a| {
                let verb = a.split(':').nth(1).unwrap();
                ["Describe", "Get", "List"]
                    .iter()
                    .any(|p| verb.starts_with(p))
            });
            assert!(!open || reads, "unscoped mutation in {s}");
            assert!(!actions.contains(&"iam:*") && !actions.iter().any(|a| a.ends_with(":*")));
        }
        assert!(text.contains("\"iam:PassedToService\":\"ec2.amazonaws.com\""));
        assert!(text.contains("arn:aws:iam::123456789012:role/ecoboot-prod-*"));
        assert!(text.contains("arn:aws:s3:::state-b/ecoboot/prod/*"));
        assert!(text.contains("AmazonSSMManagedInstanceCore"));
        assert!(
            !text.contains("CreateOpenIDConnectProvider"),
            "setup calls are not the deployer's"
        );
        assert!(actions(&doc).contains("ec2:RunInstances"));
    }

    #[test]
    fn no_bucket_no_s3() {
        let mut i = input();
        i.buckets.clear();
        assert!(!document(&i).to_string().contains("s3:"));
    }
}
