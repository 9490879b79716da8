//! `deckhand tool list|schema|run`, run as the real binary against the real built tools.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn deckhand(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_deckhand"))
        .current_dir(dir)
        .args(args)
        .arg("--builtin-tools-dir")
        .arg(repo().join("tools-wasm/dist"))
        .output()
        .expect("run deckhand");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|error| panic!("not JSON ({error}): {stdout}"))
}

#[test]
fn list_and_schema_describe_the_tools() {
    let dir = tempfile::tempdir().expect("dir");
    let (code, stdout, _) = deckhand(dir.path(), &["tool", "list"]);
    assert_eq!(code, 0);
    let line = stdout
        .lines()
        .find(|line| line.starts_with("read_file"))
        .expect("read_file listed");
    assert!(line.contains("read") && line.contains("UTF-8"), "{line}");

    let (code, stdout, _) = deckhand(dir.path(), &["tool", "list", "--json"]);
    assert_eq!(code, 0);
    let specs = json_of(&stdout);
    let names: Vec<&str> = specs
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    for name in [
        "diff",
        "edit_file",
        "list_dir",
        "read_file",
        "search_files",
        "write_file",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }

    let (code, stdout, _) = deckhand(dir.path(), &["tool", "schema", "edit_file"]);
    assert_eq!(code, 0);
    let spec = json_of(&stdout);
    assert_eq!(spec["workspace"], "write");
    assert_eq!(
        spec["input_schema"]["required"],
        json!(["path", "old_text", "new_text"])
    );

    let (code, _, stderr) = deckhand(dir.path(), &["tool", "schema", "no_such_tool"]);
    assert_eq!(code, 2);
    assert!(stderr.contains("known tools"), "{stderr}");
    // Nothing was left behind in the working directory.
    assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
}

#[test]
fn run_reports_success_failure_and_usage_errors_by_exit_status() {
    let dir = tempfile::tempdir().expect("dir");
    let workspace = dir.path().join("ws");
    std::fs::create_dir(&workspace).expect("workspace");
    std::fs::write(workspace.join("a.txt"), "hello\n").expect("file");
    let ws = workspace.to_str().expect("utf-8");

    let (code, stdout, _) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "read_file",
            "--workspace",
            ws,
            "--input",
            r#"{"path":"a.txt"}"#,
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        json_of(&stdout),
        json!({"ok": true, "output": {"path": "a.txt", "content": "hello\n", "size": 6, "truncated": false}})
    );

    let (code, stdout, _) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "read_file",
            "--workspace",
            ws,
            "--input",
            r#"{"path":"nope.txt"}"#,
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(json_of(&stdout)["error"]["kind"], "not_found");

    let (code, stdout, _) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "read_file",
            "--workspace",
            ws,
            "--input",
            r#"{"path":"/etc/passwd"}"#,
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(json_of(&stdout)["error"]["kind"], "outside_workspace");

    // The schema is checked before the tool runs, and the offending field is named.
    let (code, stdout, _) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "read_file",
            "--workspace",
            ws,
            "--input",
            r#"{"path":7}"#,
        ],
    );
    assert_eq!(code, 2);
    let report = json_of(&stdout);
    assert_eq!(report["error"]["kind"], "invalid_input");
    assert_eq!(report["error"]["problems"][0]["path"], "/path");

    // Input that is not JSON at all.
    let (code, stdout, _) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "read_file",
            "--workspace",
            ws,
            "--input",
            "{not json",
        ],
    );
    assert_eq!(code, 2);
    assert_eq!(json_of(&stdout)["error"]["kind"], "invalid_input");
    let (code, stdout, _) = deckhand(
        dir.path(),
        &["tool", "run", "nope", "--workspace", ws, "--input", "{}"],
    );
    assert_eq!(
        (code, json_of(&stdout)["error"]["kind"].as_str()),
        (2, Some("unknown_tool"))
    );
    let missing = dir.path().join("missing");
    let (code, stdout, _) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "read_file",
            "--workspace",
            missing.to_str().expect("utf-8"),
            "--input",
            "{}",
        ],
    );
    assert_eq!(
        (code, json_of(&stdout)["error"]["kind"].as_str()),
        (2, Some("workspace"))
    );

    // write_file really writes into the workspace.
    let (code, _, _) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "write_file",
            "--workspace",
            ws,
            "--input",
            r#"{"path":"out/b.txt","content":"written"}"#,
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(
        std::fs::read_to_string(workspace.join("out/b.txt")).expect("written"),
        "written"
    );
}

