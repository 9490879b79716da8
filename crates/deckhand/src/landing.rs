//! Landing threads in git: at approval the plan (request, plan, manifests) is committed
//! on the thread's branch `deckhand/thread-<id>` in every configured repository and
//! pushed; at completion the result and the prior states; when the person rates the
//! thread 100, a pull request (GitHub) or merge request (GitLab) is opened from it.
//!
//! Git is a record, not a gate: a repository that cannot be reached does not stop the
//! cluster work. Each outcome (or failure) is told in the thread as a system message.

use deckhand_git::{
    Approval, Backup, Completion, ForgeClient, GitConfig, Manifest, PullRequestSpec,
    SharedThreadRepository, ThreadRepository,
};
use deckhand_runtime::{Plan, ThreadId};

/// One repository threads land in, with its forge when pull requests are wanted.
#[derive(Debug, Clone)]
struct Target {
    repository: SharedThreadRepository,
    forge: Option<ForgeClient>,
    base_branch: String,
}

/// Every configured repository.
#[derive(Debug, Clone)]
pub struct Landing {
    targets: Vec<Target>,
    mode: deckhand_git::Mode,
}

/// What the plan was, for the approval commit.
#[derive(Debug, Clone)]
pub struct Approved<'a> {
    /// The plan approved.
    pub plan: &'a Plan,
    /// Who asked.
    pub requested_by: &'a str,
    /// Who approved.
    pub approved_by: &'a str,
    /// The cluster.
    pub cluster: &'a str,
    /// The manifests the plan applies, as (name, YAML).
    pub manifests: Vec<Manifest>,
}

impl Landing {
    /// Opens (cloning when needed) every repository of `config`; `Ok(None)` when none is
    /// configured. Blocking work runs on a blocking thread.
    ///
    /// # Errors
    /// The configuration is invalid, a token cannot be read, or a repository cannot be
    /// opened or cloned: one line naming the repository.
    pub async fn open(config: &GitConfig) -> Result<Option<Self>, String> {
        if config.repositories.is_empty() {
            return Ok(None);
        }
        config
            .validate()
            .map_err(|error| format!("[git]: {error}"))?;
        let mode = config.mode;
        let config = config.clone();
        let targets = tokio::task::spawn_blocking(move || -> Result<Vec<Target>, String> {
            let env = |name: &str| std::env::var(name).ok();
            config
                .repositories
                .iter()
                .map(|repository| {
                    let fail = |error: deckhand_git::Error| {
                        format!("git repository {}: {error}", repository.name)
                    };
                    let token = repository.resolve_token(env).map_err(fail)?;
                    let forge = repository.forge_client(token.clone()).map_err(fail)?;
                    let opened =
                        ThreadRepository::open(repository, &config.cache_dir, config.mode, token)
                            .map_err(fail)?;
                    Ok(Target {
                        repository: SharedThreadRepository::new(opened),
                        forge,
                        base_branch: repository.base_branch.clone(),
                    })
                })
                .collect()
        })
        .await
        .map_err(|error| format!("opening the git repositories: {error}"))??;
        Ok(Some(Self { targets, mode }))
    }

    /// Whether Argo CD / Flux apply the committed manifests (GitOps mode), not deckhand.
    pub fn leaves_applying_to_gitops(&self) -> bool {
        !self.mode.applies_changes()
    }

    /// Commits the approved plan on the thread's branch in every repository and pushes
    /// it. Returns one line per repository for the thread.
    pub async fn approved(&self, thread: ThreadId, approved: Approved<'_>) -> Vec<String> {
        let plan_json = serde_json::to_value(approved.plan).unwrap_or_default();
        let mut lines = Vec::new();
        for target in &self.targets {
            let record = Approval {
                title: String::new(),
                request: approved.plan.request.clone(),
                requested_by: Some(approved.requested_by.to_owned()),
                cluster: Some(approved.cluster.to_owned()),
                plan: plan_json.clone(),
                plan_hash: approved.plan.hash.clone(),
                approved_by: approved.approved_by.to_owned(),
                manifests: approved.manifests.clone(),
                backups: Vec::new(),
            };
            lines.push(
                match target
                    .repository
                    .record_approval(thread.as_uuid(), record)
                    .await
                {
                    Ok(recorded) => format!(
                        "Recorded the approved plan on branch {} of {} ({}).",
                        recorded.branch,
                        recorded.repository,
                        short(&recorded.commit)
                    ),
                    Err(error) => format!(
                        "Could not record the plan in git repository {}: {error}",
                        target.repository.name()
                    ),
                },
            );
        }
        lines
    }

    /// Commits the result and the prior states on the thread's branch and pushes it.
    pub async fn completed(
        &self,
        thread: ThreadId,
        result: &str,
        backups: &[Backup],
    ) -> Vec<String> {
        let mut lines = Vec::new();
        for target in &self.targets {
            let completion = Completion {
                result: result.to_owned(),
                backups: backups.to_vec(),
            };
            lines.push(
                match target
                    .repository
                    .record_completion(thread.as_uuid(), completion)
                    .await
                {
                    Ok(recorded) => format!(
                        "Recorded the result on branch {} of {} ({}).",
                        recorded.branch,
                        recorded.repository,
                        short(&recorded.commit)
                    ),
                    Err(error) => format!(
                        "Could not record the result in git repository {}: {error}",
                        target.repository.name()
                    ),
                },
            );
        }
        lines
    }

    /// Opens a pull (or merge) request from the thread's branch in every repository with
    /// a forge: the person rated the thread 100.
    pub async fn resolved(&self, thread: ThreadId, title: &str, summary: &str) -> Vec<String> {
        let mut lines = Vec::new();
        for target in &self.targets {
            let Some(forge) = &target.forge else {
                continue;
            };
            let spec =
                PullRequestSpec::for_thread(thread.as_uuid(), title, summary, &target.base_branch);
            lines.push(match forge.open_pull_request(&spec).await {
                Ok(request) => format!(
                    "{} {} #{} for {}: {}",
                    if request.created { "Opened" } else { "Found" },
                    match forge.forge().kind() {
                        "gitlab" => "merge request",
                        _ => "pull request",
                    },
                    request.number,
                    target.repository.name(),
                    request.url
                ),
                Err(error) => format!(
                    "Could not open a pull request in {}: {error}",
                    target.repository.name()
                ),
            });
        }
        lines
    }
}

fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}
