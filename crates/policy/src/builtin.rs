//! The built-in guards in Rego: the modules of `policies/builtin/`, embedded in the
//! binary, compiled once into one bytecode program whose entry point evaluates all three
//! guards in a single run (so the facts they share, the normalised verbs, kinds,
//! namespaces and names, are computed once), over a projection of the review that holds
//! every field the guards read and nothing else (a Deployment's pod template never needs
//! converting to a Rego value).

use crate::error::{Error, Result};
use crate::rego::{self, CompiledRule};
use crate::review::Review;
use serde_json::{Map, Value as Json};

/// The built-in Rego guards, embedded so no deployment can lose them.
pub(crate) const MODULES: [(&str, &str); 4] = [
    (
        "builtin/lib.rego",
        include_str!("../../../policies/builtin/lib.rego"),
    ),
    (
        "builtin/no_namespace_deletion.rego",
        include_str!("../../../policies/builtin/no_namespace_deletion.rego"),
    ),
    (
        "builtin/protected_namespaces.rego",
        include_str!("../../../policies/builtin/protected_namespaces.rego"),
    ),
    (
        "builtin/no_cluster_admin.rego",
        include_str!("../../../policies/builtin/no_cluster_admin.rego"),
    ),
];

/// The package prefix reserved for the built-in guards.
pub(crate) const PACKAGE_PREFIX: &str = "deckhand.builtin";

/// The guards' packages (after [`PACKAGE_PREFIX`]), each a key of the combined result.
pub(crate) const GUARDS: [&str; 3] = [
    "no_namespace_deletion",
    "protected_namespaces",
    "no_cluster_admin",
];

/// The module whose one rule gathers every guard's `violation` set, so one VM run
/// evaluates them all. A guard with no violation contributes an empty set, so a key
/// missing from the result means the evaluation went wrong (and denies).
const COMBINED_ORIGIN: &str = "builtin/combined.rego";
///
/// The rules are named by their full paths: regorus compiles `alias.rule` through an
/// import as a lookup of the whole imported package (every rule in it, walked again on
/// each reference), but `data.package.rule` as a direct, cached call of that one rule.
const COMBINED_MODULE: &str = r#"package deckhand.builtin.combined

guards := {
	"no_namespace_deletion": data.deckhand.builtin.no_namespace_deletion.violation,
	"protected_namespaces": data.deckhand.builtin.protected_namespaces.violation,
	"no_cluster_admin": data.deckhand.builtin.no_cluster_admin.violation,
}
"#;
const COMBINED_ENTRY_POINT: &str = "data.deckhand.builtin.combined.guards";

/// The request fields of `input.review` the guards read. Everything else a request
/// carries is left out of their input.
pub(crate) const REVIEW_FIELDS: [&str; 10] = [
    "verb",
    "operation",
    "kind",
    "requestKind",
    "resource",
    "requestResource",
    "subResource",
    "requestSubResource",
    "namespace",
    "name",
];
/// The fields of `object` and `oldObject` the guards read, whole (a role's `rules`,
/// a binding's `roleRef` and `subjects`, an `aggregationRule`).
pub(crate) const OBJECT_FIELDS: [&str; 5] =
    ["kind", "roleRef", "subjects", "rules", "aggregationRule"];
/// The fields of an object's `metadata` the guards read.
pub(crate) const METADATA_FIELDS: [&str; 3] = ["name", "namespace", "generateName"];

/// `deckhand.builtin.no_cluster_admin` → `builtin.rego/no-cluster-admin`, so a decision
/// shows which layer (Rust or Rego) said no.
pub(crate) fn policy_name(package: &str) -> String {
    let guard = package
        .strip_prefix(PACKAGE_PREFIX)
        .map(|rest| rest.trim_start_matches('.'))
        .unwrap_or(package);
    format!("builtin.rego/{}", guard.replace('_', "-"))
}

