//! Scarlet's rule-based path: an [`Intent`] becomes a plan of known shape. Step inputs
//! are built against the catalog's schemas (optional fields only when the tool has them,
//! required ones always), and the draft is validated by [`Plan::new`] like any other.

use crate::scarlet::intent::{self, Intent};
use deckhand_runtime::heartbeat::HeartbeatKind;
use deckhand_runtime::{AgentRole, Error, Plan, PlanDraft, PlanRequest, Result, Step, ToolCatalog};
use serde_json::{json, Map, Value};

/// The tool that runs `terraform plan` (present only when a terraform binary is
/// configured).
const TERRAFORM_PLAN: &str = "terraform_plan";

/// What `created_by` says for plans of this path.
pub const CREATED_BY: &str = "scarlet/offline-rules";

/// What the rule-based path understands, for the person when it understands nothing.
pub const CAPABILITIES: &str = "Without a language model, deckhand understands these requests:\n\
  - why is pod NAME crash-looping / failing / pending (diagnosis, nothing changes)\n\
  - scale deployment NAME to N [in namespace NS]\n\
  - restart NAME; delete pod NAME\n\
  - create a deployment for IMAGE:TAG [with N replicas] [and a service] [port P]\n\
  - give NAME an HPA, MIN-MAX replicas [at C% cpu]\n\
  - scan namespace NS for security issues; who can read secrets\n\
  - health scan [of namespace NS]; security scan [of namespace NS] (workloads and RBAC)\n\
  - list pods / deployments / services ...; show logs of NAME\n\
  - a pasted Alertmanager payload (JSON) or pasted logs\n\
  - create a configmap / secret template / helm chart / ingress; create an S3 bucket named NAME in REGION\n\
Configure a model in the [llm] table of deckhand.toml for anything else.";

/// A plan for `request` from the rules alone.
///
/// # Errors
/// [`Error::Planning`] when no rule understands the request or it asks for something
/// deckhand never does, naming what it can do; [`Error::InvalidPlan`] when the catalog's
/// tools do not accept what the rules produce (a catalog without the cluster tools, say).
pub fn plan(request: &PlanRequest, catalog: &ToolCatalog) -> Result<Plan> {
    let first_line = request.text.lines().next().unwrap_or("");
    if let Some(scan) = BuiltinScan::named_in(first_line) {
        let namespace = intent::namespace_in(first_line).or_else(|| request.namespace.clone());
        let request = PlanRequest {
            namespace,
            ..request.clone()
        };
        return scan_plan(scan, &request, catalog);
    }
    let intent = intent::parse(&request.text).ok_or_else(|| Error::Planning {
        message: format!(
            "I could not read {:?} as one of the requests I know.\n{CAPABILITIES}",
            request.text
        ),
    })?;
    let named = intent::namespace_in(request.text.lines().next().unwrap_or(""))
        .or_else(|| request.namespace.clone());
    let explicit_namespace = named.is_some();
    let namespace = named.unwrap_or_else(|| "default".to_owned());
    let steps = Builder {
        catalog,
        namespace,
        explicit_namespace,
        steps: Vec::new(),
    }
    .build(intent)?;
    Plan::new(
        request.thread_id,
        request.text.clone(),
        CREATED_BY,
        PlanDraft { steps },
        catalog,
    )
}

/// The scans deckhand runs on its own (heartbeat tasks): read-only plans of a fixed shape,
/// made without a model so a scheduled scan plans the same way every time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinScan {
    /// `health_scan`: crash loops, pods pending or not ready, failing Deployments,
    /// unbound claims.
    Health,
    /// `kube_list` of the workloads and the RBAC objects, then `scan_workloads` and
    /// `scan_rbac`.
    Security,
}

impl BuiltinScan {
    /// The built-in scan a request names: "health scan", "health check", "cluster
    /// health"; "security scan", "security audit" (the words of
    /// `HeartbeatTask::request_text`, or a person's).
    pub fn named_in(text: &str) -> Option<Self> {
        let text = text.to_lowercase();
        let names = |phrases: &[&str]| phrases.iter().any(|phrase| text.contains(phrase));
        if names(&["health scan", "health check", "cluster health"]) {
            Some(Self::Health)
        } else if names(&["security scan", "security audit"]) {
            Some(Self::Security)
        } else {
            None
        }
    }

