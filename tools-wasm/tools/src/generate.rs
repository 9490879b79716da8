//! Shared by the generator tools (deployment, service, ingress, hpa, configmap, secret,
//! helm_chart, terraform_module): input checks that name the field, YAML output, and
//! writing into the workspace without clobbering files.
//!
//! Each generator binary includes this file with `#[path]` (so the tools stay independent
//! of the package's lib target); a binary uses only some of it, hence `allow(dead_code)`.
#![allow(dead_code)]

use deckhand_tool_protocol::{refuse_hard_links, relative_display, workspace_path, ToolError};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

/// The label every generated object carries and every selector matches on.
pub const NAME_LABEL: &str = "app.kubernetes.io/name";
/// Marks objects as written by deckhand, so people know where they came from.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// One object a generator wrote.
#[derive(Debug, Serialize, JsonSchema, PartialEq, Eq)]
pub struct ObjectRef {
    /// The object's apiVersion, e.g. `apps/v1`.
    pub api_version: String,
    /// The object's kind, e.g. `Deployment`.
    pub kind: String,
    /// The object's metadata.name.
    pub name: String,
    /// The object's metadata.namespace, when set.
    pub namespace: Option<String>,
}

/// What a manifest generator returns.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Written {
    /// The workspace-relative path of the file written.
    pub path: String,
    /// The YAML text written to the file.
    pub yaml: String,
    /// The Kubernetes objects in the file.
    pub objects: Vec<ObjectRef>,
    /// Things that are valid but worth a second look (e.g. an image without a pinned tag).
    pub warnings: Vec<String>,
}

fn invalid(field: &str, message: impl std::fmt::Display) -> ToolError {
    ToolError::invalid_input(format!("{field}: {message}"))
}

/// A DNS-1123 label (RFC 1123): what Kubernetes requires of namespaces, container names and
/// most object names that end up in DNS or labels: at most 63 of `a-z0-9-`, starting and
/// ending alphanumeric.
pub fn dns_label(field: &str, value: &str) -> Result<(), ToolError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("{value:?} is not a DNS-1123 label (1-63 lowercase letters, digits or '-', starting and ending with a letter or digit)"),
        ))
    }
}

/// A DNS-1035 label: a DNS-1123 label that starts with a letter. Service names must be
/// one, because they become DNS names of their own.
pub fn dns1035_label(field: &str, value: &str) -> Result<(), ToolError> {
    dns_label(field, value)?;
    if value.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(invalid(field, format!("{value:?} must start with a lowercase letter (DNS-1035 label)")))
    }
}

/// A DNS-1123 subdomain: dot-separated labels, at most 253 characters (Secret, ConfigMap
/// and Ingress names, TLS hosts).
pub fn dns_subdomain(field: &str, value: &str) -> Result<(), ToolError> {
    if value.is_empty() || value.len() > 253 {
        return Err(invalid(field, format!("{value:?} must be 1-253 characters")));
    }
    for part in value.split('.') {
        dns_label(field, part)
            .map_err(|_| invalid(field, format!("{value:?} is not a DNS-1123 subdomain (lowercase labels separated by '.')")))?;
    }
    Ok(())
}

/// An IANA service name, which is what Kubernetes requires of port names: at most 15 of
/// `a-z0-9-`, at least one letter, no leading, trailing or double `-`.
pub fn port_name(field: &str, value: &str) -> Result<(), ToolError> {
    let ok = !value.is_empty()
        && value.len() <= 15
        && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && value.bytes().any(|b| b.is_ascii_lowercase())
        && !value.starts_with('-')
        && !value.ends_with('-')
        && !value.contains("--");
    if ok {
        Ok(())
    } else {
        Err(invalid(field, format!("{value:?} is not a valid port name (1-15 lowercase letters, digits or single '-', with a letter)")))
    }
}

/// A TCP/UDP port number.
pub fn port(field: &str, value: u32) -> Result<i32, ToolError> {
    if (1..=65535).contains(&value) {
        Ok(value as i32)
    } else {
        Err(invalid(field, format!("port {value} is outside 1-65535")))
    }
}