/// The embedded modules as (origin, text) pairs.
pub(crate) fn modules() -> Vec<(String, String)> {
    MODULES
        .iter()
        .map(|(origin, text)| (origin.to_string(), text.to_string()))
        .collect()
}

/// The import of the guards' shared helpers, and what its alias stands for.
const LIB_IMPORT: &str = "import data.deckhand.builtin.lib";
const LIB_ALIAS: &str = "lib.";
const LIB_PATH: &str = "data.deckhand.builtin.lib.";

/// A guard module with its `import data.deckhand.builtin.lib` expanded, as Rego defines
/// an import: every `lib.x` becomes `data.deckhand.builtin.lib.x`. Same meaning; but
/// regorus compiles `lib.x` as a lookup of the whole `lib` package (each of its rules
/// walked and copied on every reference, ~80% of a decision's instructions) and the
/// full path as a direct, cached call of the one rule.
pub(crate) fn expand_lib_import(text: &str) -> String {
    let mut expanded = String::with_capacity(text.len() * 2);
    for line in text.split_inclusive('\n') {
        if line.trim() == LIB_IMPORT {
            continue;
        }
        let mut rest = line;
        while let Some(position) = rest.find(LIB_ALIAS) {
            let before = rest[..position].chars().next_back();
            let is_alias = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == '.'));
            expanded.push_str(&rest[..position]);
            expanded.push_str(if is_alias { LIB_PATH } else { LIB_ALIAS });
            rest = &rest[position + LIB_ALIAS.len()..];
        }
        expanded.push_str(rest);
    }
    expanded
}

/// Compiles the guards (their `lib` import expanded) and the combining module into one
/// program.
pub(crate) fn compile_combined() -> Result<CompiledRule> {
    let mut modules: Vec<(String, String)> = MODULES
        .iter()
        .map(|(origin, text)| (origin.to_string(), expand_lib_import(text)))
        .collect();
    modules.push((COMBINED_ORIGIN.to_string(), COMBINED_MODULE.to_string()));
    let (mut engine, _) = rego::load_modules(&modules)?;
    rego::compile_entry(&mut engine, COMBINED_ORIGIN, COMBINED_ENTRY_POINT).map_err(|message| {
        Error::InvalidRego {
            origin: COMBINED_ORIGIN.to_string(),
            message,
        }
    })
}

/// What the guards see as `input.review`: [`REVIEW_FIELDS`] of the request and, of
/// `object` and `oldObject`, [`OBJECT_FIELDS`] and [`METADATA_FIELDS`], each value as it
/// is. A field absent from the request stays absent, a value of an unexpected type is
/// kept as it came, so every reference in the guards resolves exactly as it would on
/// the whole request.
pub(crate) fn projection(review: &Review) -> Map<String, Json> {
    let request = &review.request;
    let string = |value: &Option<String>| value.clone().map(Json::String);
    let whole = |value: Option<Json>| value.filter(|value| !value.is_null());
    let mut fields = Map::new();
    let mut put = |name: &str, value: Option<Json>| {
        if let Some(value) = value {
            fields.insert(name.to_string(), value);
        }
    };
    for name in REVIEW_FIELDS {
        let value = match name {
            "verb" => string(&request.verb),
            "operation" => string(&request.operation),
            "kind" => whole(
                request
                    .kind
                    .as_ref()
                    .and_then(|v| serde_json::to_value(v).ok()),
            ),
            "requestKind" => whole(
                request
                    .request_kind
                    .as_ref()
                    .and_then(|v| serde_json::to_value(v).ok()),
            ),
            "resource" => whole(
                request
                    .resource
                    .as_ref()
                    .and_then(|v| serde_json::to_value(v).ok()),
            ),
            "requestResource" => whole(
                request
                    .request_resource
                    .as_ref()
                    .and_then(|v| serde_json::to_value(v).ok()),
            ),
            "subResource" => string(&request.sub_resource),
            "requestSubResource" => string(&request.request_sub_resource),
            "namespace" => string(&request.namespace),
            "name" => string(&request.name),
            // Every name in REVIEW_FIELDS has its arm; a test checks the projection.
            _ => None,
        };
        put(name, value);
    }
    put("object", request.object.as_ref().map(project_object));
    put("oldObject", request.old_object.as_ref().map(project_object));
    fields
}

