//! ArgoCD Applications as ecoboot reads them: each one's sync, health, wave and detail, ordered
//! by sync wave, and the table `status` and the root-app wait print.

use kube::api::{Api, ApiResource, DynamicObject, ListParams};
use kube::core::GroupVersionKind;

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
    /// A condition waiting cannot fix (`ComparisonError`, `InvalidSpecError`: a path that does
    /// not exist, a missing AppProject, a repository ArgoCD cannot read), as `type: message`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Application condition types that waiting cannot fix.
const FATAL_CONDITIONS: &[&str] = &["ComparisonError", "InvalidSpecError"];

impl AppStatus {
    /// Synced and Healthy.
    pub fn settled(&self) -> bool {
        self.sync == "Synced" && self.health == "Healthy"
    }
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
                error: (s["conditions"].as_array().into_iter().flatten())
                    .find(|c| FATAL_CONDITIONS.contains(&c["type"].as_str().unwrap_or("")))
                    .map(|c| {
                        format!(
                            "{}: {}",
                            c["type"].as_str().unwrap_or(""),
                            c["message"].as_str().unwrap_or("")
                        )
                    }),
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
