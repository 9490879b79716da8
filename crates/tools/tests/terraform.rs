//! `terraform_plan` against the real Terraform v1.0.3 (installed by
//! scripts/install-terraform.sh into `$DECKHAND_CACHE/terraform/terraform`; the test runs
//! the script itself when the binary is missing). No provider registry is reachable
//! here, so a configuration with providers fails at `init`; one without providers
//! (variables, locals, outputs) plans for real.

// Test helpers outside #[test] functions: a panic is the failure report here too.
#![allow(clippy::unwrap_used)]

use deckhand_tools::confine::Launcher;
use deckhand_tools::terraform::{
    register_terraform, Confinement, TerraformConfig, TerraformPlan, TOOL_NAME,
};
use deckhand_tools::{ToolContext, ToolRegistry};
use serde_json::json;
use std::ffi::OsString;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A registry with `terraform_plan` over the real binary, passing `PATH` only, confined
/// by this crate's launcher (as `deckhand confine` does in the product).
fn registry(binary: &Path, timeout_secs: u64) -> ToolRegistry {
    registry_confined(binary, timeout_secs, Confinement::Landlock)
}

fn registry_confined(binary: &Path, timeout_secs: u64, confinement: Confinement) -> ToolRegistry {
    let mut config = TerraformConfig::new(binary);
    config.timeout_secs = timeout_secs;
    config.confinement = confinement;
    let tool = TerraformPlan::new(&config)
        .unwrap()
        .with_env(Arc::new(|name| {
            (name == "PATH").then(|| OsString::from("/usr/local/bin:/usr/bin:/bin"))
        }))
        .with_launcher(Launcher::new(
            env!("CARGO_BIN_EXE_deckhand-confine"),
            Vec::<OsString>::new(),
        ));
    let mut registry = ToolRegistry::new();
    register_terraform(&mut registry, tool).unwrap();
    registry
}

fn context(workspace: &Path) -> ToolContext {
    ToolContext {
        workspace: workspace.to_owned(),
        ..ToolContext::default()
    }
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), text).unwrap();
}

#[tokio::test]
async fn a_configuration_without_providers_plans_and_its_summary_is_read() {
    let Some(binary) = deckhand_testkit::terraform() else {
        return;
    };
    let workspace = tempfile::tempdir().unwrap();
    let registry = registry(&binary, 120);
    // Only variables and locals: nothing to create, so terraform says "No changes."
    write(
        &workspace.path().join("terraform/quiet"),
        "main.tf",
        "variable \"name\" {\n  default = \"logs\"\n}\n\nlocals {\n  bucket = \"${var.name}-bucket\"\n}\n",
    );
    let output = registry
        .call(
            TOOL_NAME,
            &context(workspace.path()),
            &json!({"path": "terraform/quiet"}),
        )
        .await
        .unwrap();
    assert_eq!(output["exit_status"], 0, "{output:#}");
    assert_eq!(output["summary"], "No changes.", "{output:#}");
    assert_eq!(
        output["changes"],
        json!({"add": 0, "change": 0, "destroy": 0, "import": 0})
    );
    assert_eq!(output["plan_file"], "terraform/quiet/tfplan");
    assert!(
        output["output"]
            .as_str()
            .unwrap()
            .contains("Your infrastructure matches the configuration"),
        "{output:#}"
    );
    assert!(
        output["init_output"]
            .as_str()
            .unwrap()
            .contains("Terraform has been successfully initialized"),
        "{output:#}"
    );
    let saved = workspace.path().join("terraform/quiet/tfplan");
    assert!(
        std::fs::metadata(&saved).unwrap().len() > 0,
        "the plan is saved"
    );
    // terraform's own state went to the scratch home in the workspace.
    assert!(workspace.path().join(".deckhand/terraform-home").is_dir());

    // An output that would change: terraform 1.0 prints no "Plan:" line for it.
    write(
        &workspace.path().join("terraform/outputs"),
        "main.tf",
        "output \"greeting\" {\n  value = \"hello\"\n}\n",
    );
    let output = registry
        .call(
            TOOL_NAME,
            &context(workspace.path()),
            &json!({"path": "terraform/outputs"}),
        )
        .await
        .unwrap();
    assert_eq!(
        output["summary"], "No resource changes; only outputs change.",
        "{output:#}"
    );
    assert!(
        output["output"]
            .as_str()
            .unwrap()
            .contains("+ greeting = \"hello\""),
        "{output:#}"
    );
}

#[tokio::test]
async fn an_aws_configuration_fails_at_init_saying_the_provider_could_not_be_installed() {
    let Some(binary) = deckhand_testkit::terraform() else {
        return;
    };
    let workspace = tempfile::tempdir().unwrap();
    let registry = registry(&binary, 120);
    write(
        &workspace.path().join("terraform/bucket"),
        "main.tf",
        "provider \"aws\" {\n  region = \"eu-west-2\"\n}\n\nresource \"aws_s3_bucket\" \"logs\" {\n  bucket = \"logs\"\n}\n",
    );
    let started = Instant::now();
    let error = registry
        .call(
            TOOL_NAME,
            &context(workspace.path()),
            &json!({"path": "terraform/bucket"}),
        )
        .await
        .unwrap_err();
    let message = error.to_string();
    assert_eq!(error.kind(), "terraform_init_failed", "{message}");
    assert!(
        message.contains("a provider could not be installed"),
        "{message}"
    );
    assert!(
        message.contains("hashicorp/aws"),
        "terraform's own error: {message}"
    );
    assert!(message.ends_with("The plan was not run."), "{message}");
    assert!(
        !workspace.path().join("terraform/bucket/tfplan").exists(),
        "no plan was made"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "it fails, it does not hang"
    );
}

