//! `ecoboot github setup`: what a repository's workflow needs to run ecoboot, made in the
//! account (OIDC provider, deployer role and policy, state bucket), then the `gh` lines that
//! set the repository's environment, variables and secret (run with `--yes` when `gh` is
//! installed). Plan first; idempotent.

use std::path::PathBuf;

use crate::aws::deployer_role::{self, SESSION_SECONDS};
use crate::cli::Global;
use crate::config::{Config, FileChecks};
use crate::error::{Error, Result};
use crate::event::{Action, Event};
use crate::remote_state::{Location, Remote};
use crate::ssh::script::quote;

use super::{confirm, events_for, load_config};

const STAGE: &str = "github-setup";

/// One `gh` command: its arguments and, for secrets and keys, the file on its stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gh {
    /// Arguments after `gh`.
    pub args: Vec<String>,
    /// File fed on stdin.
    pub stdin: Option<PathBuf>,
}

impl Gh {
    fn line(&self) -> String {
        let words: Vec<String> = self.args.iter().map(|a| quote(a)).collect();
        match &self.stdin {
            Some(f) => format!(
                "gh {} < {}",
                words.join(" "),
                quote(&f.display().to_string())
            ),
            None => format!("gh {}", words.join(" ")),
        }
    }
}

fn valid_repo(repo: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    };
    matches!(repo.split_once('/'), Some((o, r)) if ok(o) && ok(r) && !r.contains('/'))
}

/// The `gh` lines for `repo`'s `environment`: the environment (deployments from protected
/// branches only), the role and state variables, the SSH key secret and public key.
pub fn gh_lines(
    config: &Config,
    repo: &str,
    environment: &str,
    role_arn: &str,
    state: &Location,
) -> Vec<Gh> {
    let env_args = |kind: &str, name: &str| {
        vec![
            kind.to_string(),
            "set".into(),
            name.into(),
            "--repo".into(),
            repo.into(),
            "--env".into(),
            environment.into(),
        ]
    };
    let with_body = |mut a: Vec<String>, body: &str| {
        a.extend(["--body".to_string(), body.to_string()]);
        Gh {
            args: a,
            stdin: None,
        }
    };
    let key = &config.cluster.spec.aws.key_pair;
    let identity = config
        .cluster
        .spec
        .ssh
        .identity_file
        .clone()
        .unwrap_or_default();
    vec![
        Gh {
            args: vec![
                "api".into(),
                "--method".into(),
                "PUT".into(),
                format!("repos/{repo}/environments/{environment}"),
                "-F".into(),
                "deployment_branch_policy[protected_branches]=true".into(),
                "-F".into(),
                "deployment_branch_policy[custom_branch_policies]=false".into(),
            ],
            stdin: None,
        },
        with_body(env_args("variable", "AWS_ROLE_ARN"), role_arn),
        with_body(
            vec![
                "variable".into(),
                "set".into(),
                "ECOBOOT_CONFIG".into(),
                "--repo".into(),
                repo.into(),
            ],
            &config.path.display().to_string(),
        ),
        with_body(env_args("variable", "ECOBOOT_STATE"), &state.to_string()),
        Gh {
            args: env_args("secret", "SSH_PRIVATE_KEY"),
            stdin: Some(config.resolve_path(&identity)),
        },
        Gh {
            args: env_args("variable", "SSH_PUBLIC_KEY"),
            stdin: Some(config.resolve_path(&key.public_key_path.value)),
        },
    ]
}

