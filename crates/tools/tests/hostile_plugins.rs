//! Third-party plugins get exactly the built-in tools' confinement and limits. A
//! deliberately hostile plugin (tools-wasm/hostile) attacks the sandbox; every escape must
//! fail, every resource attack must be stopped with a clear error, and the host must keep
//! serving. Malformed plugins are reported and skipped, never half-loaded.

use deckhand_tools::{
    load_tool_dir, Error, SandboxConfig, SandboxLimits, ToolContext, ToolRegistry, WasmSandbox,
};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const LIMITS: SandboxLimits = SandboxLimits {
    time_limit: Duration::from_millis(300),
    memory_bytes: 16 * 1024 * 1024,
    output_bytes: 64 * 1024,
    input_bytes: 64 * 1024,
    max_concurrent_calls: 8,
};

fn hostile_module() -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist-test/hostile.wasm");
    assert!(
        path.is_file(),
        "{} is missing: run scripts/build-tools-wasm.sh",
        path.display()
    );
    path
}

fn manifest(name: &str, workspace: &str) -> Value {
    json!({
        "name": name,
        "description": "a plugin that attacks the sandbox",
        "workspace": workspace,
        "input_schema": {"type": "object", "properties": {"attack": {"type": "string"}, "path": {"type": "string"}}, "required": ["attack"]},
        "output_schema": {"type": "object", "properties": {"escaped": {"type": "boolean"}, "detail": {"type": "string"}}, "required": ["escaped"]}
    })
}

/// A plugin directory: the hostile module under three names with three access levels,
/// plus broken plugins that must be skipped.
fn plugin_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("plugin dir");
    let module = std::fs::read(hostile_module()).expect("read module");
    for (name, access) in [
        ("hostile_none", "none"),
        ("hostile_ro", "read"),
        ("hostile_rw", "write"),
    ] {
        std::fs::write(dir.path().join(format!("{name}.wasm")), &module).expect("module");
        std::fs::write(
            dir.path().join(format!("{name}.json")),
            manifest(name, access).to_string(),
        )
        .expect("manifest");
    }
    let write = |name: &str, contents: &[u8]| {
        std::fs::write(dir.path().join(name), contents).expect("write")
    };
    write("broken.json", b"{ not json");
    write("broken.wasm", &module);
    write(
        "no_module.json",
        manifest("no_module", "read").to_string().as_bytes(),
    );
    write(
        "bad_module.json",
        manifest("bad_module", "read").to_string().as_bytes(),
    );
    write("bad_module.wasm", b"\0asm but not really");
    write("orphan.wasm", &module);
    write(
        "misnamed.json",
        manifest("other_name", "read").to_string().as_bytes(),
    );
    write("misnamed.wasm", &module);
    let mut mutating = manifest("mutating", "read");
    mutating["mutating"] = json!(true);
    write("mutating.json", mutating.to_string().as_bytes());
    write("mutating.wasm", &module);
    let mut sneaky = manifest("sneaky", "read");
    sneaky["network"] = json!(true);
    write("sneaky.json", sneaky.to_string().as_bytes());
    write("sneaky.wasm", &module);
    dir
}

struct Harness {
    registry: Arc<ToolRegistry>,
    _plugins: tempfile::TempDir,
    workspace: tempfile::TempDir,
    outside: tempfile::TempDir,
}

impl Harness {
    fn new() -> Self {
        let sandbox = Arc::new(
            WasmSandbox::new(SandboxConfig {
                limits: LIMITS,
                compile_cache_dir: None,
            })
            .expect("sandbox"),
        );
        let plugins = plugin_dir();
        let mut registry = ToolRegistry::new();
        load_tool_dir(&sandbox, plugins.path(), &mut registry).expect("load plugins");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::write(outside.path().join("secret.txt"), "host secret").expect("secret");
        Self {
            registry: Arc::new(registry),
            _plugins: plugins,
            workspace: tempfile::tempdir().expect("workspace"),
            outside,
        }
    }

