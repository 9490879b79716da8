//! The built-in guards in plain Rust: no Namespace deletion, no writes in protected
//! namespaces, no cluster-admin. Always on; user policies can add violations but never
//! remove these. The same guards exist in Rego (`policies/builtin/`), so a bug in one
//! still leaves the other blocking.

use crate::inventory::Inventory;
use crate::review::{normalise, string_at, Review};
use crate::selector;
use crate::Violation;
use serde_json::Value;
use std::collections::BTreeSet;

/// The Rust guard forbidding Namespace deletion.
pub const NO_NAMESPACE_DELETION: &str = "builtin/no-namespace-deletion";
/// The Rust guard forbidding writes in protected namespaces.
pub const PROTECTED_NAMESPACES: &str = "builtin/protected-namespaces";
/// The Rust guard forbidding cluster-admin grants and edits to deckhand's own RBAC.
pub const NO_CLUSTER_ADMIN: &str = "builtin/no-cluster-admin";

/// The namespace no configuration can unprotect.
pub const ALWAYS_PROTECTED_NAMESPACE: &str = "kube-system";
/// Namespaces protected unless configured otherwise (besides deckhand's own).
pub const DEFAULT_PROTECTED_NAMESPACES: [&str; 3] =
    ["kube-system", "kube-public", "kube-node-lease"];
/// deckhand's own namespace unless configured otherwise.
pub const DEFAULT_OWN_NAMESPACE: &str = "deckhand";
/// The name of deckhand's ServiceAccount, Roles and bindings unless configured otherwise.
pub const DEFAULT_OWN_NAME: &str = "deckhand";

/// The ClusterRole whose grant the guards forbid by name.
const CLUSTER_ADMIN: &str = "cluster-admin";
/// The group whose members bypass RBAC entirely.
const SYSTEM_MASTERS: &str = "system:masters";
/// Verbs that let a holder grant or assume rights beyond its own.
const ESCALATING_VERBS: [&str; 3] = ["escalate", "bind", "impersonate"];
/// The label the API server's bootstrap roles (cluster-admin among them) carry; an
/// aggregation rule selecting it pulls cluster-admin in.
const BOOTSTRAP_LABEL: &str = "kubernetes.io/bootstrapping";

/// What the guards protect: the namespaces nothing may write to and deckhand's own
/// identity. Built upward from the defaults: kube-system is always protected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardConfig {
    extra_protected_namespaces: BTreeSet<String>,
    own_namespace: String,
    own_names: BTreeSet<String>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            extra_protected_namespaces: BTreeSet::new(),
            own_namespace: DEFAULT_OWN_NAMESPACE.to_string(),
            own_names: BTreeSet::from([DEFAULT_OWN_NAME.to_string()]),
        }
    }
}

impl GuardConfig {
    /// Protects one more namespace.
    #[must_use]
    pub fn protect_namespace(mut self, namespace: &str) -> Self {
        self.extra_protected_namespaces.insert(normalise(namespace));
        self
    }

    /// Sets the namespace deckhand runs in (protected, like the defaults).
    #[must_use]
    pub fn own_namespace(mut self, namespace: &str) -> Self {
        self.own_namespace = normalise(namespace);
        self
    }

    /// Adds a name deckhand's ServiceAccount, Roles or bindings go by; objects named
    /// so, or with the name followed by `-` or `:`, are deckhand's own.
    #[must_use]
    pub fn own_name(mut self, name: &str) -> Self {
        self.own_names.insert(normalise(name));
        self
    }

    /// Every protected namespace: the defaults, deckhand's own and the extra ones.
    pub fn protected_namespaces(&self) -> BTreeSet<String> {
        let mut namespaces: BTreeSet<String> = DEFAULT_PROTECTED_NAMESPACES
            .iter()
            .map(|namespace| namespace.to_string())
            .collect();
        namespaces.insert(self.own_namespace.clone());
        namespaces.extend(self.extra_protected_namespaces.iter().cloned());
        namespaces.remove("");
        namespaces
    }