#[tokio::test]
async fn paths_outside_the_workspace_are_refused_before_terraform_runs() {
    let Some(binary) = deckhand_testkit::terraform() else {
        return;
    };
    let workspace = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    write(
        outside.path(),
        "main.tf",
        "output \"x\" {\n  value = 1\n}\n",
    );
    std::os::unix::fs::symlink(outside.path(), workspace.path().join("escape")).unwrap();
    let registry = registry(&binary, 120);
    let outside_path = outside.path().to_string_lossy().into_owned();
    for path in ["escape", "../x", outside_path.as_str()] {
        let error = registry
            .call(
                TOOL_NAME,
                &context(workspace.path()),
                &json!({ "path": path }),
            )
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "outside_workspace", "{path}: {error}");
    }
    // terraform never ran there.
    assert!(!outside.path().join(".terraform").exists());
    assert!(!outside.path().join("tfplan").exists());
}

#[tokio::test]
async fn a_plan_that_runs_past_the_time_limit_is_killed() {
    let Some(binary) = deckhand_testkit::terraform() else {
        return;
    };
    let workspace = tempfile::tempdir().unwrap();
    // About a billion list elements evaluated in a local: minutes of CPU in plan (init
    // does not evaluate it), in constant memory. No provider needed.
    write(
        &workspace.path().join("terraform/spin"),
        "main.tf",
        "locals {\n  spin = length([for i in range(1024) : length([for j in range(1024) : length([for k in range(1024) : k])])])\n}\n\noutput \"spin\" {\n  value = local.spin\n}\n",
    );
    let registry = registry(&binary, 4);
    let started = Instant::now();
    let error = registry
        .call(
            TOOL_NAME,
            &context(workspace.path()),
            &json!({"path": "terraform/spin"}),
        )
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(error.kind(), "timeout", "{error}");
    assert!(
        error
            .to_string()
            .contains("terraform plan ran past the time limit of 4 s"),
        "{error}"
    );
    assert!(elapsed >= Duration::from_secs(4), "{elapsed:?}");
    assert!(
        elapsed < Duration::from_secs(15),
        "killed promptly: {elapsed:?}"
    );
    // No terraform is left running in that directory.
    let dir = workspace
        .path()
        .join("terraform/spin")
        .canonicalize()
        .unwrap();
    let mut survivors = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cwd = std::fs::read_link(entry.path().join("cwd"));
        if cwd.is_ok_and(|cwd| cwd == dir) {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if !stat.contains(") Z ") && !stat.is_empty() {
                survivors.push(entry.file_name());
            }
        }
    }
    assert!(survivors.is_empty(), "still running: {survivors:?}");
}

/// A configuration that reads a host file into its output (`file()` of a path outside the
/// workspace, as a confused model or a hostile request could write) is refused by the
/// kernel when confined; unconfined, the same plan would carry the file's text out.
#[tokio::test]
async fn a_confined_terraform_cannot_read_host_files_into_a_plan() {
    let Some(binary) = deckhand_testkit::terraform() else {
        return;
    };
    let workspace = tempfile::tempdir().unwrap();
    let host = tempfile::tempdir().unwrap();
    let secret = host.path().join("token");
    std::fs::write(&secret, "s3cret-token-value").unwrap();
    write(
        &workspace.path().join("terraform/leak"),
        "main.tf",
        &format!(
            "output \"leak\" {{\n  value = file(\"{}\")\n}}\n",
            secret.display()
        ),
    );
    let input = json!({"path": "terraform/leak"});

    let unconfined = registry_confined(&binary, 120, Confinement::None)
        .call(TOOL_NAME, &context(workspace.path()), &input)
        .await
        .unwrap();
    assert!(
        unconfined["output"]
            .as_str()
            .unwrap()
            .contains("s3cret-token-value"),
        "the test's configuration does read the file when nothing stops it: {unconfined:#}"
    );

    let error = registry(&binary, 120)
        .call(TOOL_NAME, &context(workspace.path()), &input)
        .await
        .unwrap_err();
    if error.to_string().contains("does not enforce Landlock") {
        eprintln!("\n!!!!! SKIPPED: this kernel does not enforce Landlock\n");
        return;
    }
    assert_eq!(error.kind(), "terraform_plan_failed", "{error}");
    let message = error.to_string();
    assert!(message.contains("permission denied"), "{message}");
    assert!(!message.contains("s3cret-token-value"), "{message}");
}

/// A tool configured for Landlock but given no launcher refuses to run terraform at all.
#[tokio::test]
async fn without_a_launcher_a_confined_terraform_does_not_run() {
    let Some(binary) = deckhand_testkit::terraform() else {
        return;
    };
    let workspace = tempfile::tempdir().unwrap();
    write(
        &workspace.path().join("terraform/quiet"),
        "main.tf",
        "locals {\n  a = 1\n}\n",
    );
    let tool = TerraformPlan::new(&TerraformConfig::new(&binary)).unwrap();
    let mut registry = ToolRegistry::new();
    register_terraform(&mut registry, tool).unwrap();
    let error = registry
        .call(
            TOOL_NAME,
            &context(workspace.path()),
            &json!({"path": "terraform/quiet"}),
        )
        .await
        .unwrap_err();
    assert_eq!(error.kind(), "terraform_unconfined", "{error}");
    assert!(!workspace.path().join("terraform/quiet/.terraform").exists());
}