    fn secret(&self) -> PathBuf {
        self.outside.path().join("secret.txt")
    }

    async fn attack(&self, tool: &str, attack: &str, path: &str) -> Result<Value, Error> {
        let context = ToolContext {
            workspace: self.workspace.path().to_owned(),
            ..ToolContext::default()
        };
        self.registry
            .call(tool, &context, &json!({"attack": attack, "path": path}))
            .await
    }

    /// Runs an escape attempt that the plugin completes; asserts it did not escape.
    async fn must_not_escape(&self, tool: &str, attack: &str, path: &str) -> String {
        let output = self
            .attack(tool, attack, path)
            .await
            .unwrap_or_else(|error| panic!("{tool} {attack} {path}: {error}"));
        assert_eq!(
            output["escaped"], false,
            "{tool} {attack} {path} escaped: {output}"
        );
        output["detail"].as_str().unwrap_or_default().to_owned()
    }
}

#[test]
fn malformed_plugins_are_reported_and_skipped() {
    let sandbox = Arc::new(
        WasmSandbox::new(SandboxConfig {
            limits: LIMITS,
            compile_cache_dir: None,
        })
        .expect("sandbox"),
    );
    let plugins = plugin_dir();
    let mut registry = ToolRegistry::new();
    let report = load_tool_dir(&sandbox, plugins.path(), &mut registry).expect("load");
    assert_eq!(
        report.loaded,
        vec!["hostile_none", "hostile_ro", "hostile_rw"]
    );
    let mut skipped: Vec<(String, &str)> = report
        .skipped
        .iter()
        .map(|s| {
            (
                s.path
                    .file_name()
                    .expect("name")
                    .to_string_lossy()
                    .into_owned(),
                s.error.kind(),
            )
        })
        .collect();
    skipped.sort();
    assert_eq!(
        skipped,
        vec![
            ("bad_module.json".into(), "invalid_module"),
            ("broken.json".into(), "invalid_manifest"),
            ("misnamed.json".into(), "invalid_manifest"),
            ("mutating.json".into(), "invalid_manifest"),
            ("no_module.json".into(), "read_module"),
            ("orphan.wasm".into(), "invalid_manifest"),
            ("sneaky.json".into(), "invalid_manifest"),
        ]
    );
    assert!(registry.get("bad_module").is_none() && registry.get("no_module").is_none());

    // A plugin cannot shadow a tool that is already registered.
    let report = load_tool_dir(&sandbox, plugins.path(), &mut registry).expect("load again");
    assert!(report.loaded.is_empty());
    assert!(report
        .skipped
        .iter()
        .any(|s| s.error.kind() == "duplicate_tool"));
}

