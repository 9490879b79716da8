//! [`ThreadRepository`]: deckhand's clone of one configured repository, and the
//! approval and completion commits on each thread's branch.
//!
//! The clone is bare: deckhand never checks anything out; it builds trees from blobs in
//! memory, so nothing on disk can be half-written and no work tree can drift. Every step
//! fetches first, builds on whichever of the local and remote branch is ahead, commits
//! only when the folder's content changed, and pushes without force.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::path::Path;

use git2::{
    AutotagOption, Commit, Cred, CredentialType, ErrorCode, FetchOptions, FetchPrune, ObjectType,
    Oid, ProxyOptions, PushOptions, RemoteCallbacks, Repository, Signature, Tree, TreeWalkMode,
    TreeWalkResult,
};
use uuid::Uuid;

use crate::config::{Author, Mode, RepositoryConfig};
use crate::error::{Error, Result};
use crate::names::{branch_name, thread_folder, KUSTOMIZATION_FILE};
use crate::record::{Approval, Completion, FolderUpdate, Manifest, MANIFESTS_DIR};
use crate::token::Token;

/// Git's mode for a regular file.
const FILE_MODE: i32 = 0o100_644;
/// Git's mode for an executable file.
const EXECUTABLE_MODE: i32 = 0o100_755;
/// Git's mode for a directory.
const TREE_MODE: i32 = 0o040_000;
/// Pushes are tried this many times; between tries the branch is fetched again, so a
/// commit someone else pushed meanwhile becomes the parent instead of being overwritten.
const PUSH_ATTEMPTS: usize = 2;

/// What a step left on the thread's branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// The repository's configured name.
    pub repository: String,
    /// `deckhand/thread-<id>`.
    pub branch: String,
    /// The branch's head after the step (hex).
    pub commit: String,
    /// False when the folder already held exactly this content: nothing was committed.
    pub new_commit: bool,
}

/// deckhand's clone of one repository. Blocking (libgit2): call it from
/// `tokio::task::spawn_blocking`. Not `Sync`: one step at a time per value.
pub struct ThreadRepository {
    name: String,
    repo: Repository,
    remote: String,
    base_branch: String,
    author: Author,
    mode: Mode,
    credentials: Option<(String, Token)>,
}

impl std::fmt::Debug for ThreadRepository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadRepository")
            .field("name", &self.name)
            .field("path", &self.repo.path())
            .field("remote", &self.remote)
            .field("base_branch", &self.base_branch)
            .field("mode", &self.mode)
            .field("has_token", &self.credentials.is_some())
            .finish()
    }
}

impl ThreadRepository {
    /// Opens deckhand's clone of `config` (at `path`, or `<cache_dir>/<name>`), creating
    /// it as a bare repository when missing, and makes its remote point at `url` when
    /// one is configured. `token` is sent as the password when the remote asks for one
    /// (HTTPS), with the forge's conventional user name.
    pub fn open(
        config: &RepositoryConfig,
        cache_dir: &Path,
        mode: Mode,
        token: Option<Token>,
    ) -> Result<Self> {
        let name = config.name.as_str();
        let path = config.clone_path(cache_dir);
        let repo = open_or_init(name, &path)?;
        match repo.find_remote(&config.remote) {
            Ok(remote) => {
                if let Some(url) = &config.url {
                    if remote.url().ok() != Some(url.as_str()) {
                        repo.remote_set_url(&config.remote, url).map_err(Error::git(
                            name,
                            format!("pointing remote `{}` at the configured url", config.remote),
                        ))?;
                    }
                }
            }
            Err(e) if e.code() == ErrorCode::NotFound => match &config.url {
                Some(url) => {
                    repo.remote(&config.remote, url).map_err(Error::git(
                        name,
                        format!("adding remote `{}`", config.remote),
                    ))?;
                }
                None => {
                    return Err(Error::Config {
                        problems: vec![format!(
                            "repository `{name}`: the clone at `{}` has no remote `{}` and no `url` is configured",
                            path.display(),
                            config.remote
                        )],
                    })
                }
            },
            Err(e) => {
                return Err(Error::git(name, format!("reading remote `{}`", config.remote))(e))
            }
        }
        let user = config
            .forge
            .as_ref()
            .map_or("deckhand", |forge| forge.https_user());
        Ok(Self {
            name: config.name.clone(),
            repo,
            remote: config.remote.clone(),
            base_branch: config.base_branch.clone(),
            author: config.author.clone(),
            mode,
            credentials: token.map(|t| (user.to_owned(), t)),
        })
    }

