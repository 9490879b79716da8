//! `deckhand threads list|show|rate|restore`, `deckhand knowledge search` and
//! `deckhand audit verify`: the store from the command line.
//!
//! Exit statuses: 0 done; 1 refused (restore not approved, a policy denial, a broken
//! audit chain); 2 bad input or deckhand cannot start (unknown thread, unreadable store).

use crate::cli::session::{self, whoami};
use crate::config::Config;
use crate::journal::priors_of;
use deckhand_runtime::audit::{AuditEntry, AuditLog};
use deckhand_runtime::store::{ConversationStore, ThreadStore};
use deckhand_runtime::{Rating, ThreadId, ThreadStatus};
use deckhand_store::Database;
use deckhand_tools::cluster::Approval;
use serde_json::{json, Value};
use std::io::{BufRead, Write};

/// How a restore is approved on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestoreApproval {
    /// Ask on the terminal (refused when there is none).
    Ask,
    /// `--yes`: the plan as shown now.
    Yes,
    /// `--approve HASH`: the plan shown earlier, which must still be the same.
    Hash(String),
}

type Out<'a> = &'a mut (dyn Write + Send);

async fn open_store(config: &Config, err: Out<'_>) -> Option<Database> {
    match session::open_database(config).await {
        Ok(database) => Some(database),
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            None
        }
    }
}

fn parse_thread(id: &str, err: Out<'_>) -> Option<ThreadId> {
    match id.parse::<ThreadId>() {
        Ok(id) => Some(id),
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            None
        }
    }
}

/// `deckhand threads list`: the newest threads, one line each (or JSON).
pub async fn list(config: &Config, limit: u32, as_json: bool, out: Out<'_>, err: Out<'_>) -> u8 {
    let Some(database) = open_store(config, err).await else {
        return 2;
    };
    let threads = match database.recent_threads(limit).await {
        Ok(threads) => threads,
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            return 2;
        }
    };
    if as_json {
        let _ = writeln!(out, "{}", json!(threads));
        return 0;
    }
    if threads.is_empty() {
        let _ = writeln!(out, "no threads yet");
    }
    for thread in threads {
        let _ = writeln!(
            out,
            "{}  {:<8}  {}  {:<12}  {}",
            thread.id,
            thread.status.as_str(),
            thread.created_at.format("%Y-%m-%d %H:%M"),
            thread.user,
            thread.title
        );
    }
    0
}

/// `deckhand threads show ID`: the thread, its messages, plans, ratings and what it
/// changed.
pub async fn show(config: &Config, id: &str, as_json: bool, out: Out<'_>, err: Out<'_>) -> u8 {
    let Some(thread_id) = parse_thread(id, err) else {
        return 2;
    };
    let Some(database) = open_store(config, err).await else {
        return 2;
    };
    let loaded = async {
        let thread = database.thread(thread_id).await?;
        let messages = database.messages(thread_id).await?;
        let ratings = database.ratings(thread_id).await?;
        let plans = database.plans_of_thread(thread_id).await?;
        let snapshots =
            deckhand_runtime::restore::SnapshotStore::snapshots(&database, thread_id).await?;
        Ok::<_, Box<dyn std::error::Error>>((thread, messages, ratings, plans, snapshots))
    }
    .await;
    let (thread, messages, ratings, plans, snapshots) = match loaded {
        Ok((Some(thread), messages, ratings, plans, snapshots)) => {
            (thread, messages, ratings, plans, snapshots)
        }
        Ok((None, ..)) => {
            let _ = writeln!(err, "error: no thread {thread_id}");
            return 2;
        }
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return 2;
        }
    };
    if as_json {
        let _ = writeln!(
            out,
            "{}",
            json!({
                "thread": thread,
                "messages": messages,
                "ratings": ratings,
                "plans": plans,
                "changed": snapshots.iter().map(|s| json!({
                    "object": s.object.to_string(),
                    "created": s.prior.is_none(),
                    "at": s.taken_at,
                })).collect::<Vec<_>>(),
            })
        );
        return 0;
    }
    let _ = writeln!(out, "thread {}: {}", thread.id, thread.title);
    let _ = writeln!(
        out,
        "  {} · asked by {} · cluster {} · {}",
        thread.status.as_str(),
        thread.user,
        thread.cluster_id,
        thread.created_at.format("%Y-%m-%d %H:%M UTC")
    );
    for message in &messages {
        let _ = writeln!(
            out,
            "\n[{}] {}:\n{}",
            message.role.as_str(),
            message.author,
            message.text
        );
    }
    for plan in &plans {
        let _ = writeln!(
            out,
            "\nplan {} ({} steps, {})",
            plan.id,
            plan.steps.len(),
            plan.hash
        );
    }
    if !snapshots.is_empty() {
        let _ = writeln!(out, "\nchanged in the cluster (restorable):");
        for snapshot in &snapshots {
            let what = if snapshot.prior.is_none() {
                "created"
            } else {
                "changed"
            };
            let _ = writeln!(out, "  {what} {}", snapshot.object);
        }
    }
    for rating in &ratings {
        let _ = writeln!(
            out,
            "\nrated {} by {}{}",
            rating.score,
            rating.rated_by,
            if rating.comment.is_empty() {
                String::new()
            } else {
                format!(": {}", rating.comment)
            }
        );
    }
    0
}

