//! The evaluation set: one YAML file per case (the request, an optional namespace,
//! seeded pod facts or cluster objects, and the properties the plan or analysis must
//! have), run against a planner and a catalog. Diagnosis, scan and triage cases also run
//! the analyzers on the seeded data. `deckhand eval DIR` prints the [`EvalReport`].

use crate::error::{Error, Result};
use crate::{security, sre};
use deckhand_runtime::plan::output_refs;
use deckhand_runtime::{AgentRole, Plan, PlanRequest, Planner, ThreadId, ToolCatalog};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One case file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// What the case checks, for people reading the set.
    #[serde(default)]
    pub description: Option<String>,
    /// The request, as a person writes it.
    pub request: String,
    /// The namespace the person works in (`--namespace`).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Earlier messages of the thread.
    #[serde(default)]
    pub history: Vec<String>,
    /// Seeded `pod_facts` output, for diagnosis cases.
    #[serde(default)]
    pub facts: Option<Value>,
    /// Seeded cluster objects, for scan cases.
    #[serde(default)]
    pub objects: Vec<Value>,
    /// The optional tools (those deckhand has only when configured, see
    /// [`OPTIONAL_TOOLS`]) this case plans with. The others are taken out of the catalog
    /// for the case, so it means the same whatever the deckhand running it has.
    #[serde(default)]
    pub optional_tools: Vec<String>,
    /// What must hold.
    pub expect: Expect,
}

/// The properties a case expects. Every field is optional; each one given is checked.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// Planning must fail (with a clear message).
    #[serde(default)]
    pub error: bool,
    /// Words the planning error must contain.
    #[serde(default)]
    pub error_contains: Vec<String>,
    /// Agents that must have at least one step.
    #[serde(default)]
    pub agents: Vec<AgentRole>,
    /// Tools that must be used.
    #[serde(default)]
    pub tools: Vec<String>,
    /// Tools that must not be used.
    #[serde(default)]
    pub absent_tools: Vec<String>,
    /// Every `namespace` in a step input must be one of these (and one must appear).
    #[serde(default)]
    pub namespaces: Vec<String>,
    /// The tools of the mutating steps, exactly (as a set); `[]` means nothing mutates.
    #[serde(default)]
    pub mutating: Option<Vec<String>>,
    /// Per tool, fields its (first) step's input must have with these values.
    #[serde(default)]
    pub inputs: BTreeMap<String, Value>,
    /// The cause `diagnose_pod` must find in the seeded facts (`crash_loop`, ...).
    #[serde(default)]
    pub diagnosis: Option<String>,
    /// Rules the scanners must report on the seeded objects.
    #[serde(default)]
    pub findings: Vec<String>,
    /// Subjects `scan_rbac` must list as able to read Secrets.
    #[serde(default)]
    pub secret_readers: Vec<String>,
    /// Words the first cause of the first triaged alert must contain.
    #[serde(default)]
    pub triage_first_cause_contains: Option<String>,
}

/// An optional tool: its name and how to make its manifest.
pub type OptionalTool = (&'static str, fn() -> deckhand_tools::ToolSpec);

/// The tools deckhand has only when they are configured, with their manifests:
/// `terraform_plan` (a terraform binary in `[terraform]`).
pub const OPTIONAL_TOOLS: &[OptionalTool] = &[(
    deckhand_tools::terraform::TOOL_NAME,
    deckhand_tools::terraform::terraform_plan_spec,
)];

/// `catalog` with exactly the optional tools `wanted` (others taken out), or the names
/// in `wanted` that are not optional tools.
fn catalog_with(
    catalog: &ToolCatalog,
    wanted: &[String],
) -> std::result::Result<ToolCatalog, Vec<String>> {
    let unknown: Vec<String> = wanted
        .iter()
        .filter(|name| !OPTIONAL_TOOLS.iter().any(|(optional, _)| optional == name))
        .cloned()
        .collect();
    if !unknown.is_empty() {
        return Err(unknown);
    }
    let kept = catalog
        .entries()
        .filter(|entry| !OPTIONAL_TOOLS.iter().any(|(name, _)| *name == entry.name))
        .cloned();
    let specs: Vec<deckhand_tools::ToolSpec> = OPTIONAL_TOOLS
        .iter()
        .filter(|(name, _)| wanted.iter().any(|w| w == name))
        .map(|(_, spec)| spec())
        .collect();
    let added = crate::tools::catalog_from_specs(specs.iter());
    Ok(ToolCatalog::new(kept.chain(added.entries().cloned())))
}

/// How one case went.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseOutcome {
    /// The case file's name without `.yaml`.
    pub name: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// Which planner path made the plan (`created_by`), when one was made.
    pub created_by: Option<String>,
    /// What did not hold.
    pub failures: Vec<String>,
}

