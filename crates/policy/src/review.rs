//! From one request to the reviews the guards and policies judge: patches applied,
//! `List`s split into their items, kind and namespace filled in from the object, and the
//! names, kinds, namespaces and verbs normalised so case and whitespace games fail.

use crate::request::{AdmissionRequest, GroupVersionKind};
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// How deep `List`s may nest inside each other before the request is refused; the API
/// server has no nested lists at all, so anything deeper is an attempt to hide something.
const MAX_LIST_DEPTH: usize = 4;

/// How many objects one request may expand into; bounds the work one request can cause.
const MAX_REVIEWS: usize = 1_000;

/// The authorization verbs that only read.
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];

/// One object (or the request itself) as the guards and policies judge it.
#[derive(Debug, Clone)]
pub struct Review {
    /// The request with `object` being the effective object (the patch applied, or one
    /// item of a list) and `kind` / `namespace` filled in from it when the request left
    /// them out: what policies see as `input.review`.
    pub request: AdmissionRequest,
    /// Normalised verbs, from `verb` and `operation` both (they may disagree; both count).
    /// Empty when neither says: the guards then assume the worst.
    pub verbs: BTreeSet<String>,
    /// Normalised kinds, singular and lower case, from every place that names one: the
    /// request's kind and resource (and their requested forms), the object and the old
    /// object.
    pub kinds: BTreeSet<String>,
    /// Normalised subresources.
    pub subresources: BTreeSet<String>,
    /// Normalised namespaces, from the request and from inside the objects.
    pub namespaces: BTreeSet<String>,
    /// Normalised names, from the request and the objects (`generateName` included).
    pub names: BTreeSet<String>,
}

impl Review {
    /// Whether this review may change something: any verb but get, list and watch, or no
    /// verb at all (an operation deckhand cannot name is assumed to be a write).
    pub fn is_write(&self) -> bool {
        self.verbs.is_empty()
            || self
                .verbs
                .iter()
                .any(|verb| !READ_VERBS.contains(&verb.as_str()))
    }

    /// Whether any of `verbs` is among this review's verbs.
    pub fn has_verb(&self, verbs: &[&str]) -> bool {
        verbs.iter().any(|verb| self.verbs.contains(*verb))
    }

    /// The objects this review carries: the new one and the old one.
    pub fn objects(&self) -> impl Iterator<Item = &Value> {
        self.request
            .object
            .iter()
            .chain(self.request.old_object.iter())
    }
}

/// Normalises a name, namespace, kind or verb for comparison: lower case, with every
/// whitespace and invisible formatting character removed, so `" Kube-System\u{200b}"`
/// compares equal to `kube-system`.
pub fn normalise(text: &str) -> String {
    text.chars()
        .filter(|character| !character.is_whitespace() && !is_invisible(*character))
        .flat_map(char::to_lowercase)
        .collect()
}

/// Zero-width and other formatting characters that render as nothing.
fn is_invisible(character: char) -> bool {
    matches!(
        character,
        '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{115f}' | '\u{1160}' | '\u{17b4}' | '\u{17b5}'
            | '\u{180b}'..='\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{fe00}'..='\u{fe0f}'
            | '\u{feff}'
    ) || character.is_control()
}

/// Maps a plural resource to its kind's normalised form where deckhand's guards care;
/// other resources lose a trailing `s`, which is enough for the guards' comparisons.
fn kind_of_resource(resource: &str) -> String {
    let resource = normalise(resource);
    match resource.as_str() {
        "ns" => "namespace".into(),
        "sa" => "serviceaccount".into(),
        _ => resource.strip_suffix('s').unwrap_or(&resource).to_string(),
    }
}

/// Maps an admission `operation` to the authorization verb it stands for.
fn verb_of_operation(operation: &str) -> String {
    match normalise(operation).as_str() {
        "create" => "create".into(),
        "update" => "update".into(),
        "delete" => "delete".into(),
        "connect" => "connect".into(),
        other => other.to_string(),
    }
}