/// `deckhand threads rate ID SCORE [--comment ..]`: 100 closes the thread.
pub async fn rate(
    config: &Config,
    id: &str,
    score: i64,
    comment: &str,
    out: Out<'_>,
    err: Out<'_>,
) -> u8 {
    let Some(thread_id) = parse_thread(id, err) else {
        return 2;
    };
    let rating = match Rating::new(thread_id, score, comment, whoami()) {
        Ok(rating) => rating,
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            return 2;
        }
    };
    let Some(database) = open_store(config, err).await else {
        return 2;
    };
    let rated = database.rate_thread(&rating).await;
    // Sends the rating to the shared database, when there is one, before the process ends.
    database.close().await;
    if let Err(error) = rated {
        let _ = writeln!(err, "error: {error:#}");
        return 2;
    }
    let _ = writeln!(
        out,
        "rated {thread_id} {}{}",
        rating.score,
        if rating.closes_thread() {
            ": resolved, the thread is closed"
        } else {
            ""
        }
    );
    0
}

/// `deckhand threads restore ID`: shows the restore plan (an action and a diff per
/// object, and the plan's hash), then, once approved, puts every object the thread
/// touched back as it was.
pub async fn restore(
    config: &Config,
    id: &str,
    approval: RestoreApproval,
    input: &mut dyn BufRead,
    out: Out<'_>,
    err: Out<'_>,
) -> u8 {
    let Some(thread_id) = parse_thread(id, err) else {
        return 2;
    };
    let session = match session::open(config).await {
        Ok(session) => session,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return 2;
        }
    };
    let status = restore_in(&session, thread_id, approval, input, out, err).await;
    session.close().await;
    status
}

async fn restore_in(
    session: &session::Session,
    thread_id: ThreadId,
    approval: RestoreApproval,
    input: &mut dyn BufRead,
    out: Out<'_>,
    err: Out<'_>,
) -> u8 {
    let database = &session.database;
    match database.thread(thread_id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            let _ = writeln!(err, "error: no thread {thread_id}");
            return 2;
        }
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            return 2;
        }
    }
    let Some(gate) = &session.gate else {
        let _ = writeln!(
            err,
            "error: no cluster is configured (KUBECONFIG or the in-cluster config): nothing to restore against"
        );
        return 2;
    };
    let priors = match priors_of(database, thread_id).await {
        Ok(priors) => priors,
        Err(message) => {
            let _ = writeln!(err, "error: {message}");
            return 2;
        }
    };
    if priors.is_empty() {
        let _ = writeln!(
            out,
            "thread {thread_id} changed nothing in the cluster: nothing to restore"
        );
        return 0;
    }
    let who = whoami();
    let plan = match gate.plan_restore(&priors, &who).await {
        Ok(plan) => plan,
        Err(error) => {
            let _ = writeln!(err, "error: the restore cannot be planned: {error:#}");
            return 1;
        }
    };
    let _ = writeln!(out, "restore of thread {thread_id}, last change first:");
    for step in &plan.steps {
        let _ = writeln!(
            out,
            "  {:<12} {}",
            format!("{:?}", step.action).to_lowercase(),
            step.object
        );
    }
    for step in plan.steps.iter().filter(|step| step.action.writes()) {
        let _ = write!(out, "\n{}", step.diff());
    }
    let _ = writeln!(out, "\nplan hash: {}", plan.hash);
    if !plan.has_writes() {
        let _ = writeln!(out, "every object is already as it was: nothing to do");
        return 0;
    }
    let approved = match approval {
        RestoreApproval::Yes => true,
        RestoreApproval::Hash(hash) => {
            if hash.trim() != plan.hash {
                let _ = writeln!(
                    err,
                    "error: the approved hash {hash} is not this plan's ({}): the cluster changed since; review the plan above and approve again",
                    plan.hash
                );
                return 1;
            }
            true
        }
        RestoreApproval::Ask => {
            let _ = write!(out, "restore these objects? [y/N] ");
            let _ = out.flush();
            let mut answer = String::new();
            let _ = input.read_line(&mut answer);
            matches!(answer.trim(), "y" | "Y" | "yes" | "YES")
        }
    };
    if !approved {
        let _ = writeln!(
            err,
            "not restored: approve with --yes, or --approve {} after review",
            plan.hash
        );
        return 1;
    }
    let _ = database
        .append_audit(
            AuditEntry::new(&who, "restore.approved", Some(thread_id), &plan.hash)
                .with_details(plan.to_json()),
        )
        .await;
    match gate
        .restore(&plan, &Approval::by(&who).in_thread(thread_id.to_string()))
        .await
    {
        Ok(report) => {
            for (object, action) in &report.done {
                let _ = writeln!(
                    out,
                    "done: {} {object}",
                    format!("{action:?}").to_lowercase()
                );
            }
            if let Err(error) = database
                .set_thread_status(thread_id, ThreadStatus::Restored)
                .await
            {
                let _ = writeln!(
                    err,
                    "warning: restored, but the thread's status was not saved: {error:#}"
                );
            }
            let _ = database
                .append_audit(
                    AuditEntry::new(&who, "restore.done", Some(thread_id), &plan.hash)
                        .with_details(json!({"done": report.done})),
                )
                .await;
            let _ = writeln!(out, "thread {thread_id} restored");
            0
        }
        Err(error) => {
            let _ = writeln!(
                err,
                "error: the restore stopped: {error:#}\nrun `deckhand threads restore {thread_id}` again to finish what is left"
            );
            1
        }
    }
}

