//! Thread branches against real bare repositories as remotes: what is pushed, by whom,
//! how often, and what comes back.
#![allow(clippy::unwrap_used)]

mod support;

use deckhand_git::{
    branch_name, thread_folder, Approval, Backup, Completion, Error, Manifest, Mode,
    ThreadRepository,
};
use serde_json::json;
use support::{open, Remote};
use uuid::Uuid;

fn approval(manifests: Vec<Manifest>) -> Approval {
    Approval {
        title: "Scale checkout in shop".into(),
        request: "Scale checkout in shop to 3 replicas for the sale.".into(),
        requested_by: Some("ana".into()),
        cluster: Some("eks-prod".into()),
        plan: json!({"goal": "scale checkout", "steps": [{"id": "scale", "tool": "kube_scale", "input": {"replicas": 3}}]}),
        plan_hash: "sha256:5e1f".into(),
        approved_by: "ana".into(),
        manifests,
        backups: vec![],
    }
}

fn deployment() -> Manifest {
    Manifest::new(
        "checkout-deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: checkout\n  namespace: shop\nspec:\n  replicas: 3\n",
    )
}

fn completion() -> Completion {
    Completion {
        result: "# Scaled\n\ncheckout runs 3 replicas.".into(),
        backups: vec![Backup::new(
            "apps/v1 Deployment shop/checkout",
            json!({"kind": "Deployment", "spec": {"replicas": 1}}),
        )],
    }
}

#[test]
fn approval_pushes_a_branch_with_the_thread_folder() {
    let remote = Remote::new();
    let repo = open(&remote, "clone", Mode::Apply);
    let thread = Uuid::new_v4();
    let recorded = repo
        .record_approval(thread, &approval(vec![deployment()]))
        .unwrap();
    assert!(recorded.new_commit);
    assert_eq!(recorded.branch, format!("deckhand/thread-{thread}"));

    let head = remote.branch(&recorded.branch).expect("branch pushed");
    assert_eq!(head.id().to_string(), recorded.commit);
    assert_eq!(head.parent_ids().collect::<Vec<_>>(), [remote.main().id()]);
    assert_eq!(head.author().name().ok(), Some("deckhand"));
    assert_eq!(head.author().email().ok(), Some("deckhand@acme.example"));
    assert_eq!(head.committer().email().ok(), Some("deckhand@acme.example"));
    let message = head.message().unwrap();
    assert!(
        message.starts_with(&format!(
            "deckhand: approve plan for thread {thread}\n\nScale checkout in shop\n"
        )),
        "{message}"
    );
    assert!(message.contains("Plan-Hash: sha256:5e1f\nApproved-By: ana\n"));

    let files = remote.files(&head);
    let folder = thread_folder(thread);
    let paths: Vec<&str> = files.keys().map(String::as_str).collect();
    assert_eq!(
        paths,
        [
            "README.md".to_owned(),
            format!("{folder}/manifests/checkout-deployment.yaml"),
            format!("{folder}/plan.json"),
            format!("{folder}/request.md"),
        ]
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
    );
    let plan: serde_json::Value =
        serde_json::from_str(&files[&format!("{folder}/plan.json")]).unwrap();
    assert_eq!(plan, approval(vec![]).plan);
    assert_eq!(
        files[&format!("{folder}/manifests/checkout-deployment.yaml")],
        deployment().yaml
    );
    let request = &files[&format!("{folder}/request.md")];
    assert!(request.starts_with("# Scale checkout in shop\n"));
    assert!(request.contains("Scale checkout in shop to 3 replicas for the sale.\n"));
    // main itself is untouched.
    assert_eq!(remote.files(&remote.main()).len(), 1);
}