/// A ConfigMap or Secret key: `-`, `_`, `.` and alphanumerics, at most 253.
pub fn data_key(field: &str, value: &str) -> Result<(), ToolError> {
    let ok = !value.is_empty()
        && value.len() <= 253
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value != "."
        && value != "..";
    if ok {
        Ok(())
    } else {
        Err(invalid(field, format!("{value:?} is not a valid key (letters, digits, '-', '_' or '.', at most 253)")))
    }
}

/// A label or annotation key's name part, and a label value: at most 63 of alphanumerics,
/// `-`, `_`, `.`, starting and ending alphanumeric (a value may also be empty).
fn qualified_part(value: &str) -> bool {
    value.len() <= 63
        && value.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && value.starts_with(|c: char| c.is_ascii_alphanumeric())
        && value.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label or annotation key: `[prefix/]name`, the prefix a DNS subdomain.
pub fn qualified_key(field: &str, key: &str) -> Result<(), ToolError> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns_subdomain(field, prefix).map_err(|_| invalid(field, format!("key {key:?} has an invalid prefix {prefix:?}")))?;
    }
    if qualified_part(name) {
        Ok(())
    } else {
        Err(invalid(field, format!("key {key:?} is not a valid label/annotation key ([prefix/]name, name 1-63 letters, digits, '-', '_', '.')")))
    }
}

/// Label keys and values, checked the way the API server checks them.
pub fn labels(field: &str, labels: &BTreeMap<String, String>) -> Result<(), ToolError> {
    for (key, value) in labels {
        qualified_key(field, key)?;
        if !value.is_empty() && !qualified_part(value) {
            return Err(invalid(
                field,
                format!("value {value:?} of {key:?} is not a valid label value (at most 63 letters, digits, '-', '_', '.')"),
            ));
        }
    }
    Ok(())
}

/// Annotation keys (values are free text).
pub fn annotations(field: &str, annotations: &BTreeMap<String, String>) -> Result<(), ToolError> {
    annotations.keys().try_for_each(|key| qualified_key(field, key))
}

/// A resource quantity such as `250m`, `1.5`, `128Mi` or `1e3`, as a number (cores or
/// bytes), so requests can be compared with limits.
pub fn quantity(field: &str, text: &str) -> Result<f64, ToolError> {
    const SUFFIXES: [(&str, f64); 14] = [
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
        ("n", 1e-9),
        ("u", 1e-6),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
    ];
    let bad = || invalid(field, format!("{text:?} is not a resource quantity (e.g. 250m, 0.5, 128Mi, 1Gi)"));
    let (number, factor) = SUFFIXES
        .iter()
        .find_map(|(suffix, factor)| text.strip_suffix(suffix).map(|n| (n, *factor)))
        .unwrap_or((text, 1.0));
    // Rust's float parser also takes "inf", "NaN" and "+1"; Kubernetes takes none of them.
    let plain = !number.is_empty()
        && number.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && number.bytes().filter(|&b| b == b'.').count() <= 1
        && number.bytes().any(|b| b.is_ascii_digit());
    if !plain {
        return Err(bad());
    }
    number.parse::<f64>().map(|n| n * factor).map_err(|_| bad())
}

/// A container image reference: no whitespace, not empty. Returns a warning when the image
/// is not pinned (no tag, or `latest`), since a rollout then depends on when a node pulls.
pub fn image(field: &str, image: &str) -> Result<Option<String>, ToolError> {
    if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(field, format!("{image:?} is not a container image reference")));
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    let pinned = image.contains('@') || last.split_once(':').is_some_and(|(_, tag)| tag != "latest");
    Ok((!pinned).then(|| format!("{field}: image {image:?} is not pinned to a version; use a tag or a digest")))
}

