//! What runs on the builder after `prepare-nodes`: the container images pre-pulled into
//! containerd (kubeadm's for the installed version, then Calico's and ArgoCD's from the
//! recipe), each step guarded like a playbook step, and the seal before imaging.

use crate::golden::Recipe;
use crate::playbook::{Playbook, Step};
use crate::ssh::script::quote;

/// containerd's CRI socket, where kubeadm and crictl pull into.
const CRI: &str = "unix:///run/containerd/containerd.sock";

/// Readies a prepared builder for imaging: apt's cache emptied, cloud-init's per-instance
/// state and the machine id cleared. Each instance launched from the image then gets its own
/// machine id and SSH host keys on first boot, as cloud-init does for any new instance.
pub const SEAL: &str = "apt-get clean && cloud-init clean --logs --machine-id && sync";

/// The pre-pull steps of `recipe` (an image already in containerd is not pulled again).
pub fn playbook(recipe: &Recipe) -> Playbook {
    let crictl = format!("crictl --runtime-endpoint {CRI}");
    let version = "--kubernetes-version \"$(kubeadm version -o short)\"";
    let listed: Vec<String> = recipe.images.iter().map(|i| quote(i.as_str())).collect();
    let listed = listed.join(" ");
    let present = |list: &str| {
        format!("for i in {list}; do {crictl} inspecti \"$i\" >/dev/null 2>&1 || exit 1; done")
    };
    let step = |name: String, unless: String, run: String| Step {
        name,
        run,
        creates: None,
        unless: Some(unless),
        elevate: true,
        timeout: 900,
        retries: 2,
        delay: 10,
    };
    Playbook {
        name: "image-prepull".into(),
        hosts: "all".into(),
        steps: vec![
            step(
                "pull kubeadm's control-plane images".into(),
                format!(
                    "l=$(kubeadm config images list {version}) && [ -n \"$l\" ] && {}",
                    present("$l")
                ),
                format!("kubeadm config images pull {version} --cri-socket {CRI}"),
            ),
            step(
                format!("pull {} Calico and ArgoCD images", recipe.images.len()),
                present(&listed),
                format!("set -e\nfor i in {listed}; do {crictl} pull \"$i\" >/dev/null; done"),
            ),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::golden::ImageRef;

    #[test]
    fn every_image_is_quoted_and_guarded() {
        let recipe = Recipe {
            base_ami: "ami-1".into(),
            kubernetes: "1.36".into(),
            playbook: String::new(),
            images: vec![ImageRef::parse("quay.io/calico/node:v3.32.1").unwrap()],
        };
        let book = playbook(&recipe);
        assert_eq!(book.steps.len(), 2);
        assert!(
            book.steps[1]
                .run
                .contains(&quote("quay.io/calico/node:v3.32.1"))
        );
        assert!(book.steps.iter().all(|s| s.guard().is_some()));
        assert!(book.steps[0].run.contains("kubeadm config images pull"));
    }
}
