//! Multi-document YAML manifests as dynamic objects, each stamped with the sha256 of what
//! ecoboot applies so a probe can tell, read-only, whether the live object is current.

use kube::api::DynamicObject;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Annotation holding the sha256 of the object ecoboot last applied.
pub const APPLIED_HASH: &str = "ecoboot.io/applied-sha256";

/// Parses every non-empty document of `text` (`source` names it in errors) as a JSON value.
pub fn documents(text: &str, source: &str) -> Result<Vec<Value>> {
    let options = serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_nodes: 5_000_000,
            max_events: 20_000_000,
            max_depth: 512,
            max_documents: 10_000,
        },
    };
    let docs: Vec<Value> =
        serde_saphyr::from_multiple_with_options(text, options).map_err(|e| Error::Kube {
            action: "parse".into(),
            target: source.into(),
            message: e.to_string(),
            help: "the manifest is not valid YAML; check its source and checksum".into(),
        })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

/// Turns documents into objects: every one needs apiVersion, kind and metadata.name. A
/// `List` document contributes its items.
pub fn objects(docs: Vec<Value>, source: &str) -> Result<Vec<DynamicObject>> {
    let mut out = Vec::new();
    for (i, doc) in docs.into_iter().enumerate() {
        if doc.get("kind").and_then(Value::as_str) == Some("List") {
            let items = doc.get("items").and_then(Value::as_array).cloned();
            out.extend(objects(items.unwrap_or_default(), source)?);
            continue;
        }
        let bad = |message: String| Error::Kube {
            action: "read".into(),
            target: format!("{source} document {}", i + 1),
            message,
            help: "every document needs apiVersion, kind and metadata.name".into(),
        };
        let obj: DynamicObject = serde_json::from_value(doc).map_err(|e| bad(e.to_string()))?;
        if obj.types.as_ref().is_none_or(|t| t.kind.is_empty()) || obj.metadata.name.is_none() {
            return Err(bad("apiVersion, kind or metadata.name missing".into()));
        }
        out.push(obj);
    }
    Ok(out)
}

/// `Kind namespace/name` (or `Kind name`) for messages.
pub fn describe(obj: &DynamicObject) -> String {
    let kind = obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("?");
    let name = obj.metadata.name.as_deref().unwrap_or("?");
    match obj.metadata.namespace.as_deref() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The kind of `obj`.
pub fn kind(obj: &DynamicObject) -> &str {
    obj.types.as_ref().map(|t| t.kind.as_str()).unwrap_or("")
}

/// Sets [`APPLIED_HASH`] to the sha256 of the object without it; returns the hash.
pub fn stamp(obj: &mut DynamicObject) -> String {
    obj.metadata
        .annotations
        .get_or_insert_default()
        .remove(APPLIED_HASH);
    if obj
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.is_empty())
    {
        obj.metadata.annotations = None;
    }
    let bytes = serde_json::to_vec(obj).expect("objects serialise");
    let hash = hex::encode(Sha256::digest(&bytes));
    obj.metadata
        .annotations
        .get_or_insert_default()
        .insert(APPLIED_HASH.into(), hash.clone());
    hash
}

/// The hash ecoboot stamped on a live object, if any.
pub fn applied_hash(obj: &DynamicObject) -> Option<&str> {
    obj.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(APPLIED_HASH))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documents_and_lists_and_rejects_nameless_objects() {
        let text = "---\n# comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\ndata: {k: \"1\"}\n---\napiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: b}\n";
        let objs = objects(documents(text, "t").unwrap(), "t").unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(describe(&objs[1]), "Secret b");
        assert_eq!(
            objs[0].data["data"]["k"], "1",
            "quoted scalars stay strings"
        );
        let err = objects(
            documents("apiVersion: v1\nkind: ConfigMap\n", "t").unwrap(),
            "t",
        )
        .unwrap_err();
        assert!(err.to_string().contains("document 1"), "{err}");
    }

    #[test]
    fn stamp_is_stable_and_ignores_the_previous_stamp() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n";
        let mut a = objects(documents(text, "t").unwrap(), "t")
            .unwrap()
            .remove(0);
        let first = stamp(&mut a);
        let second = stamp(&mut a);
        assert_eq!(first, second);
        assert_eq!(applied_hash(&a), Some(first.as_str()));
        a.data["data"] = serde_json::json!({"k": "v"});
        assert_ne!(stamp(&mut a), first);
    }
}
