//! Reading Kubernetes objects as JSON: paths, names, quantities and pod templates. The
//! analyzers take whatever the cluster (or a person) sends, so every accessor here
//! tolerates missing and mistyped fields instead of failing.

use serde_json::Value;

/// The string at `path` (object keys), if there is one.
pub fn str_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(value, path).and_then(Value::as_str)
}

/// The value at `path` (object keys), if there is one.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |current, key| current.get(key))
}

/// The array at `path`, or an empty slice.
pub fn array_at<'a>(value: &'a Value, path: &[&str]) -> &'a [Value] {
    at(value, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The boolean at `path`, if there is one.
pub fn bool_at(value: &Value, path: &[&str]) -> Option<bool> {
    at(value, path).and_then(Value::as_bool)
}

/// The integer at `path`, if there is one.
pub fn i64_at(value: &Value, path: &[&str]) -> Option<i64> {
    at(value, path).and_then(Value::as_i64)
}

/// `kind`, or `"object"` when it has none.
pub fn kind(object: &Value) -> &str {
    str_at(object, &["kind"]).unwrap_or("object")
}

/// `metadata.name`, or `"<unnamed>"`.
pub fn name(object: &Value) -> &str {
    str_at(object, &["metadata", "name"]).unwrap_or("<unnamed>")
}

/// `metadata.namespace`, when set.
pub fn namespace(object: &Value) -> Option<&str> {
    str_at(object, &["metadata", "namespace"])
}

/// How people name an object: `apps/v1 Deployment shop/web` (the cluster tools' form).
pub fn describe(object: &Value) -> String {
    let api_version = str_at(object, &["apiVersion"]).unwrap_or("v1");
    match namespace(object) {
        Some(namespace) => format!(
            "{api_version} {} {namespace}/{}",
            kind(object),
            name(object)
        ),
        None => format!("{api_version} {} {}", kind(object), name(object)),
    }
}

/// The pod spec of a workload or pod: a Pod's `spec`, a CronJob's job template's pod
/// template, and every other workload's `spec.template.spec`.
pub fn pod_spec(object: &Value) -> Option<&Value> {
    match kind(object) {
        "Pod" => at(object, &["spec"]),
        "CronJob" => at(object, &["spec", "jobTemplate", "spec", "template", "spec"]),
        _ => at(object, &["spec", "template", "spec"]),
    }
}

/// Where the pod spec sits inside `object`, as keys (for patches).
pub fn pod_spec_path(object: &Value) -> &'static [&'static str] {
    match kind(object) {
        "Pod" => &["spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => &["spec", "template", "spec"],
    }
}

/// Whether `kind` has a pod template (or is a Pod).
pub fn is_workload_kind(kind: &str) -> bool {
    matches!(
        kind,
        "Pod" | "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob"
    )
}

/// The object with `patch` nested under `path`: `{"spec": {"template": ...patch}}`.
pub fn nest(path: &[&str], patch: Value) -> Value {
    path.iter().rev().fold(patch, |inner, key| {
        let mut object = serde_json::Map::new();
        object.insert((*key).to_owned(), inner);
        Value::Object(object)
    })
}

/// A memory quantity in bytes (`256Mi`, `1G`, `1.5Gi`, `134217728`, `129e6`).
pub fn memory_bytes(quantity: &str) -> Option<f64> {
    let quantity = quantity.trim();
    let split = quantity
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        "m" => 1e-3,
        _ => return None,
    };
    Some(number * factor)
}

/// A CPU quantity in millicores (`250m`, `1`, `0.5`).
pub fn cpu_millicores(quantity: &str) -> Option<f64> {
    let quantity = quantity.trim();
    match quantity.strip_suffix('m') {
        Some(millis) => millis.parse().ok(),
        None => quantity.parse::<f64>().ok().map(|cores| cores * 1000.0),
    }
}

/// Bytes as a memory quantity a person writes in a manifest: whole Mi, rounded up to a
/// multiple of 64Mi, or whole Gi when that is exact.
pub fn format_memory(bytes: f64) -> String {
    const MI: f64 = 1024.0 * 1024.0;
    let mebibytes = ((bytes / MI) / 64.0).ceil().max(1.0) * 64.0;
    if mebibytes % 1024.0 == 0.0 {
        format!("{}Gi", mebibytes / 1024.0)
    } else {
        format!("{mebibytes}Mi")
    }
}

/// Millicores as a CPU quantity, rounded up to 10m.
pub fn format_cpu(millicores: f64) -> String {
    let rounded = ((millicores / 10.0).ceil().max(1.0) * 10.0) as u64;
    if rounded % 1000 == 0 {
        format!("{}", rounded / 1000)
    } else {
        format!("{rounded}m")
    }
}

/// The workload that owns a pod, from its owner references: a ReplicaSet's name with the
/// pod-template hash removed names its Deployment.
pub fn pod_owner(pod: &Value) -> Option<(String, String)> {
    let owner = array_at(pod, &["metadata", "ownerReferences"])
        .iter()
        .find(|owner| owner.get("controller").and_then(Value::as_bool) != Some(false))?;
    let kind = str_at(owner, &["kind"])?;
    let name = str_at(owner, &["name"])?;
    if kind == "ReplicaSet" {
        let hash = str_at(pod, &["metadata", "labels", "pod-template-hash"]);
        if let Some(deployment) = hash.and_then(|hash| name.strip_suffix(&format!("-{hash}"))) {
            return Some(("Deployment".to_owned(), deployment.to_owned()));
        }
        if let Some((deployment, _)) = name.rsplit_once('-') {
            return Some(("Deployment".to_owned(), deployment.to_owned()));
        }
    }
    Some((kind.to_owned(), name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_and_format() {
        assert_eq!(memory_bytes("256Mi"), Some(268_435_456.0));
        assert_eq!(memory_bytes("1Gi"), Some(1_073_741_824.0));
        assert_eq!(memory_bytes("129e6"), Some(129e6));
        assert_eq!(memory_bytes("lots"), None);
        assert_eq!(cpu_millicores("250m"), Some(250.0));
        assert_eq!(cpu_millicores("1.5"), Some(1500.0));
        assert_eq!(format_memory(300.0 * 1024.0 * 1024.0), "320Mi");
        assert_eq!(format_memory(1000.0 * 1024.0 * 1024.0), "1Gi");
        assert_eq!(format_cpu(333.0), "340m");
        assert_eq!(format_cpu(2000.0), "2");
    }

    #[test]
    fn owners_and_templates_are_found() {
        let pod = json!({"kind": "Pod", "metadata": {"name": "web-7c9f-abcde",
            "labels": {"pod-template-hash": "7c9f"},
            "ownerReferences": [{"kind": "ReplicaSet", "name": "web-7c9f", "controller": true}]},
            "spec": {"containers": []}});
        assert_eq!(pod_owner(&pod), Some(("Deployment".into(), "web".into())));
        assert!(pod_spec(&pod).is_some());
        let cron = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template": {"spec": {"containers": []}}}}}});
        assert!(pod_spec(&cron).is_some());
        assert_eq!(nest(&["a", "b"], json!(1)), json!({"a": {"b": 1}}));
    }
}