#[test]
fn plugins_are_added_with_tools_dir_and_confined_the_same_way() {
    let dir = tempfile::tempdir().expect("dir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins");
    let module = repo().join("tools-wasm/dist-test/hostile.wasm");
    assert!(module.is_file(), "run scripts/build-tools-wasm.sh");
    std::fs::copy(&module, plugins.join("spinner.wasm")).expect("copy");
    let manifest = json!({
        "name": "spinner", "description": "a plugin", "workspace": "read",
        "input_schema": {"type": "object"}, "output_schema": {}
    });
    std::fs::write(plugins.join("spinner.json"), manifest.to_string()).expect("manifest");
    std::fs::write(plugins.join("broken.json"), "{").expect("broken manifest");
    let ws = dir.path().to_str().expect("utf-8");
    let plugin_dir = plugins.to_str().expect("utf-8");

    let (code, stdout, stderr) = deckhand(dir.path(), &["tool", "list", "--tools-dir", plugin_dir]);
    assert_eq!(code, 0);
    assert!(
        stdout.lines().any(|line| line.starts_with("spinner")),
        "{stdout}"
    );
    assert!(
        stderr.contains("broken.json"),
        "a malformed plugin is reported: {stderr}"
    );

    let (code, stdout, _) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "spinner",
            "--tools-dir",
            plugin_dir,
            "--workspace",
            ws,
            "--input",
            r#"{"attack":"loop"}"#,
        ],
    );
    assert_eq!(code, 1);
    assert_eq!(json_of(&stdout)["error"]["kind"], "time_limit");
    let (code, stdout, _) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "spinner",
            "--tools-dir",
            plugin_dir,
            "--workspace",
            ws,
            "--input",
            r#"{"attack":"read","path":"/etc/passwd"}"#,
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(json_of(&stdout)["output"]["escaped"], false);

    let (code, _, stderr) = deckhand(dir.path(), &["tool", "list", "--tools-dir", "/no/such/dir"]);
    assert_eq!(code, 2, "a plugin dir the user names must exist");
    assert!(stderr.contains("/no/such/dir"), "{stderr}");
}

