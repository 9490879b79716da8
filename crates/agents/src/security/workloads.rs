//! Workload scanning: the pod templates of Pods, Deployments, StatefulSets, DaemonSets,
//! ReplicaSets, Jobs and CronJobs checked for the misconfigurations that hand a
//! container the node (privileged, host namespaces, hostPath, dangerous capabilities) or
//! make it fragile (no limits, no probes, `:latest`). Each finding carries a patch.

use crate::advice::{Patch, PatchType, Severity};
use crate::k8s::{self, array_at, bool_at, i64_at, str_at};
use crate::security::Finding;
use serde_json::{json, Value};

/// Capabilities that give a container power over the node or its network.
const DANGEROUS_CAPABILITIES: [&str; 9] = [
    "ALL",
    "SYS_ADMIN",
    "NET_ADMIN",
    "SYS_PTRACE",
    "SYS_MODULE",
    "DAC_READ_SEARCH",
    "NET_RAW",
    "SYS_RAWIO",
    "BPF",
];

/// hostPath mounts that are as good as root on the node.
const CRITICAL_HOST_PATHS: [&str; 6] = [
    "/",
    "/var/run/docker.sock",
    "/run/containerd/containerd.sock",
    "/var/lib/kubelet",
    "/etc",
    "/proc",
];

/// Scans every workload in `objects`; Pods owned by a controller are skipped (their
/// template is scanned through the owner), and so is anything without a pod template.
/// Returns the findings and how many objects were skipped.
pub fn scan_workloads(objects: &[Value]) -> (Vec<Finding>, usize, usize) {
    let mut findings = Vec::new();
    let mut scanned = 0;
    let mut skipped = 0;
    for object in objects {
        let kind = k8s::kind(object);
        let owned_pod =
            kind == "Pod" && !array_at(object, &["metadata", "ownerReferences"]).is_empty();
        if !k8s::is_workload_kind(kind) || owned_pod {
            skipped += 1;
            continue;
        }
        let Some(spec) = k8s::pod_spec(object) else {
            skipped += 1;
            continue;
        };
        scanned += 1;
        scan_one(object, spec, &mut findings);
    }
    findings.sort_by(|a, b| {
        b.severity
            .cmp(&a.severity)
            .then_with(|| a.object.cmp(&b.object))
    });
    (findings, scanned, skipped)
}

struct Scan<'a> {
    object: &'a Value,
    described: String,
    findings: &'a mut Vec<Finding>,
}

impl Scan<'_> {
    fn spec_patch(&self, fields: Value) -> Patch {
        Patch {
            target: self.described.clone(),
            patch_type: PatchType::Merge,
            body: k8s::nest(k8s::pod_spec_path(self.object), fields),
        }
    }

    fn container_patch(&self, container: &str, fields: Value) -> Patch {
        let mut entry = json!({"name": container});
        if let (Some(entry), Some(fields)) = (entry.as_object_mut(), fields.as_object()) {
            entry.extend(fields.clone());
        }
        Patch {
            target: self.described.clone(),
            patch_type: PatchType::Strategic,
            body: k8s::nest(
                k8s::pod_spec_path(self.object),
                json!({"containers": [entry]}),
            ),
        }
    }

    fn add(
        &mut self,
        rule: &str,
        severity: Severity,
        container: Option<&str>,
        message: String,
        remediation: &str,
        patch: Option<Patch>,
    ) {
        self.findings.push(Finding {
            rule: rule.to_owned(),
            severity,
            object: self.described.clone(),
            container: container.map(str::to_owned),
            message,
            remediation: remediation.to_owned(),
            patch,
        });
    }
}

