//! Which AMI instances launch from: the newest base image matching `spec.aws.ami`, or, with
//! `spec.aws.ami.golden: true`, the cluster's golden image whose content hash matches this
//! config (`crate::golden`); without a match the base image, with a warning saying how to get
//! one. `instances` and `ecoboot image build` share it, so both compute the same hash.

use crate::aws::{Aws, aws_error, ec2_filter, images};
use crate::config::Config;
use crate::engine::Ctx;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::golden::{Recipe, images_in};
use crate::playbook::Playbook;

use super::ids;

/// The AMI chosen for new instances.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    /// The image id.
    pub id: String,
    /// The golden image's content hash when it is one.
    pub golden: Option<String>,
}

/// The newest available image of `spec.aws.ami.owner` matching `nameFilter`.
pub async fn base_ami(aws: &Aws, config: &Config, stage: &str) -> Result<String> {
    let ami = &config.cluster.spec.aws.ami;
    let out = aws
        .ec2
        .describe_images()
        .owners(ami.owner.as_str())
        .filters(ec2_filter("name", &ami.name_filter))
        .filters(ec2_filter("state", "available"))
        .send()
        .await
        .map_err(|e| aws_error("DescribeImages", &ami.name_filter, e))?;
    out.images()
        .iter()
        .max_by_key(|i| i.creation_date().unwrap_or_default().to_string())
        .and_then(|i| i.image_id())
        .map(str::to_string)
        .ok_or_else(|| Error::StageFailed {
            stage: stage.into(),
            message: format!(
                "no image of owner {} matches `{}` in this region",
                ami.owner, ami.name_filter
            ),
            help: "check spec.aws.ami (owner and nameFilter) and the region".into(),
        })
}

/// Everything that goes into this config's golden image when built from `base`: the
/// `prepare-nodes` playbook and the images of the pinned Calico and ArgoCD manifests.
pub async fn recipe(cx: &Ctx, base: &str, stage: &str) -> Result<Recipe> {
    let book = Playbook::load(ids::PREPARE_NODES, cx.playbooks.as_deref())?;
    let spec = &cx.config.cluster.spec;
    let mut all = Vec::new();
    for (m, label) in [
        (
            &spec.kubernetes.calico,
            format!("Calico {}", spec.kubernetes.calico.version),
        ),
        (
            &spec.argocd.install,
            format!("ArgoCD {}", spec.argocd.install.version),
        ),
    ] {
        let text = cx.manifest(m, &label, stage).await?;
        let docs = crate::api::manifest::documents(&text, &label)?;
        all.extend(images_in(&docs).map_err(|e| Error::StageFailed {
            stage: stage.into(),
            message: format!("{label}: {e}"),
            help: "the pinned manifest names an image ecoboot will not put on a command line; check its url and sha256".into(),
        })?);
    }
    all.sort();
    all.dedup();
    Ok(Recipe::new(&cx.config, base, &book, all))
}

/// The AMI new instances launch from. `pinned` is the journal's AMI (kept for replacements
/// when golden images are off).
pub async fn for_launch(
    cx: &Ctx,
    aws: &Aws,
    pinned: Option<String>,
    stage: &str,
) -> Result<Choice> {
    if !cx.config.cluster.spec.aws.ami.golden {
        let id = match pinned {
            Some(id) => id,
            None => base_ami(aws, &cx.config, stage).await?,
        };
        return Ok(Choice { id, golden: None });
    }
    let base = base_ami(aws, &cx.config, stage).await?;
    let hash = recipe(cx, &base, stage).await?.hash();
    match images::find(aws, &hash).await? {
        Some(img) if img.available() => {
            cx.events.progress(
                stage,
                None,
                format!(
                    "golden image {} ({}, hash {})",
                    img.id,
                    img.name,
                    &hash[..12]
                ),
            );
            Ok(Choice {
                id: img.id,
                golden: Some(hash),
            })
        }
        found => {
            let state = found.map_or("none".to_string(), |i| format!("{} is {}", i.id, i.state));
            cx.events.emit(Event::Warning {
                subject: "golden image".into(),
                message: format!(
                    "no available golden image matches this config (hash {}, {state}); launching from the base image {base}, so prepare-nodes installs everything",
                    &hash[..12]
                ),
                help: "run `ecoboot image build` once (and after changing versions or the base image); `ecoboot image list` shows what exists".into(),
            });
            Ok(Choice {
                id: pinned.unwrap_or(base),
                golden: None,
            })
        }
    }
}
