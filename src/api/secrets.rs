//! Rewriting every Secret through the API, so the API server stores each one with its current
//! encryption provider (after encryption at rest is turned on, or a key is rotated).

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams, PostParams};

use crate::error::{Error, Result};

/// Writes every Secret back unchanged (a replace), so the API server stores it with the
/// current encryption provider. Returns how many.
pub async fn rewrite_all(client: &kube::Client) -> Result<usize> {
    let all: Api<Secret> = Api::all(client.clone());
    let list = all
        .list(&ListParams::default())
        .await
        .map_err(|e| Error::Kube {
            action: "list".into(),
            target: "secrets".into(),
            message: e.to_string(),
            help: "check the API server".into(),
        })?;
    let mut n = 0;
    for s in list.items {
        let (Some(ns), Some(name)) = (s.metadata.namespace.clone(), s.metadata.name.clone()) else {
            continue;
        };
        let api: Api<Secret> = Api::namespaced(client.clone(), &ns);
        match api.replace(&name, &PostParams::default(), &s).await {
            Ok(_) => n += 1,
            // Changed or deleted since the list: whoever wrote it wrote it encrypted.
            Err(kube::Error::Api(e)) if e.code == 409 || e.code == 404 => {}
            Err(e) => {
                return Err(Error::Kube {
                    action: "replace".into(),
                    target: format!("secret {ns}/{name}"),
                    message: e.to_string(),
                    help: "rerun the command: Secrets already rewritten stay encrypted with the current key".into(),
                });
            }
        }
    }
    Ok(n)
}

/// Deletes Secret `ns/name` (already gone is fine).
pub async fn delete(client: &kube::Client, ns: &str, name: &str) -> Result<()> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(crate::api::error(
            "delete",
            &format!("secret {ns}/{name}"),
            e,
        )),
    }
}