/// Splits a request into the reviews to judge.
///
/// The request itself is always one review (so a `delete` without an object is judged);
/// when its effective object is a `List`, each item becomes a review of its own, as if it
/// had been sent alone.
///
/// # Errors
/// A message when the request cannot be judged: a patch that cannot be applied, lists
/// nested too deep, too many items.
pub fn expand(request: &AdmissionRequest) -> Result<Vec<Review>, String> {
    let mut effective = request.clone();
    if is_patch(request) {
        if let Some(patch) = &request.object {
            let base = request
                .old_object
                .clone()
                .unwrap_or_else(|| Value::Object(Map::new()));
            effective.object = Some(apply_patch(base, patch)?);
        }
    }
    let mut reviews = Vec::new();
    push_with_items(effective, 0, &mut reviews)?;
    Ok(reviews)
}

/// Whether the request's object is a patch rather than a whole object.
fn is_patch(request: &AdmissionRequest) -> bool {
    let verb_says_patch = request
        .verb
        .as_deref()
        .is_some_and(|verb| normalise(verb) == "patch");
    let options_say_patch = request
        .options
        .as_ref()
        .and_then(|options| options.get("kind"))
        .and_then(Value::as_str)
        .is_some_and(|kind| normalise(kind) == "patchoptions");
    // A JSON patch is always an array; no Kubernetes object is.
    let object_is_json_patch = matches!(request.object, Some(Value::Array(_)));
    verb_says_patch || options_say_patch || object_is_json_patch
}

fn push_with_items(
    request: AdmissionRequest,
    depth: usize,
    reviews: &mut Vec<Review>,
) -> Result<(), String> {
    if reviews.len() >= MAX_REVIEWS {
        return Err(format!(
            "the request expands into more than {MAX_REVIEWS} objects"
        ));
    }
    let items = request
        .object
        .as_ref()
        .and_then(|object| object.get("items"))
        .and_then(Value::as_array)
        .cloned();
    // Only a list needs the request again, for its items; anything else moves in.
    let Some(items) = items else {
        reviews.push(review_of(request));
        return Ok(());
    };
    reviews.push(review_of(request.clone()));
    if depth >= MAX_LIST_DEPTH {
        return Err(format!("lists nest deeper than {MAX_LIST_DEPTH} levels"));
    }
    for item in items {
        let mut child = request.clone();
        child.kind = None;
        child.request_kind = None;
        child.name = None;
        child.old_object = None;
        // A list's items keep the list's resource only when they do not say their own
        // kind; the guards read kinds from the items too.
        if item.get("kind").is_some() {
            child.resource = None;
            child.request_resource = None;
        }
        child.object = Some(item);
        push_with_items(child, depth + 1, reviews)?;
    }
    Ok(())
}

