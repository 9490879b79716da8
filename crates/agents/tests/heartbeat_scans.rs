//! The built-in scans heartbeat tasks run: read-only plans of a fixed shape against the
//! real tool manifests, and the security scan carried out by the real scheduler, with the
//! real analyzers reading `kube_list` answers served from fixtures (the same listing runs
//! against a real API server in crates/tools/tests).

use deckhand_agents::scarlet::rules::{scan_plan, BuiltinScan, CREATED_BY};
use deckhand_agents::tools::{analyzer_tools, catalog_from_specs, register_analyzers};
use deckhand_llm::CancellationToken;
use deckhand_runtime::heartbeat::{HeartbeatKind, HeartbeatTask};
use deckhand_runtime::scheduler::{MemoryPlanStore, StepContext, StepError};
use deckhand_runtime::{
    Approvals, PlanRequest, PlanState, Scheduler, SchedulerConfig, Step, StepExecutor, ThreadId,
    ToolCatalog,
};
use deckhand_tools::{Tool, ToolContext, ToolFuture, ToolRegistry, ToolSpec};
use serde_json::{json, Value};
use std::sync::Arc;

/// The cluster tools' and the analyzers' real manifests.
fn catalog() -> ToolCatalog {
    let cluster = deckhand_tools::cluster::cluster_tool_specs();
    let analyzers = analyzer_tools();
    let mut specs: Vec<&ToolSpec> = cluster.iter().collect();
    specs.extend(analyzers.iter().map(Tool::spec));
    catalog_from_specs(specs)
}

fn request(task: &HeartbeatTask) -> PlanRequest {
    PlanRequest {
        thread_id: ThreadId::new(),
        text: task.request_text(),
        namespace: task.namespace.clone(),
        history: Vec::new(),
        similar_threads: Vec::new(),
    }
}

fn task(kind: HeartbeatKind, namespace: Option<&str>) -> HeartbeatTask {
    let task = HeartbeatTask::new("nightly", "0 3 * * *", kind).expect("task");
    match namespace {
        Some(namespace) => task.in_namespace(namespace).expect("namespace"),
        None => task,
    }
}

#[test]
fn the_health_scan_is_one_read_only_step() {
    let shop = task(HeartbeatKind::HealthScan, Some("shop"));
    let scan = BuiltinScan::of(&shop.task).expect("built in");
    assert_eq!(scan, BuiltinScan::Health);
    let plan = scan_plan(scan, &request(&shop), &catalog()).expect("plan");
    assert_eq!(plan.created_by, CREATED_BY);
    assert_eq!(plan.request, "Scheduled health scan of namespace shop");
    assert_eq!(plan.steps.len(), 1);
    let step = &plan.steps[0];
    assert_eq!(
        (step.id.as_str(), step.tool.as_str(), step.mutating),
        ("health", "health_scan", false)
    );
    assert_eq!(step.input, json!({"namespace": "shop"}));

    let everywhere = task(HeartbeatKind::HealthScan, None);
    let plan = scan_plan(BuiltinScan::Health, &request(&everywhere), &catalog()).expect("plan");
    assert_eq!(
        plan.steps[0].input,
        json!({}),
        "no namespace: every namespace"
    );
    assert_eq!(plan.steps[0].title, "Health scan of every namespace");
}

#[test]
fn requests_are_not_built_in_scans_and_missing_tools_are_named() {
    let asked = task(
        HeartbeatKind::Request {
            text: "list pods in shop".into(),
        },
        None,
    );
    assert_eq!(BuiltinScan::of(&asked.task), None);
    // A deckhand without a cluster has no cluster tools to scan with.
    let analyzers_only = analyzer_tools();
    let catalog = catalog_from_specs(analyzers_only.iter().map(Tool::spec));
    let error = scan_plan(
        BuiltinScan::Health,
        &request(&task(HeartbeatKind::HealthScan, None)),
        &catalog,
    )
    .expect_err("no health_scan tool");
    assert!(error.to_string().contains("health_scan"), "{error}");
}

#[test]
fn the_security_scan_lists_workloads_and_rbac_then_scans_both() {
    let shop = task(HeartbeatKind::SecurityScan, Some("shop"));
    let plan = scan_plan(BuiltinScan::Security, &request(&shop), &catalog()).expect("plan");
    assert!(plan.steps.iter().all(|step| !step.mutating));
    let tools: Vec<(&str, &str)> = plan
        .steps
        .iter()
        .map(|step| (step.id.as_str(), step.tool.as_str()))
        .collect();
    assert_eq!(
        tools,
        vec![
            ("list-deployments", "kube_list"),
            ("list-statefulsets", "kube_list"),
            ("list-daemonsets", "kube_list"),
            ("list-cronjobs", "kube_list"),
            ("list-pods", "kube_list"),
            ("scan-workloads", "scan_workloads"),
            ("list-roles", "kube_list"),
            ("list-rolebindings", "kube_list"),
            ("list-clusterroles", "kube_list"),
            ("list-clusterrolebindings", "kube_list"),
            ("scan-rbac", "scan_rbac"),
        ]
    );
    let step = |id: &str| {
        plan.steps
            .iter()
            .find(|step| step.id == id)
            .expect("step")
            .clone()
    };
    assert_eq!(step("list-pods").input["namespace"], "shop");
    assert_eq!(step("list-rolebindings").input["namespace"], "shop");
    assert!(step("list-clusterroles").input.get("namespace").is_none());
    assert_eq!(step("scan-rbac").depends_on.len(), 4);

    let everywhere = task(HeartbeatKind::SecurityScan, None);
    let plan = scan_plan(BuiltinScan::Security, &request(&everywhere), &catalog()).expect("plan");
    assert!(plan
        .steps
        .iter()
        .filter(|step| step.tool == "kube_list")
        .all(|step| step.input.get("namespace").is_none()));
    assert_eq!(
        plan.steps[0].title, "List Deployments in every namespace",
        "no namespace: every namespace"
    );
}

