//! deckhand's git side: every approved plan lands on a branch `deckhand/thread-<id>` in
//! the configured repositories, in a folder `threads/<id>/` holding `request.md`,
//! `plan.json`, `manifests/*.yaml`, `backup/*.json` (prior state) and, at completion,
//! `result.md`; committed at approval and at completion, pushed to the remote. When the
//! thread is rated 100, a pull request (GitHub) or merge request (GitLab) is opened from
//! the branch.
//!
//! This crate is a leaf: it takes plain data (a thread's uuid, texts, JSON, manifests as
//! name/YAML pairs) and knows nothing of the runtime or the store.
//!
//! ```no_run
//! use deckhand_git::{Approval, GitConfig, Manifest, ThreadRepository};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config: GitConfig = serde_json::from_str(r#"{"repositories":[{"name":"platform",
//!     "url":"https://github.com/acme/platform.git","token":{"env":"GITHUB_TOKEN"},
//!     "author":{"name":"deckhand","email":"deckhand@acme.example"}}]}"#)?;
//! config.validate()?;
//! let repo_config = &config.repositories[0];
//! let token = repo_config.resolve_token(|name| std::env::var(name).ok())?;
//! let forge = repo_config.forge_client(token.clone())?; // for the pull request at rating 100
//! let repo = ThreadRepository::open(repo_config, &config.cache_dir, config.mode, token)?;
//! let thread = uuid::Uuid::new_v4();
//! let recorded = repo.record_approval(thread, &Approval {
//!     title: "Scale checkout".into(),
//!     request: "Scale checkout in shop to 3 replicas".into(),
//!     requested_by: Some("ana".into()),
//!     cluster: Some("eks-prod".into()),
//!     plan: serde_json::json!({"steps": []}),
//!     plan_hash: "sha256:…".into(),
//!     approved_by: "ana".into(),
//!     manifests: vec![Manifest::new("checkout.yaml", "kind: Deployment\n")],
//!     backups: vec![],
//! })?;
//! println!("{} at {}", recorded.branch, recorded.commit);
//! # Ok(())
//! # }
//! ```
//!
//! # Layout
//! - [`config`]: the `[git]` table ([`GitConfig`], [`RepositoryConfig`], [`Mode`],
//!   [`ForgeConfig`], [`TokenSource`]).
//! - [`token`]: [`Token`], read from the environment or a mounted Secret, never printed.
//! - [`names`]: the branch and folder names, and file names made safe.
//! - [`record`]: what a step writes ([`Approval`], [`Completion`], [`Manifest`],
//!   [`Backup`]) and how it is rendered.
//! - [`repo`]: [`ThreadRepository`], the clone, commits, fetch and push (libgit2).
//! - [`shared`]: [`SharedThreadRepository`], the same from async code.
//! - [`forge`]: [`ForgeClient`], pull requests on GitHub and merge requests on GitLab.
//! - [`error`]: this crate's error type.

pub mod config;
pub mod error;
pub mod forge;
pub mod names;
pub mod record;
pub mod repo;
pub mod shared;
pub mod token;

pub use config::{Author, ForgeConfig, GitConfig, Mode, RepositoryConfig, TokenSource};
pub use error::{Error, Result};
pub use forge::{ForgeClient, PullRequest, PullRequestSpec};
pub use names::{branch_name, thread_folder};
pub use record::{Approval, Backup, Completion, Manifest};
pub use repo::{Recorded, ThreadRepository};
pub use shared::SharedThreadRepository;
pub use token::Token;