#[test]
fn rerunning_a_step_commits_nothing_and_completion_adds_one_commit() {
    let remote = Remote::new();
    let repo = open(&remote, "clone", Mode::Apply);
    let thread = Uuid::new_v4();
    let first = repo
        .record_approval(thread, &approval(vec![deployment()]))
        .unwrap();
    let again = repo
        .record_approval(thread, &approval(vec![deployment()]))
        .unwrap();
    assert!(!again.new_commit);
    assert_eq!(again.commit, first.commit);

    let done = repo.record_completion(thread, &completion()).unwrap();
    assert!(done.new_commit);
    let done_again = repo.record_completion(thread, &completion()).unwrap();
    assert!(!done_again.new_commit);
    assert_eq!(done_again.commit, done.commit);
    // The approval replayed after completion changes nothing either.
    assert!(
        !repo
            .record_approval(thread, &approval(vec![deployment()]))
            .unwrap()
            .new_commit
    );

    let head = remote.branch(&branch_name(thread)).unwrap();
    assert_eq!(head.id().to_string(), done.commit);
    let commits = remote.commits_since_main(head.id());
    assert_eq!(commits.len(), 2);
    assert!(commits
        .iter()
        .all(|c| c.author().name().ok() == Some("deckhand")));
    assert!(commits[0]
        .message()
        .unwrap()
        .starts_with(&format!("deckhand: complete thread {thread}\n\nScaled\n")));

    let files = remote.files(&head);
    let folder = thread_folder(thread);
    assert_eq!(
        files[&format!("{folder}/result.md")],
        "# Scaled\n\ncheckout runs 3 replicas.\n"
    );
    let backup: serde_json::Value = serde_json::from_str(
        &files[&format!("{folder}/backup/apps-v1-deployment-shop-checkout.json")],
    )
    .unwrap();
    assert_eq!(backup["spec"]["replicas"], 1);
}

#[test]
fn completion_needs_the_branch_from_the_approval() {
    let remote = Remote::new();
    let repo = open(&remote, "clone", Mode::Apply);
    let thread = Uuid::new_v4();
    let err = repo.record_completion(thread, &completion()).unwrap_err();
    assert!(
        matches!(err, Error::ThreadBranchMissing { ref branch, .. } if *branch == branch_name(thread)),
        "{err}"
    );
    assert!(remote.branch(&branch_name(thread)).is_none());
}

#[test]
fn a_revised_approval_replaces_the_manifests_and_keeps_the_rest() {
    let remote = Remote::new();
    let repo = open(&remote, "clone", Mode::Apply);
    let thread = Uuid::new_v4();
    let mut first = approval(vec![
        deployment(),
        Manifest::new("service", "kind: Service\n"),
    ]);
    first.backups = vec![Backup::new("deployment", json!({"spec": {"replicas": 1}}))];
    repo.record_approval(thread, &first).unwrap();
    let mut revised = approval(vec![Manifest::new(
        "hpa.yaml",
        "kind: HorizontalPodAutoscaler\n",
    )]);
    revised.plan_hash = "sha256:77aa".into();
    let recorded = repo.record_approval(thread, &revised).unwrap();
    assert!(recorded.new_commit);

    let head = remote.branch(&branch_name(thread)).unwrap();
    let folder = thread_folder(thread);
    let files = remote.files(&head);
    let manifests: Vec<&String> = files.keys().filter(|p| p.contains("/manifests/")).collect();
    assert_eq!(manifests, [&format!("{folder}/manifests/hpa.yaml")]);
    assert!(files.contains_key(&format!("{folder}/backup/deployment.json")));
    assert!(files[&format!("{folder}/request.md")].contains("`sha256:77aa`"));
    assert_eq!(remote.commits_since_main(head.id()).len(), 2);
}

