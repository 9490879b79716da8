//! `yaml_validate`: checks a multi-document YAML file (or text): YAML syntax with line
//! numbers, apiVersion/kind/metadata.name on every object, and, for the core Kubernetes
//! kinds, unknown fields and wrong types with their paths.
//!
//! The schema check deserializes an object into its k8s-openapi type (which reports the
//! first wrong type with its path, via serde_path_to_error), serializes it back and diffs
//! the two: k8s-openapi ignores fields it does not know, so whatever the round trip lost is
//! a field Kubernetes does not know either (an API server before 1.25 drops those silently;
//! a newer one with strict validation refuses them).

#![forbid(unsafe_code)]

use deckhand_tool_protocol::{refuse_hard_links, run, workspace_path, ToolError, ToolInfo, WorkspaceAccess};
use k8s_openapi::api;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Read;

/// Larger files are refused: this is for manifests, and the sandbox caps output anyway.
const MAX_BYTES: u64 = 2 * 1024 * 1024;

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Workspace-relative path of the YAML file to check. Give this or `content`.
    path: Option<String>,
    /// YAML text to check instead of a file. Give this or `path`.
    content: Option<String>,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    /// True when no document has an error (warnings allowed).
    valid: bool,
    /// Errors over all documents.
    error_count: usize,
    /// Warnings over all documents.
    warning_count: usize,
    /// One entry per non-empty document, in file order.
    documents: Vec<Document>,
}

/// The result for one YAML document.
#[derive(Serialize, JsonSchema)]
struct Document {
    /// Position of the document among the non-empty documents of the stream, from 0.
    index: usize,
    /// Line (from 1) where the document starts.
    line: usize,
    /// The object's apiVersion, when present.
    api_version: Option<String>,
    /// The object's kind, when present.
    kind: Option<String>,
    /// The object's metadata.name, when present.
    name: Option<String>,
    /// True when the object was checked against its kind's schema (the core kinds).
    schema_checked: bool,
    /// What is wrong: Kubernetes would refuse the object or silently drop fields.
    errors: Vec<Problem>,
    /// What was not checked or looks doubtful.
    warnings: Vec<Problem>,
}

/// One finding.
#[derive(Serialize, JsonSchema)]
struct Problem {
    /// Where in the object, e.g. `spec.template.spec.containers[0].image` (empty for the
    /// document as a whole).
    path: String,
    /// Line in the file (from 1), when it can be told.
    line: Option<usize>,
    /// Column (from 1), for syntax errors.
    column: Option<usize>,
    /// What is wrong.
    message: String,
}

/// One step of a path inside an object.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn display(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(key) if text.is_empty() => text.push_str(key),
            Step::Key(key) => {
                text.push('.');
                text.push_str(key);
            }
            Step::Index(index) => text.push_str(&format!("[{index}]")),
        }
    }
    text
}

/// A YAML document's text and where it starts.
struct Chunk<'a> {
    first_line: usize,
    lines: Vec<&'a str>,
    /// The `---` marker line with the marker blanked, so text after it still parses.
    marker_rest: Option<String>,
}

impl Chunk<'_> {
    fn text(&self) -> String {
        let mut text = String::new();
        for (i, line) in self.lines.iter().enumerate() {
            match (&self.marker_rest, i) {
                (Some(rest), 0) => text.push_str(rest),
                _ => text.push_str(line),
            }
            text.push('\n');
        }
        text
    }
}

/// Splits a YAML stream at its `---` (and `...`) markers, keeping line numbers, so each
/// document is parsed alone: a syntax error costs one document, not the file.
fn split(text: &str) -> Vec<Chunk<'_>> {
    let is_marker = |line: &str, marker: &str| {
        line.strip_prefix(marker).is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    };
    let mut chunks = vec![Chunk { first_line: 1, lines: Vec::new(), marker_rest: None }];
    for (number, line) in text.lines().enumerate() {
        if is_marker(line, "---") || is_marker(line, "...") {
            let rest = is_marker(line, "---").then(|| format!("   {}", &line[3..]));
            chunks.push(Chunk { first_line: number + 1, lines: vec![line], marker_rest: rest.or(Some(String::new())) });
        } else if let Some(chunk) = chunks.last_mut() {
            chunk.lines.push(line);
        }
    }
    chunks
}