fn scan_one(object: &Value, spec: &Value, findings: &mut Vec<Finding>) {
    let mut scan = Scan {
        object,
        described: k8s::describe(object),
        findings,
    };
    for (field, rule, what) in [
        ("hostNetwork", "host_network", "shares the node's network namespace: it sees every connection on the node and can bind its ports"),
        ("hostPID", "host_pid", "shares the node's process namespace: it can see and signal every process on the node"),
        ("hostIPC", "host_ipc", "shares the node's IPC namespace"),
    ] {
        if bool_at(spec, &[field]) == Some(true) {
            let patch = scan.spec_patch(json!({field: false}));
            scan.add(rule, Severity::High, None, format!("{field}: true — the pod {what}."), &format!("Remove {field} unless this is a node agent that needs it."), Some(patch));
        }
    }
    for volume in array_at(spec, &["volumes"]) {
        if let Some(path) = str_at(volume, &["hostPath", "path"]) {
            let critical = CRITICAL_HOST_PATHS
                .iter()
                .any(|p| path == *p || path.ends_with(".sock"));
            let volume_name = str_at(volume, &["name"]).unwrap_or("?");
            scan.add(
                "host_path",
                if critical { Severity::Critical } else { Severity::High },
                None,
                format!("volume {volume_name} mounts the node's {path}{}", if critical { ", which is as good as root on the node" } else { "" }),
                "Use a PersistentVolumeClaim, ConfigMap or emptyDir instead of a hostPath; if a node agent truly needs it, mount it read-only.",
                None,
            );
        }
    }
    let pod_security = spec.get("securityContext").unwrap_or(&Value::Null);
    let pod_non_root = bool_at(pod_security, &["runAsNonRoot"]);
    let pod_user = i64_at(pod_security, &["runAsUser"]);
    if pod_user == Some(0) {
        let patch =
            scan.spec_patch(json!({"securityContext": {"runAsUser": 10001, "runAsNonRoot": true}}));
        scan.add(
            "run_as_root",
            Severity::High,
            None,
            "the pod's securityContext sets runAsUser: 0 (root).".into(),
            "Run as a non-root UID (the image must support it).",
            Some(patch),
        );
    }
    let containers = array_at(spec, &["containers"])
        .iter()
        .map(|c| (c, false))
        .chain(
            array_at(spec, &["initContainers"])
                .iter()
                .map(|c| (c, true)),
        );
    for (container, is_init) in containers {
        scan_container(&mut scan, container, is_init, pod_non_root, pod_user);
    }
}

