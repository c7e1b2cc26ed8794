//! `ecoboot github preflight`: the bootstrap workflow's first step. Checks, before any
//! credentials are asked for, that the repository has what the dispatched command needs
//! (variables, secrets, S3 state, the `down` confirmation) and names every missing piece at
//! once; then writes the facts the later steps use (cluster, region, key paths) to
//! `$GITHUB_OUTPUT`. Reads the workflow's inputs from the environment.

use std::io::Write;

use crate::cli::Global;
use crate::config::FileChecks;
use crate::error::{Error, Result};

/// What the workflow hands the preflight (the dispatch inputs and which settings are set).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// `up`, `stage`, `plan`, `status`, `down` or `unlock`.
    pub command: String,
    /// The dispatch's `dry_run`.
    pub dry_run: bool,
    /// The dispatch's `confirm` (the cluster name, for `down`).
    pub confirm: String,
    /// The dispatch's `lock_id` (for `unlock`).
    pub lock_id: String,
    /// Whether `vars.AWS_ROLE_ARN` is set.
    pub role: bool,
    /// Whether `secrets.SSH_PRIVATE_KEY` is set.
    pub private_key: bool,
    /// Whether `vars.SSH_PUBLIC_KEY` is set.
    pub public_key: bool,
    /// `vars.AWS_REGION` (empty: the config's region).
    pub region: String,
}

impl Inputs {
    fn from_env() -> Inputs {
        let var = |k: &str| std::env::var(k).unwrap_or_default();
        let set = |k: &str| !var(k).trim().is_empty();
        Inputs {
            command: var("COMMAND"),
            dry_run: var("DRY_RUN") == "true",
            confirm: var("CONFIRM"),
            lock_id: var("LOCK_ID"),
            role: set("AWS_ROLE_ARN"),
            private_key: set("SSH_PRIVATE_KEY"),
            public_key: set("SSH_PUBLIC_KEY"),
            region: var("AWS_REGION_OVERRIDE"),
        }
    }
}

/// Every problem with `inputs` for the cluster `cluster` whose state is in S3 (`remote`).
pub fn problems(inputs: &Inputs, cluster: &str, remote: bool) -> Vec<String> {
    let mut out = Vec::new();
    let c = inputs.command.as_str();
    if ![
        "up",
        "stage",
        "plan",
        "status",
        "image-build",
        "down",
        "unlock",
    ]
    .contains(&c)
    {
        out.push(format!("unknown command `{c}`"));
    }
    if !inputs.role {
        out.push("variable AWS_ROLE_ARN is not set: run `ecoboot github setup --repo OWNER/REPO` and set what it prints".into());
    }
    if !remote {
        out.push("variable ECOBOOT_STATE is not set and the config keeps its state locally: a runner is discarded after each run, so the journal, host keys and lock must live in S3 (set ECOBOOT_STATE to the s3:// URL `ecoboot github setup` printed)".into());
    }
    let ssh = matches!(c, "up" | "stage" | "status" | "plan" | "image-build");
    if ssh && !inputs.private_key {
        out.push(
            "secret SSH_PRIVATE_KEY is not set (the private key of spec.ssh.identityFile)".into(),
        );
    }
    if matches!(c, "up" | "stage" | "image-build") && !inputs.public_key {
        out.push(
            "variable SSH_PUBLIC_KEY is not set (the public key of spec.aws.keyPair.publicKeyPath)"
                .into(),
        );
    }
    if c == "down" && !inputs.dry_run && inputs.confirm != cluster {
        out.push(format!("`down` deletes cluster `{cluster}`: type `{cluster}` into the confirm input (or tick dry_run to see what it would delete)"));
    }
    if c == "unlock" && inputs.lock_id.trim().is_empty() {
        out.push("`unlock` needs the lock_id input: the id the lock error (or `ecoboot state show`) names".into());
    }
    out
}

/// `ecoboot github preflight`.
pub(super) fn preflight(g: &Global) -> Result<()> {
    let inputs = Inputs::from_env();
    let config = super::load_config(g, FileChecks::Skip)?;
    let remote = matches!(
        super::state_cmd::backend(g, &config).1,
        crate::state::Backend::S3(_)
    );
    let problems = problems(&inputs, config.name(), remote);
    for p in &problems {
        println!(
            "::error title=ecoboot preflight::{}",
            crate::report::sanitize::clean(p)
        );
    }
    if !problems.is_empty() {
        return Err(Error::Usage(format!(
            "the workflow cannot run `{}`: {} problem(s) above",
            inputs.command,
            problems.len()
        )));
    }
    let spec = &config.cluster.spec;
    let region = match inputs.region.trim() {
        "" => spec.aws.region.value.clone(),
        r => r.to_string(),
    };
    let identity = spec.ssh.identity_file.clone().unwrap_or_default();
    let facts = [
        ("cluster", config.name().to_string()),
        ("region", region),
        (
            "identity_file",
            config.resolve_path(&identity).display().to_string(),
        ),
        (
            "public_key",
            config
                .resolve_path(&spec.aws.key_pair.public_key_path.value)
                .display()
                .to_string(),
        ),
    ];
    let mut text = String::new();
    for (k, v) in facts {
        text.push_str(&format!("{k}={}\n", v.replace(['\n', '\r'], "")));
    }
    match std::env::var_os("GITHUB_OUTPUT") {
        Some(path) => std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| Error::io("append to", std::path::Path::new(&path), e))?,
        None => print!("{text}"),
    }
    crate::say!(
        "preflight: `{}` on cluster {} can run",
        inputs.command,
        config.name()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Inputs {
        Inputs {
            command: "up".into(),
            role: true,
            private_key: true,
            public_key: true,
            ..Default::default()
        }
    }

    #[test]
    fn names_every_missing_piece_at_once() {
        assert!(problems(&ok(), "c", true).is_empty());
        let none = Inputs {
            command: "up".into(),
            ..Default::default()
        };
        let p = problems(&none, "c", false);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p.iter().any(|x| x.contains("AWS_ROLE_ARN")));
        assert!(p.iter().any(|x| x.contains("ECOBOOT_STATE")));
        assert!(p.iter().any(|x| x.contains("SSH_PRIVATE_KEY")));
        assert!(p.iter().any(|x| x.contains("SSH_PUBLIC_KEY")));
    }

    #[test]
    fn image_build_needs_both_keys() {
        let i = Inputs {
            command: "image-build".into(),
            role: true,
            ..Default::default()
        };
        let p = problems(&i, "c", true);
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(p.iter().any(|x| x.contains("SSH_PRIVATE_KEY")));
        assert!(p.iter().any(|x| x.contains("SSH_PUBLIC_KEY")));
    }

    #[test]
    fn down_needs_the_name_unless_it_is_a_dry_run() {
        let mut i = ok();
        i.command = "down".into();
        assert!(problems(&i, "prod", true)[0].contains("type `prod`"));
        i.confirm = "prod".into();
        assert!(problems(&i, "prod", true).is_empty());
        i.confirm.clear();
        i.dry_run = true;
        assert!(problems(&i, "prod", true).is_empty());
        i.command = "unlock".into();
        assert!(problems(&i, "prod", true)[0].contains("lock_id"));
    }
}