/// Builds one review: fills in what the request left out from its object and collects the
/// normalised facts the guards compare.
fn review_of(mut request: AdmissionRequest) -> Review {
    if let Some(object) = &request.object {
        if request.kind.is_none() {
            request.kind = gvk_of(object);
        }
        if request.namespace.is_none() {
            request.namespace = string_at(object, &["metadata", "namespace"]).map(str::to_string);
        }
        if request.name.is_none() {
            request.name = string_at(object, &["metadata", "name"]).map(str::to_string);
        }
    }
    let mut verbs = BTreeSet::new();
    if let Some(verb) = &request.verb {
        verbs.insert(normalise(verb));
    }
    if let Some(operation) = &request.operation {
        verbs.insert(verb_of_operation(operation));
    }
    verbs.remove("");

    let mut kinds = BTreeSet::new();
    for gvk in [&request.kind, &request.request_kind].into_iter().flatten() {
        kinds.insert(normalise(&gvk.kind));
    }
    for gvr in [&request.resource, &request.request_resource]
        .into_iter()
        .flatten()
    {
        kinds.insert(kind_of_resource(&gvr.resource));
    }
    let mut subresources = BTreeSet::new();
    for subresource in [&request.sub_resource, &request.request_sub_resource]
        .into_iter()
        .flatten()
    {
        subresources.insert(normalise(subresource));
    }
    // `resource: namespaces/finalize` written as one string is the same subresource.
    for gvr in [&request.resource, &request.request_resource]
        .into_iter()
        .flatten()
    {
        if let Some((resource, subresource)) = gvr.resource.split_once('/') {
            kinds.insert(kind_of_resource(resource));
            subresources.insert(normalise(subresource));
        }
    }
    let mut namespaces = BTreeSet::new();
    let mut names = BTreeSet::new();
    if let Some(namespace) = &request.namespace {
        namespaces.insert(normalise(namespace));
    }
    if let Some(name) = &request.name {
        names.insert(normalise(name));
    }
    for object in request.object.iter().chain(request.old_object.iter()) {
        if let Some(kind) = object.get("kind").and_then(Value::as_str) {
            kinds.insert(normalise(kind));
        }
        if let Some(namespace) = string_at(object, &["metadata", "namespace"]) {
            namespaces.insert(normalise(namespace));
        }
        for field in ["name", "generateName"] {
            if let Some(name) = string_at(object, &["metadata", field]) {
                names.insert(normalise(name));
            }
        }
    }
    kinds.remove("");
    subresources.remove("");
    namespaces.remove("");
    names.remove("");
    Review {
        request,
        verbs,
        kinds,
        subresources,
        namespaces,
        names,
    }
}

/// The group, version and kind an object declares in `apiVersion` and `kind`.
pub(crate) fn gvk_of(object: &Value) -> Option<GroupVersionKind> {
    let kind = object.get("kind")?.as_str()?.to_string();
    let api_version = object
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or("");
    let (group, version) = match api_version.split_once('/') {
        Some((group, version)) => (group.to_string(), version.to_string()),
        None => (String::new(), api_version.to_string()),
    };
    Some(GroupVersionKind {
        group,
        version,
        kind,
    })
}

/// The string at a path of object keys, if every step exists and the end is a string.
pub(crate) fn string_at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_str)
}

/// Applies a patch to `base`: a JSON patch (RFC 6902) when it is an array, otherwise a
/// merge patch (RFC 7386), which is also how strategic-merge and server-side-apply
/// bodies are judged (their lists replace rather than merge, so every new list item
/// is still in the result and still judged).
pub fn apply_patch(base: Value, patch: &Value) -> Result<Value, String> {
    match patch {
        Value::Array(operations) => {
            let mut document = base;
            for (index, operation) in operations.iter().enumerate() {
                apply_json_patch_operation(&mut document, operation)
                    .map_err(|error| format!("JSON patch operation {index}: {error}"))?;
            }
            Ok(document)
        }
        _ => {
            let mut document = base;
            merge_patch(&mut document, patch);
            Ok(document)
        }
    }
}

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target_fields) = target {
        for (key, value) in patch_fields {
            if value.is_null() {
                target_fields.remove(key);
            } else {
                merge_patch(
                    target_fields.entry(key.clone()).or_insert(Value::Null),
                    value,
                );
            }
        }
    }
}

/// Splits a JSON pointer into its unescaped tokens.
fn pointer_tokens(pointer: &str) -> Result<Vec<String>, String> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else {
        return Err(format!("path {pointer:?} does not start with /"));
    };
    Ok(rest
        .split('/')
        .map(|token| token.replace("~1", "/").replace("~0", "~"))
        .collect())
}

