//! Finds policies in directories: `.rego` modules (`*_test.rego` skipped, as OPA's
//! tests), and YAML/JSON documents holding ConstraintTemplates and constraints. Other
//! documents (policy test fixtures, unrelated manifests) are left alone.

use crate::error::{Error, Result};
use crate::gatekeeper::{CONSTRAINTS_GROUP, TEMPLATES_GROUP};
use crate::request::parse_documents;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// Everything found in the policy directories, in a stable order.
#[derive(Debug, Default)]
pub(crate) struct Sources {
    /// `(origin, text)` of each Rego module.
    pub rego: Vec<(String, String)>,
    /// `(origin, document)` of each ConstraintTemplate.
    pub templates: Vec<(String, Value)>,
    /// `(origin, document)` of each constraint.
    pub constraints: Vec<(String, Value)>,
}

impl Sources {
    /// Adds one file's policies, by its extension.
    pub(crate) fn add_text(&mut self, origin: &str, text: &str) -> Result<()> {
        if origin.ends_with(".rego") {
            self.rego.push((origin.to_string(), text.to_string()));
            return Ok(());
        }
        let documents = parse_documents(text).map_err(|message| Error::InvalidDocument {
            origin: origin.to_string(),
            message,
        })?;
        for (index, document) in documents.into_iter().enumerate() {
            let origin = format!("{origin}[{index}]");
            let api_version = document
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let group = api_version.split('/').next().unwrap_or("");
            let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
            if group == TEMPLATES_GROUP {
                if kind != "ConstraintTemplate" {
                    return Err(Error::InvalidDocument {
                        origin,
                        message: format!("{api_version} has no kind {kind:?}"),
                    });
                }
                self.templates.push((origin, document));
            } else if group == CONSTRAINTS_GROUP {
                self.constraints.push((origin, document));
            }
        }
        Ok(())
    }

    /// Adds every policy file under `directory`, recursively, in path order.
    pub(crate) fn add_directory(&mut self, directory: &Path) -> Result<()> {
        let mut files = Vec::new();
        collect_files(directory, &mut files)?;
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|source| Error::Read {
                path: file.clone(),
                source,
            })?;
            self.add_text(&file.display().to_string(), &text)?;
        }
        Ok(())
    }
}

/// Whether deckhand reads this file as a policy.
fn is_policy_file(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("");
    if name.ends_with("_test.rego") {
        return false;
    }
    [".rego", ".yaml", ".yml", ".json"]
        .iter()
        .any(|extension| name.ends_with(extension))
}

fn collect_files(directory: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let read_error = |source| Error::Read {
        path: directory.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(directory).map_err(read_error)? {
        let path = entry.map_err(read_error)?.path();
        if path.is_dir() {
            collect_files(&path, files)?;
        } else if is_policy_file(&path) {
            files.push(path);
        }
    }
    Ok(())
}