    /// The repository's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The base branch threads branch from and pull requests target.
    pub fn base_branch(&self) -> &str {
        &self.base_branch
    }

    /// The configured mode.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Writes the approved plan to `threads/<id>/` on `deckhand/thread-<id>` (creating
    /// the branch from the base branch the first time) and pushes it. Running it again
    /// with the same approval commits nothing.
    pub fn record_approval(&self, thread: Uuid, approval: &Approval) -> Result<Recorded> {
        let update = approval.files(thread, self.mode)?;
        let span = tracing::info_span!("git_record", repository = %self.name, thread_id = %thread, step = "approval");
        let _enter = span.enter();
        self.record(thread, &update, &approval.commit_message(thread), false)
    }

    /// Adds `result.md` and the prior state to the thread's folder and pushes. The
    /// branch must exist (it is created at approval). Running it again commits nothing.
    pub fn record_completion(&self, thread: Uuid, completion: &Completion) -> Result<Recorded> {
        let update = completion.files(thread)?;
        let span = tracing::info_span!("git_record", repository = %self.name, thread_id = %thread, step = "completion");
        let _enter = span.enter();
        self.record(thread, &update, &completion.commit_message(thread), true)
    }

    /// The manifests on the thread's branch, sorted by file name: what apply mode
    /// applies. The branch is fetched first and read as the remote has it (or as this
    /// clone has it when a push of it failed and the clone is ahead). GitOps mode's
    /// `kustomization.yaml` is not a manifest and is left out.
    pub fn read_manifests(&self, thread: Uuid) -> Result<Vec<Manifest>> {
        let branch = branch_name(thread);
        self.fetch(&branch)?;
        let head = self
            .thread_head(&branch)?
            .ok_or_else(|| Error::ThreadBranchMissing {
                repository: self.name.clone(),
                branch: branch.clone(),
            })?;
        let tree = head.tree().map_err(Error::git(
            &self.name,
            format!("reading the tree of `{branch}`"),
        ))?;
        let dir = format!("{}/{MANIFESTS_DIR}", thread_folder(thread));
        let entry = match tree.get_path(Path::new(&dir)) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::git(&self.name, format!("looking up `{dir}`"))(e)),
        };
        let bad = |path: String, problem: &str| Error::BadFile {
            repository: self.name.clone(),
            branch: branch.clone(),
            path,
            problem: problem.to_owned(),
        };
        let dir_tree = self
            .repo
            .find_tree(entry.id())
            .map_err(|_| bad(dir.clone(), "is not a folder"))?;
        let mut manifests = Vec::new();
        for entry in dir_tree.iter() {
            let Ok(name) = entry.name() else { continue };
            if !name.ends_with(".yaml") || name == KUSTOMIZATION_FILE {
                continue;
            }
            let path = format!("{dir}/{name}");
            // deckhand never writes such names; a remote serving them is not trusted.
            if name.starts_with('.') || name.contains(['/', '\\']) {
                return Err(bad(path, "has a name deckhand does not write"));
            }
            // Regular files only (an executable bit is harmless); never a symlink.
            if entry.kind() != Some(ObjectType::Blob)
                || !matches!(entry.filemode(), FILE_MODE | EXECUTABLE_MODE)
            {
                return Err(bad(path, "is not a regular file"));
            }
            let blob = self
                .repo
                .find_blob(entry.id())
                .map_err(Error::git(&self.name, format!("reading `{path}`")))?;
            let yaml = std::str::from_utf8(blob.content())
                .map_err(|_| bad(path.clone(), "is not UTF-8"))?;
            manifests.push(Manifest::new(name, yaml));
        }
        Ok(manifests)
    }

    fn record(
        &self,
        thread: Uuid,
        update: &FolderUpdate,
        message: &str,
        branch_must_exist: bool,
    ) -> Result<Recorded> {
        let branch = branch_name(thread);
        let folder = thread_folder(thread);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.fetch(&branch)?;
            let parent = match self.thread_head(&branch)? {
                Some(head) => head,
                None if branch_must_exist => {
                    return Err(Error::ThreadBranchMissing {
                        repository: self.name.clone(),
                        branch,
                    })
                }
                None => self.base_head()?,
            };
            let parent_tree = parent
                .tree()
                .map_err(Error::git(&self.name, "reading the parent commit's tree"))?;
            let tree = self.updated_tree(&parent_tree, &folder, update)?;
            let (commit, new_commit) = if tree == parent_tree.id() {
                (parent.id(), false)
            } else {
                (self.commit(&parent, tree, message)?, true)
            };
            self.repo
                .reference(
                    &format!("refs/heads/{branch}"),
                    commit,
                    true,
                    "deckhand: thread step",
                )
                .map_err(Error::git(&self.name, format!("updating `{branch}`")))?;
            match self.push(&branch) {
                Ok(()) => {
                    tracing::info!(%commit, new_commit, "thread branch pushed");
                    return Ok(Recorded {
                        repository: self.name.clone(),
                        branch,
                        commit: commit.to_string(),
                        new_commit,
                    });
                }
                Err(Error::PushRejected { message, .. }) if attempt < PUSH_ATTEMPTS => {
                    tracing::warn!(%message, "push rejected; fetching and trying again");
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn commit(&self, parent: &Commit<'_>, tree: Oid, message: &str) -> Result<Oid> {
        let signature = Signature::now(&self.author.name, &self.author.email)
            .map_err(Error::git(&self.name, "making the author signature"))?;
        let tree = self
            .repo
            .find_tree(tree)
            .map_err(Error::git(&self.name, "finding the new tree"))?;
        self.repo
            .commit(None, &signature, &signature, message, &tree, &[parent])
            .map_err(Error::git(&self.name, "committing"))
    }

    /// The parent tree with `folder` replaced by its updated content.
    fn updated_tree(&self, root: &Tree<'_>, folder: &str, update: &FolderUpdate) -> Result<Oid> {
        let mut files = self.read_folder(root, folder)?;
        for dir in &update.replace_dirs {
            let prefix = format!("{dir}/");
            files.retain(|path, _| !path.starts_with(&prefix));
        }
        for (path, content) in &update.write {
            let blob = self
                .repo
                .blob(content)
                .map_err(Error::git(&self.name, format!("writing `{folder}/{path}`")))?;
            files.insert(path.clone(), (blob, FILE_MODE));
        }
        let folder_tree = self.write_folder(&files)?;
        let components: Vec<&str> = folder.split('/').collect();
        match self.replace_subtree(Some(root), &components, folder_tree)? {
            Some(oid) => Ok(oid),
            None => self
                .repo
                .treebuilder(None)
                .and_then(|b| b.write())
                .map_err(Error::git(&self.name, "writing an empty tree")),
        }
    }

    /// Every file under `folder` in `root`: relative path → (blob, mode). Files people
    /// added to the folder are kept as they are.
    fn read_folder(&self, root: &Tree<'_>, folder: &str) -> Result<BTreeMap<String, (Oid, i32)>> {
        let mut files = BTreeMap::new();
        let entry = match root.get_path(Path::new(folder)) {
            Ok(entry) => entry,
            Err(e) if e.code() == ErrorCode::NotFound => return Ok(files),
            Err(e) => return Err(Error::git(&self.name, format!("looking up `{folder}`"))(e)),
        };
        if entry.kind() != Some(ObjectType::Tree) {
            return Ok(files);
        }
        let tree = self
            .repo
            .find_tree(entry.id())
            .map_err(Error::git(&self.name, format!("reading `{folder}`")))?;
        tree.walk(TreeWalkMode::PreOrder, |dir, entry| {
            if entry.kind() == Some(ObjectType::Blob) {
                if let Ok(name) = entry.name() {
                    files.insert(format!("{dir}{name}"), (entry.id(), entry.filemode()));
                }
            }
            TreeWalkResult::Ok
        })
        .map_err(Error::git(&self.name, format!("walking `{folder}`")))?;
        Ok(files)
    }

    /// Writes nested trees for relative paths; `None` when there are no files.
    fn write_folder(&self, files: &BTreeMap<String, (Oid, i32)>) -> Result<Option<Oid>> {
        let mut here: BTreeMap<&str, (Oid, i32)> = BTreeMap::new();
        let mut below: BTreeMap<&str, BTreeMap<String, (Oid, i32)>> = BTreeMap::new();
        for (path, entry) in files {
            match path.split_once('/') {
                Some((dir, rest)) => {
                    below
                        .entry(dir)
                        .or_default()
                        .insert(rest.to_owned(), *entry);
                }
                None => {
                    here.insert(path.as_str(), *entry);
                }
            }
        }
        let err = |what: &str| Error::git(&self.name, format!("writing the tree ({what})"));
        let mut builder = self.repo.treebuilder(None).map_err(err("builder"))?;
        for (name, (oid, mode)) in here {
            builder.insert(name, oid, mode).map_err(err(name))?;
        }
        for (dir, sub) in below {
            if let Some(oid) = self.write_folder(&sub)? {
                builder.insert(dir, oid, TREE_MODE).map_err(err(dir))?;
            }
        }
        if builder.is_empty() {
            return Ok(None);
        }
        builder.write().map(Some).map_err(err("write"))
    }

    /// `tree` with the entry at `path` set to `new` (or removed when `None`); `None`
    /// when the result is empty.
    fn replace_subtree(
        &self,
        tree: Option<&Tree<'_>>,
        path: &[&str],
        new: Option<Oid>,
    ) -> Result<Option<Oid>> {
        let err = |what: &str| Error::git(&self.name, format!("writing the tree ({what})"));
        let Some((first, rest)) = path.split_first() else {
            return Ok(new);
        };
        let mut builder = self.repo.treebuilder(tree).map_err(err(first))?;
        let child = match tree.and_then(|t| t.get_name(first)) {
            Some(entry) if entry.kind() == Some(ObjectType::Tree) => {
                Some(self.repo.find_tree(entry.id()).map_err(err(first))?)
            }
            _ => None,
        };
        let replaced = if rest.is_empty() {
            new
        } else {
            self.replace_subtree(child.as_ref(), rest, new)?
        };
        match replaced {
            Some(oid) => {
                builder.insert(first, oid, TREE_MODE).map_err(err(first))?;
            }
            None => {
                if builder.get(first).map_err(err(first))?.is_some() {
                    builder.remove(first).map_err(err(first))?;
                }
            }
        }
        if builder.is_empty() {
            return Ok(None);
        }
        builder.write().map(Some).map_err(err("write"))
    }

    /// The head to build on: the local or the remote-tracking branch, whichever
    /// contains the other; the remote's when they diverged (what was only local is
    /// rewritten by the step being recorded anyway).
    fn thread_head(&self, branch: &str) -> Result<Option<Commit<'_>>> {
        let local = self.ref_commit(&format!("refs/heads/{branch}"))?;
        let remote = self.ref_commit(&format!("refs/remotes/{}/{branch}", self.remote))?;
        Ok(match (local, remote) {
            (None, None) => None,
            (Some(one), None) | (None, Some(one)) => Some(one),
            (Some(local), Some(remote)) => {
                let local_ahead = local.id() == remote.id()
                    || self
                        .repo
                        .graph_descendant_of(local.id(), remote.id())
                        .map_err(Error::git(
                            &self.name,
                            format!("comparing `{branch}` with the remote's"),
                        ))?;
                Some(if local_ahead { local } else { remote })
            }
        })
    }

    fn base_head(&self) -> Result<Commit<'_>> {
        self.ref_commit(&format!(
            "refs/remotes/{}/{}",
            self.remote, self.base_branch
        ))?
        .ok_or_else(|| Error::BaseBranchMissing {
            repository: self.name.clone(),
            remote: self.remote.clone(),
            branch: self.base_branch.clone(),
        })
    }

    fn ref_commit(&self, name: &str) -> Result<Option<Commit<'_>>> {
        match self.repo.find_reference(name) {
            Ok(reference) => reference
                .peel_to_commit()
                .map(Some)
                .map_err(Error::git(&self.name, format!("reading `{name}`"))),
            Err(e) if e.code() == ErrorCode::NotFound => Ok(None),
            Err(e) => Err(Error::git(&self.name, format!("reading `{name}`"))(e)),
        }
    }

    /// Fetches the base branch and the thread's branch into remote-tracking refs,
    /// dropping the tracking ref of a thread branch the remote no longer has.
    fn fetch(&self, branch: &str) -> Result<()> {
        let remote_name = &self.remote;
        let mut remote = self.repo.find_remote(remote_name).map_err(Error::git(
            &self.name,
            format!("finding remote `{remote_name}`"),
        ))?;
        let refspecs = [
            format!(
                "+refs/heads/{0}:refs/remotes/{remote_name}/{0}",
                self.base_branch
            ),
            format!("+refs/heads/{branch}:refs/remotes/{remote_name}/{branch}"),
        ];
        let tries = Cell::new(0);
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(self.callbacks(&tries))
            .proxy_options(auto_proxy())
            .prune(FetchPrune::On)
            .download_tags(AutotagOption::None);
        remote
            .fetch(&refspecs, Some(&mut options), Some("deckhand: fetch"))
            .map_err(Error::git(
                &self.name,
                format!(
                    "fetching `{}` and `{branch}` from `{remote_name}`",
                    self.base_branch
                ),
            ))
    }

    fn push(&self, branch: &str) -> Result<()> {
        let remote_name = &self.remote;
        let mut remote = self.repo.find_remote(remote_name).map_err(Error::git(
            &self.name,
            format!("finding remote `{remote_name}`"),
        ))?;
        let rejected: RefCell<Option<String>> = RefCell::new(None);
        let tries = Cell::new(0);
        let result = {
            let mut callbacks = self.callbacks(&tries);
            callbacks.push_update_reference(|reference, status| {
                if let Some(status) = status {
                    *rejected.borrow_mut() = Some(format!("{reference}: {status}"));
                }
                Ok(())
            });
            let mut options = PushOptions::new();
            options
                .remote_callbacks(callbacks)
                .proxy_options(auto_proxy());
            // No `+`: a branch someone else moved is never overwritten.
            remote.push(
                &[format!("refs/heads/{branch}:refs/heads/{branch}")],
                Some(&mut options),
            )
        };
        let rejection = |message: String| Error::PushRejected {
            repository: self.name.clone(),
            remote: remote_name.clone(),
            branch: branch.to_owned(),
            message,
        };
        match result {
            Ok(()) => match rejected.into_inner() {
                Some(message) => Err(rejection(message)),
                None => Ok(()),
            },
            Err(e) if e.code() == ErrorCode::NotFastForward => {
                Err(rejection(e.message().to_owned()))
            }
            Err(e) => Err(Error::git(
                &self.name,
                format!("pushing `{branch}` to `{remote_name}`"),
            )(e)),
        }
    }

    /// Callbacks that answer one credential request with the token, and fail the
    /// second: libgit2 asks again after a rejected credential, forever.
    fn callbacks<'a>(&'a self, tries: &'a Cell<u32>) -> RemoteCallbacks<'a> {
        let mut callbacks = RemoteCallbacks::new();
        callbacks.credentials(move |_url, _user_from_url, allowed| {
            tries.set(tries.get() + 1);
            if tries.get() > 1 {
                return Err(git2::Error::from_str(
                    "the remote rejected the configured token",
                ));
            }
            if !allowed.contains(CredentialType::USER_PASS_PLAINTEXT) {
                return Err(git2::Error::from_str(&format!(
                    "the remote asks for credentials deckhand cannot give ({allowed:?}); only HTTPS with a token is supported"
                )));
            }
            match &self.credentials {
                Some((user, token)) => Cred::userpass_plaintext(user, token.expose()),
                None => Err(git2::Error::from_str(
                    "the remote asks for credentials and no token is configured for this repository",
                )),
            }
        });
        callbacks
    }
}

/// Proxy settings from git's configuration and the usual `*_proxy` variables, as a pod
/// behind an egress proxy needs.
fn auto_proxy<'a>() -> ProxyOptions<'a> {
    let mut proxy = ProxyOptions::new();
    proxy.auto();
    proxy
}

fn open_or_init(name: &str, path: &Path) -> Result<Repository> {
    let is_empty_dir = path
        .read_dir()
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(false);
    if path.exists() && !is_empty_dir {
        return Repository::open(path).map_err(Error::git(
            name,
            format!("opening the clone at `{}`", path.display()),
        ));
    }
    std::fs::create_dir_all(path).map_err(|source| Error::Io {
        repository: name.to_owned(),
        operation: "creating the clone's folder".to_owned(),
        path: path.to_owned(),
        source,
    })?;
    Repository::init_bare(path).map_err(Error::git(
        name,
        format!("creating a bare clone at `{}`", path.display()),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A repository moves into `spawn_blocking` and behind a mutex.
    #[allow(dead_code)]
    fn is_send(repo: ThreadRepository) {
        fn send<T: Send>(_: T) {}
        send(repo);
    }
}