fn apply_json_patch_operation(document: &mut Value, operation: &Value) -> Result<(), String> {
    let op = operation
        .get("op")
        .and_then(Value::as_str)
        .ok_or("no `op`")?;
    let path = operation
        .get("path")
        .and_then(Value::as_str)
        .ok_or("no `path`")?;
    let tokens = pointer_tokens(path)?;
    match normalise(op).as_str() {
        "add" | "replace" => {
            let value = operation.get("value").ok_or("no `value`")?.clone();
            set_at(document, &tokens, value)
        }
        "remove" => {
            remove_at(document, &tokens);
            Ok(())
        }
        "test" => Ok(()),
        "copy" | "move" => {
            let from = operation
                .get("from")
                .and_then(Value::as_str)
                .ok_or("no `from`")?;
            let from_tokens = pointer_tokens(from)?;
            let value = get_at(document, &from_tokens)
                .cloned()
                .ok_or_else(|| format!("`from` {from:?} does not exist"))?;
            if normalise(op) == "move" {
                remove_at(document, &from_tokens);
            }
            set_at(document, &tokens, value)
        }
        other => Err(format!("unknown op {other:?}")),
    }
}

fn get_at<'a>(document: &'a Value, tokens: &[String]) -> Option<&'a Value> {
    tokens
        .iter()
        .try_fold(document, |value, token| match value {
            Value::Object(fields) => fields.get(token),
            Value::Array(items) => token
                .parse::<usize>()
                .ok()
                .and_then(|index| items.get(index)),
            _ => None,
        })
}

/// Sets the value at a path, creating missing objects on the way: the server would
/// refuse some of these patches, but judging a superset of what could happen is safe.
fn set_at(document: &mut Value, tokens: &[String], value: Value) -> Result<(), String> {
    let Some((last, parents)) = tokens.split_last() else {
        *document = value;
        return Ok(());
    };
    let mut current = document;
    for (position, token) in parents.iter().enumerate() {
        // A missing parent becomes an array when the next token indexes one (`/rules/-`),
        // so an appended rule is judged as a rule.
        let next_token = tokens.get(position + 1).map(String::as_str).unwrap_or("");
        let empty_parent = || {
            if next_token == "-" || next_token.parse::<usize>().is_ok() {
                Value::Array(Vec::new())
            } else {
                Value::Object(Map::new())
            }
        };
        current = match current {
            Value::Array(items) => {
                let index = array_index(token, items.len())?;
                if index == items.len() {
                    items.push(empty_parent());
                }
                &mut items[index]
            }
            other => {
                if !other.is_object() {
                    *other = Value::Object(Map::new());
                }
                match other {
                    Value::Object(fields) => {
                        fields.entry(token.clone()).or_insert_with(empty_parent)
                    }
                    _ => return Err("cannot descend".into()),
                }
            }
        };
    }
    match current {
        Value::Array(items) => {
            let index = array_index(last, items.len())?;
            items.insert(index, value);
        }
        other => {
            if !other.is_object() {
                *other = Value::Object(Map::new());
            }
            if let Value::Object(fields) = other {
                fields.insert(last.clone(), value);
            }
        }
    }
    Ok(())
}

/// An array index token: a number up to the length, or `-` for the end.
fn array_index(token: &str, length: usize) -> Result<usize, String> {
    if token == "-" {
        return Ok(length);
    }
    let index: usize = token
        .parse()
        .map_err(|_| format!("{token:?} is not an array index"))?;
    if index > length {
        return Err(format!(
            "index {index} is past the end of an array of {length}"
        ));
    }
    Ok(index)
}

