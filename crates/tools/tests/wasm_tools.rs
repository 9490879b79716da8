//! The built-in wasm tools from tools-wasm/dist, loaded with their manifests into the
//! registry and run by the real wasmtime sandbox on real temp workspaces.

use deckhand_tools::{load_tool_dir, Error, SandboxConfig, ToolContext, ToolRegistry, WasmSandbox};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn dist() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools-wasm/dist");
    assert!(
        dir.join("read_file.wasm").is_file(),
        "{} has no tools: run scripts/build-tools-wasm.sh",
        dir.display()
    );
    dir
}

fn registry() -> ToolRegistry {
    // Compiled modules are cached across test processes (keyed by module hash and engine).
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("wasm-cache");
    let config = SandboxConfig {
        compile_cache_dir: Some(cache),
        ..SandboxConfig::default()
    };
    let sandbox = Arc::new(WasmSandbox::new(config).expect("sandbox"));
    let mut registry = ToolRegistry::new();
    let report = load_tool_dir(&sandbox, &dist(), &mut registry).expect("load built-in tools");
    assert!(
        report.skipped.is_empty(),
        "built-in tools failed to load: {:?}",
        report.skipped
    );
    registry
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("workspace"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.path().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.path().join(relative)).expect("read")
    }

    fn context(&self) -> ToolContext {
        ToolContext {
            workspace: self.path().to_owned(),
            ..ToolContext::default()
        }
    }
}

async fn call(
    registry: &ToolRegistry,
    workspace: &Workspace,
    tool: &str,
    input: Value,
) -> Result<Value, Error> {
    registry.call(tool, &workspace.context(), &input).await
}

/// The kind of a failed call: the tool's own kind, or the sandbox's.
async fn failure(
    registry: &ToolRegistry,
    workspace: &Workspace,
    tool: &str,
    input: Value,
) -> String {
    match call(registry, workspace, tool, input.clone()).await {
        Ok(output) => panic!("{tool} {input} succeeded: {output}"),
        Err(error) => error.kind().to_owned(),
    }
}

#[tokio::test]
async fn every_built_in_tool_has_a_manifest_with_schemas() {
    let registry = registry();
    for name in [
        "read_file",
        "write_file",
        "edit_file",
        "list_dir",
        "search_files",
        "diff",
    ] {
        let tool = registry
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not registered"));
        let spec = tool.spec();
        assert!(!spec.description.is_empty(), "{name}");
        assert_eq!(spec.input_schema["type"], "object", "{name}");
        assert!(!spec.mutating, "{name}: workspace tools are not mutating");
    }
    let definitions = registry.function_definitions();
    assert!(definitions
        .iter()
        .all(|d| d.parameters.get("$schema").is_none()));
}

#[tokio::test]
async fn read_file_reads_inside_the_workspace() {
    let (registry, workspace) = (registry(), Workspace::new());
    workspace.write("manifests/web.yaml", "kind: Deployment\n");
    let output = call(
        &registry,
        &workspace,
        "read_file",
        json!({"path": "manifests/web.yaml"}),
    )
    .await
    .expect("ok");
    assert_eq!(
        output,
        json!({"path": "manifests/web.yaml", "content": "kind: Deployment\n", "size": 17, "truncated": false})
    );
    let output = call(
        &registry,
        &workspace,
        "read_file",
        json!({"path": "manifests/web.yaml", "max_bytes": 4}),
    )
    .await
    .expect("ok");
    assert_eq!(
        (output["content"].as_str(), output["truncated"].as_bool()),
        (Some("kind"), Some(true))
    );
    assert_eq!(
        failure(
            &registry,
            &workspace,
            "read_file",
            json!({"path": "missing.yaml"})
        )
        .await,
        "not_found"
    );
    assert_eq!(
        failure(
            &registry,
            &workspace,
            "read_file",
            json!({"path": "manifests"})
        )
        .await,
        "not_a_file"
    );
    // Schema checks happen in the host before the tool runs.
    assert_eq!(
        failure(&registry, &workspace, "read_file", json!({"file": "x"})).await,
        "invalid_input"
    );
    assert_eq!(
        failure(
            &registry,
            &workspace,
            "read_file",
            json!({"path": "x", "max_bytes": 0})
        )
        .await,
        "invalid_input"
    );
}

