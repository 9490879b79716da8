//! `deckhand policy check` and `deckhand policy test`, run as the real binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn deckhand(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the deckhand binary starts");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(stdin.as_bytes())
        .expect("stdin takes the request");
    child.wait_with_output().expect("deckhand finishes")
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("the crate sits two levels below the repository root")
        .to_path_buf()
}

fn decision(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "stdout is not a JSON decision ({error}): {}\nstderr: {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

const NAMESPACE_DELETE_REVIEW: &str = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
  "request":{"uid":"1","kind":{"group":"","version":"v1","kind":"Namespace"},
  "resource":{"group":"","version":"v1","resource":"namespaces"},"name":"prod","operation":"DELETE","verb":"delete"}}"#;

#[test]
fn check_denies_a_namespace_deletion_from_stdin_with_exit_1() {
    let output = deckhand(&["policy", "check", "-"], NAMESPACE_DELETE_REVIEW);
    assert_eq!(output.status.code(), Some(1));
    let decision = decision(&output);
    assert_eq!(decision["allowed"], false);
    let policies: Vec<&str> = decision["violations"]
        .as_array()
        .expect("violations is a list")
        .iter()
        .filter_map(|violation| violation["policy"].as_str())
        .collect();
    assert!(
        policies.contains(&"builtin/no-namespace-deletion"),
        "{policies:?}"
    );
    assert!(
        policies.contains(&"builtin.rego/no-namespace-deletion"),
        "{policies:?}"
    );
    assert!(decision["warnings"].is_array());
}

#[test]
fn check_allows_a_yaml_request_file_with_exit_0() {
    let directory = tempfile::tempdir().expect("temp dir");
    let file = directory.path().join("request.yaml");
    std::fs::write(
        &file,
        "verb: create\noperation: CREATE\nnamespace: team-a\nobject:\n  apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: settings, namespace: team-a}\n",
    )
    .expect("request written");
    let output = deckhand(&["policy", "check", &file.display().to_string()], "");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decision = decision(&output);
    assert_eq!(
        decision,
        serde_json::json!({"allowed": true, "violations": [], "warnings": []})
    );
}

#[test]
fn check_applies_user_policies_and_the_inventory() {
    let examples = repository_root().join("policies/examples");
    let pod = r#"{"verb":"create","operation":"CREATE","namespace":"shop","object":{"apiVersion":"v1","kind":"Pod",
        "metadata":{"name":"p","namespace":"shop"},"spec":{"containers":[{"name":"a","image":"nginx:latest","resources":{"limits":{"memory":"1Gi"}}}]}}}"#;
    let output = deckhand(
        &[
            "policy",
            "check",
            "--policies",
            &examples.display().to_string(),
            "-",
        ],
        pod,
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decision = decision(&output);
    assert_eq!(
        decision["violations"][0]["policy"],
        "examples.no_latest_tag"
    );

    // The same binding is allowed without an inventory and denied once the inventory
    // shows the ClusterRole it names grants everything.
    let binding = r#"{"verb":"create","object":{"kind":"ClusterRoleBinding","metadata":{"name":"b"},
        "roleRef":{"kind":"ClusterRole","name":"ops-root"},"subjects":[{"kind":"User","name":"alice"}]}}"#;
    assert_eq!(
        deckhand(&["policy", "check", "-"], binding).status.code(),
        Some(0)
    );
    let directory = tempfile::tempdir().expect("temp dir");
    let inventory = directory.path().join("inventory.yaml");
    std::fs::write(
        &inventory,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: ops-root}\nrules: [{apiGroups: ['*'], resources: ['*'], verbs: ['*']}]\n",
    )
    .expect("inventory written");
    let output = deckhand(
        &[
            "policy",
            "check",
            "--inventory",
            &inventory.display().to_string(),
            "-",
        ],
        binding,
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn check_exits_2_on_unreadable_input() {
    let output = deckhand(&["policy", "check", "-"], "this: [is not closed");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    let output = deckhand(&["policy", "check", "/nonexistent/request.yaml"], "");
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn test_runs_the_example_fixtures_and_reports_failures() {
    let examples = repository_root().join("policies/examples");
    let output = deckhand(&["policy", "test", &examples.display().to_string()], "");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("9 passed, 0 failed"), "{stdout}");

    // A fixture that expects the wrong thing fails, and says why.
    let directory = tempfile::tempdir().expect("temp dir");
    std::fs::copy(
        examples.join("no_latest_tag.rego"),
        directory.path().join("no_latest_tag.rego"),
    )
    .expect("policy copied");
    std::fs::write(
        directory.path().join("wrong.yaml"),
        "apiVersion: deckhand.dev/v1alpha1\nkind: PolicyTest\nmetadata: {name: wrong}\ncases:\n\
         - name: expects an allow that will not come\n  object: {apiVersion: v1, kind: Pod, metadata: {name: p, namespace: a}, spec: {containers: [{name: c, image: 'nginx:latest'}]}}\n  expect: {allowed: true}\n",
    )
    .expect("fixture written");
    let output = deckhand(
        &["policy", "test", &directory.path().display().to_string()],
        "",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("0 passed, 1 failed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("unexpected violation from examples.no_latest_tag"),
        "{stdout}"
    );
}
