//! RBAC scanning: wildcard rules, bindings to cluster-admin, verbs that escalate
//! (escalate, bind, impersonate, pods/exec), and who can read Secrets — each subject
//! with the binding and role that grant it.

use crate::advice::{Patch, PatchType, Severity};
use crate::k8s::{self, array_at, str_at};
use crate::security::Finding;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Groups whose cluster-admin binding is Kubernetes' own and expected.
const BUILT_IN_ADMIN_GROUPS: [&str; 1] = ["system:masters"];

/// A subject that can read Secrets.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct SecretReader {
    /// `ServiceAccount shop/ci`, `User alice`, `Group devs`.
    pub subject: String,
    /// The binding and the role: `ClusterRoleBinding ci-admin -> ClusterRole cluster-admin`.
    pub via: String,
    /// The verbs granted on secrets (get, list, watch, or *).
    pub verbs: Vec<String>,
    /// `cluster-wide` or `namespace NAME`.
    pub scope: String,
}

/// What RBAC scanning found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RbacReport {
    /// Findings, worst first.
    pub findings: Vec<Finding>,
    /// Every subject that can read Secrets, and how.
    pub secret_readers: Vec<SecretReader>,
}

struct Role<'a> {
    kind: &'a str,
    name: &'a str,
    namespace: Option<&'a str>,
    rules: &'a [Value],
}