#[test]
fn plugins_and_limits_come_from_the_config_file() {
    let dir = tempfile::tempdir().expect("dir");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir(&plugins).expect("plugins");
    std::fs::copy(
        repo().join("tools-wasm/dist-test/hostile.wasm"),
        plugins.join("spinner.wasm"),
    )
    .expect("copy");
    let manifest = json!({
        "name": "spinner", "description": "a plugin", "workspace": "read",
        "input_schema": {"type": "object"}, "output_schema": {}
    });
    std::fs::write(plugins.join("spinner.json"), manifest.to_string()).expect("manifest");
    // Relative paths in the file are relative to the file, not to the working directory.
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).expect("conf");
    std::fs::write(
        conf.join("deckhand.toml"),
        "[tools]\nplugin_dirs = [\"../plugins\"]\ntime_limit_ms = 300\n",
    )
    .expect("config");
    let config = conf.join("deckhand.toml");
    let config = config.to_str().expect("utf-8");
    let ws = dir.path().to_str().expect("utf-8");
    let loop_input = r#"{"attack":"loop"}"#;

    let (code, stdout, stderr) = deckhand(
        dir.path(),
        &[
            "--config",
            config,
            "tool",
            "run",
            "spinner",
            "--workspace",
            ws,
            "--input",
            loop_input,
        ],
    );
    assert_eq!(code, 1, "{stderr}");
    let error = &json_of(&stdout)["error"];
    assert_eq!(error["kind"], "time_limit");
    assert!(
        error["message"].as_str().unwrap_or("").contains("300ms"),
        "the configured limit applies: {error}"
    );

    // ./deckhand.toml is read when no --config is given.
    std::fs::copy(conf.join("deckhand.toml"), dir.path().join("deckhand.toml")).expect("copy");
    std::fs::write(
        dir.path().join("deckhand.toml"),
        "[tools]\nplugin_dirs = [\"plugins\"]\n",
    )
    .expect("config");
    let (code, stdout, _) = deckhand(dir.path(), &["tool", "list"]);
    assert_eq!(code, 0);
    assert!(
        stdout.lines().any(|line| line.starts_with("spinner")),
        "{stdout}"
    );

    // A typo is an error naming the key and the file, not a silent default.
    std::fs::write(
        dir.path().join("deckhand.toml"),
        "[tools]\nplugin_dir = [\"plugins\"]\n",
    )
    .expect("config");
    let (code, _, stderr) = deckhand(
        dir.path(),
        &[
            "tool",
            "run",
            "spinner",
            "--workspace",
            ws,
            "--input",
            loop_input,
        ],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("plugin_dir") && stderr.contains("deckhand.toml"),
        "{stderr}"
    );
}

/// `terraform_plan` through the binary runs terraform confined by `deckhand confine`: a
/// configuration may plan, but not read a file outside the workspace (here, deckhand's
/// own configuration file next to it) into the plan's output.
#[test]
fn terraform_runs_confined_through_deckhand_confine() {
    let Some(terraform) = deckhand_testkit::terraform() else {
        eprintln!("\n!!!!! SKIPPED: no terraform (scripts/install-terraform.sh installs it)\n");
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let workspace = dir.path().join("workspace");
    std::fs::create_dir_all(workspace.join("plan")).expect("workspace");
    std::fs::create_dir_all(workspace.join("leak")).expect("workspace");
    std::fs::write(
        dir.path().join("deckhand.toml"),
        format!(
            "# api_key = \"top-secret-value\"\n[terraform]\nbinary = \"{}\"\n",
            terraform.display()
        ),
    )
    .expect("config");
    std::fs::write(
        workspace.join("plan/main.tf"),
        "output \"greeting\" {\n  value = \"hello\"\n}\n",
    )
    .expect("tf");
    std::fs::write(
        workspace.join("leak/main.tf"),
        format!(
            "output \"leak\" {{\n  value = file(\"{}\")\n}}\n",
            dir.path().join("deckhand.toml").display()
        ),
    )
    .expect("tf");
    let ws = workspace.to_str().expect("utf-8");
    let run = |path: &str| {
        let input = json!({ "path": path }).to_string();
        deckhand(
            dir.path(),
            &[
                "tool",
                "run",
                "terraform_plan",
                "--workspace",
                ws,
                "--input",
                &input,
            ],
        )
    };

    let (code, stdout, stderr) = run("plan");
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        json_of(&stdout)["output"]["output"]
            .as_str()
            .unwrap_or("")
            .contains("+ greeting = \"hello\""),
        "{stdout}"
    );

    let (code, stdout, stderr) = run("leak");
    if stdout.contains("does not enforce Landlock") {
        eprintln!("\n!!!!! SKIPPED: this kernel does not enforce Landlock\n");
        return;
    }
    assert_eq!(code, 1, "{stdout}{stderr}");
    let error = &json_of(&stdout)["error"];
    assert_eq!(error["kind"], "terraform_plan_failed", "{error}");
    let message = error["message"].as_str().unwrap_or("");
    assert!(message.contains("permission denied"), "{message}");
    assert!(!stdout.contains("top-secret-value"), "{stdout}");
}