#[tokio::test]
async fn write_file_creates_and_refuses_to_clobber_when_asked() {
    let (registry, workspace) = (registry(), Workspace::new());
    let output = call(
        &registry,
        &workspace,
        "write_file",
        json!({"path": "out/a.txt", "content": "one\n"}),
    )
    .await
    .expect("ok");
    assert_eq!(
        output,
        json!({"path": "out/a.txt", "bytes": 4, "created": true})
    );
    assert_eq!(workspace.read("out/a.txt"), "one\n");
    let output = call(
        &registry,
        &workspace,
        "write_file",
        json!({"path": "out/a.txt", "content": "two\n"}),
    )
    .await
    .expect("ok");
    assert_eq!(output["created"], false);
    assert_eq!(workspace.read("out/a.txt"), "two\n");
    let kind = failure(
        &registry,
        &workspace,
        "write_file",
        json!({"path": "out/a.txt", "content": "x", "overwrite": false}),
    )
    .await;
    assert_eq!(kind, "already_exists");
    assert_eq!(workspace.read("out/a.txt"), "two\n");
    assert_eq!(
        failure(
            &registry,
            &workspace,
            "write_file",
            json!({"path": ".", "content": "x"})
        )
        .await,
        "invalid_input"
    );
}

#[tokio::test]
async fn edit_file_replaces_exact_text_and_refuses_ambiguity() {
    let (registry, workspace) = (registry(), Workspace::new());
    workspace.write("app.yaml", "replicas: 2\nimage: web:1\n---\nreplicas: 2\n");
    let kind = failure(
        &registry,
        &workspace,
        "edit_file",
        json!({"path": "app.yaml", "old_text": "replicas: 2", "new_text": "replicas: 5"}),
    )
    .await;
    assert_eq!(kind, "ambiguous_match");
    assert_eq!(
        workspace.read("app.yaml"),
        "replicas: 2\nimage: web:1\n---\nreplicas: 2\n",
        "nothing changed"
    );

    let output = call(
        &registry,
        &workspace,
        "edit_file",
        json!({"path": "app.yaml", "old_text": "image: web:1", "new_text": "image: web:2"}),
    )
    .await
    .expect("ok");
    assert_eq!(
        output,
        json!({"path": "app.yaml", "replacements": 1, "lines": [2]})
    );
    let output = call(
        &registry,
        &workspace,
        "edit_file",
        json!({"path": "app.yaml", "old_text": "replicas: 2", "new_text": "replicas: 5", "replace_all": true}),
    )
    .await
    .expect("ok");
    assert_eq!(output["lines"], json!([1, 4]));
    assert_eq!(
        workspace.read("app.yaml"),
        "replicas: 5\nimage: web:2\n---\nreplicas: 5\n"
    );
    let kind = failure(
        &registry,
        &workspace,
        "edit_file",
        json!({"path": "app.yaml", "old_text": "absent", "new_text": "x"}),
    )
    .await;
    assert_eq!(kind, "no_match");
}