/// What the guards see as `input`: `{"review": projection, "parameters": {}}`.
pub(crate) fn input(projection: Map<String, Json>) -> regorus::Value {
    let mut input = Map::new();
    input.insert("review".to_string(), Json::Object(projection));
    input.insert("parameters".to_string(), Json::Object(Map::new()));
    regorus::Value::from(Json::Object(input))
}

/// An object cut down to what the guards read; anything that is not a JSON object (the
/// guards then read nothing from it) is kept as it is.
fn project_object(object: &Json) -> Json {
    let Json::Object(fields) = object else {
        return object.clone();
    };
    let mut projected = Map::new();
    for name in OBJECT_FIELDS {
        if let Some(value) = fields.get(name) {
            projected.insert(name.to_string(), value.clone());
        }
    }
    match fields.get("metadata") {
        Some(Json::Object(metadata)) => {
            let mut kept = Map::new();
            for name in METADATA_FIELDS {
                if let Some(value) = metadata.get(name) {
                    kept.insert(name.to_string(), value.clone());
                }
            }
            projected.insert("metadata".to_string(), Json::Object(kept));
        }
        Some(other) => {
            projected.insert("metadata".to_string(), other.clone());
        }
        None => {}
    }
    Json::Object(projected)
}

/// Each guard's messages from the combined result, as (policy name, messages); an
/// error when the result does not hold every guard's set, which then denies.
pub(crate) fn messages(
    result: Option<&Json>,
) -> std::result::Result<Vec<(String, Vec<String>)>, String> {
    let Some(Json::Object(by_guard)) = result else {
        return Err("the built-in guards returned no result".to_string());
    };
    GUARDS
        .iter()
        .map(|guard| match by_guard.get(*guard) {
            Some(set @ Json::Array(_)) => Ok((
                policy_name(&format!("{PACKAGE_PREFIX}.{guard}")),
                rego::messages_of(set),
            )),
            _ => Err(format!(
                "the built-in guard {guard} returned no violation set"
            )),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// Every name the guards' Rego reads with `.name` or lists as a field to read
    /// (`some field in ["kind", "requestKind"]`), minus what is not a field of the
    /// input: rule and function names, imports, `data` paths and builtins.
    fn names_read_by_the_guards() -> BTreeSet<String> {
        let identifier =
            |text: &str| !text.is_empty() && text.chars().all(|c| c.is_alphanumeric() || c == '_');
        let mut names = BTreeSet::new();
        for (_, text) in MODULES {
            for line in text.lines() {
                let code = line.split('#').next().unwrap_or("");
                let mut rest = code;
                while let Some(position) = rest.find(['.', '"', '`']) {
                    let marker = &rest[position..position + 1];
                    let after = &rest[position + 1..];
                    match marker {
                        "." => {
                            let end = after
                                .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                                .unwrap_or(after.len());
                            names.insert(after[..end].to_string());
                            rest = &after[end..];
                        }
                        quote => {
                            let end = after.find(quote).unwrap_or(after.len());
                            if quote == "\"" && identifier(&after[..end]) {
                                names.insert(after[..end].to_string());
                            }
                            rest = after.get(end + 1..).unwrap_or("");
                        }
                    }
                }
            }
        }
        names.remove("");
        names
    }

    /// What the guards name that is not read from `input.review`: their own rules and
    /// helpers, packages and imports, `data` paths, builtins, and string constants
    /// compared against rather than read.
    const NOT_INPUT_FIELDS: &[&str] = &[
        // packages, imports, data
        "deckhand",
        "builtin",
        "lib",
        "config",
        "own_namespace",
        "own_names",
        "protected_namespaces",
        "no_namespace_deletion",
        "no_cluster_admin",
        "inventory",
        "cluster",
        "review",
        // builtins
        "replace",
        "get",
        // lib rules and functions
        "norm",
        "strings_in",
        "verbs",
        "read_verbs",
        "is_write",
        "objects",
        "kinds",
        "subresources",
        "namespaces",
        "names",
        "invisible",
        // the subject, selector and rule fields read inside the whole values kept
        "verbs",
        "resources",
        "clusterRoleSelectors",
        "matchLabels",
        "matchExpressions",
        "key",
        "operator",
        "values",
        "labels",
        // constants compared against
        "s",
        "ns",
        "sa",
        "namespace",
        "serviceaccount",
        "delete",
        "deletecollection",
        "finalize",
        "escalate",
        "bind",
        "impersonate",
        "rolebinding",
        "clusterrolebinding",
        "role",
        "clusterrole",
        "get",
        "list",
        "watch",
        "msg",
        "In",
        "NotIn",
        "Exists",
        "DoesNotExist",
        "system",
        "masters",
        "serviceaccounts",
        "cluster",
        "admin",
        "kube",
        "kubernetes",
        "io",
        "bootstrapping",
        "denied",
    ];

    #[test]
    fn the_projection_keeps_every_field_the_guards_read() {
        let known: BTreeSet<&str> = REVIEW_FIELDS
            .iter()
            .chain(&OBJECT_FIELDS)
            .chain(&METADATA_FIELDS)
            .chain(&["object", "oldObject", "metadata"])
            .chain(NOT_INPUT_FIELDS)
            .copied()
            .collect();
        let unknown: Vec<String> = names_read_by_the_guards()
            .into_iter()
            .filter(|name| !known.contains(name.as_str()))
            .filter(|name| !name.chars().all(|c| c.is_ascii_digit()))
            .collect();
        // A name here is either a new field the guards read (add it to the projection)
        // or something that is not an input field (add it to NOT_INPUT_FIELDS).
        assert!(
            unknown.is_empty(),
            "names the projection does not account for: {unknown:?}"
        );
    }

    #[test]
    fn the_lib_import_is_expanded_outside_strings_and_names() {
        let text = "package x\n\nimport data.deckhand.builtin.lib\n\nv if { lib.norm(y) in lib.kinds; mylib.z; a.lib.b }\n";
        assert_eq!(
            expand_lib_import(text),
            "package x\n\n\nv if { data.deckhand.builtin.lib.norm(y) in data.deckhand.builtin.lib.kinds; mylib.z; a.lib.b }\n"
        );
        for (origin, text) in MODULES {
            let expanded = expand_lib_import(text);
            assert!(!expanded.contains(LIB_IMPORT), "{origin}");
        }
    }

    #[test]
    fn the_combined_program_calls_rules_directly() {
        let program = compile_combined().expect("the built-in guards compile");
        let listing = program.listing().expect("the guards compile to bytecode");
        // Each would walk a whole package on every reference.
        assert!(
            !listing.contains("VirtualDataDocumentLookup"),
            "a package is looked up whole:\n{listing}"
        );
    }

    #[test]
    fn the_projection_drops_what_the_guards_never_read() {
        let request = crate::AdmissionRequest::from_text(
            r#"{"verb":"create","uid":"1","userInfo":{"username":"a"},
                "object":{"kind":"Deployment","metadata":{"name":"web","labels":{"a":"b"}},
                          "spec":{"replicas":3},"rules":"odd","roleRef":null}}"#,
        )
        .expect("request");
        let reviews = crate::review::expand(&request).expect("expands");
        let projected: Json =
            serde_json::to_value(input(projection(&reviews[0]))).expect("projection serialises");
        assert_eq!(
            projected,
            serde_json::json!({"parameters": {}, "review": {
                "verb": "create",
                "kind": {"group": "", "version": "", "kind": "Deployment"},
                "name": "web",
                "object": {"kind": "Deployment", "metadata": {"name": "web"},
                           "rules": "odd", "roleRef": null},
            }})
        );
    }
}
