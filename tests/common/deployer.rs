//! The deployer policy as moto enforces it: `ecoboot iam-policy`'s parts, and IAM users that
//! hold them (tests/deployer.rs, tests/ha.rs).

use std::path::Path;

use super::aws::AwsSandbox;
use super::{ecoboot, run};

/// The policy as moto can evaluate it: moto checks EC2, ELBv2, Service Quotas and most IAM
/// requests against the resource `*` (it computes no ARN for them) and S3 under two other
/// action names, so those statements are widened to `*` and the S3 names added. Actions,
/// explicit resources for S3 and everything else stay as emitted.
pub fn moto_view(part: &serde_json::Value) -> serde_json::Value {
    let mut part = part.clone();
    for s in part["Statement"].as_array_mut().unwrap() {
        let actions: Vec<String> = match &s["Action"] {
            serde_json::Value::String(one) => vec![one.clone()],
            many => serde_json::from_value(many.clone()).unwrap(),
        };
        if !actions.iter().all(|a| a.starts_with("s3:")) {
            s["Resource"] = serde_json::json!("*");
        }
        let mut actions = actions;
        if actions.iter().any(|a| a == "s3:PutBucketPublicAccessBlock") {
            actions.push("s3:PutPublicAccessBlock".into());
        }
        s["Action"] = serde_json::json!(actions);
    }
    part
}

/// Creates IAM user `name` holding `parts` as managed policies; returns its access key.
pub fn user(sb: &AwsSandbox, name: &str, parts: &[serde_json::Value]) -> (String, String) {
    let docs = serde_json::to_string(&parts.iter().map(moto_view).collect::<Vec<_>>()).unwrap();
    let out = sb.boto_script(
        "iam",
        &format!(
            "c.create_user(UserName='{name}')\n\
             for i, d in enumerate(json.loads({docs:?})):\n    \
                 arn = c.create_policy(PolicyName='{name}-%d' % i, PolicyDocument=json.dumps(d))['Policy']['Arn']\n    \
                 c.attach_user_policy(UserName='{name}', PolicyArn=arn)\n\
             k = c.create_access_key(UserName='{name}')['AccessKey']\n\
             print(json.dumps([k['AccessKeyId'], k['SecretAccessKey']]))"
        ),
    );
    serde_json::from_str(&out).unwrap()
}

/// Every part of `ecoboot iam-policy` for `config` (printed one by one with `--part N`).
pub fn parts(sb: &AwsSandbox, config: &Path, dir: &Path) -> Vec<serde_json::Value> {
    let mut all = Vec::new();
    for n in 1.. {
        let (code, out, err) = run(sb.env(ecoboot(&dir.join("s")).arg("-c").arg(config)).args([
            "iam-policy",
            "--part",
            &n.to_string(),
        ]));
        if code != 0 {
            assert!(err.contains("part(s)"), "{err}");
            break;
        }
        all.push(serde_json::from_str(&out).unwrap());
    }
    assert!(!all.is_empty());
    all
}