/// Finds the line of `path` in a block-style document: each key is searched below its
/// parent and indented deeper; list items are counted by their `- ` markers. Returns
/// `None` when the layout (e.g. flow style) defeats it: a missing line beats a wrong one.
fn locate(lines: &[&str], path: &[Step]) -> Option<usize> {
    let mut position = 0;
    let mut min_indent = 0;
    let indent = |line: &str| line.len() - line.trim_start_matches(' ').len();
    let meaningful = |line: &str| !line.trim().is_empty() && !line.trim_start().starts_with('#');
    // The key of a line, after any `- ` list markers, and its column.
    let key_of = |line: &str| -> Option<(usize, String)> {
        let mut column = indent(line);
        let mut rest = &line[column..];
        while let Some(after) = rest.strip_prefix("- ") {
            let skipped = after.len() - after.trim_start_matches(' ').len();
            column += 2 + skipped;
            rest = &after[skipped..];
        }
        let (key, _) = rest.split_once(':')?;
        let key = key.trim().trim_matches(|c| c == '"' || c == '\'');
        Some((column, key.to_owned()))
    };
    let mut found = None;
    for step in path {
        match step {
            Step::Key(wanted) => {
                let mut hit = None;
                for (i, line) in lines.iter().enumerate().skip(position) {
                    if !meaningful(line) {
                        continue;
                    }
                    let (column, key) = key_of(line).unwrap_or((indent(line), String::new()));
                    if column < min_indent {
                        break;
                    }
                    if &key == wanted {
                        hit = Some((i, column));
                        break;
                    }
                }
                let (i, column) = hit?;
                found = Some(i);
                position = i + 1;
                min_indent = column + 1;
            }
            Step::Index(wanted) => {
                // Items may sit at their parent key's own indentation (`containers:\n- name`).
                let floor = min_indent.saturating_sub(1);
                let mut dash_indent = None;
                let mut count = 0;
                let mut hit = None;
                for (i, line) in lines.iter().enumerate().skip(position) {
                    if !meaningful(line) {
                        continue;
                    }
                    let column = indent(line);
                    if column < floor || dash_indent.is_some_and(|d| column < d) {
                        break;
                    }
                    let is_item = line[column..].starts_with("- ") || line[column..].trim_end() == "-";
                    match dash_indent {
                        None if is_item => dash_indent = Some(column),
                        None => return None,
                        Some(d) if is_item && column == d => count += 1,
                        Some(_) => continue,
                    }
                    if count == *wanted {
                        hit = Some((i, column));
                        break;
                    }
                }
                let (i, column) = hit?;
                found = Some(i);
                position = i;
                min_indent = column + 1;
            }
        }
    }
    found
}

