//! The heartbeat ledger on a real SQLite file and a real PostgreSQL server: slots claimed
//! once, runs recorded before and after, a crash mid-run visible, and a process restarted
//! after missing three slots running the task exactly once.

mod common;

use chrono::{DateTime, Utc};
use common::TestStore;
use deckhand_runtime::heartbeat::{
    Heartbeat, HeartbeatKind, HeartbeatLauncher, HeartbeatLedger, HeartbeatTask, ManualClock,
    RunOutcome,
};
use deckhand_runtime::ThreadId;
use deckhand_store::Database;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a test waits for the runner to reach a state before it gives up (a hang, not
/// a timing assertion).
const PATIENCE: Duration = Duration::from_secs(60);

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("test time")
        .with_timezone(&Utc)
}

/// Remembers each launch and answers with a fresh thread.
#[derive(Default)]
struct Recorder {
    launches: Mutex<Vec<(String, DateTime<Utc>, ThreadId)>>,
}

impl Recorder {
    fn launches(&self) -> Vec<(String, DateTime<Utc>, ThreadId)> {
        self.launches.lock().expect("lock").clone()
    }
}

impl HeartbeatLauncher for Recorder {
    async fn launch(
        &self,
        task: &HeartbeatTask,
        scheduled_for: DateTime<Utc>,
    ) -> Result<ThreadId, String> {
        let thread = ThreadId::new();
        self.launches
            .lock()
            .expect("lock")
            .push((task.name.clone(), scheduled_for, thread));
        Ok(thread)
    }
}

fn hourly() -> HeartbeatTask {
    HeartbeatTask::new("nightly-health", "0 * * * *", HeartbeatKind::HealthScan)
        .expect("valid task")
}

/// One "process": a runner over `database` until the clock sleeps until `idle_at`.
struct Process {
    clock: ManualClock,
    launcher: Arc<Recorder>,
    shutdown: CancellationToken,
    runner: tokio::task::JoinHandle<()>,
}

impl Process {
    fn start(database: Database, now: DateTime<Utc>) -> Self {
        let clock = ManualClock::new(now);
        let launcher = Arc::new(Recorder::default());
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(Heartbeat::new([hourly()]).expect("valid").run(
            Arc::new(database),
            launcher.clone(),
            Arc::new(clock.clone()),
            shutdown.clone(),
        ));
        Self {
            clock,
            launcher,
            shutdown,
            runner,
        }
    }

    /// Waits until the runner has done everything due and sleeps until `slot`.
    async fn idle_until(&self, slot: &str) {
        tokio::time::timeout(PATIENCE, self.clock.sleeping_until(at(slot)))
            .await
            .unwrap_or_else(|_| panic!("the runner never went to sleep until {slot}"));
    }

    async fn stop(self) -> Vec<(String, DateTime<Utc>, ThreadId)> {
        self.shutdown.cancel();
        self.runner.await.expect("runner stops");
        self.launcher.launches()
    }
}

/// The ledger's own rules, called directly.
async fn slots_are_claimed_once_and_runs_recorded(store: &TestStore) {
    let db = &store.database;
    let record = db
        .register("scan", at("2026-11-25T10:00:30Z"))
        .await
        .expect("register");
    assert_eq!(record.since, at("2026-11-25T10:00:30Z"));
    assert_eq!((record.runs, record.failures), (0, 0));
    assert!(!record.in_flight());
    // Registering again keeps the first sighting.
    let again = db
        .register("scan", at("2026-11-26T00:00:00Z"))
        .await
        .expect("register again");
    assert_eq!(again, record);

    let eleven = at("2026-11-25T11:00:00Z");
    assert!(db
        .record_start("scan", eleven, at("2026-11-25T11:00:01Z"))
        .await
        .expect("claim"));
    assert!(
        !db.record_start("scan", eleven, at("2026-11-25T11:00:02Z"))
            .await
            .expect("claim again"),
        "a slot is claimed once"
    );
    assert!(
        !db.record_start(
            "scan",
            at("2026-11-25T10:00:00Z"),
            at("2026-11-25T11:00:02Z")
        )
        .await
        .expect("older slot"),
        "the claim only moves forward"
    );
    let running = db
        .heartbeat_record("scan")
        .await
        .expect("read")
        .expect("recorded");
    assert!(running.in_flight(), "started, not finished: {running:?}");
    assert_eq!(running.last_started_at, Some(at("2026-11-25T11:00:01Z")));
    assert_eq!(running.runs, 1);

    let failed = RunOutcome::Failed {
        error: "the cluster is unreachable".into(),
    };
    db.record_finish("scan", eleven, at("2026-11-25T11:00:05Z"), &failed)
        .await
        .expect("finish");
    // A second report of the same end counts once.
    db.record_finish("scan", eleven, at("2026-11-25T11:00:06Z"), &failed)
        .await
        .expect("finish again");
    let finished = db
        .heartbeat_record("scan")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(finished.last_outcome, Some(failed));
    assert_eq!((finished.runs, finished.failures), (1, 1));
    assert!(!finished.in_flight());

    let twelve = at("2026-11-25T12:00:00Z");
    assert!(db
        .record_start("scan", twelve, at("2026-11-25T12:00:00Z"))
        .await
        .expect("next slot"));
    // A late report about 11:00 does not touch the 12:00 run.
    db.record_finish(
        "scan",
        eleven,
        at("2026-11-25T12:00:01Z"),
        &RunOutcome::Interrupted,
    )
    .await
    .expect("stale finish");
    let thread = ThreadId::new();
    db.record_finish(
        "scan",
        twelve,
        at("2026-11-25T12:00:02Z"),
        &RunOutcome::Launched { thread_id: thread },
    )
    .await
    .expect("finish");
    // A task never registered is recorded by its first start.
    assert!(db
        .record_start("adhoc", twelve, at("2026-11-25T12:00:00Z"))
        .await
        .expect("first start"));
    let records = db.records().await.expect("records");
    let names: Vec<&str> = records.iter().map(|r| r.task.as_str()).collect();
    assert_eq!(names, vec!["adhoc", "scan"]);
    let scan = &records[1];
    assert_eq!(scan.last_scheduled_for, Some(twelve));
    assert_eq!(
        scan.last_outcome,
        Some(RunOutcome::Launched { thread_id: thread })
    );
    assert_eq!((scan.runs, scan.failures), (2, 1));
    assert_eq!(records[0].since, at("2026-11-25T12:00:00Z"));
}

