//! What agents and restore plans ask of a cluster: a [`ClusterChange`] (a write) or a
//! read, naming objects by `apiVersion`, `kind`, namespace and name as manifests do.

use crate::error::{Error, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One object in the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// `v1`, `apps/v1`, `rbac.authorization.k8s.io/v1`, ...
    pub api_version: String,
    /// `Deployment`, `Namespace`, ...
    pub kind: String,
    /// The namespace; omitted for cluster-scoped kinds (and for namespaced ones it
    /// defaults to the client's namespace, as with kubectl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The object's name.
    pub name: String,
}

/// How a patch is to be read, as the API server's content types say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PatchType {
    /// RFC 7386 merge patch (`application/merge-patch+json`).
    Merge,
    /// Kubernetes strategic merge patch (`application/strategic-merge-patch+json`).
    Strategic,
    /// RFC 6902 JSON patch (`application/json-patch+json`): an array of operations.
    Json,
}

/// A change to the cluster. Each goes through the policy gate twice (as asked, then as
/// the API server's dry run says it would be stored) before it is written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "action", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClusterChange {
    /// Server-side apply of a whole object: creates it or updates the fields deckhand
    /// manages.
    Apply {
        /// The manifest (`apiVersion`, `kind`, `metadata.name`, ...).
        object: Value,
    },
    /// Creates an object; fails if it exists. `metadata.generateName` is allowed.
    Create {
        /// The manifest.
        object: Value,
    },
    /// Replaces an existing object with this one as a whole (an HTTP PUT): what a
    /// restore does to put an object back exactly as it was.
    Replace {
        /// The manifest; its `resourceVersion`, if any, is replaced by the live one.
        object: Value,
    },
    /// Patches an existing object.
    Patch {
        /// The object.
        target: ObjectRef,
        /// How to read `patch`.
        patch_type: PatchType,
        /// The patch.
        patch: Value,
    },
    /// Sets the replicas of a Deployment, StatefulSet or ReplicaSet through its `scale`
    /// subresource.
    Scale {
        /// The workload.
        target: ObjectRef,
        /// The new replica count.
        replicas: i32,
    },
    /// Deletes one object.
    Delete {
        /// The object.
        target: ObjectRef,
    },
}

impl ClusterChange {
    /// The Kubernetes authorization verb this change uses.
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Apply { .. } | Self::Patch { .. } | Self::Scale { .. } => "patch",
            Self::Create { .. } => "create",
            Self::Replace { .. } => "update",
            Self::Delete { .. } => "delete",
        }
    }

    /// The object this change is about, from the target or the manifest.
    pub fn target(&self) -> Result<ObjectRef> {
        match self {
            Self::Apply { object } | Self::Create { object } | Self::Replace { object } => {
                let is_create = matches!(self, Self::Create { .. });
                object_ref_of(object, is_create)
            }
            Self::Patch { target, .. } | Self::Scale { target, .. } | Self::Delete { target } => {
                check_ref(target)?;
                Ok(target.clone())
            }
        }
    }
}

/// The reference a manifest names. A create may leave the name to `generateName`; the
/// reference then carries the prefix, which only appears in messages.
fn object_ref_of(object: &Value, generate_name_allowed: bool) -> Result<ObjectRef> {
    let invalid = |message: &str| Error::InvalidChange {
        message: message.to_owned(),
    };
    let Value::Object(fields) = object else {
        return Err(invalid("the object must be a mapping"));
    };
    let text = |value: Option<&Value>| value.and_then(Value::as_str).map(str::to_owned);
    let api_version =
        text(fields.get("apiVersion")).ok_or_else(|| invalid("the object has no apiVersion"))?;
    let kind = text(fields.get("kind")).ok_or_else(|| invalid("the object has no kind"))?;
    if kind.ends_with("List") {
        return Err(invalid(
            "lists are applied one object at a time: send each item as its own change",
        ));
    }
    let metadata = fields.get("metadata");
    let namespace = text(metadata.and_then(|m| m.get("namespace")));
    let name = match text(metadata.and_then(|m| m.get("name"))) {
        Some(name) => name,
        None => match text(metadata.and_then(|m| m.get("generateName"))) {
            Some(prefix) if generate_name_allowed => prefix,
            _ => return Err(invalid("the object has no metadata.name")),
        },
    };
    let reference = ObjectRef {
        api_version,
        kind,
        namespace,
        name,
    };
    check_ref(&reference)?;
    Ok(reference)
}

