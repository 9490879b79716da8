//! Which tools matter for a request, most relevant first, so the planner's prompt can
//! show the relevant ones in full and only name the rest: a small model's window holds
//! a dozen tool signatures, not thirty.
//!
//! A tool's score adds up: the tools of the plan Scarlet's rules would make for the
//! request (when they understand it), words of the request that name the tool or a
//! topic it serves, words shared with its name and description, and a base for the
//! tools almost every plan needs (reading objects before changing them). The tools a
//! chosen one works with follow it (a generator brings `yaml_validate`, `kube_dry_run`
//! and `kube_apply`; a change brings `kube_get`).

use super::rules;
use deckhand_runtime::{CatalogEntry, PlanRequest, ToolCatalog};
use std::collections::{BTreeMap, BTreeSet};

/// A tool in the plan the rules would make.
const RULES_SCORE: u32 = 100;
/// A topic word of the request points at the tool.
const TOPIC_SCORE: u32 = 30;
/// A word of the request is a part of the tool's name.
const NAME_WORD_SCORE: u32 = 12;
/// A word of the request is in the tool's description.
const DESCRIPTION_WORD_SCORE: u32 = 2;

/// Tools most plans need, with the base score they start from.
const ALWAYS: [(&str, u32); 4] = [
    ("kube_get", 20),
    ("kube_list", 10),
    ("pod_facts", 8),
    ("yaml_validate", 4),
];

/// Words (stems: a request word starting with one counts) and the tools they point at.
const TOPICS: &[(&[&str], &[&str])] = &[
    (
        &[
            "crash",
            "fail",
            "pending",
            "oom",
            "diagnos",
            "wrong",
            "broken",
            "error",
            "why",
            "restart",
            "backoff",
            "imagepull",
            "probe",
            "slow",
            "down",
        ],
        &[
            "pod_facts",
            "diagnose_pod",
            "kube_describe",
            "kube_events",
            "kube_logs",
        ],
    ),
    (&["log"], &["kube_logs", "compress_logs", "pod_facts"]),
    (&["event"], &["kube_events"]),
    (&["describe"], &["kube_describe"]),
    (&["scale", "replica", "bump"], &["kube_scale", "kube_get"]),
    (
        &["restart", "rollout", "bounce", "reload"],
        &["kube_restart", "kube_get"],
    ),
    (
        &["delete", "remove", "drop", "clean"],
        &["kube_delete", "kube_get"],
    ),
    (
        &[
            "create", "deploy", "launch", "run", "new", "app", "image", "expose",
        ],
        &[
            "deployment",
            "service",
            "yaml_validate",
            "kube_dry_run",
            "kube_apply",
        ],
    ),
    (
        &["service", "expose", "port", "loadbalancer", "nodeport"],
        &["service"],
    ),
    (
        &["ingress", "host", "domain", "tls", "route"],
        &["ingress", "service"],
    ),
    (
        &["hpa", "autoscal", "cpu", "load"],
        &["hpa", "suggest_resources"],
    ),
    (&["configmap", "config", "setting", "env"], &["configmap"]),
    (&["secret", "password", "credential"], &["secret"]),
    (&["helm", "chart"], &["helm_chart"]),
    (
        &[
            "terraform",
            "s3",
            "bucket",
            "aws",
            "cloud",
            "gcs",
            "azure",
            "module",
        ],
        &["terraform_module", "write_file", "terraform_plan"],
    ),
    (
        &[
            "scan", "secur", "vulnerab", "privileg", "root", "harden", "audit", "complian",
        ],
        &["scan_workloads", "kube_list"],
    ),
    (
        &[
            "rbac",
            "who",
            "permission",
            "role",
            "access",
            "binding",
            "admin",
        ],
        &["scan_rbac", "kube_list"],
    ),
    (
        &["alert", "firing", "alertmanager", "page", "incident"],
        &["triage_alert", "pod_facts"],
    ),
    (
        &[
            "resource", "request", "limit", "memory", "sizing", "rightsiz", "usage",
        ],
        &["suggest_resources", "pod_facts"],
    ),
    (
        &["apply", "manifest", "yaml"],
        &["yaml_validate", "kube_dry_run", "kube_apply"],
    ),
    (
        &["list", "show", "get", "which", "how many"],
        &["kube_list", "kube_get"],
    ),
    (
        &["file", "workspace", "read", "edit", "write"],
        &["read_file", "write_file", "edit_file", "list_dir"],
    ),
    (&["diff", "compare", "change"], &["diff"]),
    (&["search", "find", "grep"], &["search_files"]),
];

