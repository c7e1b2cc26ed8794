//! `ecoboot restore --from s3://bucket/key`: a backup onto a fresh control-plane instance (the
//! old one lost). The backup is downloaded (0600), streamed to the node into a root-only
//! directory and its snapshot checked with `etcdutl snapshot status` before anything else is
//! touched; then the cluster's CAs and service-account keys are put back (the node's own
//! serving certificates are left for kubeadm to issue for its new address), the etcd data
//! directory is restored from the snapshot, and the stages init-master to label-nodes run:
//! `kubeadm init` on the restored data, the workers registered again, every node Ready.
//!
//! What survives: every API object (Deployments, Secrets, ConfigMaps, Applications, Nodes...)
//! as of the snapshot. What does not: pods' local data (emptyDir, hostPath), anything written
//! after the snapshot, and the old control plane's serving certificates.

use std::time::Duration;

use super::{ID, SnapshotStatus, store};
use crate::engine::{Ctx, RunMode, Runner};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::remote_state::Location;
use crate::stages::shared::control_plane::RESTORED;

/// Where the backup is unpacked on the node (root only, removed after).
const NODE_DIR: &str = "/var/lib/ecoboot/restore";

/// Leaf certificates kubeadm issues again for the new node (they name the old node's address).
const REISSUED: &str = "apiserver apiserver-kubelet-client apiserver-etcd-client front-proxy-client etcd/server etcd/peer etcd/healthcheck-client";

/// A restore, planned.
#[derive(Debug, Clone)]
pub struct RestorePlan {
    /// The bucket.
    pub location: Location,
    /// The object key.
    pub key: String,
    /// The control-plane node.
    pub node: String,
}

/// Parses `s3://bucket/key` of one backup.
pub fn parse_from(url: &str) -> Result<(Location, String)> {
    let bad = || {
        Error::Usage(format!(
            "`{url}` is not s3://bucket/key of a backup (.tar.gz)"
        ))
    };
    let rest = url.strip_prefix("s3://").ok_or_else(bad)?;
    let (bucket, key) = rest.split_once('/').ok_or_else(bad)?;
    if !key.ends_with(".tar.gz") || crate::config::syntax::bucket_name(bucket).is_err() {
        return Err(bad());
    }
    let location = Location {
        bucket: bucket.into(),
        prefix: String::new(),
        region: None,
    };
    Ok((location, key.into()))
}

/// Checks that the control plane is fresh (no running control plane to overwrite) and returns
/// the plan's actions.
pub async fn plan(cx: &Ctx, from: &str) -> Result<(RestorePlan, Vec<Action>)> {
    let (mut location, key) = parse_from(from)?;
    location.region = Some(super::region(cx));
    let (target, conn) = cx.control_plane(ID).await?;
    let live = conn
        .run(
            "is a control plane running",
            "[ -e /etc/kubernetes/admin.conf ] || [ -e /etc/kubernetes/manifests/kube-apiserver.yaml ]",
            Duration::from_secs(60),
            true,
        )
        .await?;
    if live.ok() {
        return Err(Error::Usage(format!(
            "{} runs a control plane: a restore goes onto a fresh control-plane instance (the old one lost); nothing was changed",
            target.node
        )));
    }
    let node = target.node.clone();
    let actions = vec![
        Action::new(
            format!("s3://{}/{key}", location.bucket),
            "download and check the snapshot",
        ),
        Action::new(
            &node,
            "restore the cluster CAs, service-account keys and the etcd data directory",
        ),
        Action::new(
            &node,
            "kubeadm init on the restored data, then join-workers, install-cni and label-nodes",
        ),
    ];
    Ok((
        RestorePlan {
            location,
            key,
            node,
        },
        actions,
    ))
}

