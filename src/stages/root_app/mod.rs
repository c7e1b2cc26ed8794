//! Stage `root-app`: the App-of-Apps root Application, rendered from its template
//! (`manifests/root-app.yaml`, or the config's) and applied with server-side apply once the
//! Application kind is served and its AppProject exists; then, unless `--no-wait`, a bounded wait
//! until the root app and every other Application in the namespace are Synced and Healthy,
//! printing each one's sync and health as it changes. What is still Degraded, Missing or
//! OutOfSync at the timeout fails the stage, in a table.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::core::GroupVersionKind;
use serde_json::Value;

mod applications;
mod bootstrap_secrets;

use crate::api::{apply::Applier, manifest};
use crate::config::Config;
use crate::engine::{Ctx, Found, Stage, StagePlan};
use crate::error::{Error, Result};
use crate::event::Action;
use crate::stages::shared::ids;
pub use applications::{AppStatus, app_statuses, applications, table};

/// Stage id.
pub const ID: &str = ids::ROOT_APP;
/// The template built into ecoboot.
pub const TEMPLATE: &str = include_str!("../../../manifests/root-app.yaml");

/// The `root-app` stage.
pub struct RootApp;

/// Renders `template` with the config's values: each `{{ key }}` placeholder becomes a token,
/// the template is parsed as YAML, and only then are the values put into the string scalars
/// that hold the tokens. A value therefore always stays inside its one string: it can never add
/// a key, a list item or a document. Unknown placeholders are errors.
pub fn render(template: &str, config: &Config) -> Result<Vec<Value>> {
    let a = &config.cluster.spec.argocd;
    let r = &a.root_app;
    let vars: BTreeMap<&str, &str> = [
        ("name", r.name.as_str()),
        ("namespace", a.namespace.as_str()),
        ("project", r.project.as_str()),
        ("repo_url", r.repo_url.as_str()),
        ("target_revision", r.target_revision.as_str()),
        ("path", r.path.as_str()),
        ("destination_namespace", r.destination_namespace.as_str()),
        ("sync_wave", r.sync_wave.as_str()),
    ]
    .into();
    let token = |key: &str| format!("__ecoboot_var_{key}__");
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let end = rest[start..]
            .find("}}")
            .map(|e| start + e)
            .ok_or_else(|| bad_template("an unclosed `{{`"))?;
        let key = rest[start + 2..end].trim();
        if !vars.contains_key(key) {
            return Err(bad_template(&format!(
                "unknown placeholder `{{{{ {key} }}}}` (known: {})",
                vars.keys().copied().collect::<Vec<_>>().join(", ")
            )));
        }
        out.push_str(&token(key));
        rest = &rest[end + 2..];
    }
    out.push_str(rest);
    let mut docs = manifest::documents(&out, "the root app template")?;
    for doc in &mut docs {
        fill(doc, &|s: &str| {
            vars.iter()
                .fold(s.to_string(), |acc, (k, v)| acc.replace(&token(k), v))
        });
    }
    Ok(docs)
}

/// Applies `f` to every string scalar of `v`.
fn fill(v: &mut Value, f: &dyn Fn(&str) -> String) {
    match v {
        Value::String(s) => *s = f(s),
        Value::Array(items) => items.iter_mut().for_each(|i| fill(i, f)),
        Value::Object(map) => map.values_mut().for_each(|i| fill(i, f)),
        _ => {}
    }
}

fn bad_template(what: &str) -> Error {
    Error::StageFailed {
        stage: ID.into(),
        message: format!("the root app template has {what}"),
        help: "fix the template named by spec.argocd.rootApp.template".into(),
    }
}

fn template(cx: &Ctx) -> Result<String> {
    match &cx.config.cluster.spec.argocd.root_app.template {
        None => Ok(TEMPLATE.to_string()),
        Some(path) => {
            let path = cx.config.resolve_path(path);
            std::fs::read_to_string(&path).map_err(|e| Error::io("read", path, e))
        }
    }
}

fn objects(cx: &Ctx) -> Result<Vec<DynamicObject>> {
    manifest::objects(render(&template(cx)?, &cx.config)?, "the root app")
}

async fn not_served(client: &kube::Client) -> bool {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    kube::discovery::pinned_kind(client, &gvk).await.is_err()
}

