//! The security agent's scanners: workloads (pod templates) and RBAC. Findings name the
//! rule, the object, what is wrong and how to fix it, with a patch where one object
//! change fixes it.

pub mod rbac;
pub mod workloads;

use crate::advice::{Patch, Severity};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use rbac::{scan_rbac, RbacReport, SecretReader};

/// One finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Finding {
    /// The rule, e.g. `privileged`, `host_path`, `rbac_wildcard`.
    pub rule: String,
    /// How bad it is.
    pub severity: Severity,
    /// The object, e.g. `apps/v1 Deployment shop/web`.
    pub object: String,
    /// The container, for container-level findings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub remediation: String,
    /// The change that fixes it, when one object change does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<Patch>,
}

/// What a workload scan found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadReport {
    /// Findings, worst first.
    pub findings: Vec<Finding>,
    /// Workloads scanned.
    pub scanned: usize,
    /// Objects skipped: not workloads, or Pods whose controller was scanned instead.
    pub skipped: usize,
    /// Findings per severity, e.g. `{"critical": 1, "high": 2}`.
    pub counts: std::collections::BTreeMap<String, usize>,
}

/// Scans the workloads among `objects` (see [`workloads::scan_workloads`]).
pub fn scan_workloads(objects: &[Value]) -> WorkloadReport {
    let (findings, scanned, skipped) = workloads::scan_workloads(objects);
    let mut counts = std::collections::BTreeMap::new();
    for finding in &findings {
        let key = serde_json::to_value(finding.severity)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        *counts.entry(key).or_insert(0) += 1;
    }
    WorkloadReport {
        findings,
        scanned,
        skipped,
        counts,
    }
}