/// Runs the restore of `plan`.
// Long by design: download, check, place, initialise, in that order, each refusing early.
pub async fn restore(cx: &Ctx, plan: &RestorePlan) -> Result<()> {
    let (target, conn) = cx.control_plane(ID).await?;
    let say = |m: String| cx.events.progress(ID, Some(&plan.node), m);
    let dir = cx.state_dir().join("backups");
    crate::fsutil::ensure_private_dir(&dir)?;
    let local = dir.join(format!("restore-{}.tar.gz.part", std::process::id()));
    let _ = std::fs::remove_file(&local);
    let fetched = store::download(&plan.location, &plan.key, &local).await;
    let refuse = |why: String| Error::StageFailed {
        stage: ID.into(),
        message: format!(
            "{}: refused the backup s3://{}/{}: {why}",
            plan.node, plan.location.bucket, plan.key
        ),
        help:
            "nothing on the node was changed; pick another backup (`aws s3 ls` the backups prefix)"
                .into(),
    };
    let result = async {
        let in_metadata = fetched?;
        let got = crate::fsutil::sha256_file(&local)?;
        // The journal's digest (written by the run that took the backup, in the state
        // prefix) outranks the object's own metadata, which whoever rewrote the object set.
        match (super::digests::recorded(cx, &plan.key), in_metadata) {
            (Some(recorded), _) if recorded != got => {
                return Err(refuse(format!(
                    "its sha256 is {got}, but `ecoboot backup` recorded {recorded} when it took it: the object was replaced"
                )));
            }
            (Some(_), _) => say("sha256 matches the digest recorded when the backup was taken".into()),
            (None, Some(meta)) if meta != got => {
                return Err(refuse(format!("its sha256 is {got}, its metadata says {meta}")));
            }
            (None, Some(_)) => say("sha256 matches the object's metadata (no digest recorded by this cluster's runs: a scheduled backup, or a journal from elsewhere)".into()),
            (None, None) => say("no sha256 recorded anywhere: only the archive and snapshot checks stand".into()),
        }
        let checked = super::archive::check(&local).map_err(|why| refuse(format!("its archive is not a backup ecoboot would write: {why}")))?;
        say(format!(
            "archive checked: {} members, a {}-byte snapshot",
            checked.members, checked.snapshot_bytes
        ));
        // Checked above; extracted without the archive's owners and modes all the same, and
        // nothing but files and directories may come out of it.
        let receive = format!(
            "set -e\numask 077\nrm -rf {NODE_DIR} && mkdir -p -m 700 {NODE_DIR}\ntar --no-same-owner --no-same-permissions -xzf - -C {NODE_DIR}\n[ -z \"$(find {NODE_DIR} ! -type f ! -type d)\" ]\n[ -s {NODE_DIR}/etcd.db ] && [ -e {NODE_DIR}/etc/kubernetes/pki/ca.crt ]"
        );
        let out = conn
            .upload("receive backup", &receive, &local, Duration::from_secs(1800))
            .await?;
        if !out.ok() {
            return Err(refuse(format!("it is not a complete backup archive: {}", out.tail(2))));
        }
        let check = format!("{}\netcdutl snapshot status {NODE_DIR}/etcd.db -w json", super::ETCD_TOOLS);
        let out = conn.run("check snapshot", &check, Duration::from_secs(300), true).await?;
        let status = SnapshotStatus::parse(&out.stdout).filter(|_| out.ok());
        let Some(status) = status else {
            return Err(refuse(format!("the etcd snapshot is damaged: {}", out.tail(2))));
        };
        say(format!("snapshot ok: revision {}, {} keys", status.revision, status.total_key));
        let facts = crate::stages::shared::control_plane::facts(cx, &target);
        // The peer address goes into a root shell: it must be an IP address, and is quoted.
        let private_ip: std::net::IpAddr = facts.private_ip.parse().map_err(|_| {
            refuse(format!(
                "the control plane's private address `{}` is not an IP address",
                crate::config::syntax::clip(&facts.private_ip)
            ))
        })?;
        let peer = match private_ip {
            std::net::IpAddr::V4(ip) => format!("https://{ip}:2380"),
            std::net::IpAddr::V6(ip) => format!("https://[{ip}]:2380"),
        };
        let initial = crate::ssh::script::quote(&format!("{}={peer}", target.node));
        let peer = crate::ssh::script::quote(&peer);
        let reissued: Vec<String> = REISSUED
            .split_whitespace()
            .map(|c| format!("/etc/kubernetes/pki/{c}.crt /etc/kubernetes/pki/{c}.key"))
            .collect();
        let place = format!(
            "set -e\numask 077\n{tools}\nrm -rf /etc/kubernetes/pki /var/lib/etcd /etc/kubernetes/ecoboot/init-started /etc/kubernetes/ecoboot/init-done /etc/kubernetes/ecoboot/init-failed\nmkdir -p /etc/kubernetes/ecoboot\ncp -a {NODE_DIR}/etc/kubernetes/pki /etc/kubernetes/pki\nif [ -s {NODE_DIR}/{enc} ]; then install -m 600 {NODE_DIR}/{enc} /{enc}; fi\nrm -f {reissued}\netcdutl snapshot restore {NODE_DIR}/etcd.db --data-dir /var/lib/etcd --name {name} --initial-cluster {initial} --initial-advertise-peer-urls {peer}\ntouch {RESTORED}\nrm -rf {NODE_DIR}",
            tools = super::ETCD_TOOLS,
            reissued = reissued.join(" "),
            name = crate::ssh::script::quote(&target.node),
            enc = super::ENCRYPTION_MEMBER,
        );
        let out = conn.run("restore pki and etcd", &place, Duration::from_secs(600), true).await?;
        if !out.ok() {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("{}: restoring pki and etcd failed: {}", plan.node, out.tail(5)),
                help: "rerun the same `ecoboot restore`: it starts over from the backup".into(),
            });
        }
        say("CAs, service-account keys and etcd data in place".into());
        Ok(())
    }
    .await;
    let _ = std::fs::remove_file(&local);
    if result.is_err() {
        let _ = conn
            .run(
                "clean up",
                &format!("rm -rf {NODE_DIR}"),
                Duration::from_secs(60),
                true,
            )
            .await;
    }
    result?;
    // The admin.conf of the lost control plane is of no use: init-master fetches the new one.
    let _ = std::fs::remove_file(crate::nodes::admin_conf(&cx.state_dir()));
    let stages = crate::stages::all();
    let selected = crate::engine::select(
        &stages,
        Some(crate::stages::init_master::ID),
        Some(crate::stages::label_nodes::ID),
    )?;
    Runner::new(selected, cx).run(RunMode::Apply).await
}

#[cfg(test)]
mod tests {
    use super::parse_from;

    #[test]
    fn from_names_one_backup_object() {
        let (loc, key) =
            parse_from("s3://my-backups/ecoboot/prod/backups/20261205T010203Z-rev9.tar.gz")
                .unwrap();
        assert_eq!(loc.bucket, "my-backups");
        assert_eq!(key, "ecoboot/prod/backups/20261205T010203Z-rev9.tar.gz");
        for bad in [
            "s3://b",
            "https://x/y.tar.gz",
            "s3://Bad_Bucket/k.tar.gz",
            "s3://bucket/k.zip",
        ] {
            assert!(parse_from(bad).is_err(), "{bad}");
        }
    }
}