fn scan_container(
    scan: &mut Scan<'_>,
    container: &Value,
    is_init: bool,
    pod_non_root: Option<bool>,
    pod_user: Option<i64>,
) {
    let name = str_at(container, &["name"]).unwrap_or("?").to_owned();
    let name = name.as_str();
    let security = container.get("securityContext").unwrap_or(&Value::Null);
    let label = if is_init {
        format!("init container {name}")
    } else {
        format!("container {name}")
    };
    if bool_at(security, &["privileged"]) == Some(true) {
        let patch = scan.container_patch(name, json!({"securityContext": {"privileged": false}}));
        scan.add(
            "privileged",
            Severity::Critical,
            Some(name),
            format!("{label} is privileged: it has every capability and every device of the node."),
            "Drop privileged; grant only the specific capability it needs, if any.",
            Some(patch),
        );
    }
    if bool_at(security, &["allowPrivilegeEscalation"]) != Some(false) {
        let patch = scan.container_patch(
            name,
            json!({"securityContext": {"allowPrivilegeEscalation": false}}),
        );
        scan.add("privilege_escalation", Severity::Medium, Some(name), format!("{label} does not set allowPrivilegeEscalation: false, so setuid binaries can gain privileges."), "Set allowPrivilegeEscalation: false.", Some(patch));
    }
    let user = i64_at(security, &["runAsUser"]).or(pod_user);
    let non_root = bool_at(security, &["runAsNonRoot"]).or(pod_non_root);
    if i64_at(security, &["runAsUser"]) == Some(0) {
        let patch = scan.container_patch(
            name,
            json!({"securityContext": {"runAsUser": 10001, "runAsNonRoot": true}}),
        );
        scan.add(
            "run_as_root",
            Severity::High,
            Some(name),
            format!("{label} sets runAsUser: 0 (root)."),
            "Run as a non-root UID.",
            Some(patch),
        );
    } else if non_root != Some(true) && user.is_none_or(|u| u == 0) {
        let patch = scan.container_patch(name, json!({"securityContext": {"runAsNonRoot": true}}));
        scan.add("run_as_non_root_missing", Severity::Medium, Some(name), format!("{label} may run as root: neither runAsNonRoot: true nor a non-zero runAsUser is set."), "Set runAsNonRoot: true (and a runAsUser if the image has no non-root USER).", Some(patch));
    }
    if bool_at(security, &["readOnlyRootFilesystem"]) != Some(true) {
        let patch = scan.container_patch(
            name,
            json!({"securityContext": {"readOnlyRootFilesystem": true}}),
        );
        scan.add("writable_root_filesystem", Severity::Low, Some(name), format!("{label} has a writable root filesystem."), "Set readOnlyRootFilesystem: true and mount an emptyDir where the app writes (e.g. /tmp).", Some(patch));
    }
    let added: Vec<&str> = array_at(security, &["capabilities", "add"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let dangerous: Vec<&str> = added
        .iter()
        .copied()
        .filter(|cap| DANGEROUS_CAPABILITIES.contains(&cap.trim_start_matches("CAP_")))
        .collect();
    if !dangerous.is_empty() {
        let keep: Vec<&str> = added
            .iter()
            .copied()
            .filter(|cap| !dangerous.contains(cap))
            .collect();
        let patch = scan.container_patch(
            name,
            json!({"securityContext": {"capabilities": {"add": keep, "drop": ["ALL"]}}}),
        );
        let severity = if dangerous.iter().any(|c| {
            matches!(
                c.trim_start_matches("CAP_"),
                "ALL" | "SYS_ADMIN" | "SYS_MODULE"
            )
        }) {
            Severity::Critical
        } else {
            Severity::High
        };
        scan.add("dangerous_capabilities", severity, Some(name), format!("{label} adds capabilities {}.", dangerous.join(", ")), "Drop ALL capabilities and add back only what the process needs (often none; NET_BIND_SERVICE for ports below 1024).", Some(patch));
    }
    let image = str_at(container, &["image"]).unwrap_or("");
    let (reference, digest) = image
        .split_once('@')
        .map(|(r, d)| (r, Some(d)))
        .unwrap_or((image, None));
    let last_segment = reference.rsplit('/').next().unwrap_or(reference);
    let tag = last_segment.split_once(':').map(|(_, tag)| tag);
    if digest.is_none() && tag.is_none_or(|tag| tag == "latest") {
        scan.add("image_not_pinned", Severity::Medium, Some(name), format!("{label} uses image {image:?}, {}: what runs changes under you and rollbacks do not roll back.", if tag.is_none() { "with no tag (so :latest)" } else { "tagged :latest" }), "Pin the image to a version tag or, better, a digest.", None);
    }
    if !is_init {
        let limits = container.get("resources").and_then(|r| r.get("limits"));
        let requests = container.get("resources").and_then(|r| r.get("requests"));
        let missing: Vec<&str> = ["cpu", "memory"]
            .into_iter()
            .filter(|r| limits.and_then(|l| l.get(*r)).is_none())
            .collect();
        if limits.and_then(|l| l.get("memory")).is_none() {
            let memory = requests
                .and_then(|r| str_at(r, &["memory"]))
                .unwrap_or("256Mi");
            let patch =
                scan.container_patch(name, json!({"resources": {"limits": {"memory": memory}}}));
            scan.add(
                "no_resource_limits",
                Severity::Medium,
                Some(name),
                format!(
                    "{label} has no {} limit: one leak can starve its neighbours on the node.",
                    missing.join(" or ")
                ),
                "Set a memory limit (and requests) sized from observed usage.",
                Some(patch),
            );
        } else if requests.is_none() {
            scan.add(
                "no_resource_requests",
                Severity::Low,
                Some(name),
                format!("{label} has no resource requests, so the scheduler places it blind."),
                "Set CPU and memory requests.",
                None,
            );
        }
        let kind = k8s::kind(scan.object);
        if !matches!(kind, "Job" | "CronJob") {
            for (probe, rule) in [
                ("livenessProbe", "no_liveness_probe"),
                ("readinessProbe", "no_readiness_probe"),
            ] {
                if container.get(probe).is_none() {
                    scan.add(
                        rule,
                        Severity::Low,
                        Some(name),
                        format!("{label} has no {probe}."),
                        if probe == "readinessProbe" {
                            "Add a readiness probe so traffic reaches only pods that can serve it."
                        } else {
                            "Add a liveness probe so a hung process is restarted."
                        },
                        None,
                    );
                }
            }
        }
    }
}