/// The outcome of a whole set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EvalReport {
    /// One outcome per case, by file name.
    pub cases: Vec<CaseOutcome>,
}

impl EvalReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.passed).count()
    }

    /// Passed cases over all cases, 0.0 to 1.0 (0.0 for an empty set).
    pub fn pass_rate(&self) -> f64 {
        match self.cases.len() {
            0 => 0.0,
            total => self.passed() as f64 / total as f64,
        }
    }
}

impl std::fmt::Display for EvalReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for case in &self.cases {
            let by = case
                .created_by
                .as_deref()
                .map(|b| format!(" [{b}]"))
                .unwrap_or_default();
            match case.passed {
                true => writeln!(f, "PASS  {}{by}", case.name)?,
                false => writeln!(f, "FAIL  {}{by}: {}", case.name, case.failures.join("; "))?,
            }
        }
        write!(
            f,
            "overall: {}/{} passed ({:.1}%)",
            self.passed(),
            self.cases.len(),
            self.pass_rate() * 100.0
        )
    }
}

/// Reads one case file.
///
/// # Errors
/// [`Error::EvalIo`] or [`Error::EvalCase`].
pub fn load_case(path: &Path) -> Result<Case> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::EvalIo {
        path: path.to_owned(),
        source,
    })?;
    serde_yaml_ng::from_str(&text).map_err(|source| Error::EvalCase {
        path: path.to_owned(),
        source,
    })
}

/// The `*.yaml` files of `dir`, by name.
///
/// # Errors
/// [`Error::EvalIo`] when the folder cannot be read, [`Error::EvalEmpty`] when it holds
/// no cases.
pub fn case_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|source| Error::EvalIo {
        path: dir.to_owned(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension()
                .is_some_and(|ext| ext == "yaml" || ext == "yml")
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::EvalEmpty {
            path: dir.to_owned(),
        });
    }
    Ok(files)
}

/// Runs every case in `dir` against `planner` and `catalog`. A case file that does not
/// parse is a failed case (so one typo does not hide the rest of the report).
///
/// # Errors
/// When `dir` cannot be read or holds no cases.
pub async fn run_dir<P: Planner>(
    dir: &Path,
    planner: &P,
    catalog: &ToolCatalog,
) -> Result<EvalReport> {
    run_dir_with_progress(dir, planner, catalog, |_| {}).await
}

/// One case done, for progress reports while a long set runs (a real model on a small
/// machine takes minutes per case).
#[derive(Debug)]
pub struct CaseDone<'a> {
    /// The outcome.
    pub outcome: &'a CaseOutcome,
    /// Its position, from 1.
    pub index: usize,
    /// How many cases the set has.
    pub total: usize,
    /// How long it took.
    pub elapsed: std::time::Duration,
}

impl std::fmt::Display for CaseDone<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let outcome = self.outcome;
        let by = outcome
            .created_by
            .as_deref()
            .map(|b| format!(" [{b}]"))
            .unwrap_or_default();
        write!(
            f,
            "[{}/{}] {} {}{by} ({:.1} s)",
            self.index,
            self.total,
            if outcome.passed { "PASS" } else { "FAIL" },
            outcome.name,
            self.elapsed.as_secs_f64()
        )
    }
}