    /// The namespace deckhand runs in.
    pub fn own_namespace_name(&self) -> &str {
        &self.own_namespace
    }

    /// The names deckhand's own RBAC objects and ServiceAccount go by.
    pub fn own_names(&self) -> &BTreeSet<String> {
        &self.own_names
    }

    /// Whether a normalised name is (or starts like) one of deckhand's own.
    fn is_own_name(&self, name: &str) -> bool {
        self.own_names.iter().any(|own| {
            name == own
                || name.starts_with(&format!("{own}-"))
                || name.starts_with(&format!("{own}:"))
        })
    }

    /// The configuration as the Rego guards read it in `data.deckhand.config`.
    pub fn to_data(&self) -> Value {
        serde_json::json!({
            "protected_namespaces": self.protected_namespaces(),
            "own_namespace": self.own_namespace,
            "own_names": self.own_names,
        })
    }
}

/// Runs the three guards on one review.
pub fn check(review: &Review, config: &GuardConfig, inventory: &Inventory) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut deny = |policy: &str, message: String| {
        violations.push(Violation {
            policy: policy.to_string(),
            message,
        })
    };
    for message in namespace_deletion(review) {
        deny(NO_NAMESPACE_DELETION, message);
    }
    for message in protected_namespace_writes(review, config) {
        deny(PROTECTED_NAMESPACES, message);
    }
    for message in cluster_admin(review, config, inventory) {
        deny(NO_CLUSTER_ADMIN, message);
    }
    violations
}

fn is_namespace_kind(review: &Review) -> bool {
    review.kinds.contains("namespace")
}

fn namespace_deletion(review: &Review) -> Vec<String> {
    let mut messages = Vec::new();
    if !is_namespace_kind(review) {
        return messages;
    }
    if review.has_verb(&["delete", "deletecollection"]) {
        messages.push("deleting a Namespace is never allowed".to_string());
    }
    if review.is_write() && review.subresources.contains("finalize") {
        messages.push(
            "writing a Namespace's finalize subresource (which can empty it) is never allowed"
                .to_string(),
        );
    }
    if review.verbs.is_empty() {
        messages.push("an operation on a Namespace must say its verb or operation".to_string());
    }
    messages
}

fn protected_namespace_writes(review: &Review, config: &GuardConfig) -> Vec<String> {
    let mut messages = Vec::new();
    if !review.is_write() {
        return messages;
    }
    let protected = config.protected_namespaces();
    for namespace in review.namespaces.intersection(&protected) {
        messages.push(format!("no writes in the protected namespace {namespace}"));
    }
    if is_namespace_kind(review) {
        for name in review.names.intersection(&protected) {
            messages.push(format!("no writes to the protected Namespace {name}"));
        }
    }
    messages
}

/// The kinds the guard treats as RBAC roles and bindings.
const ROLE_KINDS: [&str; 2] = ["role", "clusterrole"];
const BINDING_KINDS: [&str; 2] = ["rolebinding", "clusterrolebinding"];
/// The kinds that make up deckhand's own identity.
const IDENTITY_KINDS: [&str; 5] = [
    "role",
    "clusterrole",
    "rolebinding",
    "clusterrolebinding",
    "serviceaccount",
];

