//! The CRDs as Kubernetes objects and as the YAML files committed in `k8s/crds/`.

use crate::error::{Error, Result};
use crate::{AIConversation, AIRequest};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use std::path::{Path, PathBuf};

/// The command that regenerates `k8s/crds/` from the types.
pub const REGENERATE_COMMAND: &str = "cargo run -p deckhand-crds --example gen-crds";

/// The first lines of every generated file.
const HEADER: &str = "# Generated from the Rust types in crates/crds: do not edit.\n\
# Regenerate with `cargo run -p deckhand-crds --example gen-crds`.\n";

/// The name of the kustomization that lists the CRD files.
const KUSTOMIZATION: &str = "kustomization.yaml";

/// Every custom resource deckhand defines, as the API server takes them.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![AIRequest::crd(), AIConversation::crd()]
}

/// One CRD as a YAML document.
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String> {
    serde_yaml_ng::to_string(crd).map_err(|source| Error::Yaml {
        crd: crd.metadata.name.clone().unwrap_or_default(),
        source,
    })
}

/// Every CRD in one multi-document YAML stream, for `kubectl apply -f -`.
pub fn crds_yaml() -> Result<String> {
    let mut out = String::from(HEADER);
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&crd_yaml(&crd)?);
    }
    Ok(out)
}

/// The files of `k8s/crds/`: one per CRD (`PLURAL.GROUP.yaml`) and a `kustomization.yaml`
/// listing them, as `(file name, contents)`.
pub fn crd_files() -> Result<Vec<(String, String)>> {
    let mut files = Vec::new();
    let mut kustomization = format!(
        "{HEADER}apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
    );
    for crd in crds() {
        let name = format!("{}.yaml", crd.metadata.name.clone().unwrap_or_default());
        kustomization.push_str(&format!("- {name}\n"));
        files.push((name, format!("{HEADER}{}", crd_yaml(&crd)?)));
    }
    files.push((KUSTOMIZATION.to_owned(), kustomization));
    Ok(files)
}

/// Writes [`crd_files`] into `dir` (created if missing) and returns the paths written.
pub fn write_crd_files(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        action: "creating",
        path: dir.to_owned(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, contents) in crd_files()? {
        let path = dir.join(name);
        std::fs::write(&path, contents).map_err(|source| Error::Io {
            action: "writing",
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The files of `dir` that differ from [`crd_files`] or are missing, by name; empty when
/// the committed CRDs match the types.
pub fn stale_crd_files(dir: &Path) -> Result<Vec<String>> {
    let mut stale = Vec::new();
    for (name, expected) in crd_files()? {
        let path = dir.join(&name);
        match std::fs::read_to_string(&path) {
            Ok(committed) if committed == expected => {}
            Ok(_) => stale.push(name),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => stale.push(name),
            Err(source) => {
                return Err(Error::Io {
                    action: "reading",
                    path,
                    source,
                })
            }
        }
    }
    Ok(stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_crds_are_named_and_scoped_as_kubernetes_expects() {
        let crds = crds();
        let names: Vec<_> = crds
            .iter()
            .map(|crd| crd.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            ["airequests.deckhand.dev", "aiconversations.deckhand.dev"]
        );
        for crd in &crds {
            assert_eq!(crd.spec.group, "deckhand.dev");
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(crd.spec.versions.len(), 1);
            assert_eq!(crd.spec.versions[0].name, "v1alpha1");
            assert!(crd.spec.versions[0].served && crd.spec.versions[0].storage);
            assert_eq!(
                crd.spec.names.categories.as_deref(),
                Some(&["deckhand".to_owned()][..])
            );
        }
    }

    #[test]
    fn airequest_has_a_status_subresource_and_the_printer_columns() {
        let crd = AIRequest::crd();
        let version = &crd.spec.versions[0];
        assert!(version
            .subresources
            .as_ref()
            .and_then(|s| s.status.as_ref())
            .is_some());
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.json_path.as_str(),
                    c.priority.unwrap_or(0),
                )
            })
            .collect();
        assert_eq!(
            columns,
            [
                ("Phase", ".status.phase", 0),
                ("User", ".spec.user", 0),
                ("Target", ".spec.namespace", 1),
                ("Plan", ".status.planHash", 1),
                ("Age", ".metadata.creationTimestamp", 0),
            ]
        );
        assert_eq!(
            crd.spec.names.short_names.as_deref(),
            Some(&["aireq".to_owned()][..])
        );
    }

    #[test]
    fn the_plan_keeps_unknown_fields_and_the_phase_is_an_enum() {
        let crd = AIRequest::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).expect("serializable");
        let status = &schema["openAPIV3Schema"]["properties"]["status"]["properties"];
        assert_eq!(status["plan"]["type"], "object");
        assert_eq!(status["plan"]["x-kubernetes-preserve-unknown-fields"], true);
        assert_eq!(
            status["phase"]["enum"],
            serde_json::json!([
                "Pending",
                "Planned",
                "AwaitingApproval",
                "Running",
                "Succeeded",
                "Failed",
                "Restored"
            ])
        );
        assert_eq!(status["conditions"]["x-kubernetes-list-type"], "map");
    }

    #[test]
    fn the_files_round_trip_through_a_directory() {
        let dir = tempfile::tempdir().expect("a temp dir");
        assert_eq!(stale_crd_files(dir.path()).expect("readable").len(), 3);
        let written = write_crd_files(dir.path()).expect("writable");
        assert_eq!(written.len(), 3);
        assert!(stale_crd_files(dir.path()).expect("readable").is_empty());

        // One changed byte makes that file stale, and only that one.
        let first = &written[0];
        let mut text = std::fs::read_to_string(first).expect("readable");
        text.push('\n');
        std::fs::write(first, text).expect("writable");
        assert_eq!(
            stale_crd_files(dir.path()).expect("readable"),
            ["airequests.deckhand.dev.yaml"]
        );
    }

    #[test]
    fn the_stream_parses_back_into_the_crds() {
        let yaml = crds_yaml().expect("renders");
        let parsed: Vec<CustomResourceDefinition> = serde_yaml_ng::Deserializer::from_str(&yaml)
            .map(|document| serde::Deserialize::deserialize(document).expect("a CRD document"))
            .collect();
        assert_eq!(parsed, crds());
    }
}
