//! Real repositories for the tests: a bare "remote" made with libgit2 in a temp dir,
//! seeded with one commit on `main`, and readers for what ended up in it.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use deckhand_git::{Author, Mode, RepositoryConfig, ThreadRepository, Token};
use git2::{Commit, ObjectType, Oid, Repository, Signature, TreeWalkMode, TreeWalkResult};

/// A bare repository standing in for GitHub, with `main` holding a README.
pub struct Remote {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
    pub repo: Repository,
}

impl Remote {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.git");
        let repo = Repository::init_bare(&path).unwrap();
        let seed = Signature::now("Seed", "seed@example.com").unwrap();
        {
            let blob = repo.blob(b"# platform\n").unwrap();
            let mut builder = repo.treebuilder(None).unwrap();
            builder.insert("README.md", blob, 0o100_644).unwrap();
            let tree = repo.find_tree(builder.write().unwrap()).unwrap();
            repo.commit(Some("refs/heads/main"), &seed, &seed, "initial", &tree, &[])
                .unwrap();
            repo.set_head("refs/heads/main").unwrap();
        }
        Self { dir, path, repo }
    }

    /// An empty bare repository (no branch at all).
    pub fn empty() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.git");
        let repo = Repository::init_bare(&path).unwrap();
        Self { dir, path, repo }
    }

    pub fn url(&self) -> String {
        self.path.to_str().unwrap().to_owned()
    }

    pub fn branch(&self, name: &str) -> Option<Commit<'_>> {
        self.repo
            .find_reference(&format!("refs/heads/{name}"))
            .ok()
            .map(|r| r.peel_to_commit().unwrap())
    }

    pub fn main(&self) -> Commit<'_> {
        self.branch("main").unwrap()
    }

    /// Commits from `head` back to (not including) `main`, newest first.
    pub fn commits_since_main(&self, head: Oid) -> Vec<Commit<'_>> {
        let mut walk = self.repo.revwalk().unwrap();
        walk.push(head).unwrap();
        walk.hide(self.main().id()).unwrap();
        walk.map(|oid| self.repo.find_commit(oid.unwrap()).unwrap())
            .collect()
    }

    /// Every file in `commit`: path → content.
    pub fn files(&self, commit: &Commit<'_>) -> BTreeMap<String, String> {
        let mut files = BTreeMap::new();
        commit
            .tree()
            .unwrap()
            .walk(TreeWalkMode::PreOrder, |dir, entry| {
                if entry.kind() == Some(ObjectType::Blob) {
                    let blob = self.repo.find_blob(entry.id()).unwrap();
                    files.insert(
                        format!("{dir}{}", entry.name().unwrap()),
                        String::from_utf8(blob.content().to_vec()).unwrap(),
                    );
                }
                TreeWalkResult::Ok
            })
            .unwrap();
        files
    }

    /// A person's commit straight onto a branch of the remote, adding one file.
    pub fn commit_file(&self, branch: &str, path: &str, content: &str) -> Oid {
        self.commit_entry(branch, path, content, 0o100_644)
    }

    /// Like `commit_file`, with the entry's mode (`0o120_000` for a symlink).
    pub fn commit_entry(&self, branch: &str, path: &str, content: &str, mode: u32) -> Oid {
        let parent = self.branch(branch).unwrap();
        let mut index = git2::Index::new().unwrap();
        index.read_tree(&parent.tree().unwrap()).unwrap();
        let blob = self.repo.blob(content.as_bytes()).unwrap();
        index
            .add(&git2::IndexEntry {
                ctime: git2::IndexTime::new(0, 0),
                mtime: git2::IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode,
                uid: 0,
                gid: 0,
                file_size: content.len() as u32,
                id: blob,
                flags: path.len() as u16,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            })
            .unwrap();
        let tree = self
            .repo
            .find_tree(index.write_tree_to(&self.repo).unwrap())
            .unwrap();
        let person = Signature::now("Person", "person@example.com").unwrap();
        self.repo
            .commit(
                Some(&format!("refs/heads/{branch}")),
                &person,
                &person,
                "a person's edit",
                &tree,
                &[&parent],
            )
            .unwrap()
    }
}

pub fn author() -> Author {
    Author {
        name: "deckhand".into(),
        email: "deckhand@acme.example".into(),
    }
}

pub fn repository_config(url: &str, clone: &Path) -> RepositoryConfig {
    RepositoryConfig {
        name: "platform".into(),
        url: Some(url.to_owned()),
        path: Some(clone.to_owned()),
        base_branch: "main".into(),
        remote: "origin".into(),
        author: author(),
        token: None,
        forge: None,
    }
}

/// deckhand's clone of `remote` at `<remote dir>/<clone_name>`.
pub fn open(remote: &Remote, clone_name: &str, mode: Mode) -> ThreadRepository {
    open_with(remote, clone_name, mode, None)
}

pub fn open_with(
    remote: &Remote,
    clone_name: &str,
    mode: Mode,
    token: Option<Token>,
) -> ThreadRepository {
    let clone = remote.dir.path().join(clone_name);
    ThreadRepository::open(
        &repository_config(&remote.url(), &clone),
        remote.dir.path(),
        mode,
        token,
    )
    .unwrap()
}
