//! The `[git]` configuration: the repositories threads are written to, the mode, the
//! forge of each repository and where its token comes from.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Where deckhand keeps its clones when a repository names no `path`.
pub const DEFAULT_CACHE_DIR: &str = "data/git";
/// The base branch threads branch from when none is configured.
pub const DEFAULT_BASE_BRANCH: &str = "main";
/// The remote's name when none is configured.
pub const DEFAULT_REMOTE: &str = "origin";
/// GitHub's REST API.
pub const DEFAULT_GITHUB_API: &str = "https://api.github.com";
/// GitLab.com's REST API (v4).
pub const DEFAULT_GITLAB_API: &str = "https://gitlab.com/api/v4";

/// The `[git]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitConfig {
    /// Whether deckhand applies the branch's manifests itself or leaves that to a GitOps
    /// controller.
    #[serde(default)]
    pub mode: Mode,
    /// Where clones live for repositories that name no `path`: `<cache_dir>/<name>`.
    #[serde(default = "default_cache_dir")]
    pub cache_dir: PathBuf,
    /// The repositories every approved thread is written to.
    #[serde(default)]
    pub repositories: Vec<RepositoryConfig>,
}

impl Default for GitConfig {
    fn default() -> Self {
        Self {
            mode: Mode::default(),
            cache_dir: default_cache_dir(),
            repositories: Vec::new(),
        }
    }
}

/// How the changes of an approved plan reach the cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// deckhand applies the manifests it reads back from the thread's branch (through the
    /// policy gate, with the person's approval).
    #[default]
    Apply,
    /// deckhand only commits; Argo CD or Flux syncs the manifests. The thread's
    /// `manifests/` folder also gets a `kustomization.yaml` so either can point at it.
    Gitops,
}

impl Mode {
    /// Whether deckhand itself applies the manifests.
    pub fn applies_changes(self) -> bool {
        matches!(self, Mode::Apply)
    }
}

/// One repository threads are written to (`[[git.repositories]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// A short name: used in logs, errors and as the clone's folder under `cache_dir`.
    pub name: String,
    /// The remote's URL (`https://…`, or a path / `file://` URL for a local repository).
    /// May be left out when `path` is an existing clone whose remote is already set.
    #[serde(default)]
    pub url: Option<String>,
    /// deckhand's clone. Created (bare) when missing; defaults to `<cache_dir>/<name>`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The branch threads branch from and pull requests target.
    #[serde(default = "default_base_branch")]
    pub base_branch: String,
    /// The remote's name in the clone.
    #[serde(default = "default_remote")]
    pub remote: String,
    /// The author and committer of deckhand's commits.
    pub author: Author,
    /// Where the token for pushing over HTTPS and for the forge API comes from.
    #[serde(default)]
    pub token: Option<TokenSource>,
    /// The forge pull requests are opened on; without one, threads are only pushed.
    #[serde(default)]
    pub forge: Option<ForgeConfig>,
}

impl RepositoryConfig {
    /// The clone's folder: `path`, or `<cache_dir>/<name>`.
    pub fn clone_path(&self, cache_dir: &std::path::Path) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| cache_dir.join(&self.name))
    }
}

impl RepositoryConfig {
    /// The token, when one is configured (see [`TokenSource::resolve`]).
    pub fn resolve_token(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<crate::Token>> {
        self.token
            .as_ref()
            .map(|source| source.resolve(&self.name, env))
            .transpose()
    }

    /// A client for this repository's forge, when one is configured; `None` without a
    /// forge. A forge without a token is a configuration error.
    pub fn forge_client(&self, token: Option<crate::Token>) -> Result<Option<crate::ForgeClient>> {
        let Some(forge) = &self.forge else {
            return Ok(None);
        };
        let Some(token) = token else {
            return Err(Error::Config {
                problems: vec![format!(
                    "repository `{}`: a forge is configured but no token",
                    self.name
                )],
            });
        };
        crate::ForgeClient::new(forge.clone(), token).map(Some)
    }
}

/// The author and committer of deckhand's commits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Author {
    /// e.g. `deckhand`.
    pub name: String,
    /// e.g. `deckhand@example.com`.
    pub email: String,
}

