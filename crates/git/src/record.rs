//! What a thread puts on its branch, as plain data, and how it is rendered into the
//! files of `threads/<id>/` and the commit messages.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::config::Mode;
use crate::error::{Error, Result};
use crate::names::{unique_file_names, KUSTOMIZATION_FILE};

/// The request file.
pub const REQUEST_FILE: &str = "request.md";
/// The plan file.
pub const PLAN_FILE: &str = "plan.json";
/// The result file, written at completion.
pub const RESULT_FILE: &str = "result.md";
/// The manifests folder.
pub const MANIFESTS_DIR: &str = "manifests";
/// The prior-state folder.
pub const BACKUP_DIR: &str = "backup";
/// The longest subject line written into a commit message or a PR title.
const MAX_SUBJECT: usize = 72;

/// A manifest the plan applies: a (file name, YAML) pair. The name is only a hint; it
/// is made safe before it becomes a file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The name as given (by the planner or a tool), or, read back, the file name.
    pub name: String,
    /// The YAML text (one or more documents).
    pub yaml: String,
}

impl Manifest {
    /// A manifest with this name and YAML.
    pub fn new(name: impl Into<String>, yaml: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            yaml: yaml.into(),
        }
    }
}

impl From<(String, String)> for Manifest {
    fn from((name, yaml): (String, String)) -> Self {
        Self { name, yaml }
    }
}

/// The prior state of one object, taken before deckhand changed it, as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// A name for it, e.g. `apps/v1 Deployment shop/checkout`; made safe like a
    /// manifest's.
    pub name: String,
    /// The object as it was (or `null` when it did not exist).
    pub state: serde_json::Value,
}

impl Backup {
    /// A backup with this name and prior state.
    pub fn new(name: impl Into<String>, state: serde_json::Value) -> Self {
        Self {
            name: name.into(),
            state,
        }
    }
}

/// What is written when a person approves a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Approval {
    /// A short title for the thread (the first line of the request when empty).
    pub title: String,
    /// The request in the person's words.
    pub request: String,
    /// Who asked.
    pub requested_by: Option<String>,
    /// The cluster the thread is about.
    pub cluster: Option<String>,
    /// The plan, as the runtime stores it.
    pub plan: serde_json::Value,
    /// The plan's hash, the one the person approved.
    pub plan_hash: String,
    /// Who approved.
    pub approved_by: String,
    /// The manifests the plan applies; they replace the folder's `manifests/`.
    pub manifests: Vec<Manifest>,
    /// Prior state known at approval (often none yet); added to `backup/`.
    pub backups: Vec<Backup>,
}

/// What is written when the plan has run.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The result for people to read (Markdown): what was done, what it showed.
    pub result: String,
    /// The prior state captured while running; added to `backup/`.
    pub backups: Vec<Backup>,
}

/// The changes one step makes to the thread's folder.
#[derive(Debug, Default)]
pub(crate) struct FolderUpdate {
    /// Files to write, by path relative to the folder.
    pub write: BTreeMap<String, Vec<u8>>,
    /// Folders whose old files are removed first (the manifests, at approval).
    pub replace_dirs: Vec<&'static str>,
}

impl Approval {
    pub(crate) fn files(&self, thread: Uuid, mode: Mode) -> Result<FolderUpdate> {
        let mut update = FolderUpdate {
            replace_dirs: vec![MANIFESTS_DIR],
            ..FolderUpdate::default()
        };
        update.write.insert(
            REQUEST_FILE.into(),
            self.request_markdown(thread).into_bytes(),
        );
        update.write.insert(
            PLAN_FILE.into(),
            pretty_json(thread, PLAN_FILE, &self.plan)?.into_bytes(),
        );
        let names = unique_file_names(
            self.manifests.iter().map(|m| m.name.as_str()),
            "yaml",
            "manifest",
            &[KUSTOMIZATION_FILE],
        );
        for (name, manifest) in names.iter().zip(&self.manifests) {
            update.write.insert(
                format!("{MANIFESTS_DIR}/{name}"),
                with_final_newline(&manifest.yaml).into_bytes(),
            );
        }
        if mode == Mode::Gitops && !names.is_empty() {
            update.write.insert(
                format!("{MANIFESTS_DIR}/{KUSTOMIZATION_FILE}"),
                kustomization(thread, &names).into_bytes(),
            );
        }
        write_backups(&mut update, thread, &self.backups)?;
        Ok(update)
    }

    /// The title, or the request's first line when the title is empty.
    pub fn subject(&self) -> String {
        if self.title.trim().is_empty() {
            one_line(&self.request)
        } else {
            one_line(&self.title)
        }
    }

    fn request_markdown(&self, thread: Uuid) -> String {
        let mut text = format!("# {}\n\n- Thread: `{}`\n", self.subject(), thread);
        if let Some(user) = &self.requested_by {
            text.push_str(&format!("- Requested by: {}\n", one_line(user)));
        }
        if let Some(cluster) = &self.cluster {
            text.push_str(&format!("- Cluster: {}\n", one_line(cluster)));
        }
        text.push_str(&format!(
            "- Approved by: {}\n- Plan hash: `{}`\n\n## Request\n\n{}",
            one_line(&self.approved_by),
            one_line(&self.plan_hash),
            with_final_newline(self.request.trim())
        ));
        text
    }

    pub(crate) fn commit_message(&self, thread: Uuid) -> String {
        format!(
            "deckhand: approve plan for thread {thread}\n\n{}\n\nPlan-Hash: {}\nApproved-By: {}\nDeckhand-Thread: {thread}\n",
            self.subject(),
            one_line(&self.plan_hash),
            one_line(&self.approved_by),
        )
    }
}