/// A runner at 10:00:30 runs 11:00; the process stops; a new one (a fresh connection to
/// the same database) starts at 14:10, after 12:00, 13:00 and 14:00 passed: it runs the
/// task once, for 14:00, then waits for 15:00.
async fn a_restart_after_three_missed_slots_runs_once(store: &TestStore) {
    let first = Process::start(store.database.clone(), at("2026-11-25T10:00:30Z"));
    first.idle_until("2026-11-25T11:00:00Z").await;
    first.clock.set(at("2026-11-25T11:00:00Z"));
    first.idle_until("2026-11-25T12:00:00Z").await;
    let launches = first.stop().await;
    assert_eq!(launches.len(), 1, "{launches:?}");
    assert_eq!(launches[0].1, at("2026-11-25T11:00:00Z"));

    let reopened = Database::connect(&store.url).await.expect("reconnect");
    let second = Process::start(reopened.clone(), at("2026-11-25T14:10:00Z"));
    second.idle_until("2026-11-25T15:00:00Z").await;
    let launches = second.stop().await;
    assert_eq!(
        launches.iter().map(|l| l.1).collect::<Vec<_>>(),
        vec![at("2026-11-25T14:00:00Z")],
        "three missed slots, one run"
    );
    let record = reopened
        .heartbeat_record("nightly-health")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(record.since, at("2026-11-25T10:00:30Z"));
    assert_eq!(record.runs, 2);
    assert_eq!(record.failures, 0);
    assert_eq!(record.last_scheduled_for, Some(at("2026-11-25T14:00:00Z")));
    assert_eq!(record.last_started_at, Some(at("2026-11-25T14:10:00Z")));
    assert_eq!(
        record.last_outcome,
        Some(RunOutcome::Launched {
            thread_id: launches[0].2
        })
    );
    reopened.close().await;
}

/// A process that died during its 11:00 run left it started and unfinished; the next
/// process marks it interrupted and does not run 11:00 again.
async fn a_run_cut_short_by_a_crash_is_visible_and_not_repeated(store: &TestStore) {
    let db = &store.database;
    db.register("nightly-health", at("2026-11-25T09:00:00Z"))
        .await
        .expect("register");
    assert!(db
        .record_start(
            "nightly-health",
            at("2026-11-25T11:00:00Z"),
            at("2026-11-25T11:00:00Z")
        )
        .await
        .expect("claim"));
    assert!(db
        .heartbeat_record("nightly-health")
        .await
        .expect("read")
        .expect("recorded")
        .in_flight());

    let process = Process::start(db.clone(), at("2026-11-25T11:20:00Z"));
    process.idle_until("2026-11-25T12:00:00Z").await;
    assert!(process.stop().await.is_empty(), "11:00 is not run twice");
    let record = db
        .heartbeat_record("nightly-health")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(record.last_outcome, Some(RunOutcome::Interrupted));
    assert_eq!(record.last_finished_at, Some(at("2026-11-25T11:20:00Z")));
    assert_eq!((record.runs, record.failures), (1, 1));
}

/// Two runners racing for the same slots through one database: every slot is claimed
/// by exactly one of them.
async fn concurrent_claims_take_each_slot_once(store: &TestStore) {
    let db = &store.database;
    let slots: Vec<DateTime<Utc>> = (0..20)
        .map(|hour| at("2026-11-25T00:00:00Z") + chrono::Duration::hours(hour))
        .collect();
    let mut claimers = tokio::task::JoinSet::new();
    for _ in 0..4 {
        let db = db.clone();
        let slots = slots.clone();
        claimers.spawn(async move {
            let mut won = Vec::new();
            for slot in slots {
                if db
                    .start_heartbeat_run("race", slot, slot)
                    .await
                    .expect("claim")
                {
                    won.push(slot);
                }
            }
            won
        });
    }
    let mut won = Vec::new();
    while let Some(slots) = claimers.join_next().await {
        won.extend(slots.expect("claimer"));
    }
    let total = won.len();
    won.sort();
    won.dedup();
    assert_eq!(won.len(), total, "no slot was claimed twice");
    let record = db
        .heartbeat_record("race")
        .await
        .expect("read")
        .expect("recorded");
    assert_eq!(record.runs, total as u64, "every claim counted once");
    assert_eq!(record.last_scheduled_for, slots.last().copied());
    assert_eq!(won.last(), slots.last(), "the last slot was claimed");
}

both_backends!(
    slots_are_claimed_once_and_runs_recorded,
    a_restart_after_three_missed_slots_runs_once,
    a_run_cut_short_by_a_crash_is_visible_and_not_repeated,
    concurrent_claims_take_each_slot_once,
);