/// The objects of `lists`, flattened: Kubernetes objects are kept, `*List` objects and
/// arrays give their items. Plans pass several `kube_list` outputs this way.
pub fn flatten_objects(lists: &[Value]) -> Vec<Value> {
    let mut objects = Vec::new();
    for value in lists {
        match value {
            Value::Array(items) => objects.extend(flatten_objects(items)),
            Value::Object(fields)
                if fields.get("items").is_some_and(Value::is_array)
                    && !fields.contains_key("spec") =>
            {
                if let Some(Value::Array(items)) = fields.get("items") {
                    objects.extend(flatten_objects(items));
                }
            }
            Value::Object(_) => objects.push(value.clone()),
            _ => {}
        }
    }
    objects
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::advice::PatchType;
    use serde_json::json;

    fn deployment(pod_spec: Value) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "agent", "namespace": "ops"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}}, "spec": pod_spec}}})
    }

    fn rules(report: &WorkloadReport) -> Vec<&str> {
        report.findings.iter().map(|f| f.rule.as_str()).collect()
    }

    #[test]
    fn a_node_agent_with_every_mistake_is_caught() {
        let report = scan_workloads(&[deployment(json!({
            "hostNetwork": true, "hostPID": true,
            "volumes": [{"name": "sock", "hostPath": {"path": "/var/run/docker.sock"}}],
            "containers": [{"name": "agent", "image": "acme/agent",
                "securityContext": {"privileged": true, "runAsUser": 0, "capabilities": {"add": ["SYS_ADMIN", "NET_BIND_SERVICE"]}}}]
        }))]);
        let found = rules(&report);
        for rule in [
            "privileged",
            "host_network",
            "host_pid",
            "host_path",
            "run_as_root",
            "dangerous_capabilities",
            "image_not_pinned",
            "no_resource_limits",
            "no_liveness_probe",
            "no_readiness_probe",
            "writable_root_filesystem",
            "privilege_escalation",
        ] {
            assert!(found.contains(&rule), "{rule} missing from {found:?}");
        }
        assert_eq!(
            report.findings[0].severity,
            Severity::Critical,
            "worst first"
        );
        let privileged = report
            .findings
            .iter()
            .find(|f| f.rule == "privileged")
            .unwrap();
        let patch = privileged.patch.as_ref().unwrap();
        assert_eq!(patch.patch_type, PatchType::Strategic);
        assert_eq!(
            patch.body["spec"]["template"]["spec"]["containers"][0],
            json!({"name": "agent", "securityContext": {"privileged": false}})
        );
        let host = report
            .findings
            .iter()
            .find(|f| f.rule == "host_network")
            .unwrap();
        assert_eq!(
            host.patch.as_ref().unwrap().body,
            json!({"spec": {"template": {"spec": {"hostNetwork": false}}}})
        );
        let caps = report
            .findings
            .iter()
            .find(|f| f.rule == "dangerous_capabilities")
            .unwrap();
        assert_eq!(
            caps.patch.as_ref().unwrap().body["spec"]["template"]["spec"]["containers"][0]
                ["securityContext"]["capabilities"]["add"],
            json!(["NET_BIND_SERVICE"])
        );
    }

    #[test]
    fn a_hardened_workload_is_clean_and_owned_pods_are_skipped() {
        let hardened = deployment(json!({
            "securityContext": {"runAsNonRoot": true, "runAsUser": 10001},
            "containers": [{"name": "web", "image": "ghcr.io/acme/web:2.4.1",
                "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}}}]
        }));
        let owned_pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web-1", "namespace": "ops", "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1"}]},
            "spec": {"containers": [{"name": "web", "image": "x", "securityContext": {"privileged": true}}]}});
        let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}});
        let report = scan_workloads(&flatten_objects(&[
            json!([hardened]),
            json!({"kind": "PodList", "items": [owned_pod]}),
            service,
        ]));
        assert!(report.findings.is_empty(), "{:#?}", report.findings);
        assert_eq!((report.scanned, report.skipped), (1, 2));
    }

    #[test]
    fn cron_jobs_are_scanned_through_their_job_template() {
        let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "backup", "namespace": "ops"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": {"spec": {"restartPolicy": "OnFailure",
                "containers": [{"name": "backup", "image": "acme/backup:latest", "securityContext": {"privileged": true}}]}}}}}});
        let report = scan_workloads(&[cron]);
        let found = rules(&report);
        assert!(
            found.contains(&"privileged") && found.contains(&"image_not_pinned"),
            "{found:?}"
        );
        assert!(!found.contains(&"no_liveness_probe"), "jobs need no probes");
        let patch = &report.findings[0].patch.as_ref().unwrap().body;
        assert!(
            patch["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"].is_array(),
            "{patch}"
        );
    }

    #[test]
    fn rbac_wildcards_admin_bindings_and_secret_readers() {
        let objects = vec![
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "ci-deployer"},
                "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "secret-reader", "namespace": "shop"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}, {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "one-secret", "namespace": "shop"},
                "rules": [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["tls-cert"], "verbs": ["get"]}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "ci"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "ci-deployer"},
                "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "alice-admin"},
                "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "User", "name": "alice"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "cluster-admin"},
                "roleRef": {"kind": "ClusterRole", "name": "cluster-admin"}, "subjects": [{"kind": "Group", "name": "system:masters"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "app-secrets", "namespace": "shop"},
                "roleRef": {"kind": "Role", "name": "secret-reader"}, "subjects": [{"kind": "ServiceAccount", "name": "checkout"}]}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "tls", "namespace": "shop"},
                "roleRef": {"kind": "Role", "name": "one-secret"}, "subjects": [{"kind": "ServiceAccount", "name": "ingress"}]}),
        ];
        let report = scan_rbac(&objects);
        let found: Vec<&str> = report.findings.iter().map(|f| f.rule.as_str()).collect();
        assert!(found.contains(&"rbac_wildcard"), "{found:?}");
        assert_eq!(
            found
                .iter()
                .filter(|r| **r == "cluster_admin_binding")
                .count(),
            1,
            "system:masters is expected: {found:?}"
        );
        assert!(
            found.contains(&"secrets_readable_cluster_wide"),
            "ci can list secrets everywhere: {found:?}"
        );
        let readers: Vec<(&str, &str)> = report
            .secret_readers
            .iter()
            .map(|r| (r.subject.as_str(), r.scope.as_str()))
            .collect();
        assert!(
            readers.contains(&("ServiceAccount tools/ci", "cluster-wide")),
            "{readers:?}"
        );
        assert!(
            readers.contains(&("User alice", "cluster-wide")),
            "{readers:?}"
        );
        assert!(
            readers.contains(&("ServiceAccount shop/checkout", "namespace shop")),
            "{readers:?}"
        );
        assert!(
            !readers.iter().any(|(s, _)| s.contains("ingress")),
            "resourceNames limits it to one secret: {readers:?}"
        );
    }
}
