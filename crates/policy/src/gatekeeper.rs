//! Gatekeeper's model: ConstraintTemplates (Rego with `violation[{"msg": msg}]` and
//! `libs`) and the constraints that instantiate them, with `spec.match` and
//! `spec.parameters` as Gatekeeper applies them.

use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::rego::{self, CompiledRule, RuleKind};
use crate::review::{normalise, string_at, Review};
use crate::selector;
use serde_json::{Map, Value};

/// The API group of ConstraintTemplates.
pub const TEMPLATES_GROUP: &str = "templates.gatekeeper.sh";
/// The API group of constraints.
pub const CONSTRAINTS_GROUP: &str = "constraints.gatekeeper.sh";
/// The only target deckhand evaluates, as Gatekeeper's admission webhook does.
const ADMISSION_TARGET: &str = "admission.k8s.gatekeeper.sh";

/// A compiled ConstraintTemplate.
pub(crate) struct Template {
    /// The constraint kind it defines, e.g. `K8sRequiredLabels`.
    pub kind: String,
    /// Where it came from.
    pub origin: String,
    /// Its `violation` rule.
    pub rule: CompiledRule,
}

/// What a constraint does with a violation: Gatekeeper's `spec.enforcementAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Enforcement {
    /// Denies (the default).
    Deny,
    /// Reports a warning and allows.
    Warn,
    /// Evaluates but neither denies nor warns.
    DryRun,
}

/// A constraint: a template's kind, a name, parameters and what it matches.
pub(crate) struct Constraint {
    /// The template kind.
    pub kind: String,
    /// Its `metadata.name`.
    pub name: String,
    /// `spec.parameters`, passed as `input.parameters`.
    pub parameters: Value,
    /// `spec.match`.
    pub matcher: Value,
    /// `spec.enforcementAction`.
    pub enforcement: Enforcement,
}

/// Compiles a ConstraintTemplate document.
pub(crate) fn compile_template(document: &Value, origin: &str) -> Result<Template> {
    let invalid = |message: String| Error::InvalidDocument {
        origin: origin.to_string(),
        message,
    };
    let kind = string_at(document, &["spec", "crd", "spec", "names", "kind"])
        .ok_or_else(|| invalid("a ConstraintTemplate needs spec.crd.spec.names.kind".into()))?
        .to_string();
    let targets = document
        .get("spec")
        .and_then(|spec| spec.get("targets"))
        .and_then(Value::as_array)
        .ok_or_else(|| invalid(format!("ConstraintTemplate {kind} has no spec.targets")))?;
    let target = targets
        .iter()
        .find(|target| target.get("target").and_then(Value::as_str) == Some(ADMISSION_TARGET))
        .ok_or_else(|| {
            invalid(format!(
                "ConstraintTemplate {kind} has no {ADMISSION_TARGET} target"
            ))
        })?;
    let rego_text = target.get("rego").and_then(Value::as_str).ok_or_else(|| {
        invalid(format!(
            "ConstraintTemplate {kind} has no rego (only Rego templates are supported)"
        ))
    })?;
    let main_origin = format!("{origin}#{kind}");
    let mut modules = vec![(main_origin.clone(), rego_text.to_string())];
    if let Some(libs) = target.get("libs").and_then(Value::as_array) {
        for (index, lib) in libs.iter().enumerate() {
            let text = lib.as_str().ok_or_else(|| {
                invalid(format!(
                    "ConstraintTemplate {kind}: libs[{index}] is not text"
                ))
            })?;
            modules.push((format!("{main_origin}/libs[{index}]"), text.to_string()));
        }
    }
    let (mut engine, packages) = rego::load_modules(&modules)?;
    let package = packages.first().cloned().unwrap_or_default();
    let mut rules =
        rego::compile_rules(&mut engine, &main_origin, &package, &[RuleKind::Violation])?;
    let rule = rules
        .pop()
        .ok_or_else(|| invalid(format!("ConstraintTemplate {kind} has no violation rule")))?;
    Ok(Template {
        kind,
        origin: origin.to_string(),
        rule,
    })
}

