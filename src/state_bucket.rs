//! `ecoboot state init`: the state bucket, created once per account (versioning on, every
//! public access blocked, SSE-S3 by default, a TLS-only bucket policy, tagged with the cluster).

use crate::error::Result;
use crate::remote_state::Remote;

impl Remote {
    /// Creates the state bucket (idempotent): versioning on, every public access blocked,
    /// SSE-S3 by default, tagged with the cluster.
    pub async fn create_bucket(&self, config: &crate::config::Config) -> Result<()> {
        use aws_sdk_s3::types::{
            BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
            PublicAccessBlockConfiguration, ServerSideEncryption, ServerSideEncryptionByDefault,
            ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
            VersioningConfiguration,
        };
        let b = &self.location.bucket;
        let target = format!("s3://{b}");
        let mut req = self.s3.create_bucket().bucket(b);
        let region = self.s3.config().region().map(|r| r.to_string());
        if let Some(r) = region.filter(|r| r != "us-east-1") {
            req = req.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(r.as_str()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_bucket_already_owned_by_you()) => {}
            Err(e) => return Err(crate::aws::aws_error("CreateBucket", &target, e)),
        }
        let versioning = VersioningConfiguration::builder()
            .status(BucketVersioningStatus::Enabled)
            .build();
        (self
            .s3
            .put_bucket_versioning()
            .bucket(b)
            .set_expected_bucket_owner(self.owner.clone()))
        .versioning_configuration(versioning)
        .send()
        .await
        .map_err(|e| crate::aws::aws_error("PutBucketVersioning", &target, e))?;
        let block = PublicAccessBlockConfiguration::builder()
            .block_public_acls(true)
            .ignore_public_acls(true)
            .block_public_policy(true)
            .restrict_public_buckets(true)
            .build();
        (self
            .s3
            .put_public_access_block()
            .bucket(b)
            .set_expected_bucket_owner(self.owner.clone()))
        .public_access_block_configuration(block)
        .send()
        .await
        .map_err(|e| crate::aws::aws_error("PutPublicAccessBlock", &target, e))?;
        let sse = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::Aes256)
            .build()
            .expect("algorithm set");
        let rules = ServerSideEncryptionConfiguration::builder()
            .rules(
                ServerSideEncryptionRule::builder()
                    .apply_server_side_encryption_by_default(sse)
                    .build(),
            )
            .build()
            .expect("rules set");
        (self
            .s3
            .put_bucket_encryption()
            .bucket(b)
            .set_expected_bucket_owner(self.owner.clone()))
        .server_side_encryption_configuration(rules)
        .send()
        .await
        .map_err(|e| crate::aws::aws_error("PutBucketEncryption", &target, e))?;
        if plain_http_endpoint() {
            // A TLS-only policy would lock this very client out (a local S3-compatible
            // endpoint such as MinIO or an emulator).
            tracing::warn!(
                "the S3 endpoint is plain HTTP: the TLS-only bucket policy was not set on {target}"
            );
        } else {
            (self
                .s3
                .put_bucket_policy()
                .bucket(b)
                .set_expected_bucket_owner(self.owner.clone()))
            .policy(tls_only_policy(b))
            .send()
            .await
            .map_err(|e| crate::aws::aws_error("PutBucketPolicy", &target, e))?;
        }
        let tags = crate::aws::Tags::for_cluster(config).pairs(b, &[]);
        let tagging = Tagging::builder()
            .set_tag_set(Some(
                tags.into_iter()
                    .filter_map(|(k, v)| Tag::builder().key(k).value(v).build().ok())
                    .collect(),
            ))
            .build()
            .expect("tags set");
        (self
            .s3
            .put_bucket_tagging()
            .bucket(b)
            .set_expected_bucket_owner(self.owner.clone()))
        .tagging(tagging)
        .send()
        .await
        .map_err(|e| crate::aws::aws_error("PutBucketTagging", &target, e))?;
        Ok(())
    }
}

/// A bucket policy denying every request that does not use TLS.
pub fn tls_only_policy(bucket: &str) -> String {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "EcobootTlsOnly",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })
    .to_string()
}

/// Whether S3 is reached over plain HTTP (`AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`).
fn plain_http_endpoint() -> bool {
    ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        .is_some_and(|v| v.starts_with("http://"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_policy_denies_every_request_without_tls() {
        let p: serde_json::Value = serde_json::from_str(&super::tls_only_policy("b")).unwrap();
        let s = &p["Statement"][0];
        assert_eq!(s["Effect"], "Deny");
        assert_eq!(s["Principal"], "*");
        assert_eq!(s["Condition"]["Bool"]["aws:SecureTransport"], "false");
        assert_eq!(s["Resource"][1], "arn:aws:s3:::b/*");
    }
}