fn cluster_admin(review: &Review, config: &GuardConfig, inventory: &Inventory) -> Vec<String> {
    let mut messages = Vec::new();
    for verb in ESCALATING_VERBS {
        if review.verbs.contains(verb) {
            messages.push(format!("the {verb} verb grants rights beyond one's own"));
        }
    }
    if !review.is_write() {
        return messages;
    }
    let touches = |kinds: &[&str]| kinds.iter().any(|kind| review.kinds.contains(*kind));
    if touches(&IDENTITY_KINDS) {
        for name in &review.names {
            if config.is_own_name(name) {
                messages.push(format!(
                    "no edits to deckhand's own RBAC or ServiceAccount ({name})"
                ));
            }
        }
    }
    if touches(&["clusterrole", "clusterrolebinding"]) && review.names.contains(CLUSTER_ADMIN) {
        messages.push("no edits to cluster-admin".to_string());
    }
    for object in review.objects() {
        // Judged by content, not by the kind the request claims: anything with a roleRef
        // binds, anything with rules or an aggregation rule grants.
        let object_kind = object.get("kind").and_then(Value::as_str).map(normalise);
        let is_binding = object.get("roleRef").is_some()
            || object.get("subjects").is_some()
            || object_kind
                .as_deref()
                .is_some_and(|kind| BINDING_KINDS.contains(&kind))
            || (object_kind.is_none() && touches(&BINDING_KINDS));
        let is_role = object.get("rules").is_some()
            || object.get("aggregationRule").is_some()
            || object_kind
                .as_deref()
                .is_some_and(|kind| ROLE_KINDS.contains(&kind))
            || (object_kind.is_none() && touches(&ROLE_KINDS));
        if is_binding {
            binding_messages(object, review, config, inventory, &mut messages);
        }
        if is_role {
            role_messages(object, inventory, &mut messages);
        }
    }
    messages
}

/// Every string in a value that should be one string, or a list of them: a field given
/// as `["cluster-admin"]` must not slip through a check that expects `"cluster-admin"`.
fn strings_in(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(text)) => vec![normalise(text)],
        Some(Value::Array(items)) => items
            .iter()
            .flat_map(|item| strings_in(Some(item)))
            .collect(),
        _ => Vec::new(),
    }
}

fn binding_messages(
    binding: &Value,
    review: &Review,
    config: &GuardConfig,
    inventory: &Inventory,
    messages: &mut Vec<String>,
) {
    let role_ref = binding.get("roleRef");
    let role_names = strings_in(role_ref.and_then(|role_ref| role_ref.get("name")));
    for role_name in &role_names {
        if role_name == CLUSTER_ADMIN {
            messages.push("no binding to cluster-admin".to_string());
        } else if let Some(reason) = dangerous_role_in_inventory(role_name, binding, inventory) {
            messages.push(format!("no binding to {role_name}: {reason}"));
        }
    }
    let binding_namespace = string_at(binding, &["metadata", "namespace"])
        .map(normalise)
        .or_else(|| review.namespaces.iter().next().cloned());
    let subjects = match binding.get("subjects") {
        Some(Value::Array(subjects)) => subjects.iter().collect(),
        Some(subject @ Value::Object(_)) => vec![subject],
        _ => Vec::new(),
    };
    let own_namespace = config.own_namespace_name();
    for subject in subjects {
        let kind = strings_in(subject.get("kind")).join("");
        let names = strings_in(subject.get("name"));
        for name in &names {
            if name == SYSTEM_MASTERS {
                messages.push("no binding to the system:masters group".to_string());
            }
            if name == "system:serviceaccounts"
                || name == &format!("system:serviceaccounts:{own_namespace}")
            {
                messages.push(format!(
                    "no binding to {name}, which includes deckhand's own ServiceAccount"
                ));
            }
            if let Some(rest) =
                name.strip_prefix(&format!("system:serviceaccount:{own_namespace}:"))
            {
                if config.is_own_name(rest) {
                    messages.push(format!(
                        "no new rights for deckhand's own ServiceAccount ({name})"
                    ));
                }
            }
            if kind == "serviceaccount" && config.is_own_name(name) {
                let subject_namespace = strings_in(subject.get("namespace"))
                    .into_iter()
                    .next()
                    .or_else(|| binding_namespace.clone());
                if subject_namespace
                    .as_deref()
                    .is_none_or(|namespace| namespace == own_namespace)
                {
                    messages.push(format!(
                        "no new rights for deckhand's own ServiceAccount ({name})"
                    ));
                }
            }
        }
    }
}