#[tokio::test]
async fn list_dir_and_search_files_are_bounded_and_sorted() {
    let (registry, workspace) = (registry(), Workspace::new());
    workspace.write("b.yaml", "kind: Service\n");
    workspace.write("a/deploy.yaml", "kind: Deployment\nimage: nginx:latest\n");
    workspace.write("a/notes.txt", "image: nginx:latest is pinned nowhere\n");
    std::os::unix::fs::symlink("/etc", workspace.path().join("etc-link")).expect("symlink");

    let output = call(&registry, &workspace, "list_dir", json!({}))
        .await
        .expect("ok");
    let entries: Vec<(&str, &str)> = output["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap_or_default(),
                e["kind"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        vec![("a", "dir"), ("b.yaml", "file"), ("etc-link", "symlink")]
    );
    let output = call(
        &registry,
        &workspace,
        "list_dir",
        json!({"recursive": true, "max_entries": 3}),
    )
    .await
    .expect("ok");
    assert_eq!(output["truncated"], true);
    assert_eq!(output["entries"].as_array().map(Vec::len), Some(3));

    let output = call(
        &registry,
        &workspace,
        "search_files",
        json!({"pattern": "nginx:latest", "glob": "*.yaml"}),
    )
    .await
    .expect("ok");
    assert_eq!(
        output["matches"],
        json!([{"path": "a/deploy.yaml", "line": 2, "text": "image: nginx:latest"}])
    );
    let output = call(
        &registry,
        &workspace,
        "search_files",
        json!({"pattern": "KIND", "case_insensitive": true}),
    )
    .await
    .expect("ok");
    assert_eq!(output["matches"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        failure(
            &registry,
            &workspace,
            "search_files",
            json!({"pattern": "("})
        )
        .await,
        "invalid_input"
    );
    // A pattern that would compile to a huge automaton is refused, not run.
    let kind = failure(
        &registry,
        &workspace,
        "search_files",
        json!({"pattern": "\\w{1000}\\w{1000}\\w{1000}"}),
    )
    .await;
    assert_eq!(kind, "invalid_input");
}

#[tokio::test]
async fn diff_shows_a_unified_diff() {
    let (registry, workspace) = (registry(), Workspace::new());
    workspace.write("old.yaml", "a: 1\nb: 2\nc: 3\n");
    workspace.write("new.yaml", "a: 1\nb: 20\nc: 3\n");
    let output = call(
        &registry,
        &workspace,
        "diff",
        json!({"old_path": "old.yaml", "new_path": "new.yaml"}),
    )
    .await
    .expect("ok");
    assert_eq!(output["changed"], true);
    assert_eq!(
        (output["added"].as_u64(), output["removed"].as_u64()),
        (Some(1), Some(1))
    );
    let diff = output["diff"].as_str().expect("diff");
    assert!(
        diff.starts_with("--- a/old.yaml\n+++ b/new.yaml\n@@ -1,3 +1,3 @@\n"),
        "{diff}"
    );
    assert!(diff.contains("-b: 2\n+b: 20\n"), "{diff}");
    let output = call(
        &registry,
        &workspace,
        "diff",
        json!({"old_path": "old.yaml", "new_path": "old.yaml"}),
    )
    .await
    .expect("ok");
    assert_eq!(
        (output["changed"].as_bool(), output["diff"].as_str()),
        (Some(false), Some(""))
    );
}

#[tokio::test]
async fn built_in_tools_cannot_leave_the_workspace() {
    let (registry, workspace) = (registry(), Workspace::new());
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret.txt"), "host secret").expect("write secret");
    let secret = outside.path().join("secret.txt");

    for path in [
        "../secret.txt",
        "/etc/passwd",
        "a/../../secret.txt",
        secret.to_str().expect("utf-8"),
    ] {
        assert_eq!(
            failure(&registry, &workspace, "read_file", json!({"path": path})).await,
            "outside_workspace",
            "{path}"
        );
        assert_eq!(
            failure(
                &registry,
                &workspace,
                "write_file",
                json!({"path": path, "content": "x"})
            )
            .await,
            "outside_workspace",
            "{path}"
        );
    }
    // Links made on the host that point outside: WASI refuses to follow them.
    std::os::unix::fs::symlink(&secret, workspace.path().join("link.txt")).expect("symlink");
    std::os::unix::fs::symlink(outside.path(), workspace.path().join("linkdir"))
        .expect("dir symlink");
    for path in ["link.txt", "linkdir/secret.txt"] {
        failure(&registry, &workspace, "read_file", json!({"path": path})).await;
    }
    // Writing through a link is refused and the outside file is untouched.
    failure(
        &registry,
        &workspace,
        "write_file",
        json!({"path": "link.txt", "content": "pwned"}),
    )
    .await;
    failure(
        &registry,
        &workspace,
        "write_file",
        json!({"path": "linkdir/secret.txt", "content": "pwned"}),
    )
    .await;
    failure(
        &registry,
        &workspace,
        "edit_file",
        json!({"path": "link.txt", "old_text": "host", "new_text": "pwned"}),
    )
    .await;
    // A hard link made on the host is the outside file itself: refused by its link count.
    std::fs::hard_link(&secret, workspace.path().join("hard.txt")).expect("hard link");
    assert_eq!(
        failure(
            &registry,
            &workspace,
            "read_file",
            json!({"path": "hard.txt"})
        )
        .await,
        "outside_workspace"
    );
    assert_eq!(
        failure(
            &registry,
            &workspace,
            "write_file",
            json!({"path": "hard.txt", "content": "pwned"})
        )
        .await,
        "outside_workspace"
    );
    assert_eq!(
        failure(
            &registry,
            &workspace,
            "edit_file",
            json!({"path": "hard.txt", "old_text": "host", "new_text": "x"})
        )
        .await,
        "outside_workspace"
    );
    let output = call(
        &registry,
        &workspace,
        "search_files",
        json!({"pattern": "secret"}),
    )
    .await
    .expect("search runs");
    assert_eq!(
        output["matches"],
        json!([]),
        "search never reads through links"
    );
    assert_eq!(
        std::fs::read_to_string(&secret).expect("secret"),
        "host secret"
    );

    // Very long paths and NUL bytes are clean failures, not crashes.
    let long = "a/".repeat(5000) + "x";
    let kind = failure(&registry, &workspace, "read_file", json!({"path": long})).await;
    assert!(
        ["not_found", "io", "invalid_input"].contains(&kind.as_str()),
        "{kind}"
    );
    assert_eq!(
        failure(
            &registry,
            &workspace,
            "read_file",
            json!({"path": "a\u{0}b"})
        )
        .await,
        "invalid_input"
    );
}
