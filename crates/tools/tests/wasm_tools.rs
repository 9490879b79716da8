//! The real `read_file` module from tools-wasm, run by the host under wasmtime.

use deckhand_tools::sandbox::SandboxConfig;
use deckhand_tools::{SandboxLimits, ToolModule, WasmSandbox, WorkspaceAccess};
use serde_json::json;
use std::path::PathBuf;

fn module_path(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools-wasm/dist")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: build it with scripts/build-tools-wasm.sh",
        path.display()
    );
    path
}

fn read_file() -> (WasmSandbox, ToolModule) {
    let sandbox = WasmSandbox::new(SandboxConfig {
        limits: SandboxLimits::default(),
        compile_cache_dir: None,
    })
    .expect("sandbox");
    let tool = sandbox
        .load(
            "read_file",
            &module_path("read_file"),
            WorkspaceAccess::ReadOnly,
        )
        .expect("load read_file");
    (sandbox, tool)
}

fn call(
    sandbox: &WasmSandbox,
    tool: &ToolModule,
    workspace: &std::path::Path,
    input: serde_json::Value,
) -> Result<serde_json::Value, deckhand_tools::ToolFailure> {
    sandbox
        .call(tool, workspace, input.to_string().as_bytes())
        .expect("the sandbox runs the tool")
}

#[test]
fn read_file_reads_inside_the_workspace() {
    let (sandbox, tool) = read_file();
    let workspace = tempfile::tempdir().expect("workspace");
    std::fs::create_dir(workspace.path().join("manifests")).expect("mkdir");
    std::fs::write(
        workspace.path().join("manifests/web.yaml"),
        "kind: Deployment\n",
    )
    .expect("write");

    let output = call(
        &sandbox,
        &tool,
        workspace.path(),
        json!({"path": "manifests/web.yaml"}),
    )
    .expect("ok");
    assert_eq!(
        output,
        json!({"path": "manifests/web.yaml", "content": "kind: Deployment\n", "size": 17, "truncated": false})
    );

    let output = call(
        &sandbox,
        &tool,
        workspace.path(),
        json!({"path": "manifests/web.yaml", "max_bytes": 4}),
    )
    .expect("ok");
    assert_eq!(
        (output["content"].as_str(), output["truncated"].as_bool()),
        (Some("kind"), Some(true))
    );

    // Every call is a fresh instance: the same module serves many calls.
    for _ in 0..20 {
        call(
            &sandbox,
            &tool,
            workspace.path(),
            json!({"path": "manifests/web.yaml"}),
        )
        .expect("ok again");
    }
}

#[test]
fn read_file_reports_its_own_failures() {
    let (sandbox, tool) = read_file();
    let workspace = tempfile::tempdir().expect("workspace");
    let failure = call(
        &sandbox,
        &tool,
        workspace.path(),
        json!({"path": "missing.yaml"}),
    )
    .unwrap_err();
    assert_eq!(failure.kind, "not_found");
    let failure = call(&sandbox, &tool, workspace.path(), json!({"file": "x"})).unwrap_err();
    assert_eq!(failure.kind, "invalid_input");
}

#[test]
fn read_file_cannot_leave_the_workspace() {
    let (sandbox, tool) = read_file();
    let outside = tempfile::tempdir().expect("outside");
    std::fs::write(outside.path().join("secret.txt"), "host secret").expect("write secret");
    let workspace = tempfile::tempdir().expect("workspace");

    for path in ["../secret.txt", "/etc/passwd", "a/../../secret.txt"] {
        let failure = call(&sandbox, &tool, workspace.path(), json!({"path": path})).unwrap_err();
        assert_eq!(failure.kind, "outside_workspace", "{path}");
    }

    // Links made on the host that point outside are refused by WASI itself.
    std::os::unix::fs::symlink(
        outside.path().join("secret.txt"),
        workspace.path().join("link.txt"),
    )
    .expect("symlink");
    std::os::unix::fs::symlink(outside.path(), workspace.path().join("linkdir"))
        .expect("dir symlink");
    for path in ["link.txt", "linkdir/secret.txt"] {
        let failure = call(&sandbox, &tool, workspace.path(), json!({"path": path})).unwrap_err();
        assert!(
            !failure.message.contains("host secret"),
            "{path}: {failure:?}"
        );
    }
}