/// Paths of keys in `given` that `kept` lacks. Nulls are skipped: they mean "unset".
fn dropped(given: &Value, kept: &Value, path: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
    match (given, kept) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                path.push(Step::Key(key.clone()));
                match kept.get(key) {
                    _ if value.is_null() => {}
                    Some(kept) => dropped(value, kept, path, out),
                    None => out.push(path.clone()),
                }
                path.pop();
            }
        }
        (Value::Array(given), Value::Array(kept)) => {
            for (index, (value, kept)) in given.iter().zip(kept).enumerate() {
                path.push(Step::Index(index));
                dropped(value, kept, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// Checks `object` against the k8s-openapi type `K`: the first wrong type or missing
/// required field, or else every unknown field.
fn schema<K: DeserializeOwned + Serialize>(object: &Value) -> Vec<(Vec<Step>, String)> {
    match serde_path_to_error::deserialize::<_, K>(object) {
        Err(error) => {
            let path = error
                .path()
                .iter()
                .filter_map(|segment| match segment {
                    serde_path_to_error::Segment::Map { key } => Some(Step::Key(key.clone())),
                    serde_path_to_error::Segment::Seq { index } => Some(Step::Index(*index)),
                    _ => None,
                })
                .collect();
            vec![(path, error.into_inner().to_string())]
        }
        Ok(typed) => {
            let kept = match serde_json::to_value(&typed) {
                Ok(kept) => kept,
                Err(error) => return vec![(Vec::new(), format!("cannot re-serialize the object: {error}"))],
            };
            let mut unknown = Vec::new();
            dropped(object, &kept, &mut Vec::new(), &mut unknown);
            unknown.into_iter().map(|path| (path, "unknown field".to_owned())).collect()
        }
    }
}

type Check = fn(&Value) -> Vec<(Vec<Step>, String)>;

/// The kinds checked against a schema, by apiVersion and kind.
fn checker(api_version: &str, kind: &str) -> Option<Check> {
    let check: Check = match (api_version, kind) {
        ("apps/v1", "Deployment") => schema::<api::apps::v1::Deployment>,
        ("apps/v1", "StatefulSet") => schema::<api::apps::v1::StatefulSet>,
        ("apps/v1", "DaemonSet") => schema::<api::apps::v1::DaemonSet>,
        ("v1", "Service") => schema::<api::core::v1::Service>,
        ("v1", "ConfigMap") => schema::<api::core::v1::ConfigMap>,
        ("v1", "Secret") => schema::<api::core::v1::Secret>,
        ("v1", "Pod") => schema::<api::core::v1::Pod>,
        ("v1", "Namespace") => schema::<api::core::v1::Namespace>,
        ("v1", "ServiceAccount") => schema::<api::core::v1::ServiceAccount>,
        ("v1", "PersistentVolumeClaim") => schema::<api::core::v1::PersistentVolumeClaim>,
        ("networking.k8s.io/v1", "Ingress") => schema::<api::networking::v1::Ingress>,
        ("networking.k8s.io/v1", "NetworkPolicy") => schema::<api::networking::v1::NetworkPolicy>,
        ("autoscaling/v2", "HorizontalPodAutoscaler") => schema::<api::autoscaling::v2::HorizontalPodAutoscaler>,
        // v2beta2 has the same fields as v2; k8s-openapi carries only the current version.
        ("autoscaling/v2beta2", "HorizontalPodAutoscaler") => |object: &Value| {
            let mut as_v2 = object.clone();
            as_v2["apiVersion"] = "autoscaling/v2".into();
            schema::<api::autoscaling::v2::HorizontalPodAutoscaler>(&as_v2)
        },
        ("autoscaling/v1", "HorizontalPodAutoscaler") => schema::<api::autoscaling::v1::HorizontalPodAutoscaler>,
        ("batch/v1", "Job") => schema::<api::batch::v1::Job>,
        ("batch/v1", "CronJob") => schema::<api::batch::v1::CronJob>,
        ("rbac.authorization.k8s.io/v1", "Role") => schema::<api::rbac::v1::Role>,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => schema::<api::rbac::v1::RoleBinding>,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => schema::<api::rbac::v1::ClusterRole>,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => schema::<api::rbac::v1::ClusterRoleBinding>,
        _ => return None,
    };
    Some(check)
}

/// The apiVersion each core kind is checked at, for a hint when another one is used.
fn checked_version(kind: &str) -> Option<&'static str> {
    const KINDS: [(&str, &str); 19] = [
        ("Deployment", "apps/v1"),
        ("StatefulSet", "apps/v1"),
        ("DaemonSet", "apps/v1"),
        ("Service", "v1"),
        ("ConfigMap", "v1"),
        ("Secret", "v1"),
        ("Pod", "v1"),
        ("Namespace", "v1"),
        ("ServiceAccount", "v1"),
        ("PersistentVolumeClaim", "v1"),
        ("Ingress", "networking.k8s.io/v1"),
        ("NetworkPolicy", "networking.k8s.io/v1"),
        ("HorizontalPodAutoscaler", "autoscaling/v2"),
        ("Job", "batch/v1"),
        ("CronJob", "batch/v1"),
        ("Role", "rbac.authorization.k8s.io/v1"),
        ("RoleBinding", "rbac.authorization.k8s.io/v1"),
        ("ClusterRole", "rbac.authorization.k8s.io/v1"),
        ("ClusterRoleBinding", "rbac.authorization.k8s.io/v1"),
    ];
    KINDS.iter().find(|(k, _)| *k == kind).map(|(_, version)| *version)
}

fn check_document(chunk: &Chunk<'_>) -> Option<Document> {
    let mut document = Document {
        index: 0,
        line: chunk.first_line,
        api_version: None,
        kind: None,
        name: None,
        schema_checked: false,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let problem = |path: &[Step], message: String| Problem {
        path: display(path),
        line: locate(&chunk.lines, path).map(|i| chunk.first_line + i),
        column: None,
        message,
    };
    let object: Value = match serde_yaml_ng::from_str(&chunk.text()) {
        Ok(Value::Null) => return None,
        Ok(object) => object,
        Err(error) => {
            let location = error.location();
            document.errors.push(Problem {
                path: String::new(),
                line: location.as_ref().map(|l| chunk.first_line + l.line() - 1),
                column: location.as_ref().map(|l| l.column()),
                message: format!("YAML syntax: {error}"),
            });
            return Some(document);
        }
    };
    let Some(fields) = object.as_object() else {
        document.errors.push(problem(&[], "the document is not a mapping, so not a Kubernetes object".to_owned()));
        return Some(document);
    };
    let text_field = |key: &str, document: &mut Document| -> Option<String> {
        match fields.get(key) {
            Some(Value::String(text)) if !text.is_empty() => Some(text.clone()),
            Some(_) => {
                document.errors.push(problem(&[Step::Key(key.to_owned())], format!("{key} must be a non-empty string")));
                None
            }
            None => {
                document.errors.push(problem(&[], format!("{key} is missing")));
                None
            }
        }
    };
    document.api_version = text_field("apiVersion", &mut document);
    document.kind = text_field("kind", &mut document);
    let metadata = fields.get("metadata");
    document.name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str).map(str::to_owned);
    let generate_name = metadata.and_then(|m| m.get("generateName")).is_some_and(Value::is_string);
    match metadata {
        None => document.errors.push(problem(&[], "metadata is missing".to_owned())),
        Some(Value::Object(_)) if document.name.is_none() && !generate_name => {
            document.errors.push(problem(&[Step::Key("metadata".into())], "metadata.name is missing".to_owned()))
        }
        _ => {}
    }
    let (Some(api_version), Some(kind)) = (document.api_version.clone(), document.kind.clone()) else {
        return Some(document);
    };
    match checker(&api_version, &kind) {
        Some(check) => {
            document.schema_checked = true;
            for (path, message) in check(&object) {
                document.errors.push(problem(&path, message));
            }
        }
        None => {
            let message = match checked_version(&kind) {
                Some(version) => format!("{kind} at {api_version} is not checked against a schema (checked: {version}); the version may be deprecated or removed"),
                None => format!("{api_version} {kind} is not one of the core kinds: only apiVersion, kind and metadata were checked"),
            };
            document.warnings.push(problem(&[], message));
        }
    }
    Some(document)
}

fn read(path: &str) -> Result<String, ToolError> {
    let guest = workspace_path(path)?;
    let file = std::fs::File::open(&guest).map_err(|e| ToolError::io(path, &e))?;
    let metadata = file.metadata().map_err(|e| ToolError::io(path, &e))?;
    if !metadata.is_file() {
        return Err(ToolError::new("not_a_file", format!("{path} is not a regular file")));
    }
    refuse_hard_links(path, &metadata)?;
    if metadata.len() > MAX_BYTES {
        return Err(ToolError::new("too_large", format!("{path} is {} bytes, above {MAX_BYTES}", metadata.len())));
    }
    let mut text = String::new();
    file.take(MAX_BYTES).read_to_string(&mut text).map_err(|e| ToolError::io(path, &e))?;
    Ok(text)
}

fn validate_text(text: &str) -> Output {
    let mut documents: Vec<Document> = split(text).iter().filter_map(check_document).collect();
    // Empty documents (a leading `---`, comments only) are not counted.
    for (index, document) in documents.iter_mut().enumerate() {
        document.index = index;
    }
    let error_count = documents.iter().map(|d| d.errors.len()).sum();
    let warning_count = documents.iter().map(|d| d.warnings.len()).sum();
    Output { valid: error_count == 0, error_count, warning_count, documents }
}

fn yaml_validate(input: Input) -> Result<Output, ToolError> {
    let text = match (input.path, input.content) {
        (Some(path), None) => read(&path)?,
        (None, Some(content)) => content,
        _ => return Err(ToolError::invalid_input("give exactly one of path and content")),
    };
    Ok(validate_text(&text))
}

fn main() {
    run(
        ToolInfo {
            name: "yaml_validate",
            description: "Validate a multi-document YAML file or text: syntax (with line numbers), apiVersion/kind/metadata.name, and unknown fields or wrong types of the core Kubernetes kinds.",
            workspace: WorkspaceAccess::Read,
        },
        yaml_validate,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEPLOYMENT: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: sidecar
        image: busybox:1.36
      - name: web
        image: nginx:1.27
        imagePullPolice: Always
";

    #[test]
    fn a_valid_multi_document_stream_passes() {
        let text = format!("# comment\n---\n{}", DEPLOYMENT.replace("imagePullPolice", "imagePullPolicy"))
            + "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  ports: [{port: 80, targetPort: 8080}]\n---\n";
        let output = validate_text(&text);
        let messages: Vec<_> = output.documents.iter().flat_map(|d| &d.errors).map(|e| &e.message).collect();
        assert!(output.valid, "{messages:?}");
        assert_eq!(output.documents.len(), 2);
        assert_eq!((output.documents[0].index, output.documents[0].line), (0, 2));
        assert_eq!(output.documents[1].kind.as_deref(), Some("Service"));
        assert!(output.documents.iter().all(|d| d.schema_checked));
    }

    #[test]
    fn unknown_fields_are_reported_with_path_and_line() {
        let output = validate_text(DEPLOYMENT);
        let errors = &output.documents[0].errors;
        assert_eq!(errors.len(), 1, "{:?}", errors.iter().map(|e| &e.path).collect::<Vec<_>>());
        assert_eq!(errors[0].path, "spec.template.spec.containers[1].imagePullPolice");
        assert_eq!(errors[0].line, Some(18));
        assert_eq!(errors[0].message, "unknown field");
    }

    #[test]
    fn wrong_types_are_reported_with_path() {
        let text = DEPLOYMENT.replace("replicas: 2", "replicas: two");
        let errors = &validate_text(&text).documents[0].errors;
        assert_eq!(errors[0].path, "spec.replicas");
        assert_eq!(errors[0].line, Some(6));
        assert!(errors[0].message.contains("invalid type"), "{}", errors[0].message);
    }

    #[test]
    fn missing_identity_fields_are_errors() {
        let output = validate_text("apiVersion: v1\nmetadata: {name: x}\n---\nkind: ConfigMap\napiVersion: v1\nmetadata: {}\n");
        assert_eq!(output.documents[0].errors[0].message, "kind is missing");
        assert_eq!(output.documents[1].errors[0].message, "metadata.name is missing");
        assert!(!output.valid);
    }

    #[test]
    fn syntax_errors_carry_the_file_line() {
        let text = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n data: x\n";
        let output = validate_text(text);
        assert!(output.documents[0].errors.is_empty());
        let error = &output.documents[1].errors[0];
        assert!(error.message.starts_with("YAML syntax"), "{}", error.message);
        assert_eq!(error.line, Some(9));
    }

    #[test]
    fn other_kinds_and_versions_are_warnings() {
        let output = validate_text("apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\nspec: {anything: 1}\n---\napiVersion: extensions/v1beta1\nkind: Ingress\nmetadata: {name: i}\n");
        assert!(output.valid);
        assert_eq!(output.warning_count, 2);
        assert!(output.documents[1].warnings[0].message.contains("networking.k8s.io/v1"));
    }

    #[test]
    fn hpa_v2beta2_is_checked_like_v2() {
        let hpa = "apiVersion: autoscaling/v2beta2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 1\n  maxReplicas: 3\n  metric: []\n";
        let errors = &validate_text(hpa).documents[0].errors;
        assert_eq!(errors.iter().map(|e| e.path.as_str()).collect::<Vec<_>>(), ["spec.metric"]);
    }

    #[test]
    fn input_needs_exactly_one_source() {
        assert!(yaml_validate(Input { path: None, content: None }).is_err());
        assert!(yaml_validate(Input { path: Some("a".into()), content: Some("b".into()) }).is_err());
    }
}