/// Reads a constraint document.
pub(crate) fn read_constraint(document: &Value, origin: &str) -> Result<Constraint> {
    let invalid = |message: String| Error::InvalidDocument {
        origin: origin.to_string(),
        message,
    };
    let kind = document
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("a constraint needs a kind".into()))?
        .to_string();
    let name = string_at(document, &["metadata", "name"])
        .ok_or_else(|| invalid(format!("a {kind} constraint needs metadata.name")))?
        .to_string();
    let spec = document
        .get("spec")
        .cloned()
        .unwrap_or(Value::Object(Map::new()));
    let enforcement = match spec.get("enforcementAction").and_then(Value::as_str) {
        None | Some("deny") => Enforcement::Deny,
        Some("warn") => Enforcement::Warn,
        Some("dryrun") => Enforcement::DryRun,
        Some(other) => {
            return Err(invalid(format!(
                "constraint {name}: enforcementAction {other:?} is not deny, warn or dryrun"
            )))
        }
    };
    Ok(Constraint {
        kind,
        name,
        parameters: spec
            .get("parameters")
            .cloned()
            .unwrap_or(Value::Object(Map::new())),
        matcher: spec
            .get("match")
            .cloned()
            .unwrap_or(Value::Object(Map::new())),
        enforcement,
    })
}