/// What root-app found: Secrets and objects to apply, and the Applications not settled yet.
pub struct RootPlan {
    changes: Vec<Action>,
    /// `spec.gitops` Secrets that are missing or differ (applied before the root app).
    secrets: Vec<bootstrap_secrets::Wanted>,
    objects: Vec<DynamicObject>,
    unsettled: Vec<AppStatus>,
    /// No Application exists yet (and nothing is left to apply).
    none_yet: bool,
}

impl StagePlan for RootPlan {
    fn actions(&self) -> Vec<Action> {
        let mut todo = self.changes.clone();
        todo.extend(
            (self.unsettled.iter())
                .map(|a| Action::new(&a.name, format!("wait: {} / {}", a.sync, a.health))),
        );
        if self.none_yet {
            todo.push(Action::new(ID, "wait for the applications"));
        }
        todo
    }
}

#[async_trait]
impl Stage for RootApp {
    type Plan = RootPlan;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Apply the App-of-Apps root Application"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<RootPlan>> {
        let client = cx.kube(ID).await?;
        if not_served(&client).await {
            return Err(Error::Prerequisite {
                stage: ID,
                what: "the Application kind (ArgoCD's CRDs)".into(),
                needs: ids::INSTALL_ARGOCD,
            });
        }
        let ns = &cx.config.cluster.spec.argocd.namespace;
        let objects = objects(cx)?;
        let wanted = bootstrap_secrets::wanted(&cx.config, ID)?;
        let (secrets, mut changes) = bootstrap_secrets::diff(&client, &wanted, ID).await?;
        changes.extend(Applier::new(&client, ns).plan(&objects, ID).await?);
        let (mut unsettled, mut none_yet) = (Vec::new(), false);
        if !cx.no_wait {
            let apps = app_statuses(&client, ns)
                .await
                .map_err(|e| crate::api::error("list", "applications", e))?;
            none_yet = apps.is_empty() && changes.is_empty();
            unsettled = apps.into_iter().filter(|a| !a.settled()).collect();
        }
        Ok(if changes.is_empty() && unsettled.is_empty() && !none_yet {
            Found::done(format!(
                "root app `{}` applied; applications Synced and Healthy",
                cx.config.cluster.spec.argocd.root_app.name
            ))
        } else {
            Found::Todo(RootPlan {
                changes,
                secrets,
                objects,
                unsettled,
                none_yet,
            })
        })
    }

    /// Applies the rendered objects when the plan has changes (once their AppProject exists),
    /// then, unless `--no-wait`, waits until every Application is Synced and Healthy.
    async fn apply(&self, cx: &Ctx, plan: RootPlan) -> Result<()> {
        let client = cx.kube(ID).await?;
        let a = &cx.config.cluster.spec.argocd;
        let timeout = Duration::from_secs(a.wait_seconds);
        if !plan.secrets.is_empty() {
            // Repository credentials first: the root app's first sync may need them.
            let n = bootstrap_secrets::apply(&client, &plan.secrets).await?;
            cx.events
                .progress(ID, None, format!("applied {n} Secret(s) from spec.gitops"));
        }
        if !plan.changes.is_empty() {
            wait_for_project(&client, cx, timeout).await?;
            let progress = |m: String| cx.events.progress(ID, None, m);
            let report = Applier::new(&client, &a.namespace)
                .apply(plan.objects, &progress)
                .await?;
            cx.count_all(report.counters());
        }
        if cx.no_wait {
            return Ok(());
        }
        let seen: std::sync::Mutex<BTreeMap<String, (String, String)>> = Default::default();
        let last = crate::api::wait::until(timeout, Duration::from_secs(1), || async {
            let apps = app_statuses(&client, &a.namespace)
                .await
                .map_err(|e| crate::api::error("list", "applications", e))?;
            for app in &apps {
                let now = (app.sync.clone(), app.health.clone());
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                if seen.insert(app.name.clone(), now.clone()) != Some(now) {
                    let line = format!("{} / {}", app.sync, app.health);
                    cx.events.progress(ID, Some(&app.name), line);
                }
            }
            if let Some(broken) = apps.iter().find(|a| a.error.is_some()) {
                // Waiting cannot fix a wrong path, project or repository: fail now, with ArgoCD's
                // message and every application's state.
                return Err(Error::StageFailed {
                    stage: ID.into(),
                    message: format!(
                        "application `{}` cannot sync: {}\n{}",
                        broken.name,
                        broken.error.as_deref().unwrap_or_default(),
                        table(&apps)
                    ),
                    help: "fix the Application's source (repoURL, targetRevision, path), its project or the repository credentials, then rerun `ecoboot stage root-app`".into(),
                });
            }
            let offending: Vec<AppStatus> = apps.into_iter().filter(|a| !a.settled()).collect();
            Ok((!offending.is_empty()).then(|| table(&offending)))
        })
        .await?;
        match last {
            None => Ok(()),
            Some(table) => Err(Error::StageFailed {
                stage: ID.into(),
                message: format!(
                    "applications not Synced and Healthy after {}s:\n{table}",
                    timeout.as_secs()
                ),
                help: format!(
                    "inspect them with `kubectl -n {} get applications` or the ArgoCD UI (`ecoboot argocd password`); rerun `ecoboot stage root-app` to wait again",
                    a.namespace
                ),
            }),
        }
    }
}

