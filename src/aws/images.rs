//! Golden images in EC2: found by the cluster's tag and their content hash (owner `self`),
//! created from a stopped builder instance with their tags in the same call, deregistered
//! together with their snapshots.

use aws_sdk_ec2::types::{Image, ImageState, ResourceType};

use super::tags::ROLE;
use super::{Aws, aws_error, code_of, ec2_filter, ec2_tag_value};
use crate::error::Result;

/// Tag key: the content hash of what went into the image (`crate::golden::Recipe::hash`).
pub const HASH: &str = "ecoboot.io/golden-hash";
/// Tag key: the base AMI the image was built from.
pub const BASE: &str = "ecoboot.io/base-ami";
/// Tag key: the Kubernetes version whose packages and images it holds.
pub const KUBERNETES: &str = "ecoboot.io/kubernetes";
/// `ecoboot.io/role` of golden images and of their builder instance.
pub const ROLE_GOLDEN: &str = "golden-image";
/// `ecoboot.io/role` of the builder instance.
pub const ROLE_BUILDER: &str = "image-builder";

/// One golden image of the cluster, as EC2 describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoldenImage {
    /// `ami-…`.
    pub id: String,
    /// The AMI name (`ecoboot-<cluster>-<hash prefix>`).
    pub name: String,
    /// Its content hash tag (64 hex; empty when the tag is not a hash).
    pub hash: String,
    /// `pending`, `available`, `failed`, …
    pub state: String,
    /// Creation time as EC2 reports it (ISO 8601).
    pub created: String,
    /// The base AMI tag.
    pub base_ami: String,
    /// The Kubernetes version tag.
    pub kubernetes: String,
    /// The EBS snapshots behind it (deleted with it).
    pub snapshots: Vec<String>,
}

impl GoldenImage {
    /// Whether instances can be launched from it.
    pub fn available(&self) -> bool {
        self.state == ImageState::Available.as_str()
    }

    fn from(i: &Image) -> GoldenImage {
        let tag = |k| ec2_tag_value(i.tags(), k).unwrap_or_default().to_string();
        let hash = tag(HASH);
        let hash = match hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            true => hash,
            false => String::new(),
        };
        GoldenImage {
            id: i.image_id().unwrap_or_default().to_string(),
            name: i.name().unwrap_or_default().to_string(),
            hash,
            state: i
                .state()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
            created: i.creation_date().unwrap_or_default().to_string(),
            base_ami: tag(BASE),
            kubernetes: tag(KUBERNETES),
            snapshots: (i.block_device_mappings().iter())
                .filter_map(|m| m.ebs().and_then(|e| e.snapshot_id()))
                .map(str::to_string)
                .collect(),
        }
    }
}

/// The AMI name of the golden image with content hash `hash`.
pub fn image_name(cluster: &str, hash: &str) -> String {
    format!("ecoboot-{cluster}-{}", &hash[..hash.len().min(16)])
}

/// The cluster's golden images (owned by this account, tagged with the cluster and a hash),
/// newest first.
pub async fn golden_images(aws: &Aws) -> Result<Vec<GoldenImage>> {
    let out = aws
        .ec2
        .describe_images()
        .owners("self")
        .filters(aws.tags.filter())
        .filters(ec2_filter("tag-key", HASH))
        .send()
        .await
        .map_err(|e| aws_error("DescribeImages", "golden images", e))?;
    let mut images: Vec<GoldenImage> = out.images().iter().map(GoldenImage::from).collect();
    images.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    Ok(images)
}

/// The cluster's golden image with content hash `hash`, if any (available or still pending).
pub async fn find(aws: &Aws, hash: &str) -> Result<Option<GoldenImage>> {
    let all = golden_images(aws).await?;
    Ok(all
        .into_iter()
        .filter(|i| i.hash == hash && i.state != ImageState::Failed.as_str())
        .min_by_key(|i| !i.available()))
}

/// Creates the golden image of the stopped builder `instance`, tagged (image and snapshot) in
/// the same call. A second call for the same hash finds the first image by its name (AMI names
/// are unique per account and region), so a retry after a crash creates nothing twice.
pub async fn create(
    aws: &Aws,
    instance: &str,
    hash: &str,
    base_ami: &str,
    kubernetes: &str,
) -> Result<String> {
    let name = image_name(&aws.tags.cluster, hash);
    let extra = [
        (HASH, hash),
        (BASE, base_ami),
        (KUBERNETES, kubernetes),
        (ROLE, ROLE_GOLDEN),
    ];
    let spec = |kind: ResourceType| aws.tags.plain_spec(kind, &name, &extra);
    aws.pace().await;
    let made = aws
        .ec2
        .create_image()
        .instance_id(instance)
        .name(&name)
        .description(format!(
            "ecoboot golden image of cluster {}: {base_ami} prepared for Kubernetes {kubernetes}, images pre-pulled",
            aws.tags.cluster
        ))
        .tag_specifications(spec(ResourceType::Image))
        .tag_specifications(spec(ResourceType::Snapshot))
        .send()
        .await;
    match made {
        Ok(out) => Ok(out.image_id().unwrap_or_default().to_string()),
        Err(e) if code_of(&e).as_deref() == Some("InvalidAMIName.Duplicate") => {
            match find(aws, hash).await? {
                Some(found) => Ok(found.id),
                None => Err(aws_error("CreateImage", &name, e)),
            }
        }
        Err(e) => Err(aws_error("CreateImage", &name, e)),
    }
}

/// Deregisters `image` and deletes its snapshots (EC2 keeps them otherwise, and bills them).
pub async fn deregister(aws: &Aws, image: &GoldenImage) -> Result<()> {
    aws.pace().await;
    match aws.ec2.deregister_image().image_id(&image.id).send().await {
        Ok(_) => {}
        Err(e) if code_of(&e).as_deref() == Some("InvalidAMIID.Unavailable") => {}
        Err(e) => return Err(aws_error("DeregisterImage", &image.id, e)),
    }
    for snap in &image.snapshots {
        aws.pace().await;
        match aws.ec2.delete_snapshot().snapshot_id(snap).send().await {
            Ok(_) => {}
            Err(e) if code_of(&e).as_deref() == Some("InvalidSnapshot.NotFound") => {}
            Err(e) => return Err(aws_error("DeleteSnapshot", snap, e)),
        }
    }
    Ok(())
}