/// `metadata` with the standard labels (`app.kubernetes.io/name`, `managed-by`) plus the
/// caller's, and the namespace when given.
pub fn metadata(name: &str, namespace: Option<&str>, extra_labels: &BTreeMap<String, String>) -> Value {
    let mut metadata = Map::new();
    metadata.insert("name".into(), name.into());
    if let Some(namespace) = namespace {
        metadata.insert("namespace".into(), namespace.into());
    }
    metadata.insert("labels".into(), Value::Object(standard_labels(name, extra_labels)));
    Value::Object(metadata)
}

/// The standard labels plus the caller's (which win on a clash, so a caller can say
/// `app.kubernetes.io/name` differently).
pub fn standard_labels(name: &str, extra: &BTreeMap<String, String>) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert(NAME_LABEL.into(), name.into());
    labels.insert(MANAGED_BY_LABEL.into(), "deckhand".into());
    for (key, value) in extra {
        labels.insert(key.clone(), value.clone().into());
    }
    labels
}

/// Checks the common `name`/`namespace` pair: the name a DNS-1123 label (it becomes a label
/// value and, for most kinds, part of DNS names), the namespace a DNS-1123 label.
pub fn name_and_namespace(name: &str, namespace: Option<&str>) -> Result<(), ToolError> {
    dns_label("name", name)?;
    if let Some(namespace) = namespace {
        dns_label("namespace", namespace)?;
    }
    Ok(())
}

/// Renders objects as one YAML stream, a header comment first, `---` between documents.
pub fn to_yaml(header: &str, objects: &[Value]) -> Result<String, ToolError> {
    let mut text = String::new();
    for line in header.lines() {
        text.push_str("# ");
        text.push_str(line);
        text.push('\n');
    }
    for (index, object) in objects.iter().enumerate() {
        if index > 0 {
            text.push_str("---\n");
        }
        let yaml = serde_yaml_ng::to_string(object).map_err(|e| ToolError::new("internal", format!("cannot render YAML: {e}")))?;
        text.push_str(&yaml);
    }
    Ok(text)
}

/// The kind/name of each object, for the tool's output.
pub fn object_refs(objects: &[Value]) -> Vec<ObjectRef> {
    let field = |object: &Value, pointer: &str| object.pointer(pointer).and_then(Value::as_str).map(str::to_owned);
    objects
        .iter()
        .map(|object| ObjectRef {
            api_version: field(object, "/apiVersion").unwrap_or_default(),
            kind: field(object, "/kind").unwrap_or_default(),
            name: field(object, "/metadata/name").unwrap_or_default(),
            namespace: field(object, "/metadata/namespace"),
        })
        .collect()
}

/// Writes a manifest made of `objects` to the workspace file `path` and describes it.
pub fn write_manifest(
    path: &str,
    overwrite: bool,
    header: &str,
    objects: &[Value],
    warnings: Vec<String>,
) -> Result<Written, ToolError> {
    let yaml = to_yaml(header, objects)?;
    let written = write_file(path, overwrite, &yaml)?;
    Ok(Written { path: written, yaml, objects: object_refs(objects), warnings })
}

/// Checks that `path` may be written (it is inside the workspace, and it is new or
/// `overwrite` is set and it is a plain file), without writing. Generators that write
/// several files check them all first, so a refusal leaves nothing half-written.
pub fn check_writable(path: &str, overwrite: bool) -> Result<std::path::PathBuf, ToolError> {
    let guest = workspace_path(path)?;
    match std::fs::symlink_metadata(&guest) {
        Ok(metadata) if !overwrite => {
            let what = if metadata.is_dir() { "a directory" } else { "a file" };
            Err(ToolError::new("already_exists", format!("{path} already exists ({what}); pass overwrite: true to replace it")))
        }
        Ok(metadata) if !metadata.is_file() => {
            Err(ToolError::new("not_a_file", format!("{path} exists and is not a regular file; it will not be replaced")))
        }
        // Writing through a second hard link would change a file that may live outside.
        Ok(metadata) => refuse_hard_links(path, &metadata).map(|()| guest),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(guest),
        Err(error) => Err(ToolError::io(path, &error)),
    }
}