/// Tools that travel with another: `(tool, its companions)`.
const COMPANIONS: &[(&str, &[&str])] = &[
    (
        "deployment",
        &["yaml_validate", "kube_dry_run", "kube_apply"],
    ),
    ("service", &["yaml_validate", "kube_dry_run", "kube_apply"]),
    ("ingress", &["yaml_validate", "kube_dry_run", "kube_apply"]),
    ("hpa", &["yaml_validate", "kube_dry_run", "kube_apply"]),
    (
        "configmap",
        &["yaml_validate", "kube_dry_run", "kube_apply"],
    ),
    ("secret", &["yaml_validate"]),
    ("kube_apply", &["kube_dry_run"]),
    ("kube_scale", &["kube_get"]),
    ("kube_restart", &["kube_get"]),
    ("kube_delete", &["kube_get"]),
    ("diagnose_pod", &["pod_facts"]),
    ("scan_workloads", &["kube_list"]),
    ("scan_rbac", &["kube_list"]),
    ("terraform_module", &["write_file", "terraform_plan"]),
];

/// Words too common to say anything about a tool.
const STOP_WORDS: &[&str] = &[
    "a",
    "an",
    "the",
    "to",
    "in",
    "of",
    "for",
    "and",
    "or",
    "is",
    "it",
    "its",
    "my",
    "me",
    "on",
    "at",
    "with",
    "please",
    "can",
    "you",
    "i",
    "we",
    "be",
    "this",
    "that",
    "what",
    "namespace",
    "kubernetes",
    "k8s",
    "cluster",
    "one",
    "all",
];

