//! The generated `ecoboot-backup` document: what the control plane's scheduled backup may do
//! in S3, and nothing else.

use super::documents::Doc;
use crate::stages::shared::backup_target::target;

/// Name of the generated document that lets the control plane's scheduled backup write its
/// prefix (reserved: a configured document may not use it).
pub const BACKUP_POLICY: &str = "ecoboot-backup";

/// With `spec.backup.schedule`: put and tag new objects under the backups prefix, nothing
/// else (pruning runs with the operator's credentials in `ecoboot backup`). Only on the
/// control plane's own role, which no other node wears. On the role the control plane wears (the controller role when it
/// runs the AWS controllers, else the node role every node wears).
pub fn backup_policy(config: &crate::config::Config) -> Option<Doc> {
    let (bucket, prefix) = target(config)?;
    // Add only: no list, no delete, no overwrite of what exists is needed to write a new
    // backup, and a pod that reached these credentials can then destroy nothing.
    let json = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "EcobootBackupAdd",
                "Effect": "Allow",
                "Action": ["s3:PutObject", "s3:PutObjectTagging"],
                "Resource": format!("arn:aws:s3:::{bucket}/{prefix}*"),
            },
        ],
    });
    Some(Doc {
        name: BACKUP_POLICY.into(),
        json: json.to_string(),
        controller_only: false,
        control_plane_only: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backup_policy_allows_only_the_backups_prefix() {
        let mut config = crate::config::tests_support::config();
        assert!(backup_policy(&config).is_none(), "no schedule, no policy");
        let b = &mut config.cluster.spec.backup;
        b.to = Some(crate::config::Located {
            value: "s3://my-backups/ecoboot".into(),
            span: None,
        });
        b.schedule = Some(crate::config::Located {
            value: "daily".into(),
            span: None,
        });
        let doc = backup_policy(&config).unwrap();
        let json: serde_json::Value = serde_json::from_str(&doc.json).unwrap();
        let objects = &json["Statement"][0];
        let prefix = format!(
            "arn:aws:s3:::my-backups/ecoboot/{}/backups/*",
            config.name()
        );
        assert_eq!(objects["Resource"], prefix);
        assert!(
            !objects["Action"].to_string().contains("GetObject"),
            "write-only"
        );
        assert!(
            !objects["Action"].to_string().contains("Delete"),
            "add-only: {objects}"
        );
        assert_eq!(json["Statement"].as_array().unwrap().len(), 1, "no listing");
        assert!(doc.control_plane_only && !doc.controller_only);
    }
}