/// Writes `text` to the workspace file `path`, creating parent folders; refuses to replace
/// an existing file unless `overwrite`. Returns the workspace-relative path.
pub fn write_file(path: &str, overwrite: bool, text: &str) -> Result<String, ToolError> {
    let guest = check_writable(path, overwrite)?;
    if let Some(parent) = guest.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ToolError::io(path, &e))?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        // create_new closes the gap between the check above and the write.
        options.create_new(true);
    }
    let mut file = options.open(&guest).map_err(|e| ToolError::io(path, &e))?;
    file.write_all(text.as_bytes()).map_err(|e| ToolError::io(path, &e))?;
    Ok(relative_display(&guest))
}

/// The workspace-relative form of `folder/file`, for multi-file generators.
pub fn join(folder: &str, file: &str) -> String {
    relative_display(&Path::new(folder).join(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_api_servers_rules() {
        assert!(dns_label("name", "web-1").is_ok());
        for bad in ["", "Web", "-web", "web-", "web_1", &"a".repeat(64)] {
            let error = dns_label("name", bad).unwrap_err();
            assert_eq!(error.kind, "invalid_input");
            assert!(error.message.starts_with("name: "), "{error:?}");
        }
        assert!(dns1035_label("name", "1web").is_err());
        assert!(dns_subdomain("host", "api.example.com").is_ok());
        assert!(dns_subdomain("host", "api..example.com").is_err());
        assert!(port_name("p", "http").is_ok());
        for bad in ["80", "http--x", "a-very-long-port-name", "HTTP"] {
            assert!(port_name("p", bad).is_err(), "{bad}");
        }
        assert!(port("port", 0).is_err() && port("port", 65536).is_err() && port("port", 443).is_ok());
    }

    #[test]
    fn labels_and_keys_are_checked() {
        let good = BTreeMap::from([("team".to_owned(), "payments".to_owned()), ("example.com/tier".to_owned(), "".to_owned())]);
        assert!(labels("labels", &good).is_ok());
        let bad_value = BTreeMap::from([("team".to_owned(), "has space".to_owned())]);
        assert!(labels("labels", &bad_value).unwrap_err().message.contains("has space"));
        let bad_key = BTreeMap::from([("-team".to_owned(), "x".to_owned())]);
        assert!(labels("labels", &bad_key).is_err());
        assert!(data_key("data", "app.properties").is_ok());
        assert!(data_key("data", "a/b").is_err());
    }

    #[test]
    fn quantities_parse_to_comparable_numbers() {
        assert_eq!(quantity("cpu", "250m").unwrap(), 0.25);
        assert_eq!(quantity("cpu", "2").unwrap(), 2.0);
        assert_eq!(quantity("memory", "128Mi").unwrap(), 134217728.0);
        assert_eq!(quantity("memory", "1G").unwrap(), 1e9);
        for bad in ["", "Mi", "1.2.3", "inf", "-1", "12 Mi", "1x"] {
            assert!(quantity("q", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unpinned_images_are_warned_about() {
        assert!(image("image", "nginx").unwrap().is_some());
        assert!(image("image", "nginx:latest").unwrap().is_some());
        assert!(image("image", "registry:5000/nginx").unwrap().is_some());
        assert!(image("image", "registry:5000/nginx:1.27").unwrap().is_none());
        assert!(image("image", "nginx@sha256:abc").unwrap().is_none());
        assert!(image("image", "ng inx").is_err());
    }

    #[test]
    fn yaml_keeps_the_written_key_order_and_separates_documents() {
        let objects = [serde_json::json!({"apiVersion": "v1", "kind": "A", "metadata": {"name": "a"}}), serde_json::json!({"kind": "B"})];
        let text = to_yaml("made by a test", &objects).unwrap();
        assert_eq!(text, "# made by a test\napiVersion: v1\nkind: A\nmetadata:\n  name: a\n---\nkind: B\n");
        let refs = object_refs(&objects);
        assert_eq!(refs[0], ObjectRef { api_version: "v1".into(), kind: "A".into(), name: "a".into(), namespace: None });
    }
}
