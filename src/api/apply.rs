//! The server-side applier every API stage uses (Calico, ArgoCD, the root app): discovery per
//! kind, CRDs and Namespaces first, then re-discovery once the CRDs are Established, then every
//! other object; objects whose live copy already carries the same applied hash are not sent.
//! Per-object errors are collected and reported together.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use futures::stream::{self, StreamExt};
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{self, ApiCapabilities, ApiResource, Scope};

use super::manifest::{self, applied_hash, describe};
use super::{FIELD_MANAGER, error, is_not_found};
use crate::error::{Error, Result};
use crate::event::Action;

const PARALLEL: usize = 8;
const CRD_TIMEOUT: Duration = Duration::from_secs(120);

/// What an apply did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// Objects that did not exist.
    pub created: usize,
    /// Objects that existed with other content.
    pub updated: usize,
    /// Objects already as ecoboot would apply them (nothing sent).
    pub unchanged: usize,
}

impl Report {
    /// The report as stage counters (`api.created`, `api.updated`, `api.unchanged`).
    pub fn counters(&self) -> [(&'static str, u64); 3] {
        [
            ("api.created", self.created as u64),
            ("api.updated", self.updated as u64),
            ("api.unchanged", self.unchanged as u64),
        ]
    }
}

enum Change {
    Created,
    Updated,
    Unchanged,
}

/// Applies manifests with server-side apply (field manager [`FIELD_MANAGER`]).
pub struct Applier<'a> {
    client: &'a kube::Client,
    namespace: String,
    kinds: Mutex<HashMap<GroupVersionKind, (ApiResource, ApiCapabilities)>>,
}

fn established(crd: &DynamicObject) -> bool {
    crd.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Established" && c["status"] == "True")
}

impl<'a> Applier<'a> {
    /// An applier that puts namespaced objects without a namespace into `namespace`.
    pub fn new(client: &'a kube::Client, namespace: &str) -> Self {
        Applier {
            client,
            namespace: namespace.into(),
            kinds: Mutex::new(HashMap::new()),
        }
    }

    async fn resource(
        &self,
        obj: &DynamicObject,
    ) -> std::result::Result<(ApiResource, ApiCapabilities), kube::Error> {
        let types = obj.types.clone().unwrap_or_default();
        let (group, version) = types
            .api_version
            .split_once('/')
            .unwrap_or(("", &types.api_version));
        let gvk = GroupVersionKind::gvk(group, version, &types.kind);
        if let Some(found) = self.kinds.lock().expect("lock").get(&gvk) {
            return Ok(found.clone());
        }
        let found = discovery::pinned_kind(self.client, &gvk).await?;
        self.kinds.lock().expect("lock").insert(gvk, found.clone());
        Ok(found)
    }

    /// The API for `obj`, with the default namespace filled in for namespaced kinds.
    async fn api(
        &self,
        obj: &mut DynamicObject,
    ) -> std::result::Result<Api<DynamicObject>, kube::Error> {
        let (ar, caps) = self.resource(obj).await?;
        Ok(if caps.scope == Scope::Namespaced {
            let ns = obj
                .metadata
                .namespace
                .get_or_insert_with(|| self.namespace.clone())
                .clone();
            Api::namespaced_with(self.client.clone(), &ns, &ar)
        } else {
            obj.metadata.namespace = None;
            Api::all_with(self.client.clone(), &ar)
        })
    }

    /// Read-only: the objects that are missing or differ from what [`Applier::apply`] would
    /// send (a kind not yet in discovery counts as missing).
    pub async fn diff(&self, objs: &[DynamicObject]) -> Result<Vec<String>> {
        let results: Vec<Result<Option<String>>> = stream::iter(objs.iter().cloned())
            .map(|mut obj| async move {
                let want = manifest::stamp(&mut obj);
                let api = match self.api(&mut obj).await {
                    Ok(api) => api,
                    Err(e) if is_not_found(&e) || matches!(e, kube::Error::Discovery(_)) => {
                        return Ok(Some(format!("{}: kind not served yet", describe(&obj))));
                    }
                    Err(e) => return Err(error("discover", &describe(&obj), e)),
                };
                let name = obj.metadata.name.clone().unwrap_or_default();
                match api.get_opt(&name).await {
                    Ok(Some(live)) if applied_hash(&live) == Some(want.as_str()) => Ok(None),
                    Ok(Some(_)) => Ok(Some(format!("{}: differs", describe(&obj)))),
                    Ok(None) => Ok(Some(format!("{}: missing", describe(&obj)))),
                    Err(e) => Err(error("get", &describe(&obj), e)),
                }
            })
            .buffered(PARALLEL)
            .collect()
            .await;
        let mut todo = Vec::new();
        for r in results {
            todo.extend(r?);
        }
        Ok(todo)
    }

    /// [`Applier::diff`] as plan actions on `target`.
    pub async fn plan(&self, objs: &[DynamicObject], target: &str) -> Result<Vec<Action>> {
        Ok(self
            .diff(objs)
            .await?
            .into_iter()
            .map(|d| Action::new(target, format!("apply {d}")))
            .collect())
    }