#[tokio::test]
async fn escapes_fail() {
    let harness = Harness::new();
    let secret = harness.secret();
    let secret = secret.to_str().expect("utf-8");
    std::os::unix::fs::symlink(harness.secret(), harness.workspace.path().join("link.txt"))
        .expect("symlink");
    std::os::unix::fs::symlink(
        harness.outside.path(),
        harness.workspace.path().join("linkdir"),
    )
    .expect("dir symlink");

    for tool in ["hostile_ro", "hostile_rw"] {
        for path in [
            "/etc/passwd",
            secret,
            "/workspace/../etc/passwd",
            "/workspace/link.txt",
            "/workspace/linkdir/secret.txt",
            "../../../../etc/passwd",
            "/workspace/\u{0}/etc/passwd",
        ] {
            harness.must_not_escape(tool, "read", path).await;
        }
        let long = format!("/workspace/{}x", "a/".repeat(4000));
        harness.must_not_escape(tool, "read", &long).await;
        harness.must_not_escape(tool, "list", "/").await;
        harness
            .must_not_escape(tool, "list", "/workspace/linkdir")
            .await;
        harness
            .must_not_escape(tool, "write", "/tmp/deckhand-escape.txt")
            .await;
        harness
            .must_not_escape(tool, "write", "/workspace/linkdir/secret.txt")
            .await;
        harness
            .must_not_escape(tool, "write", "/workspace/link.txt")
            .await;
        let detail = harness.must_not_escape(tool, "env", "").await;
        assert_eq!(
            detail, "vars=[] args=[]",
            "no environment, no arguments beyond the name"
        );
    }
    // The read-only workspace stays read-only.
    harness
        .must_not_escape("hostile_ro", "write", "/workspace/pwned.txt")
        .await;
    assert!(!harness.workspace.path().join("pwned.txt").exists());
    // A tool without workspace access sees no workspace at all.
    harness
        .must_not_escape("hostile_none", "list", "/workspace")
        .await;
    harness
        .must_not_escape("hostile_none", "read", "/workspace/link.txt")
        .await;
    // A link the plugin makes that points out cannot be followed.
    harness
        .must_not_escape("hostile_rw", "symlink_out", "/etc/passwd")
        .await;
    harness
        .must_not_escape("hostile_rw", "symlink_out", secret)
        .await;
    harness
        .must_not_escape("hostile_rw", "symlink_out", "../../../../etc/passwd")
        .await;

    assert_eq!(
        std::fs::read_to_string(harness.secret()).expect("secret"),
        "host secret"
    );
    assert!(!Path::new("/tmp/deckhand-escape.txt").exists());
    // The read-write workspace does work for what is inside it.
    let output = harness
        .attack("hostile_rw", "write", "/workspace/inside.txt")
        .await
        .expect("write inside");
    assert_eq!(
        output["escaped"], true,
        "writing inside the workspace is allowed"
    );
}

#[tokio::test]
async fn resource_attacks_are_stopped_with_clear_errors() {
    let harness = Harness::new();
    let kind = |result: Result<Value, Error>| match result {
        Ok(output) => panic!("the attack completed: {output}"),
        Err(error) => error.kind().to_owned(),
    };
    assert_eq!(
        kind(harness.attack("hostile_ro", "loop", "").await),
        "time_limit"
    );
    assert_eq!(
        kind(harness.attack("hostile_ro", "memory", "").await),
        "memory_limit"
    );
    assert_eq!(
        kind(harness.attack("hostile_ro", "output_flood", "").await),
        "output_limit"
    );
    assert_eq!(
        kind(harness.attack("hostile_ro", "garbage", "").await),
        "malformed_result"
    );
    assert_eq!(
        kind(harness.attack("hostile_ro", "exit", "").await),
        "crashed"
    );
    let panic = harness
        .attack("hostile_ro", "panic", "")
        .await
        .expect_err("panics are crashes");
    assert!(
        panic.to_string().contains("panicked on purpose"),
        "stderr is in the message: {panic}"
    );
    // Oversized input never reaches the plugin.
    let big = "x".repeat(LIMITS.input_bytes + 1);
    assert_eq!(
        kind(harness.attack("hostile_ro", "read", &big).await),
        "input_too_large"
    );
    // A stderr flood is capped, not fatal.
    harness
        .must_not_escape("hostile_ro", "stderr_flood", "")
        .await;

    // The host is unharmed and every call is a fresh instance: normal calls still work,
    // many at once, while attacks run beside them.
    let registry = Arc::clone(&harness.registry);
    let context = ToolContext {
        workspace: harness.workspace.path().to_owned(),
        ..ToolContext::default()
    };
    let mut calls = tokio::task::JoinSet::new();
    for index in 0..16 {
        let (registry, context) = (Arc::clone(&registry), context.clone());
        let attack = if index % 4 == 0 { "loop" } else { "env" };
        calls.spawn(async move {
            (
                attack,
                registry
                    .call("hostile_ro", &context, &json!({"attack": attack}))
                    .await,
            )
        });
    }
    while let Some(joined) = calls.join_next().await {
        match joined.expect("task") {
            ("loop", result) => assert_eq!(result.expect_err("stopped").kind(), "time_limit"),
            (_, result) => assert_eq!(result.expect("call")["detail"], "vars=[] args=[]"),
        }
    }
}
