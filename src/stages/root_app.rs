//! Stage `root-app`: the App-of-Apps root Application, rendered from its template
//! (`manifests/root-app.yaml`, or the config's) and applied with server-side apply once the
//! Application kind is served and its AppProject exists; then, unless `--no-wait`, a bounded wait
//! until the root app and every other Application in the namespace are Synced and Healthy,
//! printing each one's sync and health as it changes. What is still Degraded, Missing or
//! OutOfSync at the timeout fails the stage, in a table.

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;
use serde_json::Value;

use crate::api::{apply::Applier, manifest};
use crate::config::Config;
use crate::engine::{Ctx, Found, Stage};
use crate::error::{Error, Result};
use crate::event::Action;

/// Stage id.
pub const ID: &str = "root-app";
/// The template built into ecoboot.
pub const TEMPLATE: &str = include_str!("../../manifests/root-app.yaml");

/// The `root-app` stage.
pub struct RootApp;

/// One Application's status, as `ecoboot status` and the wait print it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AppStatus {
    /// Application name.
    pub name: String,
    /// Sync status (Synced, OutOfSync, Unknown).
    pub sync: String,
    /// Health status (Healthy, Progressing, Degraded, Suspended, Missing, Unknown).
    pub health: String,
    /// `argocd.argoproj.io/sync-wave`.
    pub wave: String,
    /// Last operation phase and message, or the first condition.
    pub detail: String,
}

impl AppStatus {
    fn settled(&self) -> bool {
        self.sync == "Synced" && self.health == "Healthy"
    }
}

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

/// The Application API in `ns`.
pub fn applications(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"),
        "applications",
    );
    Api::namespaced_with(client.clone(), ns, &ar)
}

/// Every Application in `ns` with its status, ordered by sync wave then name.
pub async fn app_statuses(
    client: &kube::Client,
    ns: &str,
) -> std::result::Result<Vec<AppStatus>, kube::Error> {
    let list = applications(client, ns)
        .list(&ListParams::default())
        .await?;
    let mut apps: Vec<AppStatus> = list
        .items
        .into_iter()
        .map(|a| {
            let s = &a.data["status"];
            let text = |v: &serde_json::Value| v.as_str().unwrap_or("Unknown").to_string();
            let op = &s["operationState"];
            let detail = match (op["phase"].as_str(), s["conditions"][0]["message"].as_str()) {
                (_, Some(cond)) => cond.to_string(),
                (Some(phase), _) => format!("{phase}: {}", op["message"].as_str().unwrap_or("")),
                (None, None) => String::new(),
            };
            AppStatus {
                name: a.metadata.name.clone().unwrap_or_default(),
                sync: text(&s["sync"]["status"]),
                health: text(&s["health"]["status"]),
                wave: a
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|m| m.get("argocd.argoproj.io/sync-wave"))
                    .cloned()
                    .unwrap_or_else(|| "0".into()),
                detail,
            }
        })
        .collect();
    apps.sort_by_key(|a| (a.wave.parse::<i64>().unwrap_or(0), a.name.clone()));
    Ok(apps)
}

/// A table of applications (NAME SYNC HEALTH WAVE DETAIL).
pub fn table(apps: &[AppStatus]) -> String {
    let width = apps.iter().map(|a| a.name.len()).max().unwrap_or(4).max(4);
    let mut out = format!(
        "{:<width$}  {:<10} {:<11} {:>5}  DETAIL",
        "NAME", "SYNC", "HEALTH", "WAVE"
    );
    for a in apps {
        out.push_str(&format!(
            "\n{:<width$}  {:<10} {:<11} {:>5}  {}",
            a.name, a.sync, a.health, a.wave, a.detail
        ));
    }
    out
}

async fn not_served(client: &kube::Client) -> bool {
    let gvk = GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application");
    kube::discovery::pinned_kind(client, &gvk).await.is_err()
}

#[async_trait]
impl Stage for RootApp {
    type Plan = Vec<Action>;

    fn id(&self) -> &'static str {
        ID
    }

    fn title(&self) -> &'static str {
        "Apply the App-of-Apps root Application"
    }

    async fn probe(&self, cx: &Ctx) -> Result<Found<Vec<Action>>> {
        let client = cx.kube(ID).await?;
        if not_served(&client).await {
            return Err(Error::Prerequisite {
                stage: ID,
                what: "the Application kind (ArgoCD's CRDs)".into(),
                needs: super::install_argocd::ID,
            });
        }
        let ns = &cx.config.cluster.spec.argocd.namespace;
        let objs = objects(cx)?;
        let mut todo: Vec<Action> = Applier::new(&client, ns).plan(&objs, "root-app").await?;
        if !cx.no_wait {
            let apps = app_statuses(&client, ns)
                .await
                .map_err(|e| crate::api::error("list", "applications", e))?;
            todo.extend(
                apps.iter()
                    .filter(|a| !a.settled())
                    .map(|a| Action::new(&a.name, format!("wait: {} / {}", a.sync, a.health))),
            );
            if apps.is_empty() && todo.is_empty() {
                todo.push(Action::new("root-app", "wait for the applications"));
            }
        }
        Ok(if todo.is_empty() {
            Found::done(format!(
                "root app `{}` applied; applications Synced and Healthy",
                cx.config.cluster.spec.argocd.root_app.name
            ))
        } else {
            Found::Todo(todo)
        })
    }

    async fn apply(&self, cx: &Ctx, _plan: Vec<Action>) -> Result<()> {
        let client = cx.kube(ID).await?;
        let a = &cx.config.cluster.spec.argocd;
        let timeout = Duration::from_secs(a.wait_seconds);
        let project = a.root_app.project.clone();
        let projects = Api::<DynamicObject>::namespaced_with(
            client.clone(),
            &a.namespace,
            &ApiResource::from_gvk_with_plural(
                &GroupVersionKind::gvk("argoproj.io", "v1alpha1", "AppProject"),
                "appprojects",
            ),
        );
        let missing = crate::api::wait::until(timeout, Duration::from_secs(1), || async {
            match projects.get_opt(&project).await {
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
        if let Some(why) = missing {
            return Err(Error::StageFailed {
                stage: ID.into(),
                message: format!("{why} after {}s", timeout.as_secs()),
                help: "list it in spec.argocd.projects (ecoboot creates those before any Application), or use `default`, which ArgoCD creates".into(),
            });
        }
        let progress = |m: String| cx.events.progress(ID, None, m);
        let report = Applier::new(&client, &a.namespace)
            .apply(objects(cx)?, &progress)
            .await?;
        cx.count_all(report.counters());
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
                let changed = seen
                    .lock()
                    .expect("lock")
                    .insert(app.name.clone(), now.clone())
                    != Some(now);
                if changed {
                    cx.events.progress(
                        ID,
                        Some(&app.name),
                        format!("{} / {}", app.sync, app.health),
                    );
                }
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
        };
        let t = table(&[a]);
        assert!(
            t.contains("monitoring") && t.contains("Degraded") && t.contains("boom"),
            "{t}"
        );
    }
}