#[test]
fn hostile_manifest_names_stay_inside_the_thread_folder() {
    let remote = Remote::new();
    let repo = open(&remote, "clone", Mode::Apply);
    let thread = Uuid::new_v4();
    let other = Uuid::new_v4();
    let manifests = vec![
        Manifest::new("../../../README.md", "kind: A\n"),
        Manifest::new("/etc/passwd", "kind: B\n"),
        Manifest::new(".git/config", "kind: C\n"),
        Manifest::new(
            format!("../../{}/manifests/x.yaml", thread_folder(other)),
            "kind: D\n",
        ),
        Manifest::new("..\\..\\windows.yaml", "kind: E\n"),
        Manifest::new("", "kind: F\n"),
    ];
    let mut approval = approval(manifests);
    approval.backups = vec![Backup::new("../../../../plan.json", json!(null))];
    repo.record_approval(thread, &approval).unwrap();

    let head = remote.branch(&branch_name(thread)).unwrap();
    let files = remote.files(&head);
    let folder = thread_folder(thread);
    let expected: Vec<String> = [
        "README.md".to_owned(),
        format!("{folder}/backup/plan.json"),
        format!("{folder}/manifests/etc-passwd.yaml"),
        format!("{folder}/manifests/git-config.yaml"),
        format!("{folder}/manifests/manifest.yaml"),
        format!("{folder}/manifests/readme.md.yaml"),
        format!("{folder}/manifests/threads-{other}-manifests-x.yaml"),
        format!("{folder}/manifests/windows.yaml"),
        format!("{folder}/plan.json"),
        format!("{folder}/request.md"),
    ]
    .into();
    assert_eq!(files.keys().cloned().collect::<Vec<_>>(), expected);
    assert_eq!(files["README.md"], "# platform\n");
    // The clone is bare: nothing was ever written as a file outside the object store.
    assert!(!remote.dir.path().join("clone").join("threads").exists());
}

#[test]
fn manifests_read_back_from_the_branch_in_a_fresh_clone() {
    let remote = Remote::new();
    let thread = Uuid::new_v4();
    open(&remote, "writer", Mode::Gitops)
        .record_approval(
            thread,
            &approval(vec![
                deployment(),
                Manifest::new("svc.yml", "kind: Service"),
            ]),
        )
        .unwrap();

    let head = remote.branch(&branch_name(thread)).unwrap();
    let kustomization =
        &remote.files(&head)[&format!("{}/manifests/kustomization.yaml", thread_folder(thread))];
    assert!(
        kustomization.ends_with("resources:\n  - checkout-deployment.yaml\n  - svc.yaml\n"),
        "{kustomization}"
    );

    let reader = open(&remote, "reader", Mode::Apply);
    let manifests = reader.read_manifests(thread).unwrap();
    assert_eq!(
        manifests,
        [
            Manifest::new("checkout-deployment.yaml", deployment().yaml),
            Manifest::new("svc.yaml", "kind: Service\n"),
        ]
    );
    let err = reader.read_manifests(Uuid::new_v4()).unwrap_err();
    assert!(matches!(err, Error::ThreadBranchMissing { .. }), "{err}");
}

#[test]
fn another_replica_and_a_person_build_on_the_same_branch() {
    let remote = Remote::new();
    let thread = Uuid::new_v4();
    let first = open(&remote, "replica-a", Mode::Apply);
    first
        .record_approval(thread, &approval(vec![deployment()]))
        .unwrap();

    // A person adds a note on the thread branch; deckhand must build on it, not over it.
    let branch = branch_name(thread);
    let note = format!("{}/notes.md", thread_folder(thread));
    let person = remote.commit_file(&branch, &note, "checked with the shop team\n");

    let second = open(&remote, "replica-b", Mode::Apply);
    let done = second.record_completion(thread, &completion()).unwrap();
    let head = remote.branch(&branch).unwrap();
    assert_eq!(head.id().to_string(), done.commit);
    assert_eq!(head.parent_ids().collect::<Vec<_>>(), [person]);
    let files = remote.files(&head);
    assert_eq!(files[&note], "checked with the shop team\n");
    assert!(files.contains_key(&format!("{}/result.md", thread_folder(thread))));

    // The first replica's local branch is now behind; it follows the remote rather than
    // forcing its own history.
    let replay = first.record_completion(thread, &completion()).unwrap();
    assert!(!replay.new_commit);
    assert_eq!(replay.commit, done.commit);
    assert_eq!(remote.commits_since_main(head.id()).len(), 3);
}