/// [`run_dir`], calling `progress` after each case.
///
/// # Errors
/// As [`run_dir`].
pub async fn run_dir_with_progress<P: Planner>(
    dir: &Path,
    planner: &P,
    catalog: &ToolCatalog,
    mut progress: impl FnMut(CaseDone<'_>),
) -> Result<EvalReport> {
    let mut report = EvalReport::default();
    let files = case_files(dir)?;
    let total = files.len();
    for (index, path) in files.into_iter().enumerate() {
        let started = std::time::Instant::now();
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let outcome = match load_case(&path) {
            Ok(case) => run_case(&name, &case, planner, catalog).await,
            Err(error) => CaseOutcome {
                name,
                passed: false,
                created_by: None,
                failures: vec![error.to_string()],
            },
        };
        progress(CaseDone {
            outcome: &outcome,
            index: index + 1,
            total,
            elapsed: started.elapsed(),
        });
        report.cases.push(outcome);
    }
    Ok(report)
}

/// Runs one case.
pub async fn run_case<P: Planner>(
    name: &str,
    case: &Case,
    planner: &P,
    catalog: &ToolCatalog,
) -> CaseOutcome {
    let request = PlanRequest {
        thread_id: ThreadId::new(),
        text: case.request.clone(),
        namespace: case.namespace.clone(),
        history: case.history.clone(),
        similar_threads: Vec::new(),
    };
    let expect = &case.expect;
    let mut failures = Vec::new();
    let mut created_by = None;
    let catalog = match catalog_with(catalog, &case.optional_tools) {
        Ok(catalog) => catalog,
        Err(unknown) => {
            return CaseOutcome {
                name: name.to_owned(),
                passed: false,
                created_by,
                failures: vec![format!(
                    "optional_tools names {}, which are not optional tools (known: {})",
                    unknown.join(", "),
                    OPTIONAL_TOOLS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                )],
            }
        }
    };
    match planner.plan(&request, &catalog).await {
        Err(error) => {
            let message = error.to_string();
            if !expect.error {
                failures.push(format!(
                    "planning failed: {}",
                    message.lines().next().unwrap_or("")
                ));
            }
            for words in &expect.error_contains {
                if !message.to_lowercase().contains(&words.to_lowercase()) {
                    failures.push(format!("the error does not say {words:?}"));
                }
            }
        }
        Ok(plan) => {
            created_by = Some(plan.created_by.clone());
            if expect.error {
                failures.push(format!(
                    "expected a planning error, got a plan of {} step(s)",
                    plan.steps.len()
                ));
            }
            check_plan(&plan, expect, &mut failures);
        }
    }
    check_analysis(case, &mut failures);
    CaseOutcome {
        name: name.to_owned(),
        passed: failures.is_empty(),
        created_by,
        failures,
    }
}

fn check_plan(plan: &Plan, expect: &Expect, failures: &mut Vec<String>) {
    let tools: Vec<&str> = plan.steps.iter().map(|s| s.tool.as_str()).collect();
    for agent in &expect.agents {
        if !plan.steps.iter().any(|s| s.agent == *agent) {
            failures.push(format!("no step for agent {}", agent.id()));
        }
    }
    for tool in &expect.tools {
        if !tools.contains(&tool.as_str()) {
            failures.push(format!("tool {tool} not used (used: {})", tools.join(", ")));
        }
    }
    for tool in &expect.absent_tools {
        if tools.contains(&tool.as_str()) {
            failures.push(format!("tool {tool} used but must not be"));
        }
    }
    if !expect.namespaces.is_empty() {
        let used: Vec<&str> = plan
            .steps
            .iter()
            .filter_map(|s| s.input.get("namespace").and_then(Value::as_str))
            .filter(|ns| output_refs(&Value::String((*ns).to_owned())).is_empty())
            .collect();
        if used.is_empty() {
            failures.push("no step names a namespace".into());
        }
        for ns in used {
            if !expect.namespaces.iter().any(|e| e == ns) {
                failures.push(format!(
                    "namespace {ns} used, expected {}",
                    expect.namespaces.join(" or ")
                ));
            }
        }
    }
    if let Some(expected) = &expect.mutating {
        let mut actual: Vec<&str> = plan
            .steps
            .iter()
            .filter(|s| s.mutating)
            .map(|s| s.tool.as_str())
            .collect();
        actual.sort_unstable();
        actual.dedup();
        let mut wanted: Vec<&str> = expected.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        if actual != wanted {
            failures.push(format!("mutating tools {actual:?}, expected {wanted:?}"));
        }
    }
    for (tool, fields) in &expect.inputs {
        let Some(step) = plan.steps.iter().find(|s| &s.tool == tool) else {
            failures.push(format!("no {tool} step to check the input of"));
            continue;
        };
        if let Some(fields) = fields.as_object() {
            for (key, value) in fields {
                if step.input.get(key) != Some(value) {
                    failures.push(format!(
                        "{tool} input {key} is {}, expected {value}",
                        step.input
                            .get(key)
                            .map(Value::to_string)
                            .unwrap_or_else(|| "absent".into())
                    ));
                }
            }
        }
    }
    if let Some(words) = &expect.triage_first_cause_contains {
        let cause = plan
            .steps
            .iter()
            .find(|s| s.tool == "triage_alert")
            .and_then(|s| s.input.get("alert"))
            .map(sre::triage_alert)
            .and_then(|t| {
                t.alerts
                    .first()
                    .and_then(|a| a.causes.first())
                    .map(|c| c.cause.clone())
            });
        match cause {
            Some(cause) if cause.to_lowercase().contains(&words.to_lowercase()) => {}
            Some(cause) => failures.push(format!(
                "first triaged cause is {cause:?}, expected it to mention {words:?}"
            )),
            None => failures.push("no triage_alert step whose alert could be triaged".into()),
        }
    }
}

fn check_analysis(case: &Case, failures: &mut Vec<String>) {
    let expect = &case.expect;
    if let Some(expected) = &expect.diagnosis {
        match &case.facts {
            None => failures.push("expects a diagnosis but seeds no facts".into()),
            Some(facts) => {
                let diagnosis = sre::diagnose_pod(facts);
                if diagnosis.cause.id() != expected {
                    failures.push(format!(
                        "diagnosed {} ({}), expected {expected}",
                        diagnosis.cause.id(),
                        diagnosis.summary
                    ));
                }
            }
        }
    }
    if !expect.findings.is_empty() || !expect.secret_readers.is_empty() {
        let objects = security::flatten_objects(&case.objects);
        let workloads = security::scan_workloads(&objects);
        let rbac = security::scan_rbac(&objects);
        let rules: Vec<&str> = workloads
            .findings
            .iter()
            .chain(&rbac.findings)
            .map(|f| f.rule.as_str())
            .collect();
        for rule in &expect.findings {
            if !rules.contains(&rule.as_str()) {
                failures.push(format!("finding {rule} not reported"));
            }
        }
        let readers: Vec<&str> = rbac
            .secret_readers
            .iter()
            .map(|r| r.subject.as_str())
            .collect();
        for subject in &expect.secret_readers {
            if !readers.contains(&subject.as_str()) {
                failures.push(format!(
                    "{subject} not listed as a Secret reader (listed: {})",
                    readers.join(", ")
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deckhand_runtime::CatalogEntry;
    use serde_json::json;

    fn entry(name: &str) -> CatalogEntry {
        CatalogEntry {
            name: name.into(),
            description: "d".into(),
            input_schema: json!({"type": "object"}),
            mutating: false,
        }
    }

    #[test]
    fn a_case_gets_exactly_the_optional_tools_it_names() {
        // The catalog of a deckhand that has terraform configured.
        let catalog = ToolCatalog::new([entry("write_file"), entry("terraform_plan")]);
        let without = catalog_with(&catalog, &[]).unwrap();
        assert!(without.get("terraform_plan").is_none());
        assert!(without.get("write_file").is_some());
        let base = ToolCatalog::new([entry("write_file")]);
        let with = catalog_with(&base, &["terraform_plan".into()]).unwrap();
        let added = with.get("terraform_plan").unwrap();
        assert_eq!(
            added.input_schema,
            deckhand_tools::terraform::terraform_plan_spec().input_schema,
            "the real manifest, not a stand-in"
        );
        assert_eq!(
            catalog_with(&base, &["kube_apply".into(), "terraform_plan".into()]).unwrap_err(),
            ["kube_apply"]
        );
    }
}
