//! `ecoboot image list` and `image prune`: the cluster's golden images next to the hash this
//! config wants and the images its instances run; prune deregisters (with their snapshots) the
//! ones neither current nor in use. `down --images` deletes them all.

use std::collections::BTreeSet;

use crate::aws::images::{self, GoldenImage};
use crate::aws::{Aws, ec2_tag_value};
use crate::engine::Ctx;
use crate::error::Result;
use crate::event::Action;
use crate::stages::shared::ami;

use super::ID;

/// One golden image and how the cluster relates to it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    /// `ami-…`.
    pub id: String,
    /// AMI name.
    pub name: String,
    /// Content hash.
    pub hash: String,
    /// EC2 state.
    pub state: String,
    /// Creation time.
    pub created: String,
    /// Kubernetes version it holds.
    pub kubernetes: String,
    /// Its hash is the one this config wants (`up` launches from it).
    pub current: bool,
    /// Instances of the cluster run from it (node names).
    pub used_by: Vec<String>,
}

/// The cluster's golden images, newest first, with the hash this config wants.
pub async fn rows(cx: &Ctx) -> Result<(Vec<Row>, String)> {
    let aws = cx.aws().await;
    let base = ami::base_ami(aws, &cx.config, ID).await?;
    let want = ami::recipe(cx, &base, ID).await?.hash();
    let users = users(aws).await?;
    let out = (images::golden_images(aws).await?.into_iter())
        .map(|i| Row {
            current: i.hash == want,
            used_by: (users.iter())
                .filter(|(image, _)| *image == i.id)
                .map(|(_, node)| node.clone())
                .collect(),
            id: i.id,
            name: i.name,
            hash: i.hash,
            state: i.state,
            created: i.created,
            kubernetes: i.kubernetes,
        })
        .collect();
    Ok((out, want))
}

/// (image id, node or instance) of every live instance of the cluster.
async fn users(aws: &Aws) -> Result<BTreeSet<(String, String)>> {
    let live = ["pending", "running", "stopping", "stopped"];
    Ok((aws.instances(&live).await?.iter())
        .map(|i| {
            let who = ec2_tag_value(i.tags(), crate::aws::tags::NODE)
                .or_else(|| i.instance_id())
                .unwrap_or_default();
            (
                i.image_id().unwrap_or_default().to_string(),
                who.to_string(),
            )
        })
        .collect())
}

/// Prints the rows (a table, or one JSON document with `--output json`).
pub fn print(rows: &[Row], want: &str, json: bool) {
    if json {
        crate::say!(
            "{}",
            serde_json::json!({ "wanted_hash": want, "images": rows })
        );
        return;
    }
    crate::say!("wanted hash {} (this config)", &want[..12]);
    crate::say!(
        "{:<22} {:<10} {:<13} {:<9} {:<20} {:<8} USED BY",
        "IMAGE",
        "STATE",
        "HASH",
        "K8S",
        "CREATED",
        "CURRENT"
    );
    for r in rows {
        crate::say!(
            "{:<22} {:<10} {:<13} {:<9} {:<20} {:<8} {}",
            r.id,
            r.state,
            &r.hash[..r.hash.len().min(12)],
            r.kubernetes,
            &r.created[..r.created.len().min(19)],
            if r.current { "yes" } else { "no" },
            r.used_by.join(",")
        );
    }
    if rows.is_empty() {
        crate::say!("(no golden images: `ecoboot image build` makes one)");
    }
}

/// What prune removes: images neither current nor used by an instance.
pub fn prunable(rows: &[Row]) -> Vec<&Row> {
    rows.iter()
        .filter(|r| !r.current && r.used_by.is_empty())
        .collect()
}

/// The prune plan as actions.
pub fn actions(rows: &[&Row]) -> Vec<Action> {
    (rows.iter())
        .map(|r| {
            Action::new(
                &r.id,
                format!(
                    "deregister {} ({}) and delete its snapshots",
                    r.name, r.state
                ),
            )
        })
        .collect()
}

/// Deregisters the images `ids` (as listed now) with their snapshots.
pub async fn deregister(cx: &Ctx, ids: &[String]) -> Result<usize> {
    let aws = cx.aws().await;
    let all: Vec<GoldenImage> = images::golden_images(aws).await?;
    let mut n = 0;
    for image in all.iter().filter(|i| ids.contains(&i.id)) {
        images::deregister(aws, image).await?;
        cx.events.progress(
            ID,
            Some(&image.id),
            format!(
                "deregistered {} and {} snapshot(s)",
                image.name,
                image.snapshots.len()
            ),
        );
        n += 1;
    }
    Ok(n)
}