/// Where a token comes from. Read when it is needed, so a rotated Secret is picked up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum TokenSource {
    /// An environment variable's name: `token = { env = "GITHUB_TOKEN" }`.
    Env(String),
    /// A file, such as a Secret mounted into the pod:
    /// `token = { file = "/var/run/secrets/deckhand-git/token" }`. Surrounding
    /// whitespace is trimmed.
    File(PathBuf),
}

/// The forge pull or merge requests are opened on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ForgeConfig {
    /// GitHub or GitHub Enterprise Server.
    Github {
        /// `https://api.github.com`, or `https://HOST/api/v3` for GitHub Enterprise.
        #[serde(default = "default_github_api")]
        api_url: String,
        /// The repository's owner (user or organisation).
        owner: String,
        /// The repository's name.
        repo: String,
    },
    /// GitLab.com or a self-managed GitLab.
    Gitlab {
        /// `https://gitlab.com/api/v4`, or `https://HOST/api/v4`.
        #[serde(default = "default_gitlab_api")]
        api_url: String,
        /// The project: its numeric id or its full path (`group/subgroup/project`).
        project: String,
    },
}

impl ForgeConfig {
    /// `github` or `gitlab`.
    pub fn kind(&self) -> &'static str {
        match self {
            ForgeConfig::Github { .. } => "github",
            ForgeConfig::Gitlab { .. } => "gitlab",
        }
    }

    /// The API base URL, without a trailing slash.
    pub fn api_url(&self) -> &str {
        match self {
            ForgeConfig::Github { api_url, .. } | ForgeConfig::Gitlab { api_url, .. } => {
                api_url.trim_end_matches('/')
            }
        }
    }

    /// The user name to pair with the token when pushing over HTTPS: GitHub takes any
    /// name with a token (`x-access-token` is the documented one), GitLab wants `oauth2`
    /// for OAuth tokens and accepts it for personal/project access tokens.
    pub fn https_user(&self) -> &'static str {
        match self {
            ForgeConfig::Github { .. } => "x-access-token",
            ForgeConfig::Gitlab { .. } => "oauth2",
        }
    }
}

impl GitConfig {
    /// Checks everything that can be checked without touching the network or disk and
    /// reports every problem at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        let mut names = std::collections::BTreeSet::new();
        for (index, repo) in self.repositories.iter().enumerate() {
            let at = format!("git.repositories[{index}]");
            if repo.name.trim().is_empty() {
                problems.push(format!("{at}.name is empty"));
            } else if !repo
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                || repo.name.starts_with('.')
            {
                // The name becomes a folder under cache_dir.
                problems.push(format!(
                    "{at}.name `{}` may hold only letters, digits, `-`, `_` and `.` and may not start with `.`",
                    repo.name
                ));
            } else if !names.insert(repo.name.as_str()) {
                problems.push(format!("{at}.name `{}` is used twice", repo.name));
            }
            if repo.url.as_deref().is_some_and(|u| u.trim().is_empty()) {
                problems.push(format!("{at}.url is empty"));
            }
            if repo.url.is_none() && repo.path.is_none() {
                problems.push(format!(
                    "{at} needs a `url` (the remote) or a `path` (an existing clone)"
                ));
            }
            if !git2::Reference::is_valid_name(&format!("refs/heads/{}", repo.base_branch)) {
                problems.push(format!(
                    "{at}.base_branch `{}` is not a valid branch name",
                    repo.base_branch
                ));
            }
            if !git2::Remote::is_valid_name(&repo.remote) {
                problems.push(format!(
                    "{at}.remote `{}` is not a valid remote name",
                    repo.remote
                ));
            }
            if repo.author.name.trim().is_empty() {
                problems.push(format!("{at}.author.name is empty"));
            }
            if !repo.author.email.contains('@') {
                problems.push(format!(
                    "{at}.author.email `{}` is not an email address",
                    repo.author.email
                ));
            }
            match &repo.token {
                Some(TokenSource::Env(var)) if var.trim().is_empty() => {
                    problems.push(format!("{at}.token.env is empty"));
                }
                Some(TokenSource::File(path)) if path.as_os_str().is_empty() => {
                    problems.push(format!("{at}.token.file is empty"));
                }
                _ => {}
            }
            if let Some(forge) = &repo.forge {
                let api = forge.api_url();
                if !(api.starts_with("https://") || api.starts_with("http://")) {
                    problems.push(format!(
                        "{at}.forge.api_url `{api}` must start with https:// (or http://)"
                    ));
                }
                match forge {
                    ForgeConfig::Github { owner, repo, .. } => {
                        for (key, value) in [("owner", owner), ("repo", repo)] {
                            if value.trim().is_empty() || value.contains('/') {
                                problems.push(format!(
                                    "{at}.forge.{key} `{value}` must be one non-empty path segment"
                                ));
                            }
                        }
                    }
                    ForgeConfig::Gitlab { project, .. } => {
                        if project.trim().is_empty() {
                            problems.push(format!("{at}.forge.project is empty"));
                        }
                    }
                }
                if repo.token.is_none() {
                    problems.push(format!(
                        "{at}.forge needs a `token` to open {} requests",
                        match forge {
                            ForgeConfig::Github { .. } => "pull",
                            ForgeConfig::Gitlab { .. } => "merge",
                        }
                    ));
                }
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config { problems })
        }
    }

    /// The repository with this name.
    pub fn repository(&self, name: &str) -> Option<&RepositoryConfig> {
        self.repositories.iter().find(|r| r.name == name)
    }
}