/// The catalog's tools, most relevant to `request` first (ties in name order).
pub fn rank<'a>(catalog: &'a ToolCatalog, request: &PlanRequest) -> Vec<&'a CatalogEntry> {
    let text = request.text.to_lowercase();
    let words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || c == '-' || c == '_'))
        .filter(|w| w.len() > 1 && !STOP_WORDS.contains(w))
        .collect();
    let mut scores: BTreeMap<&str, u32> = catalog
        .entries()
        .map(|entry| (entry.name.as_str(), 0))
        .collect();
    let mut add = |name: &str, points: u32| {
        if let Some(score) = scores.get_mut(name) {
            *score += points;
        }
    };
    for (name, base) in ALWAYS {
        add(name, base);
    }
    if let Ok(plan) = rules::plan(request, catalog) {
        for step in &plan.steps {
            add(&step.tool, RULES_SCORE);
        }
    }
    for (stems, tools) in TOPICS {
        let hit = stems.iter().any(|stem| match stem.contains(' ') {
            true => text.contains(stem),
            false => words.iter().any(|word| word.starts_with(stem)),
        });
        if hit {
            for tool in *tools {
                add(tool, TOPIC_SCORE);
            }
        }
    }
    for entry in catalog.entries() {
        let name_parts: BTreeSet<&str> = entry.name.split('_').collect();
        let description = entry.description.to_lowercase();
        let description_words: BTreeSet<&str> = description
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| w.len() > 2)
            .collect();
        let mut points = 0;
        for word in &words {
            if name_parts.contains(word) || entry.name == *word {
                points += NAME_WORD_SCORE;
            } else if description_words.contains(word) {
                points += DESCRIPTION_WORD_SCORE;
            }
        }
        add(&entry.name, points);
    }
    // Companions rank just below the tool they travel with.
    let snapshot = scores.clone();
    for (tool, companions) in COMPANIONS {
        let Some(&score) = snapshot.get(tool) else {
            continue;
        };
        if score < TOPIC_SCORE {
            continue;
        }
        for companion in *companions {
            if let Some(current) = scores.get_mut(companion) {
                *current = (*current).max(score.saturating_sub(1));
            }
        }
    }
    let mut ranked: Vec<&CatalogEntry> = catalog.entries().collect();
    // Stable: equal scores keep the catalog's (name) order.
    ranked.sort_by_key(|entry| {
        std::cmp::Reverse(scores.get(entry.name.as_str()).copied().unwrap_or(0))
    });
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use deckhand_runtime::ThreadId;
    use serde_json::json;

    fn catalog() -> ToolCatalog {
        let tool = |name: &str, description: &str, mutating: bool| CatalogEntry {
            name: name.into(),
            description: description.into(),
            input_schema: json!({"type": "object"}),
            mutating,
        };
        ToolCatalog::new([
            tool("configmap", "Write a Kubernetes ConfigMap YAML.", false),
            tool("deployment", "Write a Kubernetes Deployment YAML.", false),
            tool(
                "diagnose_pod",
                "Diagnoses a failing pod from pod_facts.",
                false,
            ),
            tool("helm_chart", "Write a Helm chart.", false),
            tool("hpa", "Write a HorizontalPodAutoscaler YAML.", false),
            tool("kube_apply", "Applies manifests.", true),
            tool("kube_delete", "Deletes one Kubernetes object.", true),
            tool(
                "kube_dry_run",
                "Checks manifests without changing anything.",
                false,
            ),
            tool("kube_get", "Reads one Kubernetes object.", false),
            tool("kube_list", "Lists Kubernetes objects of one kind.", false),
            tool("kube_restart", "Restarts a Deployment's pods.", true),
            tool("kube_scale", "Sets a Deployment's replicas.", true),
            tool(
                "pod_facts",
                "Gathers what a diagnosis needs about a pod.",
                false,
            ),
            tool(
                "read_file",
                "Read a UTF-8 text file from the workspace.",
                false,
            ),
            tool(
                "scan_rbac",
                "Finds risky RBAC and who can read Secrets.",
                false,
            ),
            tool("scan_workloads", "Finds misconfigured workloads.", false),
            tool("service", "Write a Kubernetes Service YAML.", false),
            tool("terraform_module", "Write a Terraform module.", false),
            tool(
                "terraform_plan",
                "Runs terraform init and terraform plan on a root configuration.",
                false,
            ),
            tool(
                "write_file",
                "Write a UTF-8 text file in the workspace.",
                false,
            ),
            tool("yaml_validate", "Validate a YAML file.", false),
        ])
    }

    fn top(text: &str, n: usize) -> Vec<String> {
        let catalog = catalog();
        let request = PlanRequest {
            thread_id: ThreadId::new(),
            text: text.into(),
            namespace: None,
            history: Vec::new(),
            similar_threads: Vec::new(),
        };
        rank(&catalog, &request)
            .into_iter()
            .take(n)
            .map(|entry| entry.name.clone())
            .collect()
    }

    fn has_all(ranked: &[String], tools: &[&str]) -> bool {
        tools
            .iter()
            .all(|tool| ranked.iter().any(|name| name == tool))
    }

    #[test]
    fn the_tools_a_request_needs_come_first() {
        let scale = top("bump api up to 4 replicas in platform", 2);
        assert!(has_all(&scale, &["kube_scale", "kube_get"]), "{scale:?}");
        let why = top("why is pod web-1 crash-looping?", 3);
        assert!(has_all(&why, &["pod_facts", "diagnose_pod"]), "{why:?}");
        let create = top("create a deployment for nginx:1.27 with a service", 5);
        assert!(
            has_all(
                &create,
                &[
                    "deployment",
                    "service",
                    "yaml_validate",
                    "kube_dry_run",
                    "kube_apply"
                ]
            ),
            "{create:?}"
        );
        let rbac = top("who can read secrets in the cluster?", 2);
        assert!(has_all(&rbac, &["scan_rbac"]), "{rbac:?}");
        let bucket = top("an S3 bucket for the logs in eu-west-1", 3);
        assert!(
            has_all(
                &bucket,
                &["terraform_module", "write_file", "terraform_plan"]
            ),
            "{bucket:?}"
        );
        // The rules' plan for an S3 bucket ends with a terraform plan when the tool exists.
        let rules = top("create an S3 bucket named logs in eu-west-1", 3);
        assert!(
            has_all(
                &rules,
                &["terraform_module", "write_file", "terraform_plan"]
            ),
            "{rules:?}"
        );
        let plan = top("run terraform plan on terraform/network", 1);
        assert_eq!(plan, ["terraform_plan"]);
        // Whatever the request, every tool is ranked once.
        let all = top("compose a haiku about etcd", 100);
        assert_eq!(all.len(), catalog().entries().count());
        assert_eq!(
            all[0], "kube_get",
            "the base scores decide when nothing else does"
        );
    }
}