/// Names the API server would refuse anyway are refused here, with a clearer message.
fn check_ref(reference: &ObjectRef) -> Result<()> {
    let invalid = |message: String| Error::InvalidChange { message };
    if reference.api_version.trim().is_empty() || reference.kind.trim().is_empty() {
        return Err(invalid("apiVersion and kind must not be empty".to_owned()));
    }
    let parts: Vec<&str> = reference.api_version.split('/').collect();
    if parts.len() > 2 || parts.iter().any(|part| part.is_empty()) {
        return Err(invalid(format!(
            "apiVersion {:?} is not GROUP/VERSION or VERSION",
            reference.api_version
        )));
    }
    let name_ok = |name: &str| {
        !name.is_empty()
            && name.len() <= 253
            && name.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | ':')
            })
    };
    if !name_ok(&reference.name) {
        return Err(invalid(format!(
            "name {:?} is not a valid Kubernetes name (lowercase letters, digits, '-', '.')",
            reference.name
        )));
    }
    if let Some(namespace) = &reference.namespace {
        let label_ok = namespace.len() <= 63
            && !namespace.is_empty()
            && namespace
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !label_ok {
            return Err(invalid(format!(
                "namespace {namespace:?} is not a valid namespace name"
            )));
        }
    }
    Ok(())
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(namespace) => write!(
                f,
                "{} {} {namespace}/{}",
                self.api_version, self.kind, self.name
            ),
            None => write!(f, "{} {} {}", self.api_version, self.kind, self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn changes_read_as_tagged_json() {
        let change: ClusterChange = serde_json::from_value(json!({
            "action": "scale",
            "target": {"apiVersion": "apps/v1", "kind": "Deployment", "namespace": "shop", "name": "web"},
            "replicas": 5
        }))
        .unwrap();
        assert_eq!(change.verb(), "patch");
        assert_eq!(
            change.target().unwrap().to_string(),
            "apps/v1 Deployment shop/web"
        );
        let unknown = serde_json::from_value::<ClusterChange>(json!({"action": "drop_database"}));
        assert!(unknown.is_err());
    }

    #[test]
    fn manifests_must_name_their_object() {
        let no_name = ClusterChange::Apply {
            object: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "x-"}}),
        };
        assert!(no_name
            .target()
            .unwrap_err()
            .to_string()
            .contains("metadata.name"));
        let generated = ClusterChange::Create {
            object: json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "x-"}}),
        };
        assert_eq!(generated.target().unwrap().name, "x-");
        let list = ClusterChange::Apply {
            object: json!({"apiVersion": "v1", "kind": "List", "items": []}),
        };
        assert!(list.target().is_err());
    }

    #[test]
    fn malformed_names_are_refused_before_the_cluster_sees_them() {
        for (api_version, namespace, name) in [
            ("apps/v1", Some("shop"), "Web"),
            ("apps/v1", Some("shop"), "../etc"),
            ("apps/v1", Some("shop"), ""),
            ("apps/v1", Some("Shop "), "web"),
            ("apps//v1", Some("shop"), "web"),
            ("", None, "web"),
        ] {
            let target = ObjectRef {
                api_version: api_version.into(),
                kind: "Deployment".into(),
                namespace: namespace.map(str::to_owned),
                name: name.into(),
            };
            let change = ClusterChange::Delete { target };
            assert!(
                change.target().is_err(),
                "{api_version} {namespace:?} {name}"
            );
        }
    }
}
