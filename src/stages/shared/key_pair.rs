//! The cluster's EC2 key pair: the configured public key imported once, tagged with its
//! digest, and never overwritten. `instances` and `ecoboot image build` (its builder) use it.

use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::ResourceType;
use sha2::{Digest, Sha256};

use crate::aws::{Aws, aws_error, code_of, ec2_tag_value};
use crate::config::Config;
use crate::engine::Ctx;
use crate::error::{Error, Result};

/// Tag key on the key pair: the sha256 of the public key material.
pub const KEY_TAG: &str = "ecoboot.io/public-key-sha256";

/// Whether the key pair exists (with the configured key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyState {
    /// Not imported yet.
    Missing,
    /// Imported, with the configured public key.
    Ours,
}

/// The configured public key (type and base64) and its sha256 (hex).
pub fn public_key(config: &Config) -> Result<(String, String)> {
    let path = config.resolve_path(&config.cluster.spec.aws.key_pair.public_key_path);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io("read", &path, e))?;
    let material: String = text
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let digest = hex::encode(Sha256::digest(material.as_bytes()));
    Ok((material, digest))
}

/// Looks the key pair up; a key pair of that name with another public key is an error.
pub async fn state(aws: &Aws, config: &Config) -> Result<KeyState> {
    let key_name = &config.cluster.spec.aws.key_pair.name.value;
    let key = match aws
        .ec2
        .describe_key_pairs()
        .key_names(key_name)
        .include_public_key(true)
        .send()
        .await
    {
        Ok(out) => {
            let pair = out.key_pairs().first();
            let (_, digest) = public_key(config)?;
            let material = pair
                .and_then(|p| p.public_key())
                .map(|k| k.split_whitespace().take(2).collect::<Vec<_>>().join(" "));
            let tagged = pair.and_then(|p| ec2_tag_value(p.tags(), KEY_TAG));
            let same = match (material, tagged) {
                (Some(m), _) => hex::encode(Sha256::digest(m.as_bytes())) == digest,
                (None, Some(t)) => t == digest,
                (None, None) => false,
            };
            if !same {
                return Err(Error::Aws {
                    operation: "DescribeKeyPairs".into(),
                    target: format!("key-pair/{key_name}"),
                    code: "InvalidKeyPair.Duplicate".into(),
                    message: format!("key pair `{key_name}` exists with a different public key than {}", config.cluster.spec.aws.key_pair.public_key_path.value),
                    help: "ecoboot never overwrites a key pair: point spec.aws.keyPair.publicKeyPath at the matching key, or pick another keyPair.name".into(),
                });
            }
            KeyState::Ours
        }
        Err(e) if code_of(&e).as_deref() == Some("InvalidKeyPair.NotFound") => KeyState::Missing,
        Err(e) => return Err(aws_error("DescribeKeyPairs", key_name, e)),
    };
    Ok(key)
}

/// Imports the configured public key as the cluster's key pair (tagged with its digest).
pub async fn import(cx: &Ctx, aws: &Aws, stage: &str) -> Result<()> {
    let key = cx.config.cluster.spec.aws.key_pair.name.value.clone();
    let (material, digest) = public_key(&cx.config)?;
    aws.pace().await;
    aws.ec2
        .import_key_pair()
        .key_name(&key)
        .public_key_material(Blob::new(material.into_bytes()))
        .tag_specifications(
            aws.tags
                .spec(ResourceType::KeyPair, &key, &[(KEY_TAG, &digest)]),
        )
        .send()
        .await
        .map_err(|e| aws_error("ImportKeyPair", &format!("key-pair/{key}"), e))?;
    cx.events
        .progress(stage, Some(&format!("key-pair/{key}")), "imported");
    Ok(())
}