/// Why the role a binding names is as good as cluster-admin, when the inventory knows it.
fn dangerous_role_in_inventory(
    role_name: &str,
    binding: &Value,
    inventory: &Inventory,
) -> Option<String> {
    let wants_cluster_role = binding
        .get("roleRef")
        .and_then(|role_ref| role_ref.get("kind"))
        .and_then(Value::as_str)
        .is_none_or(|kind| normalise(kind) == "clusterrole");
    let binding_namespace = string_at(binding, &["metadata", "namespace"]).map(normalise);
    inventory.objects().iter().find_map(|object| {
        let kind = normalise(object.get("kind").and_then(Value::as_str)?);
        let name = normalise(string_at(object, &["metadata", "name"])?);
        let kind_fits = if wants_cluster_role {
            kind == "clusterrole"
        } else {
            kind == "role"
                && string_at(object, &["metadata", "namespace"]).map(normalise) == binding_namespace
        };
        if !kind_fits || name != role_name {
            return None;
        }
        dangerous_rules(object).into_iter().next()
    })
}

/// Why a role's rules are dangerous, one reason per dangerous rule.
fn dangerous_rules(role: &Value) -> Vec<String> {
    let mut reasons = Vec::new();
    let rules = match role.get("rules") {
        Some(Value::Array(rules)) => rules.iter().collect(),
        Some(rule @ Value::Object(_)) => vec![rule],
        _ => Vec::new(),
    };
    for rule in rules {
        for verb in strings_in(rule.get("verbs")) {
            if verb.contains('*') {
                reasons.push(format!("a rule grants the wildcard verb {verb:?}"));
            } else if ESCALATING_VERBS.contains(&verb.as_str()) {
                reasons.push(format!("a rule grants the {verb} verb"));
            }
        }
        for resource in strings_in(rule.get("resources")) {
            if resource.contains('*') {
                reasons.push(format!("a rule grants the wildcard resource {resource:?}"));
            }
        }
    }
    reasons
}

fn role_messages(role: &Value, inventory: &Inventory, messages: &mut Vec<String>) {
    for reason in dangerous_rules(role) {
        messages.push(format!("no role with cluster-admin-like rights: {reason}"));
    }
    let Some(aggregation) = role.get("aggregationRule") else {
        return;
    };
    let selectors = match aggregation.get("clusterRoleSelectors") {
        Some(Value::Array(selectors)) => selectors.clone(),
        _ => {
            messages.push("an aggregation rule without readable clusterRoleSelectors".to_string());
            return;
        }
    };
    for selector in &selectors {
        if selector::is_empty(selector) {
            messages.push("an aggregation rule selecting every ClusterRole".to_string());
            continue;
        }
        let selects_bootstrap_roles = selector
            .get("matchLabels")
            .and_then(Value::as_object)
            .is_some_and(|labels| labels.keys().any(|key| normalise(key) == BOOTSTRAP_LABEL))
            || selector
                .get("matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|expressions| {
                    expressions.iter().any(|expression| {
                        expression
                            .get("key")
                            .and_then(Value::as_str)
                            .is_some_and(|key| normalise(key) == BOOTSTRAP_LABEL)
                    })
                });
        if selects_bootstrap_roles {
            messages.push(format!(
                "an aggregation rule selecting the bootstrap roles ({BOOTSTRAP_LABEL}), cluster-admin among them"
            ));
        }
        for object in inventory.objects() {
            let is_cluster_role = object
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|kind| normalise(kind) == "clusterrole");
            let empty = serde_json::Map::new();
            let labels = object
                .get("metadata")
                .and_then(|metadata| metadata.get("labels"))
                .and_then(Value::as_object)
                .unwrap_or(&empty);
            if !is_cluster_role || !selector::matches(selector, labels) {
                continue;
            }
            let name = string_at(object, &["metadata", "name"]).unwrap_or("?");
            if normalise(name) == CLUSTER_ADMIN {
                messages.push("an aggregation rule pulling in cluster-admin".to_string());
            } else if let Some(reason) = dangerous_rules(object).into_iter().next() {
                messages.push(format!("an aggregation rule pulling in {name}: {reason}"));
            }
        }
    }
}