#[test]
fn a_branch_deleted_on_the_remote_is_no_longer_read() {
    let remote = Remote::new();
    let thread = Uuid::new_v4();
    open(&remote, "writer", Mode::Apply)
        .record_approval(thread, &approval(vec![deployment()]))
        .unwrap();
    let reader = open(&remote, "reader", Mode::Apply);
    assert_eq!(reader.read_manifests(thread).unwrap().len(), 1);

    // The pull request was merged and its branch deleted.
    remote
        .repo
        .find_reference(&format!("refs/heads/{}", branch_name(thread)))
        .unwrap()
        .delete()
        .unwrap();
    let err = reader.read_manifests(thread).unwrap_err();
    assert!(matches!(err, Error::ThreadBranchMissing { .. }), "{err}");
}

#[test]
fn a_remote_without_the_base_branch_is_reported() {
    let remote = Remote::empty();
    let repo = open(&remote, "clone", Mode::Apply);
    let err = repo
        .record_approval(Uuid::new_v4(), &approval(vec![]))
        .unwrap_err();
    assert!(
        matches!(err, Error::BaseBranchMissing { ref branch, .. } if branch == "main"),
        "{err}"
    );
}

#[test]
fn an_unreachable_remote_fails_with_context() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::repository_config(
        dir.path().join("nothing-here.git").to_str().unwrap(),
        &dir.path().join("clone"),
    );
    let repo = ThreadRepository::open(&config, dir.path(), Mode::Apply, None).unwrap();
    let err = repo
        .record_approval(Uuid::new_v4(), &approval(vec![]))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("repository `platform`") && text.contains("fetching `main`"),
        "{text}"
    );
}

#[test]
fn an_existing_clone_is_reopened_and_its_remote_repointed() {
    let old = Remote::new();
    let new = Remote::new();
    let clone = old.dir.path().join("clone");
    let thread = Uuid::new_v4();
    ThreadRepository::open(
        &support::repository_config(&old.url(), &clone),
        old.dir.path(),
        Mode::Apply,
        None,
    )
    .unwrap()
    .record_approval(thread, &approval(vec![]))
    .unwrap();
    let moved = ThreadRepository::open(
        &support::repository_config(&new.url(), &clone),
        old.dir.path(),
        Mode::Apply,
        None,
    )
    .unwrap();
    let other = Uuid::new_v4();
    moved.record_approval(other, &approval(vec![])).unwrap();
    assert!(new.branch(&branch_name(other)).is_some());
    assert!(old.branch(&branch_name(other)).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_handle_records_threads_from_concurrent_tasks() {
    let remote = Remote::new();
    let shared = deckhand_git::SharedThreadRepository::new(open(&remote, "clone", Mode::Apply));
    let threads: Vec<Uuid> = (0..4).map(|_| Uuid::new_v4()).collect();
    let tasks: Vec<_> = threads
        .iter()
        .map(|&thread| {
            let shared = shared.clone();
            tokio::spawn(async move {
                shared
                    .record_approval(thread, approval(vec![deployment()]))
                    .await?;
                shared.record_completion(thread, completion()).await?;
                shared.read_manifests(thread).await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(
            task.await.unwrap().unwrap(),
            [Manifest::new("checkout-deployment.yaml", deployment().yaml)]
        );
    }
    for thread in threads {
        let head = remote.branch(&branch_name(thread)).unwrap();
        assert_eq!(remote.commits_since_main(head.id()).len(), 2);
    }
    assert_eq!(shared.name(), "platform");
}

#[test]
fn a_symlink_among_the_manifests_is_refused_when_read_back() {
    let remote = Remote::new();
    let repo = open(&remote, "clone", Mode::Apply);
    let thread = Uuid::new_v4();
    repo.record_approval(thread, &approval(vec![deployment()]))
        .unwrap();
    let link = format!("{}/manifests/link.yaml", thread_folder(thread));
    remote.commit_entry(&branch_name(thread), &link, "/etc/passwd", 0o120_000);
    let err = repo.read_manifests(thread).unwrap_err();
    assert!(
        matches!(err, Error::BadFile { ref path, ref problem, .. } if *path == link && problem == "is not a regular file"),
        "{err}"
    );
}
