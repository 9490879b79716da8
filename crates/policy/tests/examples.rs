//! The example policies in `policies/examples/` load (Rego v1 and Gatekeeper v0-style
//! templates with libs) and pass their own fixtures.

use deckhand_policy::fixtures;
use std::path::Path;

#[test]
fn example_policies_pass_their_fixtures() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/examples");
    let results = fixtures::run_directory(&examples).expect("the examples load");
    let failures: Vec<String> = results
        .iter()
        .filter_map(|result| {
            result
                .failure
                .as_ref()
                .map(|why| format!("{}: {why}", result.name))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(results.len(), 9, "every example case ran");
}

#[test]
fn the_benchmark_library_loads_on_bytecode() {
    let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/library");
    let engine = deckhand_policy::Engine::builder()
        .policy_directory(&library)
        .build()
        .expect("the benchmark templates compile");
    assert_eq!(engine.user_policy_counts(), (0, 21, 21));
    assert_eq!(engine.interpreted_rule_count(), 0);
}
