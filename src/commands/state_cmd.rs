//! Where the state lives (`spec.state`, `--state`), opening it for a command, and the commands
//! about it: `unlock --force`, `state init|show|pull|push`, `forget-host`.

use std::path::PathBuf;

use crate::cli::Global;
use crate::config::{Config, StateBackend};
use crate::error::{Error, Result};
use crate::remote_state::{self, Location, Remote};
use crate::state::{Backend, Store};
use crate::state_sync::{self, Copied};

use super::confirm::{Consent, ask, consent};

/// The local state directory and the backend for `config` (`--state` wins over `spec.state`);
/// a bucket without a region of its own is in the cluster's region (`AWS_REGION` first).
pub(super) fn backend(g: &Global, config: &Config) -> (PathBuf, Backend) {
    let (dir, backend) = configured(g, config);
    let backend = match backend {
        Backend::S3(mut loc) => {
            let cluster_region = std::env::var("AWS_REGION")
                .ok()
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| config.cluster.spec.aws.region.value.clone());
            loc.region.get_or_insert(cluster_region);
            Backend::S3(loc)
        }
        local => local,
    };
    (dir, backend)
}

fn configured(g: &Global, config: &Config) -> (PathBuf, Backend) {
    if let Some(s) = &g.state {
        return match Location::parse(s) {
            Some(loc) => (g.state_dir.clone(), Backend::S3(loc)),
            None => (PathBuf::from(s), Backend::Local),
        };
    }
    let st = &config.cluster.spec.state;
    match (st.backend, &st.bucket) {
        (StateBackend::S3, Some(bucket)) => (
            g.state_dir.clone(),
            Backend::S3(Location {
                bucket: bucket.value.clone(),
                prefix: st
                    .key
                    .as_ref()
                    .map_or(String::new(), |k| k.value.trim_matches('/').to_string()),
                region: st.region.as_ref().map(|r| r.value.clone()),
            }),
        ),
        _ => (g.state_dir.clone(), Backend::Local),
    }
}

/// Opens the cluster's state for a command (locked when `writable`).
pub(super) async fn open(g: &Global, config: &Config, writable: bool) -> Result<Store> {
    let (dir, backend) = backend(g, config);
    Store::open(
        &dir,
        config.name(),
        &backend,
        writable,
        g.steal_expired_lock,
    )
    .await
}

fn remote_location(g: &Global, config: &Config) -> Result<Location> {
    match backend(g, config).1 {
        Backend::S3(loc) => Ok(loc),
        Backend::Local => Err(Error::Usage(
            "this cluster keeps its state locally (set spec.state.backend: s3 or --state s3://bucket/prefix)".into(),
        )),
    }
}

/// `ecoboot unlock --force ID`.
pub(super) async fn unlock(g: &Global, id: &str) -> Result<()> {
    let config = super::load_config(g, crate::config::FileChecks::Skip)?;
    let remote = Remote::connect(remote_location(g, &config)?, config.name()).await;
    match remote_state::force_unlock(&remote, id).await? {
        true => crate::say!("removed lock {id} of cluster {}", config.name()),
        false => crate::say!(
            "no lock at {}: nothing to remove",
            remote.url(remote_state::LOCK)
        ),
    }
    Ok(())
}

/// `ecoboot state init`: the bucket, once.
pub(super) async fn init(g: &Global) -> Result<()> {
    let config = super::load_config(g, crate::config::FileChecks::Skip)?;
    let loc = remote_location(g, &config)?;
    let remote = Remote::connect(loc.clone(), config.name()).await;
    remote.create_bucket(&config).await?;
    crate::say!("{loc}: versioning on, public access blocked, default encryption, tagged");
    Ok(())
}