fn default_cache_dir() -> PathBuf {
    PathBuf::from(DEFAULT_CACHE_DIR)
}
fn default_base_branch() -> String {
    DEFAULT_BASE_BRANCH.to_owned()
}
fn default_remote() -> String {
    DEFAULT_REMOTE.to_owned()
}
fn default_github_api() -> String {
    DEFAULT_GITHUB_API.to_owned()
}
fn default_gitlab_api() -> String {
    DEFAULT_GITLAB_API.to_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> std::result::Result<GitConfig, serde_json::Error> {
        serde_json::from_str(text)
    }

    #[test]
    fn defaults_fill_in_and_a_full_config_validates() {
        let config = parse(
            r#"{"mode":"gitops","repositories":[
                {"name":"platform","url":"https://github.com/acme/platform.git",
                 "author":{"name":"deckhand","email":"deckhand@acme.example"},
                 "token":{"env":"GITHUB_TOKEN"},
                 "forge":{"kind":"github","owner":"acme","repo":"platform"}},
                {"name":"infra","path":"/srv/infra",
                 "author":{"name":"deckhand","email":"deckhand@acme.example"},
                 "token":{"file":"/var/run/secrets/deckhand-git/token"},
                 "forge":{"kind":"gitlab","project":"acme/infra"}}]}"#,
        )
        .unwrap();
        config.validate().unwrap();
        assert_eq!(config.mode, Mode::Gitops);
        assert!(!config.mode.applies_changes());
        assert_eq!(config.cache_dir, PathBuf::from(DEFAULT_CACHE_DIR));
        let platform = config.repository("platform").unwrap();
        assert_eq!(platform.base_branch, "main");
        assert_eq!(platform.remote, "origin");
        assert_eq!(
            platform.clone_path(&config.cache_dir),
            PathBuf::from("data/git/platform")
        );
        assert_eq!(
            platform.forge.as_ref().unwrap().api_url(),
            DEFAULT_GITHUB_API
        );
        let infra = config.repository("infra").unwrap();
        assert_eq!(infra.forge.as_ref().unwrap().api_url(), DEFAULT_GITLAB_API);
        assert_eq!(
            infra.token,
            Some(TokenSource::File(
                "/var/run/secrets/deckhand-git/token".into()
            ))
        );
    }

    #[test]
    fn tokens_and_forge_clients_come_from_the_repository_config() {
        let config = parse(
            r#"{"repositories":[{"name":"platform","url":"u",
                "author":{"name":"n","email":"e@x"},"token":{"env":"GH"},
                "forge":{"kind":"github","owner":"acme","repo":"platform"}}]}"#,
        )
        .unwrap();
        let repo = &config.repositories[0];
        let token = repo
            .resolve_token(|name| (name == "GH").then(|| "ghp_1".to_owned()))
            .unwrap();
        assert_eq!(token.as_ref().map(|t| t.expose()), Some("ghp_1"));
        let client = repo.forge_client(token).unwrap().unwrap();
        assert_eq!(client.forge().kind(), "github");
        assert!(matches!(repo.forge_client(None), Err(Error::Config { .. })));
        assert!(matches!(
            repo.resolve_token(|_| None),
            Err(Error::TokenEnvMissing { .. })
        ));
        let mut plain = repo.clone();
        plain.forge = None;
        plain.token = None;
        assert!(plain.resolve_token(|_| None).unwrap().is_none());
        assert!(plain.forge_client(None).unwrap().is_none());
    }

    /// The example in docs/GIT.md is a real, valid configuration.
    #[test]
    fn the_documented_example_parses_and_validates() {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct File {
            git: GitConfig,
        }
        let doc = include_str!("../../../docs/GIT.md");
        let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
        let end = start + doc[start..].find("```").unwrap();
        let file: File = toml::from_str(&doc[start..end]).unwrap();
        file.git.validate().unwrap();
        assert_eq!(file.git.repositories.len(), 2);
        assert_eq!(
            file.git.repositories[1].forge,
            Some(ForgeConfig::Gitlab {
                api_url: DEFAULT_GITLAB_API.into(),
                project: "acme/infra".into()
            })
        );
    }

    #[test]
    fn unknown_keys_are_rejected_everywhere() {
        for text in [
            r#"{"modes":"apply"}"#,
            r#"{"repositories":[{"name":"a","url":"u","author":{"name":"n","email":"e@x"},"branch":"main"}]}"#,
            r#"{"repositories":[{"name":"a","url":"u","author":{"name":"n","email":"e@x","x":1}}]}"#,
            r#"{"repositories":[{"name":"a","url":"u","author":{"name":"n","email":"e@x"},"token":{"vault":"x"}}]}"#,
            r#"{"repositories":[{"name":"a","url":"u","author":{"name":"n","email":"e@x"},"forge":{"kind":"github","owner":"o","repo":"r","org":"x"}}]}"#,
            r#"{"repositories":[{"name":"a","url":"u","author":{"name":"n","email":"e@x"},"forge":{"kind":"bitbucket"}}]}"#,
            r#"{"mode":"sync"}"#,
        ] {
            assert!(parse(text).is_err(), "accepted: {text}");
        }
    }

    #[test]
    fn validate_reports_every_problem() {
        let config = parse(
            r#"{"repositories":[
                {"name":"../x","base_branch":"bad..name","remote":"a b",
                 "author":{"name":" ","email":"nobody"},
                 "forge":{"kind":"github","api_url":"ftp://x","owner":"","repo":"a/b"}},
                {"name":"dup","url":"u","author":{"name":"n","email":"e@x"}},
                {"name":"dup","url":"u","author":{"name":"n","email":"e@x"},"token":{"env":""}}]}"#,
        )
        .unwrap();
        let Err(Error::Config { problems }) = config.validate() else {
            panic!("validated");
        };
        let all = problems.join("\n");
        for needle in [
            "git.repositories[0].name `../x`",
            "needs a `url`",
            "base_branch `bad..name`",
            "remote `a b`",
            "author.name is empty",
            "author.email `nobody`",
            "api_url `ftp://x`",
            "forge.owner ``",
            "forge.repo `a/b`",
            "forge needs a `token`",
            "git.repositories[2].name `dup` is used twice",
            "git.repositories[2].token.env is empty",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in:\n{all}");
        }
        assert_eq!(problems.len(), 12, "{all}");
    }
}