impl Constraint {
    /// The name reported in decisions: `Kind/name`.
    pub(crate) fn policy_name(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// Whether `spec.match` selects this review.
    pub(crate) fn matches(&self, review: &Review, inventory: &Inventory) -> bool {
        let request = &review.request;
        let (group, kind) = request
            .kind
            .as_ref()
            .map(|gvk| (gvk.group.as_str(), gvk.kind.as_str()))
            .unwrap_or(("", ""));
        if let Some(kind_rules) = self.matcher.get("kinds").and_then(Value::as_array) {
            let any_rule_fits = kind_rules.iter().any(|rule| {
                let fits = |field: &str, wanted: &str| {
                    rule.get(field)
                        .and_then(Value::as_array)
                        .is_none_or(|values| {
                            values.iter().any(|value| {
                                value
                                    .as_str()
                                    .is_some_and(|value| value == "*" || value == wanted)
                            })
                        })
                };
                fits("apiGroups", group) && fits("kinds", kind)
            });
            if !kind_rules.is_empty() && !any_rule_fits {
                return false;
            }
        }
        // Gatekeeper matches a Namespace object by its own name.
        let is_namespace = normalise(kind) == "namespace";
        let namespace = if is_namespace {
            request.name.clone()
        } else {
            request.namespace.clone()
        };
        match self.matcher.get("scope").and_then(Value::as_str) {
            Some("Cluster") if request.namespace.is_some() => return false,
            Some("Namespaced") if request.namespace.is_none() => return false,
            _ => {}
        }
        if let Some(namespace) = &namespace {
            if let Some(included) = self.matcher.get("namespaces").and_then(Value::as_array) {
                if !included
                    .iter()
                    .any(|pattern| glob_matches(pattern, namespace))
                {
                    return false;
                }
            }
            if let Some(excluded) = self
                .matcher
                .get("excludedNamespaces")
                .and_then(Value::as_array)
            {
                if excluded
                    .iter()
                    .any(|pattern| glob_matches(pattern, namespace))
                {
                    return false;
                }
            }
        }
        if let Some(name_pattern) = self.matcher.get("name") {
            let name = request.name.clone().unwrap_or_default();
            if !glob_matches(name_pattern, &name) {
                return false;
            }
        }
        let empty = Map::new();
        if let Some(label_selector) = self.matcher.get("labelSelector") {
            let object = request.object.as_ref().or(request.old_object.as_ref());
            let labels = object
                .and_then(|object| object.get("metadata"))
                .and_then(|metadata| metadata.get("labels"))
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if !selector::matches(label_selector, labels) {
                return false;
            }
        }
        if let (Some(namespace_selector), Some(namespace)) =
            (self.matcher.get("namespaceSelector"), &namespace)
        {
            // The namespace's labels come from the inventory; an unknown namespace is
            // matched, so the constraint runs rather than being skipped silently.
            let labels = inventory.objects().iter().find_map(|object| {
                let is_that_namespace = object.get("kind").and_then(Value::as_str)
                    == Some("Namespace")
                    && string_at(object, &["metadata", "name"]) == Some(namespace.as_str());
                is_that_namespace.then(|| {
                    object
                        .get("metadata")
                        .and_then(|metadata| metadata.get("labels"))
                        .and_then(Value::as_object)
                        .cloned()
                        .unwrap_or_default()
                })
            });
            if let Some(labels) = labels {
                if !selector::matches(namespace_selector, &labels) {
                    return false;
                }
            }
        }
        true
    }
}

/// Gatekeeper's namespace and name patterns: exact, or with one `*` at the start or end.
fn glob_matches(pattern: &Value, text: &str) -> bool {
    let Some(pattern) = pattern.as_str() else {
        return false;
    };
    if let Some(prefix) = pattern.strip_suffix('*') {
        text.starts_with(prefix)
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        text.ends_with(suffix)
    } else {
        pattern == text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::AdmissionRequest;
    use crate::review::expand;
    use serde_json::json;

    fn review(object: Value) -> Review {
        let request = AdmissionRequest {
            operation: Some("CREATE".into()),
            object: Some(object),
            ..AdmissionRequest::default()
        };
        expand(&request).expect("expands").remove(0)
    }

    fn constraint(matcher: Value) -> Constraint {
        read_constraint(
            &json!({"apiVersion": "constraints.gatekeeper.sh/v1beta1", "kind": "K8sX",
                    "metadata": {"name": "c"}, "spec": {"match": matcher}}),
            "test",
        )
        .expect("constraint reads")
    }

    #[test]
    fn match_kinds_namespaces_and_labels_as_gatekeeper_does() {
        let pod = review(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "team-a", "labels": {"app": "web"}}}));
        let inventory = Inventory::default();
        let fits = |matcher: Value| constraint(matcher).matches(&pod, &inventory);
        assert!(fits(json!({})));
        assert!(fits(
            json!({"kinds": [{"apiGroups": [""], "kinds": ["Pod"]}]})
        ));
        assert!(!fits(
            json!({"kinds": [{"apiGroups": ["apps"], "kinds": ["Deployment"]}]})
        ));
        assert!(fits(
            json!({"kinds": [{"apiGroups": ["*"], "kinds": ["*"]}]})
        ));
        assert!(fits(json!({"namespaces": ["team-*"]})));
        assert!(!fits(json!({"namespaces": ["prod"]})));
        assert!(!fits(json!({"excludedNamespaces": ["team-a"]})));
        assert!(fits(
            json!({"labelSelector": {"matchLabels": {"app": "web"}}})
        ));
        assert!(!fits(
            json!({"labelSelector": {"matchLabels": {"app": "db"}}})
        ));
        assert!(!fits(json!({"scope": "Cluster"})));
    }

    #[test]
    fn templates_need_a_violation_rule_and_constraints_a_known_action() {
        let template = json!({"apiVersion": "templates.gatekeeper.sh/v1", "kind": "ConstraintTemplate",
            "metadata": {"name": "k8sx"},
            "spec": {"crd": {"spec": {"names": {"kind": "K8sX"}}},
                     "targets": [{"target": "admission.k8s.gatekeeper.sh",
                                  "rego": "package k8sx\ndeny contains \"x\" if { true }\n"}]}});
        assert!(compile_template(&template, "test").is_err());
        let bad_action = json!({"kind": "K8sX", "metadata": {"name": "c"},
                                "spec": {"enforcementAction": "maybe"}});
        assert!(read_constraint(&bad_action, "test").is_err());
    }
}