    /// Applies `objs`: CRDs and Namespaces first, waits until the CRDs are Established and
    /// served, then the rest. `progress` hears about each phase.
    pub async fn apply(
        &self,
        objs: Vec<DynamicObject>,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Report> {
        let total = objs.len();
        let (first, rest): (Vec<_>, Vec<_>) = objs
            .into_iter()
            .partition(|o| matches!(manifest::kind(o), "CustomResourceDefinition" | "Namespace"));
        let crds: Vec<String> = first
            .iter()
            .filter(|o| manifest::kind(o) == "CustomResourceDefinition")
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        let mut report = Report::default();
        let mut failures = Vec::new();
        if !first.is_empty() {
            progress(format!("applying {} CRD(s) and namespace(s)", first.len()));
            self.apply_batch(first, &mut report, &mut failures).await;
        }
        if !crds.is_empty() && failures.is_empty() {
            progress(format!(
                "waiting for {} CRD(s) to be established",
                crds.len()
            ));
            self.wait_established(&crds).await?;
        }
        progress(format!("applying {} object(s)", rest.len()));
        self.apply_batch(rest, &mut report, &mut failures).await;
        if failures.is_empty() {
            return Ok(report);
        }
        let (help, lines): (Vec<String>, Vec<String>) = failures.into_iter().unzip();
        Err(Error::Kube {
            action: "apply".into(),
            target: format!("{} of {total} object(s)", lines.len()),
            message: format!("\n  {}", lines.join("\n  ")),
            help: help.into_iter().next().unwrap_or_default(),
        })
    }

    async fn apply_batch(
        &self,
        objs: Vec<DynamicObject>,
        report: &mut Report,
        failures: &mut Vec<(String, String)>,
    ) {
        let results: Vec<Result<Change>> = stream::iter(objs)
            .map(|obj| self.apply_one(obj))
            .buffered(PARALLEL)
            .collect()
            .await;
        for r in results {
            match r {
                Ok(Change::Created) => report.created += 1,
                Ok(Change::Updated) => report.updated += 1,
                Ok(Change::Unchanged) => report.unchanged += 1,
                Err(Error::Kube {
                    target,
                    message,
                    help,
                    ..
                }) => failures.push((help, format!("{target}: {message}"))),
                Err(e) => failures.push((String::new(), e.to_string())),
            }
        }
    }

    async fn apply_one(&self, mut obj: DynamicObject) -> Result<Change> {
        let want = manifest::stamp(&mut obj);
        let what = describe(&obj);
        let api = self.api(&mut obj).await.map_err(|e| {
            let mut err = error("discover", &what, e);
            if let Error::Kube { help, .. } = &mut err {
                *help = "the kind is not served by the API server: is the CRD that defines it installed (and established)?".into();
            }
            err
        })?;
        let what = describe(&obj);
        let name = obj.metadata.name.clone().unwrap_or_default();
        let live = api
            .get_opt(&name)
            .await
            .map_err(|e| error("get", &what, e))?;
        if live.as_ref().and_then(applied_hash) == Some(want.as_str()) {
            return Ok(Change::Unchanged);
        }
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&obj),
        )
        .await
        .map_err(|e| error("apply", &what, e))?;
        tracing::debug!("applied {what}");
        Ok(if live.is_some() {
            Change::Updated
        } else {
            Change::Created
        })
    }

    async fn wait_established(&self, names: &[String]) -> Result<()> {
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        );
        let api: Api<DynamicObject> = Api::all_with(self.client.clone(), &ar);
        let last = super::wait::until(CRD_TIMEOUT, Duration::from_millis(250), || async {
            // One list of the CRDs and one discovery call per group version per round.
            let crds = api
                .list(&ListParams::default())
                .await
                .map_err(|e| error("list", "CRDs", e))?;
            let mut waiting = Vec::new();
            let mut wanted: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
            for name in names {
                let crd = crds
                    .items
                    .iter()
                    .find(|c| c.metadata.name.as_ref() == Some(name));
                let Some(crd) = crd.filter(|c| established(c)) else {
                    waiting.push(name.clone());
                    continue;
                };
                let kind = crd.data["spec"]["names"]["kind"]
                    .as_str()
                    .unwrap_or_default();
                let group = crd.data["spec"]["group"].as_str().unwrap_or_default();
                let served = crd.data["spec"]["versions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|v| v["served"].as_bool().unwrap_or(true))
                    .filter_map(|v| v["name"].as_str());
                for version in served {
                    let gv = format!("{group}/{version}");
                    wanted
                        .entry(gv)
                        .or_default()
                        .push((name.clone(), kind.to_string()));
                }
            }
            for (gv, kinds) in wanted {
                let served: Vec<String> = match self.client.list_api_group_resources(&gv).await {
                    Ok(list) => list.resources.into_iter().map(|r| r.kind).collect(),
                    Err(e) if is_not_found(&e) => Vec::new(),
                    Err(e) => return Err(error("discover", &gv, e)),
                };
                let (group, version) = gv.split_once('/').expect("group/version");
                for (name, kind) in kinds {
                    self.kinds
                        .lock()
                        .expect("lock")
                        .remove(&GroupVersionKind::gvk(group, version, &kind));
                    if !served.contains(&kind) {
                        waiting.push(name);
                    }
                }
            }
            waiting.sort();
            waiting.dedup();
            Ok((!waiting.is_empty()).then(|| format!("not established: {}", waiting.join(", "))))
        })
        .await?;
        match last {
            None => Ok(()),
            Some(status) => Err(Error::Kube {
                action: "wait for".into(),
                target: "CRDs".into(),
                message: format!("{status} after {}s", CRD_TIMEOUT.as_secs()),
                help: "check the CRDs' conditions with `kubectl get crd -o yaml`".into(),
            }),
        }
    }
}