    /// The built-in scan a heartbeat task runs; `None` for a request (planned like any
    /// other).
    pub fn of(kind: &HeartbeatKind) -> Option<Self> {
        match kind {
            HeartbeatKind::HealthScan => Some(Self::Health),
            HeartbeatKind::SecurityScan => Some(Self::Security),
            HeartbeatKind::Request { .. } => None,
        }
    }
}

/// The plan of a built-in scan of `request.namespace` (every namespace when `None`),
/// in `request.thread_id`, titled `request.text`. Every step is read-only.
///
/// # Errors
/// [`Error::Planning`] when the catalog lacks a tool the scan needs (no cluster
/// connected, say); [`Error::InvalidPlan`] when its tools refuse the inputs.
pub fn scan_plan(scan: BuiltinScan, request: &PlanRequest, catalog: &ToolCatalog) -> Result<Plan> {
    let scope = request.namespace.as_deref();
    let mut builder = Builder {
        catalog,
        namespace: scope.unwrap_or("default").to_owned(),
        explicit_namespace: scope.is_some(),
        steps: Vec::new(),
    };
    match scan {
        BuiltinScan::Health => builder.health_scan(scope)?,
        BuiltinScan::Security => {
            builder.workload_scan("scan-workloads", scope)?;
            builder.rbac_scan("scan-rbac", scope)?;
        }
    }
    Plan::new(
        request.thread_id,
        request.text.clone(),
        CREATED_BY,
        PlanDraft {
            steps: builder.steps,
        },
        catalog,
    )
}

struct Builder<'a> {
    catalog: &'a ToolCatalog,
    namespace: String,
    /// Whether the person named the namespace (RBAC scans cover every namespace if not).
    explicit_namespace: bool,
    steps: Vec<Step>,
}

