//! Checks of `spec.gitops` (repository credentials and pull secrets): names, URLs, hosts and
//! the sources of secret values, each problem at its span.

use super::Located;
use super::model_gitops::{Gitops, SecretSource};
use super::syntax::{self, is_dns_label};
use super::validate::Checker;

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128 characters.
pub fn env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    match first_ok && name.len() <= 128 && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        true => Ok(()),
        false => Err(format!(
            "`{}` is not an environment variable name",
            syntax::clip(name)
        )),
    }
}

fn check_source(ck: &mut Checker, src: &SecretSource, at: &Located<String>, key: &str) {
    match (&src.env, &src.file) {
        (Some(env), None) => {
            ck.syntax(
                env,
                &format!("{key}.env"),
                env_name,
                "the name of an environment variable, e.g. GITOPS_TOKEN (in GitHub Actions, a repository secret passed as env)",
            );
        }
        (None, Some(file)) => {
            if ck.required(file, &format!("{key}.file"))
                && let Some(why) = super::pseudo_filesystem(std::path::Path::new(file.as_str()))
            {
                ck.err(
                    file,
                    format!("`{key}.file`: {why}"),
                    "name a regular file that holds only the secret (mode 0600), e.g. ~/.config/ecoboot/gitops-token",
                );
            }
        }
        _ => ck.err(
            at,
            format!("`{key}` needs exactly one of `env` or `file`"),
            "name where the value comes from: `{ env: VAR }` or `{ file: path }`; the value itself never goes in the config",
        ),
    }
}

fn check_name(ck: &mut Checker, name: &Located<String>, key: &str) {
    if ck.required(name, key) && !is_dns_label(name) {
        ck.err(
            name,
            format!("`{key}`: `{}` is not a DNS label", syntax::clip(name)),
            "lower-case letters, digits and '-', at most 63 characters",
        );
    }
}

/// Checks `spec.gitops`.
pub(super) fn check_gitops(ck: &mut Checker, g: &Gitops) {
    let mut names = std::collections::HashSet::new();
    for (i, r) in g.repositories.iter().enumerate() {
        let key = format!("spec.gitops.repositories[{i}]");
        check_name(ck, &r.name, &format!("{key}.name"));
        if !names.insert(r.name.value.clone()) {
            ck.err(
                &r.name,
                format!("repository `{}` is listed twice", r.name),
                "give each repository its own name",
            );
        }
        if !ck.required(&r.url, &format!("{key}.url"))
            || !ck.syntax(
                &r.url,
                &format!("{key}.url"),
                syntax::git_url,
                "the URL the Applications use",
            )
        {
            continue;
        }
        let https = r.url.starts_with("https://");
        match (&r.password, &r.ssh_private_key) {
            (Some(p), None) if https => check_source(ck, p, &r.url, &format!("{key}.password")),
            (None, Some(k)) if !https => {
                check_source(ck, k, &r.url, &format!("{key}.sshPrivateKey"))
            }
            (Some(_), Some(_)) | (None, None) => ck.err(
                &r.url,
                format!("`{key}` needs exactly one of `password` (https) or `sshPrivateKey` (ssh)"),
                "an HTTPS token goes in `password`, an SSH deploy key in `sshPrivateKey`",
            ),
            _ => ck.err(
                &r.url,
                format!("`{key}`: {} credentials do not fit this URL", if https { "SSH" } else { "password" }),
                "use `password` with an https:// URL and `sshPrivateKey` with an ssh:// or git@ URL",
            ),
        }
        if let Some(u) = &r.username {
            ck.syntax(
                u,
                &format!("{key}.username"),
                |v| syntax::plain_token(v, 256),
                "a user name",
            );
        }
    }
    let mut names = std::collections::HashSet::new();
    for (i, p) in g.image_pull_secrets.iter().enumerate() {
        let key = format!("spec.gitops.imagePullSecrets[{i}]");
        check_name(ck, &p.name, &format!("{key}.name"));
        if !names.insert(p.name.value.clone()) {
            ck.err(
                &p.name,
                format!("pull secret `{}` is listed twice", p.name),
                "give each registry's Secret its own name",
            );
        }
        if ck.required(&p.registry, &format!("{key}.registry")) {
            ck.syntax(
                &p.registry,
                &format!("{key}.registry"),
                syntax::host_port,
                "a registry host such as ghcr.io",
            );
        }
        if ck.required(&p.username, &format!("{key}.username")) {
            ck.syntax(
                &p.username,
                &format!("{key}.username"),
                |v| syntax::plain_token(v, 256),
                "a user name",
            );
        }
        check_source(ck, &p.password, &p.name, &format!("{key}.password"));
        if p.namespaces.is_empty() {
            ck.err(
                &p.name,
                format!("`{key}.namespaces` is empty"),
                "list the namespaces whose pods pull from this registry",
            );
        }
        for ns in &p.namespaces {
            check_name(ck, ns, &format!("{key}.namespaces"));
        }
    }
}