/// `ecoboot github setup --repo OWNER/REPO [--environment ENV] [--dry-run] [--yes]`.
pub(super) async fn setup(
    g: &Global,
    repo: &str,
    environment: &str,
    dry_run: bool,
    yes: bool,
) -> Result<()> {
    if !valid_repo(repo) {
        return Err(Error::Usage(format!("`{repo}` is not OWNER/REPO")));
    }
    if !valid_repo(&format!("e/{environment}")) {
        return Err(Error::Usage(format!(
            "`{environment}` is not an environment name (letters, digits, -_.)"
        )));
    }
    let config = load_config(g, FileChecks::Skip)?;
    let state = match super::state_cmd::backend(g, &config).1 {
        crate::state::Backend::S3(loc) => loc,
        crate::state::Backend::Local => {
            return Err(Error::Usage(
                "a GitHub-hosted runner is discarded after each run, so the state must live in S3: set spec.state.backend: s3 with bucket and key (or pass --state s3://bucket/prefix)".into(),
            ));
        }
    };
    let consent = match dry_run {
        true => None,
        false => Some(confirm::consent("github setup", yes)?),
    };
    let events = events_for(g, false);
    let aws = crate::aws::Aws::connect(&config, Default::default()).await;
    let account = super::iam_policy::caller_account(&config).await.ok_or_else(|| Error::Usage(
        "cannot read the account id (sts:GetCallerIdentity): run this with an administrator's credentials for the account".into(),
    ))?;
    let found = deployer_role::probe(&aws, config.name(), &account).await?;
    let policy = crate::aws::deployer_policy::document(
        &super::iam_policy::input(g, &config, Some(&account)).await,
    );
    let parts = deployer_role::split(&policy);
    let name = deployer_role::role_name(config.name());
    let provider_arn = found.provider.clone().unwrap_or_else(|| {
        format!(
            "arn:aws:iam::{account}:oidc-provider/{}",
            deployer_role::ISSUER
        )
    });
    let trust = deployer_role::trust(&provider_arn, repo, environment);
    let mut actions = Vec::new();
    if found.provider.is_none() {
        actions.push(Action::new(
            deployer_role::ISSUER,
            "create GitHub's OIDC identity provider",
        ));
    }
    match &found.role {
        None => actions.push(Action::new(&name, format!("create role (assumable by repo:{repo}:environment:{environment} only, sessions up to {SESSION_SECONDS} s)"))),
        Some((_, doc, session)) if *doc != trust || *session != SESSION_SECONDS => {
            actions.push(Action::new(&name, format!("set trust to repo:{repo}:environment:{environment}, sessions up to {SESSION_SECONDS} s")))
        }
        Some(_) => {}
    }
    for (i, doc) in parts.iter().enumerate() {
        let part = format!("{name}-{}", i + 1);
        let have = found.policies.iter().find(|(n, _, _)| *n == part);
        let attached = have.is_some_and(|(_, arn, _)| found.attached.contains(arn));
        match have {
            None => actions.push(Action::new(
                &part,
                "create the deployer policy part and attach it",
            )),
            Some((_, _, d)) if d != doc => actions.push(Action::new(
                &part,
                "update the deployer policy part (new default version)",
            )),
            Some(_) if !attached => actions.push(Action::new(&part, "attach to the role")),
            Some(_) => {}
        }
    }
    actions.push(Action::new(state.to_string(), "state bucket: versioning, no public access, encryption, TLS only (as `ecoboot state init`)"));
    events.emit(Event::StagePlan {
        stage: STAGE.into(),
        actions,
    });
    let role_arn = (found.role.as_ref()).map_or_else(
        || format!("arn:aws:iam::{account}:role{}{name}", deployer_role::PATH),
        |r| r.0.clone(),
    );
    let lines = gh_lines(&config, repo, environment, &role_arn, &state);
    if dry_run {
        return print_lines(&lines);
    }
    if consent == Some(confirm::Consent::Ask) && !confirm::ask("Make these changes in the account?")
    {
        return Err(Error::Usage("cancelled; nothing was changed".into()));
    }
    let provider = match found.provider.clone() {
        Some(p) => p,
        None => deployer_role::create_provider(&aws).await?,
    };
    let trust = deployer_role::trust(&provider, repo, environment);
    let role_arn = deployer_role::ensure_role(&aws, config.name(), &found, &trust).await?;
    deployer_role::ensure_policies(&aws, config.name(), &found, &parts).await?;
    Remote::connect(state.clone(), config.name())
        .await
        .create_bucket(&config)
        .await?;
    crate::say!(
        "deployer role {role_arn}: {} policy part(s), {} actions",
        parts.len(),
        crate::aws::deployer_policy::actions(&policy).len()
    );
    let lines = gh_lines(&config, repo, environment, &role_arn, &state);
    match yes && gh_installed() {
        true => run_lines(&lines),
        false => print_lines(&lines),
    }
}

fn print_lines(lines: &[Gh]) -> Result<()> {
    crate::say!("# Then, in the repository (needs `gh auth login` with admin rights on it):");
    for l in lines {
        println!("{}", l.line());
    }
    Ok(())
}

fn gh_installed() -> bool {
    std::process::Command::new("gh")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run_lines(lines: &[Gh]) -> Result<()> {
    for l in lines {
        let mut cmd = std::process::Command::new("gh");
        cmd.args(&l.args).stdout(std::process::Stdio::null());
        if let Some(f) = &l.stdin {
            let file = std::fs::File::open(f).map_err(|e| Error::io("open", f, e))?;
            cmd.stdin(file);
        }
        // The line is printed without the file's content: a secret never reaches the output.
        let status = cmd
            .status()
            .map_err(|e| Error::Usage(format!("cannot run gh: {e}")))?;
        if !status.success() {
            return Err(Error::Usage(format!(
                "`{}` failed ({status}); fix it and run `ecoboot github setup` again",
                l.line()
            )));
        }
        crate::say!("done: {}", l.line());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repos_are_owner_slash_name() {
        assert!(valid_repo("octo-org/platform.infra"));
        for bad in ["octo", "o/r/x", "/r", "o/", "o/r;rm", "o/$(x)"] {
            assert!(!valid_repo(bad), "{bad}");
        }
    }
}