/// Waits, bounded, until the root app's AppProject exists (ecoboot's own projects are applied
/// by install-argocd; `default` is created by ArgoCD itself).
async fn wait_for_project(client: &kube::Client, cx: &Ctx, timeout: Duration) -> Result<()> {
    let a = &cx.config.cluster.spec.argocd;
    let project = a.root_app.project.as_str();
    let projects = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        &a.namespace,
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AppProject"),
            "appprojects",
        ),
    );
    let missing = crate::api::wait::until(timeout, Duration::from_secs(1), || async {
        match projects.get_opt(project).await {
            Ok(Some(_)) => Ok(None),
            Ok(None) => Ok(Some(format!("AppProject `{project}` does not exist"))),
            Err(e) => Err(crate::api::error(
                "get",
                &format!("AppProject {project}"),
                e,
            )),
        }
    })
    .await?;
    match missing {
        None => Ok(()),
        Some(why) => Err(Error::StageFailed {
            stage: ID.into(),
            message: format!("{why} after {}s", timeout.as_secs()),
            help: "list it in spec.argocd.projects (ecoboot creates those before any Application), or use `default`, which ArgoCD creates".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_reference_root_app() {
        let config = crate::config::tests_support::config();
        let objs = manifest::objects(render(TEMPLATE, &config).unwrap(), "t").unwrap();
        let app = &objs[0];
        assert_eq!(app.metadata.name.as_deref(), Some("root-app"));
        assert_eq!(
            app.data["spec"]["source"]["repoURL"],
            "https://github.com/SeSACTHON/backend"
        );
        assert_eq!(app.data["spec"]["source"]["path"], "argocd/components");
        assert_eq!(
            app.data["spec"]["syncPolicy"]["automated"]["selfHeal"],
            true
        );
        assert_eq!(
            app.metadata.annotations.as_ref().unwrap()["argocd.argoproj.io/sync-wave"],
            "-2"
        );
    }

    #[test]
    fn values_cannot_leave_their_string() {
        let mut config = crate::config::tests_support::config();
        let hostile = "https://x\"\n  project: evil\nkind: Secret\n---\nkind: Pod";
        config.cluster.spec.argocd.root_app.repo_url.value = hostile.into();
        let docs = render(TEMPLATE, &config).unwrap();
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0]["kind"], "Application");
        assert_eq!(docs[0]["spec"]["project"], "default");
        assert_eq!(docs[0]["spec"]["source"]["repoURL"], hostile);
    }

    #[test]
    fn unknown_placeholders_are_errors() {
        let config = crate::config::tests_support::config();
        let err = render("x: {{ nope }}", &config).unwrap_err();
        assert!(
            err.to_string().contains("unknown placeholder `{{ nope }}`"),
            "{err}"
        );
    }

    #[test]
    fn table_lists_offenders() {
        let a = AppStatus {
            name: "monitoring".into(),
            sync: "OutOfSync".into(),
            health: "Degraded".into(),
            wave: "20".into(),
            detail: "Failed: boom".into(),
            error: None,
        };
        let t = table(&[a]);
        assert!(
            t.contains("monitoring") && t.contains("Degraded") && t.contains("boom"),
            "{t}"
        );
    }
}