/// `ecoboot state show`.
pub(super) async fn show(g: &Global) -> Result<()> {
    let config = super::load_config(g, crate::config::FileChecks::Skip)?;
    let (dir, backend) = backend(g, &config);
    match backend {
        Backend::Local => crate::say!(
            "local: {}",
            Store::cluster_dir(&dir, config.name()).display()
        ),
        Backend::S3(loc) => {
            let remote = Remote::connect(loc, config.name()).await;
            crate::say!("s3: {}", remote.url(""));
            match remote.get(remote_state::LOCK).await? {
                Some((text, _)) => match serde_json::from_slice::<remote_state::LockInfo>(&text) {
                    Ok(l) => crate::say!(
                        "lock: {} held by {} since {}{}",
                        l.id,
                        l.holder,
                        l.started,
                        if l.expired() { " (lease expired)" } else { "" }
                    ),
                    Err(_) => crate::say!("lock: unreadable ({} bytes)", text.len()),
                },
                None => crate::say!("lock: free"),
            }
            match remote.get("state.json").await? {
                Some((text, etag)) => crate::say!("journal: {} bytes, ETag {etag}", text.len()),
                None => crate::say!("journal: none yet"),
            }
        }
    }
    Ok(())
}

fn print_copied(what: &str, from: &str, to: &str, done: &[(&str, Copied)]) {
    for (name, c) in done {
        match c {
            Copied::Copied(n) => crate::say!("{what} {name}: {from} -> {to} ({n} bytes)"),
            Copied::Same => crate::say!("{what} {name}: already the same"),
            Copied::Missing => crate::say!("{what} {name}: none at {from}"),
        }
    }
}

/// `ecoboot state pull`: remote → local working copy.
pub(super) async fn pull(g: &Global) -> Result<()> {
    let config = super::load_config(g, crate::config::FileChecks::Skip)?;
    let loc = remote_location(g, &config)?;
    let dir = Store::cluster_dir(&g.state_dir, config.name());
    let _local = Store::lock(&g.state_dir, config.name())?;
    let remote = Remote::connect(loc, config.name()).await;
    let done = state_sync::pull(&remote, &dir).await?;
    print_copied("pulled", &remote.url(""), &dir.display().to_string(), &done);
    Ok(())
}

/// `ecoboot state push`: local working copy → remote, after consent.
pub(super) async fn push(g: &Global, yes: bool) -> Result<()> {
    let config = super::load_config(g, crate::config::FileChecks::Skip)?;
    let loc = remote_location(g, &config)?;
    let dir = Store::cluster_dir(&g.state_dir, config.name());
    let remote = Remote::connect(loc, config.name()).await;
    let question = format!(
        "replace the journal and known_hosts at {} with those in {}?",
        remote.url(""),
        dir.display()
    );
    if consent("state push", yes)? == Consent::Ask && !ask(&question) {
        return Err(Error::Usage("nothing pushed (not confirmed)".into()));
    }
    let _local = Store::lock(&g.state_dir, config.name())?;
    let done = state_sync::push(&remote, &dir, g.steal_expired_lock).await?;
    print_copied("pushed", &dir.display().to_string(), &remote.url(""), &done);
    Ok(())
}

/// `ecoboot forget-host NODE`: removes the node's entries from the cluster's known_hosts (local
/// and, with S3 state, remote), under the state lock.
pub(super) async fn forget_host(g: &Global, node: &str) -> Result<()> {
    let config = super::load_config(g, crate::config::FileChecks::Skip)?;
    if !config.nodes().any(|n| n.name.as_str() == node) {
        return Err(Error::Usage(format!(
            "no node `{node}` in {}",
            config.path.display()
        )));
    }
    let store = open(g, &config, true).await?;
    let state = store.load(config.name())?;
    let out: Option<crate::nodes::InstancesOut> = state.output(crate::nodes::INSTANCES);
    let address = crate::nodes::ssh_address(&config, node, out.as_ref());
    let (host, port) = crate::nodes::host_port(&address, config.cluster.spec.ssh.port);
    let entry = crate::ssh::hostkeys::entry_name(&host, port);
    let removed =
        crate::ssh::hostkeys::forget(&crate::nodes::known_hosts(store.dir()), &host, port)?;
    store.save(&state)?;
    store.close().await?;
    match removed {
        true => crate::say!("forgot the host key of {node} ({entry})"),
        false => crate::say!("no host key of {node} ({entry}) was pinned"),
    }
    Ok(())
}
