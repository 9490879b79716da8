//! The few kustomize features `k8s/` uses, rendered in the test (kustomize is not on the
//! test machines): `resources` (files and kustomization directories, recursively) and
//! `patches` given by `path` whose target is the object with the patch's apiVersion, kind,
//! name and namespace. A patch is applied as a strategic-merge patch of maps: maps merge
//! key by key, `null` removes a key, and anything else (lists included) replaces. That is
//! what kustomize does for the lists k8s/ patches (tolerations, which have no merge key);
//! a list with a merge key (containers) would differ, so when `kubectl kustomize` is
//! available the tests also compare the output with it. Any other kustomization field is
//! an error here, so an overlay cannot silently use a feature this renderer ignores.

use serde_json::Value;
use std::path::{Path, PathBuf};

/// Fields of a kustomization this renderer implements.
const KNOWN_FIELDS: &[&str] = &["apiVersion", "kind", "resources", "patches"];

/// Renders the kustomization in `dir` into its objects, in kustomize's input order.
pub fn build(dir: &Path) -> Result<Vec<Value>, String> {
    let file = dir.join("kustomization.yaml");
    let kustomization = read_documents(&file)?
        .into_iter()
        .next()
        .ok_or_else(|| format!("{} is empty", file.display()))?;
    let fields = kustomization
        .as_object()
        .ok_or_else(|| format!("{} is not a map", file.display()))?;
    if let Some(unknown) = fields.keys().find(|k| !KNOWN_FIELDS.contains(&k.as_str())) {
        return Err(format!(
            "{}: `{unknown}` is not implemented by the test renderer",
            file.display()
        ));
    }

    let mut objects = Vec::new();
    for resource in strings(fields.get("resources"), &file, "resources")? {
        let path = dir.join(&resource);
        if path.is_dir() {
            objects.extend(build(&path)?);
        } else {
            objects.extend(read_documents(&path)?);
        }
    }

    for patch in fields
        .get("patches")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = match patch.as_object() {
            Some(entry) if entry.len() == 1 => entry.get("path").and_then(Value::as_str),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "{}: only `patches: [{{path: FILE}}]` is implemented, not {patch}",
                file.display()
            )
        })?;
        for patch in read_documents(&dir.join(path))? {
            let id = identity(&patch);
            let mut targets = objects.iter_mut().filter(|object| identity(object) == id);
            let target = targets.next().ok_or_else(|| {
                format!(
                    "{}: the patch {path} matches no object ({id:?})",
                    file.display()
                )
            })?;
            merge(target, patch);
            if targets.next().is_some() {
                return Err(format!(
                    "{}: the patch {path} matches several objects",
                    file.display()
                ));
            }
        }
    }

    let mut seen = std::collections::BTreeSet::new();
    for object in &objects {
        if !seen.insert(identity(object)) {
            return Err(format!(
                "{}: {:?} appears twice",
                file.display(),
                identity(object)
            ));
        }
    }
    Ok(objects)
}

/// apiVersion, kind, namespace, name: what kustomize identifies an object by.
pub type Identity = (String, String, String, String);

/// The identity of `object`.
pub fn identity(object: &Value) -> Identity {
    let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
    (
        text(&object["apiVersion"]),
        text(&object["kind"]),
        text(&object["metadata"]["namespace"]),
        text(&object["metadata"]["name"]),
    )
}

/// The objects `kubectl kustomize DIR` renders, or `None` when kubectl is not installed.
pub fn kubectl_build(dir: &Path) -> Option<Result<Vec<Value>, String>> {
    let output = match std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(dir)
        .output()
    {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => return Some(Err(format!("running kubectl kustomize: {error}"))),
    };
    if !output.status.success() {
        return Some(Err(format!(
            "kubectl kustomize {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Some(parse_documents(
        &String::from_utf8_lossy(&output.stdout),
        &PathBuf::from("kubectl output"),
    ))
}

fn strings(value: Option<&Value>, file: &Path, field: &str) -> Result<Vec<String>, String> {
    value
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|item| {
            item.as_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("{}: `{field}` holds a non-string {item}", file.display()))
        })
        .collect()
}

fn read_documents(path: &Path) -> Result<Vec<Value>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("reading {}: {error}", path.display()))?;
    parse_documents(&text, path)
}

/// Every non-empty document of a YAML stream.
pub fn parse_documents(text: &str, path: &Path) -> Result<Vec<Value>, String> {
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|error| format!("parsing {}: {error}", path.display()))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// `value` with every number as a float: YAML writers differ on `0` and `0.0` (Rust's
/// schema types hold `minimum` as f64), and so does the API server's JSON, while they mean
/// the same thing.
pub fn normalize_numbers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().and_then(serde_json::Number::from_f64) {
                *number = float;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_numbers),
        Value::Object(fields) => fields.values_mut().for_each(normalize_numbers),
        _ => {}
    }
}

/// Strategic merge of maps: see the module documentation.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(&key);
                } else if let Some(existing) = target.get_mut(&key) {
                    merge(existing, value);
                } else {
                    target.insert(key, value);
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn maps_merge_null_removes_lists_replace() {
        let mut target = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "gone": true});
        merge(
            &mut target,
            json!({"a": {"c": 3, "d": 4}, "l": [3], "gone": null}),
        );
        assert_eq!(target, json!({"a": {"b": 1, "c": 3, "d": 4}, "l": [3]}));
    }
}
