//! Policy tests: `PolicyTest` documents of cases, each an object (or a whole request)
//! with the violations it must produce, run against the policies of a directory. What
//! `deckhand policy test` runs, like `opa test` or `gator verify`.

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::request::{parse_documents, AdmissionRequest};
use crate::Decision;
use serde::Deserialize;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The `kind` of a fixture document.
pub const POLICY_TEST_KIND: &str = "PolicyTest";

/// One fixture document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PolicyTest {
    /// `deckhand.dev/v1alpha1`.
    pub api_version: String,
    /// Always [`POLICY_TEST_KIND`].
    pub kind: String,
    /// Names the fixture.
    #[serde(default)]
    pub metadata: Value,
    /// The cases.
    pub cases: Vec<Case>,
}

/// One case: what to judge and what must come out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Case {
    /// Names the case in the report.
    pub name: String,
    /// An object, judged as a `create` of it (or as `operation` says).
    #[serde(default)]
    pub object: Option<Value>,
    /// The existing object, for updates.
    #[serde(default)]
    pub old_object: Option<Value>,
    /// The admission operation for `object`; CREATE when absent.
    #[serde(default)]
    pub operation: Option<String>,
    /// A whole AdmissionRequest instead of `object`.
    #[serde(default)]
    pub request: Option<Value>,
    /// Objects already in the cluster for this case.
    #[serde(default)]
    pub inventory: Vec<Value>,
    /// What must come out.
    pub expect: Expectation,
}

/// The expected decision.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// Whether the request must be allowed; when absent, allowed exactly when no
    /// violations are expected.
    #[serde(default)]
    pub allowed: Option<bool>,
    /// The violations that must appear; no other policy may report one.
    #[serde(default)]
    pub violations: Vec<ExpectedFinding>,
    /// The warnings that must appear; no other policy may report one.
    #[serde(default)]
    pub warnings: Vec<ExpectedFinding>,
}

/// A violation or warning a case expects.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedFinding {
    /// The policy that must report it.
    pub policy: String,
    /// A part of its message, when the message matters.
    #[serde(default)]
    pub message: Option<String>,
}

/// The outcome of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The fixture file.
    pub file: PathBuf,
    /// The case's name.
    pub name: String,
    /// Why it failed; `None` when it passed.
    pub failure: Option<String>,
}

/// Runs every `PolicyTest` under `directory` against the policies under `directory`
/// (plus the built-in guards).
///
/// # Errors
/// When a policy does not load or a fixture cannot be read.
pub fn run_directory(directory: &Path) -> Result<Vec<CaseResult>> {
    let engine = Engine::builder().policy_directory(directory).build()?;
    let mut files = Vec::new();
    collect_yaml(directory, &mut files)?;
    files.sort();
    let mut results = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
            path: file.clone(),
            source,
        })?;
        let origin = file.display().to_string();
        let documents = parse_documents(&text).map_err(|message| Error::InvalidDocument {
            origin: origin.clone(),
            message,
        })?;
        for document in documents {
            if document.get("kind").and_then(Value::as_str) != Some(POLICY_TEST_KIND) {
                continue;
            }
            let test: PolicyTest =
                serde_json::from_value(document).map_err(|error| Error::InvalidDocument {
                    origin: origin.clone(),
                    message: error.to_string(),
                })?;
            for case in &test.cases {
                results.push(CaseResult {
                    file: file.clone(),
                    name: case.name.clone(),
                    failure: run_case(&engine, case).err(),
                });
            }
        }
    }
    Ok(results)
}

/// Runs one case; `Err` says why it failed.
pub fn run_case(engine: &Engine, case: &Case) -> std::result::Result<Decision, String> {
    let request = match (&case.request, &case.object) {
        (Some(request), _) => {
            AdmissionRequest::from_value(request.clone()).map_err(|error| error.to_string())?
        }
        (None, Some(object)) => {
            let operation = case.operation.clone().unwrap_or_else(|| "CREATE".into());
            AdmissionRequest {
                verb: Some(operation.to_lowercase()),
                operation: Some(operation),
                object: Some(object.clone()),
                old_object: case.old_object.clone(),
                ..AdmissionRequest::default()
            }
        }
        (None, None) => return Err("the case has neither `object` nor `request`".into()),
    };
    let engine = if case.inventory.is_empty() {
        engine.clone()
    } else {
        engine.with_inventory(Inventory::new(case.inventory.clone()))
    };
    let decision = engine.evaluate(&request);
    let expect = &case.expect;
    let expected_allowed = expect.allowed.unwrap_or(expect.violations.is_empty());
    let mut problems = Vec::new();
    if decision.allowed != expected_allowed {
        problems.push(format!(
            "expected allowed={expected_allowed}, got allowed={}",
            decision.allowed
        ));
    }
    compare(
        "violation",
        &expect.violations,
        &decision.violations,
        &mut problems,
    );
    compare(
        "warning",
        &expect.warnings,
        &decision.warnings,
        &mut problems,
    );
    if problems.is_empty() {
        Ok(decision)
    } else {
        Err(problems.join("; "))
    }
}

fn compare(
    what: &str,
    expected: &[ExpectedFinding],
    actual: &[crate::Violation],
    problems: &mut Vec<String>,
) {
    for finding in expected {
        let found = actual.iter().any(|violation| {
            violation.policy == finding.policy
                && finding
                    .message
                    .as_ref()
                    .is_none_or(|part| violation.message.contains(part.as_str()))
        });
        if !found {
            problems.push(format!(
                "expected a {what} from {}{}",
                finding.policy,
                finding
                    .message
                    .as_ref()
                    .map(|part| format!(" mentioning {part:?}"))
                    .unwrap_or_default()
            ));
        }
    }
    for violation in actual {
        if !expected
            .iter()
            .any(|finding| finding.policy == violation.policy)
        {
            problems.push(format!(
                "unexpected {what} from {}: {}",
                violation.policy, violation.message
            ));
        }
    }
}

fn collect_yaml(directory: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let read_error = |source| Error::Read {
        path: directory.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(directory).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.is_dir() {
            collect_yaml(&path, files)?;
        } else if path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| extension == "yaml" || extension == "yml")
        {
            files.push(path);
        }
    }
    Ok(())
}