/// `deckhand knowledge search TEXT`: resolved threads like this one, best first, by words
/// and meaning when an embedding model is configured (`[knowledge.embeddings]`) and
/// answers, else by words alone; the output says which.
pub async fn knowledge_search(
    config: &Config,
    text: &str,
    limit: u32,
    as_json: bool,
    out: Out<'_>,
    err: Out<'_>,
) -> u8 {
    let Some(database) = open_store(config, err).await else {
        return 2;
    };
    let database =
        database.with_hybrid_options(crate::knowledge::hybrid_options(&config.knowledge));
    let embedder = crate::knowledge::embedder(&config.knowledge);
    let found = match crate::knowledge::search(&database, embedder.as_ref(), text, limit).await {
        Ok(found) => found,
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            return 2;
        }
    };
    let mode = found.mode;
    if as_json {
        // The array of hits as before; each also says how the search was answered.
        let hits: Vec<Value> = found
            .hits
            .iter()
            .map(|hit| {
                json!({
                    "entry": hit.entry,
                    "score": hit.score,
                    "text_score": hit.text_score,
                    "similarity": hit.similarity,
                    "search": mode.as_str(),
                })
            })
            .collect();
        let _ = writeln!(out, "{}", Value::Array(hits));
        return 0;
    }
    let _ = match (&found.fallback, &embedder) {
        (Some(error), _) => writeln!(
            out,
            "by words only: the embedding model did not answer ({error})"
        ),
        (None, Some(embedder)) => writeln!(out, "by words and meaning ({})", embedder.model()),
        (None, None) => writeln!(out, "by words only (no embedding model configured)"),
    };
    if found.hits.is_empty() {
        let _ = writeln!(out, "no resolved thread matches {text:?}");
    }
    for hit in found.hits {
        let entry = &hit.entry;
        let matched = match (hit.text_score, hit.similarity) {
            (Some(_), Some(similarity)) => format!("words and meaning, similarity {similarity:.2}"),
            (None, Some(similarity)) => format!("meaning, similarity {similarity:.2}"),
            _ => "words".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:.3}  thread {} on {} (rated {}; matched by {matched})\n  asked: {}\n  resolved: {}",
            hit.score,
            entry.thread_id,
            entry.cluster_id,
            entry
                .rating
                .map_or_else(|| "unrated".to_owned(), |score| score.to_string()),
            entry.request,
            entry.resolution_summary
        );
    }
    0
}

/// `deckhand audit verify`: recomputes the audit log's hash chain.
pub async fn audit_verify(config: &Config, out: Out<'_>, err: Out<'_>) -> u8 {
    let Some(database) = open_store(config, err).await else {
        return 2;
    };
    match database.verify_audit().await {
        Ok(verification) => match &verification.first_broken {
            None => {
                let _ = writeln!(out, "audit log intact: {} records", verification.records);
                0
            }
            Some(link) => {
                let _ = writeln!(
                    out,
                    "audit log BROKEN at record {}: {} ({} records read)",
                    link.seq, link.problem, verification.records
                );
                1
            }
        },
        Err(error) => {
            let _ = writeln!(err, "error: {error:#}");
            2
        }
    }
}
