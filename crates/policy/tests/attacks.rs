//! The attack corpus (`tests/attacks/*.yaml`): every known route to a forbidden
//! operation must be denied by the Rust guards and by the Rego guards each on its own,
//! and the benign cases must be allowed.

use deckhand_policy::{AdmissionRequest, Decision, Engine, EvaluationPath, Inventory};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    expect: Expectation,
    #[serde(default)]
    guards: Vec<String>,
    #[serde(default)]
    inventory: Vec<Value>,
    request: Value,
}

#[derive(Deserialize, PartialEq, Eq, Debug)]
#[serde(rename_all = "lowercase")]
enum Expectation {
    Deny,
    Allow,
}

fn load_corpus() -> Vec<(String, Case)> {
    let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/attacks");
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .expect("the attack corpus directory exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "yaml")
        })
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable corpus file");
        let file_name = file
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut in_file = 0;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let case = Case::deserialize(document)
                .unwrap_or_else(|error| panic!("{file_name}: a case does not parse: {error}"));
            cases.push((file_name.clone(), case));
            in_file += 1;
        }
        assert!(in_file > 0, "{file_name} holds no case");
    }
    cases
}

#[test]
fn every_route_is_denied_by_both_layers_and_benign_requests_pass() {
    let engine = Engine::with_builtins().expect("the built-in policies compile");
    let cases = load_corpus();
    let denials = cases
        .iter()
        .filter(|(_, case)| case.expect == Expectation::Deny)
        .count();
    let allowed = cases.len() - denials;
    // A loader that silently read nothing would pass every assertion below.
    assert!(denials >= 60, "only {denials} attack cases loaded");
    assert!(allowed >= 10, "only {allowed} benign cases loaded");

    let mut failures = Vec::new();
    for (file, case) in &cases {
        let request = match AdmissionRequest::from_value(case.request.clone()) {
            Ok(request) => request,
            Err(error) => {
                failures.push(format!(
                    "{file}: {}: request does not parse: {error}",
                    case.name
                ));
                continue;
            }
        };
        let engine = if case.inventory.is_empty() {
            engine.clone()
        } else {
            engine.with_inventory(Inventory::new(case.inventory.clone()))
        };
        let decision = engine.evaluate(&request);
        match case.expect {
            Expectation::Deny => {
                if decision.allowed {
                    failures.push(format!("{file}: {}: allowed", case.name));
                }
                if case.guards.is_empty() {
                    failures.push(format!(
                        "{file}: {}: a deny case must name its guards",
                        case.name
                    ));
                }
                for guard in &case.guards {
                    for layer in ["builtin", "builtin.rego"] {
                        let policy = format!("{layer}/{guard}");
                        if !decision
                            .violations
                            .iter()
                            .any(|violation| violation.policy == policy)
                        {
                            failures.push(format!(
                                "{file}: {}: {policy} did not fire (violations: {:?})",
                                case.name, decision.violations
                            ));
                        }
                    }
                }
                if let Some(error) = decision
                    .violations
                    .iter()
                    .find(|violation| violation.message.starts_with("evaluation failed"))
                {
                    failures.push(format!(
                        "{file}: {}: denied by an error, not a rule: {error:?}",
                        case.name
                    ));
                }
            }
            Expectation::Allow => {
                if !decision.allowed || !decision.violations.is_empty() {
                    failures.push(format!(
                        "{file}: {}: denied: {:?}",
                        case.name, decision.violations
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// A decision with its violations and warnings in a fixed order, to compare two paths.
fn sorted(mut decision: Decision) -> Decision {
    decision
        .violations
        .sort_by(|a, b| (&a.policy, &a.message).cmp(&(&b.policy, &b.message)));
    decision
        .warnings
        .sort_by(|a, b| (&a.policy, &a.message).cmp(&(&b.policy, &b.message)));
    decision
}

/// The projected path (the Rego guards as one program over a projection of the review,
/// skipped when the pre-filter proves they cannot fire) must decide exactly as the same
/// path without the filter and as the reference path (each guard package over the
/// whole review): same violations, same messages, on every case of the corpus, with and
/// without user policies loaded.
#[test]
fn both_evaluation_paths_decide_every_case_alike() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    type Builder = fn() -> deckhand_policy::EngineBuilder;
    let builders: [(&str, Builder); 2] = [
        ("built-ins", Engine::builder),
        ("built-ins and policies", || {
            let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
            Engine::builder()
                .policy_directory(manifest.join("benches/library"))
                .policy_directory(manifest.join("../../policies/examples"))
        }),
    ];
    let mut requests: Vec<(String, Value, Vec<Value>)> = load_corpus()
        .into_iter()
        .map(|(file, case)| {
            (
                format!("{file}: {}", case.name),
                case.request,
                case.inventory,
            )
        })
        .collect();
    for name in [
        "deployment",
        "scale",
        "rolebinding",
        "cluster_admin_binding",
    ] {
        let path = manifest.join(format!("benches/requests/{name}.yaml"));
        let text = std::fs::read_to_string(&path).expect("readable benchmark request");
        let document: Value = serde_yaml_ng::from_str(&text).expect("benchmark request parses");
        requests.push((
            format!("benches/requests/{name}.yaml"),
            document,
            Vec::new(),
        ));
    }
    let mut compared = 0;
    for (label, builder) in builders {
        let projected = builder().build().expect("the policies compile");
        let reference = builder()
            .evaluation_path(EvaluationPath::Reference)
            .build()
            .expect("the policies compile");
        let unfiltered = builder()
            .evaluation_path(EvaluationPath::Unfiltered)
            .build()
            .expect("the policies compile");
        for (name, request, inventory) in &requests {
            let Ok(request) = AdmissionRequest::from_value(request.clone()) else {
                continue;
            };
            let [projected, unfiltered, reference] =
                [&projected, &unfiltered, &reference].map(|engine| {
                    if inventory.is_empty() {
                        engine.clone()
                    } else {
                        engine.with_inventory(Inventory::new(inventory.clone()))
                    }
                });
            let decision = sorted(projected.evaluate(&request));
            assert_eq!(
                decision,
                sorted(unfiltered.evaluate(&request)),
                "{label}: {name}: filtered and unfiltered"
            );
            assert_eq!(
                decision,
                sorted(reference.evaluate(&request)),
                "{label}: {name}"
            );
            compared += 1;
        }
    }
    assert!(compared >= 150, "only {compared} requests compared");
}