impl Builder<'_> {
    /// An input for `tool`: the given fields that its schema knows, and an error naming
    /// any required field that is missing.
    fn input(&self, tool: &str, fields: Value) -> Result<Value> {
        let entry = self.catalog.get(tool).ok_or_else(|| Error::Planning {
            message: format!("this request needs the tool {tool:?}, which this deckhand does not have (is the cluster connected and the tool loaded?)"),
        })?;
        let schema = &entry.input_schema;
        let properties = schema.get("properties").and_then(Value::as_object);
        let open = schema.get("additionalProperties") != Some(&Value::Bool(false));
        let mut input = Map::new();
        if let Value::Object(fields) = fields {
            for (key, value) in fields {
                if value.is_null() {
                    continue;
                }
                if open || properties.is_some_and(|p| p.contains_key(&key)) {
                    input.insert(key, value);
                }
            }
        }
        let missing: Vec<&str> = schema
            .get("required")
            .and_then(Value::as_array)
            .map(|required| {
                required
                    .iter()
                    .filter_map(Value::as_str)
                    .filter(|key| !input.contains_key(*key))
                    .collect()
            })
            .unwrap_or_default();
        if !missing.is_empty() {
            return Err(Error::Planning {
                message: format!(
                    "the tool {tool:?} needs {} and the request does not give it",
                    missing.join(", ")
                ),
            });
        }
        Ok(Value::Object(input))
    }

    // Each argument is one field of the step; a struct literal at every call site would
    // say the same at twice the length.
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        id: &str,
        agent: AgentRole,
        title: String,
        tool: &str,
        fields: Value,
        depends_on: &[&str],
        rationale: &str,
    ) -> Result<()> {
        let input = self.input(tool, fields)?;
        self.steps.push(Step {
            id: id.to_owned(),
            agent,
            title,
            tool: tool.to_owned(),
            input,
            depends_on: depends_on.iter().map(|d| (*d).to_owned()).collect(),
            mutating: false,
            rationale: rationale.to_owned(),
        });
        Ok(())
    }

    /// Generate → validate → dry run for one file; returns the dry-run step's id.
    fn manifest(
        &mut self,
        label: &str,
        generator: &str,
        fields: Value,
        path: &str,
    ) -> Result<String> {
        let ns = self.namespace.clone();
        self.add(&format!("write-{label}"), AgentRole::Jamie, format!("Write the {label} YAML to {path}"), generator, fields, &[],
            "Generated by the deterministic generator, so the YAML is reviewable in the workspace before anything reaches the cluster.")?;
        self.add(
            &format!("validate-{label}"),
            AgentRole::Jamie,
            format!("Validate {path}"),
            "yaml_validate",
            json!({"path": path}),
            &[format!("write-{label}").as_str()],
            "Catches syntax errors and unknown fields before the API server sees the file.",
        )?;
        self.add(
            &format!("dry-run-{label}"),
            AgentRole::Security,
            format!("Server-side dry run of {path} in {ns}"),
            "kube_dry_run",
            json!({"file": path}),
            &[format!("validate-{label}").as_str()],
            "The API server and the policy engine check the object without storing it.",
        )?;
        Ok(format!("dry-run-{label}"))
    }

    fn apply(&mut self, label: &str, path: &str, dry_runs: &[String]) -> Result<()> {
        let ns = self.namespace.clone();
        let depends: Vec<&str> = dry_runs.iter().map(String::as_str).collect();
        self.add(&format!("apply-{label}"), AgentRole::Sre, format!("Apply {path} to {ns}"), "kube_apply", json!({"file": path}), &depends,
            "Changes the cluster, so it waits for approval; it runs only after every dry run passed.")
    }

    /// `kube_list` of every workload kind in `scope` (every namespace when `None`), then
    /// `scan_workloads` over them as step `scan_id`.
    fn workload_scan(&mut self, scan_id: &str, scope: Option<&str>) -> Result<()> {
        let where_ = scope.map_or_else(|| "in every namespace".to_owned(), |ns| format!("in {ns}"));
        let mut lists = Vec::new();
        for (id, api_version, kind) in [
            ("list-deployments", "apps/v1", "Deployment"),
            ("list-statefulsets", "apps/v1", "StatefulSet"),
            ("list-daemonsets", "apps/v1", "DaemonSet"),
            ("list-cronjobs", "batch/v1", "CronJob"),
            ("list-pods", "v1", "Pod"),
        ] {
            self.add(id, AgentRole::Security, format!("List {kind}s {where_}"), "kube_list", json!({"apiVersion": api_version, "kind": kind, "namespace": scope}), &[],
                "Reads the workloads to scan (bare pods too; pods of a controller are scanned through it).")?;
            lists.push(id);
        }
        let objects: Vec<Value> = lists
            .iter()
            .map(|id| json!(format!("{{{{steps.{id}.output.items}}}}")))
            .collect();
        self.add(scan_id, AgentRole::Security, format!("Scan the workloads {where_} for misconfigurations"), "scan_workloads", json!({"objects": objects}), &lists,
            "Finds privileged containers, host access, root users, missing limits and probes, unpinned images; changes nothing.")
    }

    /// `kube_list` of Roles and RoleBindings in `scope` (every namespace when `None`) and
    /// of the cluster-wide ones, then `scan_rbac` over them as step `scan_id`.
    fn rbac_scan(&mut self, scan_id: &str, scope: Option<&str>) -> Result<()> {
        let where_ = scope.map_or_else(|| "in every namespace".to_owned(), |ns| format!("in {ns}"));
        let ids = [
            "list-roles",
            "list-rolebindings",
            "list-clusterroles",
            "list-clusterrolebindings",
        ];
        for (id, kind, namespaced) in [
            (ids[0], "Role", true),
            (ids[1], "RoleBinding", true),
            (ids[2], "ClusterRole", false),
            (ids[3], "ClusterRoleBinding", false),
        ] {
            let (namespace, title) = if namespaced {
                (scope, format!("List {kind}s {where_}"))
            } else {
                (None, format!("List {kind}s (cluster-wide)"))
            };
            self.add(id, AgentRole::Security, title, "kube_list",
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": kind, "namespace": namespace}), &[],
                "Reads the roles and bindings to scan.")?;
        }
        let objects: Vec<Value> = ids
            .iter()
            .map(|id| json!(format!("{{{{steps.{id}.output.items}}}}")))
            .collect();
        self.add(scan_id, AgentRole::Security, "Find risky RBAC and who can read Secrets".into(), "scan_rbac", json!({"objects": objects}),
            &ids,
            "Reports wildcards, cluster-admin bindings and every subject that can read Secrets; changes nothing.")
    }

    /// The health scan of `scope` (every namespace when `None`).
    fn health_scan(&mut self, scope: Option<&str>) -> Result<()> {
        let where_ = scope.map_or_else(
            || "every namespace".to_owned(),
            |ns| format!("namespace {ns}"),
        );
        self.add("health", AgentRole::Sre, format!("Health scan of {where_}"), "health_scan", json!({"namespace": scope}), &[],
            "Finds crash loops, containers that cannot start, pods pending or not ready, stuck or short Deployments and unbound claims; changes nothing.")
    }

    fn build(mut self, intent: Intent) -> Result<Vec<Step>> {
        let ns = self.namespace.clone();
        match intent {
            Intent::Diagnose { name } => {
                self.add("facts", AgentRole::Sre, format!("Gather status, events and logs of {name} in {ns}"), "pod_facts", json!({"namespace": ns, "name": name}), &[],
                    "Reads the pod (or the most troubled pod of the workload), its events and its current and previous logs.")?;
                self.add("diagnose", AgentRole::Sre, format!("Diagnose {name}"), "diagnose_pod", json!({"facts": "{{steps.facts.output}}"}), &["facts"],
                    "Recognises the known failures from the facts and proposes a remediation; changes nothing.")?;
            }
            Intent::Scale {
                kind,
                name,
                replicas,
            } => {
                self.add(
                    "check",
                    AgentRole::Sre,
                    format!("Check that {kind} {name} exists in {ns}"),
                    "kube_get",
                    json!({"apiVersion": "apps/v1", "kind": kind, "namespace": ns, "name": name}),
                    &[],
                    "Confirms the target and shows its current replicas before anything changes.",
                )?;
                self.add(
                    "scale",
                    AgentRole::Sre,
                    format!("Scale {kind} {name} in {ns} to {replicas}"),
                    "kube_scale",
                    json!({"kind": kind, "namespace": ns, "name": name, "replicas": replicas}),
                    &["check"],
                    "The requested change; mutating, so it waits for approval.",
                )?;
            }
            Intent::Restart { kind, name } => {
                self.add(
                    "check",
                    AgentRole::Sre,
                    format!("Check that {kind} {name} exists in {ns}"),
                    "kube_get",
                    json!({"apiVersion": "apps/v1", "kind": kind, "namespace": ns, "name": name}),
                    &[],
                    "Confirms the target before restarting it.",
                )?;
                self.add("restart", AgentRole::Sre, format!("Rollout restart of {kind} {name} in {ns}"), "kube_restart", json!({"kind": kind, "namespace": ns, "name": name}), &["check"],
                    "Replaces the pods one by one under the rollout strategy; mutating, so it waits for approval.")?;
            }
            Intent::Delete {
                api_version,
                kind,
                name,
            } => {
                let namespaced = !matches!(kind, "Node" | "Namespace");
                let target = json!({"apiVersion": api_version, "kind": kind, "namespace": if namespaced { Value::String(ns.clone()) } else { Value::Null }, "name": name});
                self.add(
                    "check",
                    AgentRole::Sre,
                    format!("Check that {kind} {name} exists in {ns}"),
                    "kube_get",
                    target.clone(),
                    &[],
                    "Records the object as it is before deletion (and confirms it exists).",
                )?;
                let why = if kind == "Pod" {
                    "Deletes the pod; its controller, if it has one, creates a new one. Mutating, so it waits for approval."
                } else {
                    "Deletes the object; mutating, so it waits for approval."
                };
                self.add(
                    "delete",
                    AgentRole::Sre,
                    format!("Delete {kind} {name} in {ns}"),
                    "kube_delete",
                    target,
                    &["check"],
                    why,
                )?;
            }
            Intent::DeleteNamespace { name } => {
                return Err(Error::Planning {
                    message: format!("deckhand never deletes namespaces (here {name:?}): the policy forbids it whoever asks. Delete the workloads inside it one by one instead, or ask a cluster administrator."),
                });
            }
            Intent::CreateApp {
                name,
                image,
                replicas,
                port,
                service,
                ingress_host,
            } => {
                let container_port = port
                    .or_else(|| (service || ingress_host.is_some()).then(|| default_port(&image)));
                let deployment_path = format!("k8s/{name}/deployment.yaml");
                let mut dry_runs = vec![self.manifest("deployment", "deployment", json!({
                    "path": deployment_path, "overwrite": true, "name": name, "namespace": ns, "image": image,
                    "replicas": replicas, "container_port": container_port,
                }), &deployment_path)?];
                let mut files = vec![("deployment", deployment_path)];
                if service || ingress_host.is_some() {
                    let path = format!("k8s/{name}/service.yaml");
                    dry_runs.push(self.manifest("service", "service", json!({
                        "path": path, "overwrite": true, "name": name, "namespace": ns,
                        "ports": [{"name": "http", "port": 80, "target_port": container_port.unwrap_or(80)}],
                    }), &path)?);
                    files.push(("service", path));
                }
                if let Some(host) = ingress_host {
                    let path = format!("k8s/{name}/ingress.yaml");
                    dry_runs.push(self.manifest("ingress", "ingress", json!({
                        "path": path, "overwrite": true, "name": name, "namespace": ns, "host": host,
                        "paths": [{"path": "/", "service": name, "port": 80}],
                    }), &path)?);
                    files.push(("ingress", path));
                }
                for (label, path) in files {
                    self.apply(label, &path, &dry_runs)?;
                }
            }
            Intent::Autoscale {
                target,
                min,
                max,
                cpu_percent,
            } => {
                let path = format!("k8s/{target}/hpa.yaml");
                let dry_run = self.manifest("hpa", "hpa", json!({
                    "path": path, "overwrite": true, "name": target, "namespace": ns, "target": target,
                    "min_replicas": min, "max_replicas": max, "cpu_utilization": cpu_percent,
                }), &path)?;
                self.apply("hpa", &path, &[dry_run])?;
            }
            Intent::ScanWorkloads => {
                self.workload_scan("scan", Some(&ns))?;
            }
            Intent::ScanRbac => {
                let scope = self.explicit_namespace.then_some(ns);
                self.rbac_scan("scan", scope.as_deref())?;
            }
            Intent::TriageAlert { payload } => {
                self.add("triage", AgentRole::Sre, "Triage the alert".into(), "triage_alert", json!({"alert": payload.clone()}), &[],
                    "Three most likely causes with a remediation each, from the alert's name and labels.")?;
                let first = payload
                    .get("alerts")
                    .and_then(Value::as_array)
                    .and_then(|a| {
                        a.iter()
                            .find(|a| a.get("status").and_then(Value::as_str) != Some("resolved"))
                    })
                    .or(Some(&payload));
                let labels = first.and_then(|a| a.get("labels"));
                let label = |key: &str| {
                    labels
                        .and_then(|l| l.get(key))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                if let Some(name) = label("pod")
                    .or_else(|| label("deployment"))
                    .or_else(|| label("statefulset"))
                {
                    let alert_ns = label("namespace").unwrap_or(ns);
                    self.add(
                        "facts",
                        AgentRole::Sre,
                        format!("Gather status, events and logs of {name} in {alert_ns}"),
                        "pod_facts",
                        json!({"namespace": alert_ns, "name": name}),
                        &[],
                        "The pod's own evidence confirms or rules out the triaged causes.",
                    )?;
                    self.add(
                        "diagnose",
                        AgentRole::Sre,
                        format!("Diagnose {name}"),
                        "diagnose_pod",
                        json!({"facts": "{{steps.facts.output}}"}),
                        &["facts"],
                        "Reads the facts for the known failures; changes nothing.",
                    )?;
                }
            }
            Intent::CompressLogs { text } => {
                self.add("compress", AgentRole::Sre, "Compress the pasted logs".into(), "compress_logs", json!({"text": text, "budget_tokens": crate::tools::DEFAULT_LOG_BUDGET_TOKENS}), &[],
                    "Folds repeats and keeps every distinct error and stack trace, so the logs can be read (by a person or a model).")?;
            }
            Intent::ShowLogs { name } => {
                self.add(
                    "facts",
                    AgentRole::Sre,
                    format!("Read the logs of {name} in {ns}"),
                    "pod_facts",
                    json!({"namespace": ns, "name": name}),
                    &[],
                    "Gathers current and previous logs with the pod's status and events.",
                )?;
            }
            Intent::List {
                api_version,
                kind,
                namespaced,
            } => {
                let namespace = if namespaced {
                    Value::String(ns.clone())
                } else {
                    Value::Null
                };
                let where_ = if namespaced {
                    format!(" in {ns}")
                } else {
                    String::new()
                };
                self.add(
                    "list",
                    AgentRole::Sre,
                    format!("List {kind}s{where_}"),
                    "kube_list",
                    json!({"apiVersion": api_version, "kind": kind, "namespace": namespace}),
                    &[],
                    "A read; changes nothing.",
                )?;
            }
            Intent::S3Bucket { name, region } => {
                let module = format!("terraform/modules/{name}");
                self.add("module", AgentRole::Cloud, format!("Write a Terraform module for S3 bucket {name}"), "terraform_module", json!({"path": module, "overwrite": true, "module": {"kind": "s3_bucket"}}), &[],
                    "Versioning, encryption and blocked public access by default; nothing is created in AWS.")?;
                let region_line = region
                    .as_deref()
                    .map(|r| format!("provider \"aws\" {{\n  region = \"{r}\"\n}}\n\n"))
                    .unwrap_or_default();
                let root = format!("{region_line}module \"{}\" {{\n  source      = \"../modules/{name}\"\n  bucket_name = \"{name}\"\n}}\n", name.replace(['-', '.'], "_"));
                let dir = format!("terraform/{name}");
                // terraform_plan is in the catalog only when a terraform binary is
                // configured; without it the person plans by hand.
                let plans = self.catalog.get(TERRAFORM_PLAN).is_some();
                let why_root = match plans {
                    true => "The root configuration that names the bucket and region; the next step plans it.".to_owned(),
                    false => format!("The root configuration that names the bucket and region. No terraform binary is configured, so deckhand does not plan it: run `terraform init && terraform plan` in {dir} yourself before anything is applied."),
                };
                self.add(
                    "root",
                    AgentRole::Cloud,
                    format!("Write {dir}/main.tf using the module"),
                    "write_file",
                    json!({"path": format!("{dir}/main.tf"), "content": root}),
                    &["module"],
                    &why_root,
                )?;
                if plans {
                    self.add("plan", AgentRole::Cloud, format!("terraform plan of {dir}"), TERRAFORM_PLAN, json!({"path": dir}), &["root"],
                        "Runs `terraform init` and `terraform plan` to show what would be created in AWS. A plan changes nothing and deckhand never applies it; the saved plan is yours to apply.")?;
                }
            }
            Intent::ConfigMap { name, data } => {
                let path = format!("k8s/{name}/configmap.yaml");
                let data: Map<String, Value> = data
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect();
                let dry_run = self.manifest("configmap", "configmap", json!({"path": path, "overwrite": true, "name": name, "namespace": ns, "data": data}), &path)?;
                self.apply("configmap", &path, &[dry_run])?;
            }
            Intent::SecretTemplate { name, keys } => {
                let path = format!("k8s/{name}/secret.yaml");
                self.add("write-secret", AgentRole::Jamie, format!("Write a Secret template for {name} to {path}"), "secret", json!({"path": path, "overwrite": true, "name": name, "namespace": ns, "keys": keys}), &[],
                    "A template with <REPLACE_ME> values: deckhand never handles secret values, so it is not applied.")?;
                self.add(
                    "validate-secret",
                    AgentRole::Jamie,
                    format!("Validate {path}"),
                    "yaml_validate",
                    json!({"path": path}),
                    &["write-secret"],
                    "Checks the template's syntax.",
                )?;
            }
            Intent::HelmChart {
                name,
                repository,
                tag,
            } => {
                self.add("chart", AgentRole::Jamie, format!("Write a Helm chart for {repository} to charts/{name}"), "helm_chart", json!({"path": format!("charts/{name}"), "overwrite": true, "name": name, "image": repository, "tag": tag}), &[],
                    "A chart with a Deployment and a Service; nothing is installed.")?;
            }
            Intent::Ingress {
                service,
                host,
                port,
            } => {
                let path = format!("k8s/{service}/ingress.yaml");
                let dry_run = self.manifest("ingress", "ingress", json!({"path": path, "overwrite": true, "name": service, "namespace": ns, "host": host,
                    "paths": [{"path": "/", "service": service, "port": port.unwrap_or(80)}]}), &path)?;
                self.apply("ingress", &path, &[dry_run])?;
            }
        }
        Ok(self.steps)
    }
}

/// The port a well-known image listens on; 8080 for anything else.
fn default_port(image: &str) -> u64 {
    let name = intent::name_from_image(image);
    match name.as_str() {
        "nginx-unprivileged" => 8080,
        "nginx" | "httpd" | "caddy" | "traefik" => 80,
        "redis" => 6379,
        "postgres" => 5432,
        "mysql" | "mariadb" => 3306,
        "mongo" => 27017,
        "grafana" => 3000,
        "prometheus" => 9090,
        _ => 8080,
    }
}