fn strings(value: &Value, key: &str) -> Vec<String> {
    array_at(value, &[key])
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

/// Scans Roles, ClusterRoles, RoleBindings and ClusterRoleBindings in `objects`.
pub fn scan_rbac(objects: &[Value]) -> RbacReport {
    let roles: Vec<Role<'_>> = objects
        .iter()
        .filter(|o| matches!(k8s::kind(o), "Role" | "ClusterRole"))
        .map(|o| Role {
            kind: k8s::kind(o),
            name: k8s::name(o),
            namespace: k8s::namespace(o),
            rules: array_at(o, &["rules"]),
        })
        .collect();
    let mut report = RbacReport::default();
    for role in &roles {
        if role.name.starts_with("system:") {
            continue;
        }
        let described = match role.namespace {
            Some(ns) => format!(
                "rbac.authorization.k8s.io/v1 {} {ns}/{}",
                role.kind, role.name
            ),
            None => format!("rbac.authorization.k8s.io/v1 {} {}", role.kind, role.name),
        };
        for (index, rule) in role.rules.iter().enumerate() {
            let verbs = strings(rule, "verbs");
            let resources = strings(rule, "resources");
            let groups = strings(rule, "apiGroups");
            let wild: Vec<&str> = [
                ("verbs", &verbs),
                ("resources", &resources),
                ("apiGroups", &groups),
            ]
            .iter()
            .filter(|(_, values)| values.iter().any(|v| v == "*"))
            .map(|(field, _)| *field)
            .collect();
            if !wild.is_empty() {
                let severity = if wild.len() == 3 {
                    Severity::Critical
                } else {
                    Severity::High
                };
                report.findings.push(Finding {
                    rule: "rbac_wildcard".into(),
                    severity,
                    object: described.clone(),
                    container: None,
                    message: format!("rule {index} uses * in {} (verbs {verbs:?} on {resources:?} in groups {groups:?}): it grants everything that exists now and anything added later.", wild.join(", ")),
                    remediation: "List the exact verbs, resources and API groups the subject needs.".into(),
                    patch: None,
                });
            }
            for risky in ["escalate", "bind", "impersonate"] {
                if verbs.iter().any(|v| v == risky) {
                    report.findings.push(Finding {
                        rule: "rbac_escalation".into(),
                        severity: Severity::High,
                        object: described.clone(),
                        container: None,
                        message: format!("rule {index} grants {risky:?}, which lets the subject give itself more rights."),
                        remediation: format!("Remove {risky:?} unless this role administers RBAC."),
                        patch: None,
                    });
                }
            }
            let grants_create = verbs.iter().any(|v| v == "create" || v == "*");
            if grants_create
                && resources
                    .iter()
                    .any(|r| r == "pods/exec" || r == "pods/attach")
            {
                report.findings.push(Finding {
                    rule: "rbac_pod_exec".into(),
                    severity: Severity::Medium,
                    object: described.clone(),
                    container: None,
                    message: format!("rule {index} allows exec into pods, which reaches every Secret those pods mount."),
                    remediation: "Grant pods/exec only to break-glass roles.".into(),
                    patch: None,
                });
            }
        }
    }
    for binding in objects
        .iter()
        .filter(|o| matches!(k8s::kind(o), "RoleBinding" | "ClusterRoleBinding"))
    {
        let binding_kind = k8s::kind(binding);
        let binding_ns = k8s::namespace(binding);
        let role_kind = str_at(binding, &["roleRef", "kind"]).unwrap_or("ClusterRole");
        let role_name = str_at(binding, &["roleRef", "name"]).unwrap_or("?");
        let subjects: Vec<(String, bool)> = array_at(binding, &["subjects"])
            .iter()
            .map(|s| {
                let kind = str_at(s, &["kind"]).unwrap_or("?");
                let name = str_at(s, &["name"]).unwrap_or("?");
                let described = match (kind, str_at(s, &["namespace"]).or(binding_ns)) {
                    ("ServiceAccount", Some(ns)) => format!("ServiceAccount {ns}/{name}"),
                    _ => format!("{kind} {name}"),
                };
                (
                    described,
                    kind == "Group" && BUILT_IN_ADMIN_GROUPS.contains(&name),
                )
            })
            .collect();
        let binding_described = match binding_ns {
            Some(ns) => format!(
                "rbac.authorization.k8s.io/v1 {binding_kind} {ns}/{}",
                k8s::name(binding)
            ),
            None => format!(
                "rbac.authorization.k8s.io/v1 {binding_kind} {}",
                k8s::name(binding)
            ),
        };
        let scope = match (binding_kind, binding_ns) {
            ("RoleBinding", Some(ns)) => format!("namespace {ns}"),
            _ => "cluster-wide".to_owned(),
        };
        if role_kind == "ClusterRole" && role_name == "cluster-admin" {
            let outsiders: Vec<&str> = subjects
                .iter()
                .filter(|(_, builtin)| !builtin)
                .map(|(s, _)| s.as_str())
                .collect();
            if !outsiders.is_empty() {
                report.findings.push(Finding {
                    rule: "cluster_admin_binding".into(),
                    severity: if binding_kind == "ClusterRoleBinding" { Severity::Critical } else { Severity::High },
                    object: binding_described.clone(),
                    container: None,
                    message: format!("binds cluster-admin ({scope}) to {}.", outsiders.join(", ")),
                    remediation: "Bind a role with only the rights the subject needs; keep cluster-admin for break-glass accounts.".into(),
                    patch: Some(Patch {
                        target: binding_described.clone(),
                        patch_type: PatchType::Merge,
                        body: json!({"roleRef": {"name": "REPLACE-WITH-A-NARROW-ROLE"}}),
                    }),
                });
            }
        }
        // Who can read Secrets through this binding.
        let secret_verbs: Vec<String> =
            if role_name == "cluster-admin" || role_name == "admin" || role_name == "edit" {
                vec!["*".into()]
            } else {
                roles
                    .iter()
                    .filter(|r| {
                        r.kind == role_kind
                            && r.name == role_name
                            && (r.kind == "ClusterRole" || r.namespace == binding_ns)
                    })
                    .flat_map(|r| r.rules.iter())
                    .filter(|rule| {
                        let groups = strings(rule, "apiGroups");
                        let resources = strings(rule, "resources");
                        (groups.is_empty() || groups.iter().any(|g| g.is_empty() || g == "*"))
                            && resources.iter().any(|r| r == "secrets" || r == "*")
                            && array_at(rule, &["resourceNames"]).is_empty()
                    })
                    .flat_map(|rule| strings(rule, "verbs"))
                    .filter(|v| matches!(v.as_str(), "get" | "list" | "watch" | "*"))
                    .collect()
            };
        if !secret_verbs.is_empty() {
            let mut verbs = secret_verbs;
            verbs.sort();
            verbs.dedup();
            for (subject, _) in &subjects {
                report.secret_readers.push(SecretReader {
                    subject: subject.clone(),
                    via: format!(
                        "{binding_kind} {} -> {role_kind} {role_name}",
                        k8s::name(binding)
                    ),
                    verbs: verbs.clone(),
                    scope: scope.clone(),
                });
            }
            let cluster_wide_list = scope == "cluster-wide"
                && verbs
                    .iter()
                    .any(|v| v == "list" || v == "watch" || v == "*");
            if cluster_wide_list && role_name != "cluster-admin" {
                report.findings.push(Finding {
                    rule: "secrets_readable_cluster_wide".into(),
                    severity: Severity::High,
                    object: binding_described.clone(),
                    container: None,
                    message: format!("lets {} list Secrets in every namespace.", subjects.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>().join(", ")),
                    remediation: "Bind with a RoleBinding in the namespaces that need it, and use resourceNames for single Secrets.".into(),
                    patch: None,
                });
            }
        }
    }
    report.findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.object.cmp(&b.object))
    });
    report.secret_readers.sort();
    report
}
