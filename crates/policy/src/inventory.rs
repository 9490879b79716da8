//! Objects already in the cluster, for the policies that need them: Gatekeeper's
//! `data.inventory` and the built-in guard that looks up the ClusterRole a binding names.

use crate::error::{Error, Result};
use crate::request::parse_documents;
use crate::review::string_at;
use serde_json::{Map, Value};

/// A snapshot of cluster objects.
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    objects: Vec<Value>,
    gatekeeper_data: Value,
}

impl Inventory {
    /// An inventory of these objects (a `List`'s items are taken one by one).
    pub fn new(objects: Vec<Value>) -> Self {
        let mut flat = Vec::new();
        for object in objects {
            flatten_into(object, &mut flat);
        }
        let gatekeeper_data = gatekeeper_layout(&flat);
        Self {
            objects: flat,
            gatekeeper_data,
        }
    }

    /// Reads an inventory from YAML or JSON text: several documents, a `List`, or both.
    ///
    /// # Errors
    /// [`Error::InvalidInventory`] when the text does not parse or holds something other
    /// than objects.
    pub fn from_text(text: &str, origin: &str) -> Result<Self> {
        let documents = parse_documents(text).map_err(|message| Error::InvalidInventory {
            origin: origin.to_string(),
            message,
        })?;
        if let Some(index) = documents.iter().position(|document| !document.is_object()) {
            return Err(Error::InvalidInventory {
                origin: origin.to_string(),
                message: format!("document {index} is not a Kubernetes object"),
            });
        }
        Ok(Self::new(documents))
    }

    /// The objects, lists already flattened.
    pub fn objects(&self) -> &[Value] {
        &self.objects
    }

    /// `data.inventory` as Gatekeeper lays it out: `cluster[groupVersion][kind][name]` for
    /// cluster-scoped objects and `namespace[ns][groupVersion][kind][name]` for the rest.
    pub fn gatekeeper_data(&self) -> &Value {
        &self.gatekeeper_data
    }
}

fn flatten_into(object: Value, flat: &mut Vec<Value>) {
    match object.get("items").and_then(Value::as_array) {
        Some(items) => {
            for item in items.clone() {
                flatten_into(item, flat);
            }
        }
        None => flat.push(object),
    }
}

fn gatekeeper_layout(objects: &[Value]) -> Value {
    let mut cluster = Map::new();
    let mut namespaced = Map::new();
    for object in objects {
        let (Some(kind), Some(name)) = (
            object.get("kind").and_then(Value::as_str),
            string_at(object, &["metadata", "name"]),
        ) else {
            continue;
        };
        let group_version = object
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("v1");
        let scope = match string_at(object, &["metadata", "namespace"]) {
            Some(namespace) => entry(&mut namespaced, namespace),
            None => &mut cluster,
        };
        let by_kind = entry(entry(scope, group_version), kind);
        by_kind.insert(name.to_string(), object.clone());
    }
    let mut inventory = Map::new();
    inventory.insert("cluster".into(), Value::Object(cluster));
    inventory.insert("namespace".into(), Value::Object(namespaced));
    Value::Object(inventory)
}

fn entry<'a>(map: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = map
        .entry(key.to_string())
        .or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    match slot {
        Value::Object(inner) => inner,
        _ => unreachable!("the slot was just made an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_objects_out_as_gatekeeper_does() {
        let text = "apiVersion: v1\nkind: List\nitems:\n\
                    - {apiVersion: v1, kind: Namespace, metadata: {name: team-a}}\n\
                    - {apiVersion: networking.k8s.io/v1, kind: Ingress, metadata: {name: web, namespace: team-a}}\n\
                    ---\n\
                    apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: root}\n";
        let inventory = Inventory::from_text(text, "test").expect("inventory parses");
        assert_eq!(inventory.objects().len(), 3);
        let data = inventory.gatekeeper_data();
        assert!(data["cluster"]["v1"]["Namespace"]["team-a"].is_object());
        assert!(data["cluster"]["rbac.authorization.k8s.io/v1"]["ClusterRole"]["root"].is_object());
        assert!(data["namespace"]["team-a"]["networking.k8s.io/v1"]["Ingress"]["web"].is_object());
    }

    #[test]
    fn refuses_documents_that_are_not_objects() {
        assert!(Inventory::from_text("- a\n- b\n", "test").is_err());
    }
}