impl Completion {
    pub(crate) fn files(&self, thread: Uuid) -> Result<FolderUpdate> {
        let mut update = FolderUpdate::default();
        update.write.insert(
            RESULT_FILE.into(),
            with_final_newline(&self.result).into_bytes(),
        );
        write_backups(&mut update, thread, &self.backups)?;
        Ok(update)
    }

    pub(crate) fn commit_message(&self, thread: Uuid) -> String {
        let summary = one_line(&self.result);
        let summary = summary.trim_start_matches('#').trim();
        format!("deckhand: complete thread {thread}\n\n{summary}\n\nDeckhand-Thread: {thread}\n")
    }
}

fn write_backups(update: &mut FolderUpdate, thread: Uuid, backups: &[Backup]) -> Result<()> {
    let names = unique_file_names(
        backups.iter().map(|b| b.name.as_str()),
        "json",
        "backup",
        &[],
    );
    for (name, backup) in names.iter().zip(backups) {
        let path = format!("{BACKUP_DIR}/{name}");
        let text = pretty_json(thread, &path, &backup.state)?;
        update.write.insert(path, text.into_bytes());
    }
    Ok(())
}

fn kustomization(thread: Uuid, names: &[String]) -> String {
    let mut text = format!(
        "# Written by deckhand for Argo CD / Flux: the manifests of thread {thread}.\napiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n"
    );
    for name in names {
        text.push_str(&format!("  - {name}\n"));
    }
    text
}

fn pretty_json(thread: Uuid, file: &str, value: &serde_json::Value) -> Result<String> {
    serde_json::to_string_pretty(value)
        .map(|text| text + "\n")
        .map_err(|source| Error::Serialize {
            thread: thread.to_string(),
            file: file.to_owned(),
            source,
        })
}

fn with_final_newline(text: &str) -> String {
    if text.ends_with('\n') {
        text.to_owned()
    } else {
        format!("{text}\n")
    }
}

/// The first non-empty line, without control characters, at most [`MAX_SUBJECT`]
/// characters: what goes into a subject line or a Markdown heading.
pub(crate) fn one_line(text: &str) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    let clean: String = line.chars().filter(|c| !c.is_control()).collect();
    if clean.chars().count() > MAX_SUBJECT {
        let cut: String = clean.chars().take(MAX_SUBJECT - 1).collect();
        format!("{}…", cut.trim_end())
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn approval() -> Approval {
        Approval {
            title: String::new(),
            request: "\n  Scale checkout in shop to 3 replicas\nbecause of the sale".into(),
            requested_by: Some("ana".into()),
            cluster: Some("eks-prod".into()),
            plan: serde_json::json!({"steps":[{"id":"scale"}]}),
            plan_hash: "sha256:abc".into(),
            approved_by: "ana".into(),
            manifests: vec![
                Manifest::new("../deploy.yaml", "kind: Deployment"),
                Manifest::new("kustomization.yaml", "kind: Service\n"),
            ],
            backups: vec![],
        }
    }

    #[test]
    fn approval_renders_request_plan_and_safe_manifest_names() {
        let thread = Uuid::nil();
        let files = approval().files(thread, Mode::Apply).unwrap();
        let paths: Vec<&str> = files.write.keys().map(String::as_str).collect();
        assert_eq!(
            paths,
            [
                "manifests/deploy.yaml",
                "manifests/kustomization-2.yaml",
                "plan.json",
                "request.md"
            ]
        );
        let request = String::from_utf8(files.write["request.md"].clone()).unwrap();
        assert!(request.starts_with("# Scale checkout in shop to 3 replicas\n"));
        assert!(request.contains("- Cluster: eks-prod\n"));
        assert!(request.ends_with(
            "## Request\n\nScale checkout in shop to 3 replicas\nbecause of the sale\n"
        ));
        assert_eq!(
            files.write["manifests/deploy.yaml"],
            b"kind: Deployment\n".to_vec()
        );
        assert_eq!(files.replace_dirs, [MANIFESTS_DIR]);
    }

    #[test]
    fn gitops_adds_a_kustomization_listing_the_manifests() {
        let files = approval().files(Uuid::nil(), Mode::Gitops).unwrap();
        let kustomization =
            String::from_utf8(files.write["manifests/kustomization.yaml"].clone()).unwrap();
        assert!(kustomization.ends_with(
            "kind: Kustomization\nresources:\n  - deploy.yaml\n  - kustomization-2.yaml\n"
        ));
    }

    #[test]
    fn commit_messages_have_a_subject_and_trailers() {
        let thread = Uuid::nil();
        let message = approval().commit_message(thread);
        assert_eq!(
            message,
            format!("deckhand: approve plan for thread {thread}\n\nScale checkout in shop to 3 replicas\n\nPlan-Hash: sha256:abc\nApproved-By: ana\nDeckhand-Thread: {thread}\n")
        );
        let completion = Completion {
            result: "# Done\n\ncheckout has 3 replicas".into(),
            backups: vec![Backup::new(
                "apps/v1/Deployment/shop/checkout",
                serde_json::json!({"spec":{"replicas":1}}),
            )],
        };
        assert!(completion
            .commit_message(thread)
            .starts_with(&format!("deckhand: complete thread {thread}\n\nDone\n")));
        let files = completion.files(thread).unwrap();
        assert!(files
            .write
            .contains_key("backup/apps-v1-deployment-shop-checkout.json"));
    }

    #[test]
    fn one_line_cuts_and_cleans() {
        assert_eq!(one_line("\n\n  a\tb  \nc"), "ab");
        let long = "x".repeat(200);
        let cut = one_line(&long);
        assert_eq!(cut.chars().count(), MAX_SUBJECT);
        assert!(cut.ends_with('…'));
    }
}