/// `kube_list` with its real manifest, answering from fixed objects.
struct FixtureList {
    spec: ToolSpec,
    objects: Vec<Value>,
}

impl Tool for FixtureList {
    fn spec(&self) -> &ToolSpec {
        &self.spec
    }

    fn call<'a>(&'a self, _context: &'a ToolContext, input: &'a Value) -> ToolFuture<'a> {
        Box::pin(async move {
            let items: Vec<Value> = self
                .objects
                .iter()
                .filter(|object| object["kind"] == input["kind"])
                .filter(|object| {
                    input.get("namespace").is_none()
                        || object["metadata"]["namespace"] == input["namespace"]
                })
                .cloned()
                .collect();
            Ok(json!({"items": items, "continue": null}))
        })
    }
}

struct RegistryExecutor(ToolRegistry);

impl StepExecutor for RegistryExecutor {
    async fn execute(
        &self,
        step: &Step,
        input: Value,
        _context: &StepContext,
    ) -> Result<Value, StepError> {
        let context = ToolContext {
            requested_by: "heartbeat:nightly".into(),
            ..ToolContext::default()
        };
        self.0
            .call(&step.tool, &context, &input)
            .await
            .map_err(|error| StepError::fatal(error.to_string()))
    }
}

#[tokio::test]
async fn the_security_scan_runs_to_findings_without_an_approval() {
    let objects = vec![
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "agent", "namespace": "shop"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}}, "template": {"metadata": {"labels": {"app": "agent"}},
                "spec": {"containers": [{"name": "agent", "image": "acme/agent:1.0", "securityContext": {"privileged": true}}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "elsewhere", "namespace": "other"},
            "spec": {"template": {"spec": {"containers": [{"name": "x", "image": "x", "securityContext": {"privileged": true}}]}}}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": "ci-admin"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [{"kind": "ServiceAccount", "name": "ci", "namespace": "tools"}]}),
    ];
    let list_spec = deckhand_tools::cluster::cluster_tool_specs()
        .into_iter()
        .find(|spec| spec.name == "kube_list")
        .expect("kube_list manifest");
    let mut registry = ToolRegistry::new();
    registry
        .register(
            Arc::new(FixtureList {
                spec: list_spec,
                objects,
            }),
            "fixtures",
        )
        .expect("kube_list");
    register_analyzers(&mut registry).expect("analyzers");

    let shop = task(HeartbeatKind::SecurityScan, Some("shop"));
    let plan = scan_plan(BuiltinScan::Security, &request(&shop), &catalog()).expect("plan");
    let scheduler = Scheduler::new(
        Arc::new(RegistryExecutor(registry)),
        Arc::new(MemoryPlanStore::default()),
        SchedulerConfig::default(),
    );
    // No approval is given: a scan has nothing that needs one.
    let outcome = scheduler
        .run(&plan, &Approvals::new(&plan), &CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(
        outcome.state,
        PlanState::Succeeded,
        "{:?}",
        outcome.failures
    );
    let workloads = &outcome.outputs["scan-workloads"];
    let privileged: Vec<&Value> = workloads["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|finding| finding["rule"] == "privileged")
        .collect();
    assert_eq!(privileged.len(), 1, "only shop is scanned: {workloads}");
    assert_eq!(privileged[0]["object"], "apps/v1 Deployment shop/agent");
    let rbac = &outcome.outputs["scan-rbac"];
    assert!(
        rbac["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .any(|finding| finding["rule"] == "cluster_admin_binding"),
        "{rbac}"
    );
    assert_eq!(
        rbac["secret_readers"][0]["subject"],
        "ServiceAccount tools/ci"
    );
}

/// The scheduled scans' own words (and a person's) reach the same plans through
/// Scarlet's rules, so a launcher that plans `request_text()` like any request gets them.
#[tokio::test]
async fn scarlet_reads_the_scans_by_name() {
    use deckhand_agents::Scarlet;
    use deckhand_runtime::Planner;
    let scarlet = Scarlet::offline();
    let catalog = catalog();

    let shop = task(HeartbeatKind::HealthScan, Some("shop"));
    let plan = scarlet.plan(&request(&shop), &catalog).await.expect("plan");
    let steps: Vec<(&str, &Value)> = plan
        .steps
        .iter()
        .map(|step| (step.tool.as_str(), &step.input))
        .collect();
    assert_eq!(steps, vec![("health_scan", &json!({"namespace": "shop"}))]);

    let everywhere = task(HeartbeatKind::SecurityScan, None);
    let plan = scarlet
        .plan(&request(&everywhere), &catalog)
        .await
        .expect("plan");
    assert_eq!(plan.steps.len(), 11);
    assert!(plan
        .steps
        .iter()
        .all(|step| !step.mutating && step.input.get("namespace").is_none()));

    let mut asked = request(&everywhere);
    asked.text = "run a health check in namespace payments".into();
    let plan = scarlet.plan(&asked, &catalog).await.expect("plan");
    assert_eq!(plan.steps[0].input, json!({"namespace": "payments"}));

    // The older requests keep their plans.
    asked.text = "scan namespace shop for security issues".into();
    let plan = scarlet.plan(&asked, &catalog).await.expect("plan");
    assert!(plan
        .steps
        .iter()
        .any(|step| step.id == "scan" && step.tool == "scan_workloads"));
    assert!(!plan.steps.iter().any(|step| step.tool == "scan_rbac"));
}