fn remove_at(document: &mut Value, tokens: &[String]) {
    let Some((last, parents)) = tokens.split_last() else {
        *document = Value::Null;
        return;
    };
    let mut current = document;
    for token in parents {
        let next = match current {
            Value::Object(fields) => fields.get_mut(token),
            Value::Array(items) => token.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        match next {
            Some(next) => current = next,
            None => return,
        }
    }
    match current {
        Value::Object(fields) => {
            fields.remove(last);
        }
        Value::Array(items) => {
            if let Ok(index) = last.parse::<usize>() {
                if index < items.len() {
                    items.remove(index);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn normalise_defeats_case_whitespace_and_invisible_characters() {
        assert_eq!(normalise(" Kube-System\u{200b}\t"), "kube-system");
        assert_eq!(normalise("cluster\u{feff}-ADMIN"), "cluster-admin");
        assert_eq!(normalise("kube-\u{2060}system"), "kube-system");
    }

    #[test]
    fn json_patch_applies_in_order_including_copy_and_move() {
        let base = json!({"roleRef": {"name": "view"}, "subjects": []});
        let patch = json!([
            {"op": "add", "path": "/subjects/-", "value": {"kind": "Group", "name": "x"}},
            {"op": "replace", "path": "/roleRef/name", "value": "edit"},
            {"op": "copy", "from": "/roleRef/name", "path": "/metadata/labels/copied"},
            {"op": "move", "from": "/metadata/labels/copied", "path": "/metadata/labels/moved"},
            {"op": "remove", "path": "/nothing/here"},
        ]);
        let result = apply_patch(base, &patch).expect("patch applies");
        assert_eq!(result["roleRef"]["name"], "edit");
        assert_eq!(result["subjects"][0]["name"], "x");
        assert_eq!(result["metadata"]["labels"], json!({"moved": "edit"}));
    }

    #[test]
    fn json_patch_appending_to_a_missing_list_makes_a_list() {
        let patch = json!([{"op": "add", "path": "/rules/-", "value": {"verbs": ["*"]}}]);
        let result = apply_patch(json!({}), &patch).expect("patch applies");
        assert_eq!(result, json!({"rules": [{"verbs": ["*"]}]}));
    }

    #[test]
    fn json_patch_with_unknown_source_cannot_be_judged() {
        let patch = json!([{"op": "copy", "from": "/nowhere", "path": "/roleRef/name"}]);
        assert!(apply_patch(json!({}), &patch).is_err());
        assert!(apply_patch(json!({}), &json!([{"op": "frobnicate", "path": "/a"}])).is_err());
    }

    #[test]
    fn merge_patch_removes_nulls_and_merges_objects() {
        let base = json!({"metadata": {"name": "a", "labels": {"x": "1", "y": "2"}}});
        let patch = json!({"metadata": {"labels": {"x": null, "z": "3"}}});
        let result = apply_patch(base, &patch).expect("merge applies");
        assert_eq!(
            result,
            json!({"metadata": {"name": "a", "labels": {"y": "2", "z": "3"}}})
        );
    }

    #[test]
    fn lists_expand_into_one_review_per_item_with_the_items_own_facts() {
        let request = AdmissionRequest {
            verb: Some("create".into()),
            namespace: Some("team-a".into()),
            object: Some(json!({"kind": "List", "items": [
                {"kind": "ConfigMap", "metadata": {"name": "a"}},
                {"kind": "Secret", "metadata": {"name": "b", "namespace": " KUBE-system"}},
            ]})),
            ..AdmissionRequest::default()
        };
        let reviews = expand(&request).expect("expands");
        assert_eq!(reviews.len(), 3);
        assert!(reviews[1].kinds.contains("configmap"));
        assert!(reviews[2].namespaces.contains("kube-system"));
        assert_eq!(
            reviews[2].request.kind.as_ref().map(|k| k.kind.as_str()),
            Some("Secret")
        );
    }

    #[test]
    fn reads_are_not_writes_and_unknown_verbs_are() {
        let read = review_of(AdmissionRequest {
            verb: Some("GET".into()),
            ..Default::default()
        });
        assert!(!read.is_write());
        let unknown = review_of(AdmissionRequest::default());
        assert!(unknown.is_write());
        let mixed = review_of(AdmissionRequest {
            verb: Some("get".into()),
            operation: Some("DELETE".into()),
            ..Default::default()
        });
        assert!(mixed.is_write());
    }
}
