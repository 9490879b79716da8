//! Heartbeat: tasks deckhand starts on its own, on a cron schedule — a health scan every
//! night, a security scan every Monday, a question asked every morning.
//!
//! A [`HeartbeatTask`] is configuration (`[[heartbeat]]` in deckhand.toml). The
//! [`Heartbeat`] runner sleeps until a task is due, has the [`HeartbeatLauncher`] start it
//! (the launcher opens a thread and plans it: a scheduled task may propose a plan, and its
//! read-only steps may run, but nothing changes the cluster without a person's approval),
//! and keeps the [`HeartbeatLedger`] up to date before and after each run, so a crash
//! mid-run is visible and a restart knows what it missed.
//!
//! Rules the runner keeps:
//! - **Missed slots run once.** When one or more scheduled times passed while deckhand was
//!   down (or while the task's previous run was still going), the task runs once, for the
//!   latest of them, not once per missed slot.
//! - **At most once per slot.** The start is recorded (and the slot claimed) before the
//!   launch; a run interrupted by a crash is marked `interrupted` on the next start and is
//!   not repeated. A new task waits for its first slot after it was first seen.
//! - **Never twice at once.** Each task has one loop; a run that outlasts its interval
//!   delays the next one.
//! - **Failures are recorded and the loop goes on.** A launch error (or panic) is logged
//!   and stored as the run's outcome; the next slot is tried as usual.
//!
//! Schedules use [croner](https://docs.rs/croner) rather than the `cron` crate: croner is
//! maintained, reads the standard five-field crontab syntax people already write
//! (`cron` insists on a seconds field and counts weekdays from 1), supports ranges, steps,
//! month and day names, `L`, `W`, `#` and the `@daily`-style nicknames, finds both the
//! next and the previous occurrence (the latter is how missed slots are found), and
//! works on chrono times. Schedules are evaluated in UTC, to the minute.

use crate::error::{Error, Result};
use crate::thread::ThreadId;
use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// How long a launch in progress at shutdown may go on before it is abandoned (and its
/// run recorded as interrupted).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// The longest one sleep of [`SystemClock`]: a change of the wall clock (NTP, a suspended
/// VM) is noticed within this.
pub const MAX_SLEEP: Duration = Duration::from_secs(60);
/// How long a task's loop waits before asking the ledger again when it cannot be read at
/// start.
pub const LEDGER_RETRY: Duration = Duration::from_secs(30);
/// The longest task name: names key the ledger and appear in thread authors.
pub const MAX_NAME_LEN: usize = 100;

/// A cron schedule: five fields (minute, hour, day of month, month, day of week) or a
/// nickname (`@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`), evaluated in UTC.
#[derive(Clone)]
pub struct Schedule {
    expression: String,
    cron: croner::Cron,
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.expression).finish()
    }
}

impl PartialEq for Schedule {
    fn eq(&self, other: &Self) -> bool {
        self.expression == other.expression
    }
}

impl Eq for Schedule {}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expression)
    }
}

impl Schedule {
    /// Parses a crontab expression.
    ///
    /// # Errors
    /// Why the expression is not a five-field cron expression, or that it never matches
    /// (`0 0 30 2 *`), in words.
    pub fn parse(expression: &str) -> std::result::Result<Self, String> {
        let expression = expression.trim();
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expression)
            .map_err(|error| {
                format!(
                    "{expression:?} is not a cron expression (minute hour day-of-month month \
                     day-of-week, or @hourly/@daily/@weekly/@monthly/@yearly): {error}"
                )
            })?;
        let schedule = Self {
            expression: expression.to_owned(),
            cron,
        };
        // A pattern that names no real date (the 30th of February) never fires.
        let reference = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single();
        if reference.and_then(|at| schedule.next_after(at)).is_none() {
            return Err(format!("{expression:?} never matches a real date"));
        }
        Ok(schedule)
    }

    /// The expression as written.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first scheduled time strictly after `at`; `None` when there is none.
    pub fn next_after(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_next_occurrence(&at, false).ok()
    }

    /// The latest scheduled time at or before `at`; `None` when there is none.
    pub fn latest_at_or_before(&self, at: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.find_previous_occurrence(&at, true).ok()
    }
}

impl Serialize for Schedule {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.expression)
    }
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        let expression = String::deserialize(deserializer)?;
        Self::parse(&expression).map_err(serde::de::Error::custom)
    }
}

/// What a heartbeat task does.
///
/// In TOML: `task = "health_scan"`, `task = "security_scan"`, or
/// `task = { request = { text = "why is checkout failing in shop?" } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HeartbeatKind {
    /// The built-in health scan: pods not ready or pending, crash loops, failing
    /// Deployments, pending PersistentVolumeClaims. Read-only.
    HealthScan,
    /// The built-in security scan: workloads and RBAC. Read-only.
    SecurityScan,
    /// A request, as a person would write it; planned like any other, so its plan may
    /// propose changes, which wait for a person's approval.
    Request {
        /// The request.
        text: String,
    },
}

/// A task deckhand starts on a schedule (`[[heartbeat]]` in deckhand.toml).
///
/// ```toml
/// [[heartbeat]]
/// name = "nightly-health"
/// schedule = "0 3 * * *"        # UTC
/// task = "health_scan"
/// namespace = "shop"            # optional: every namespace when left out
///
/// [[heartbeat]]
/// name = "morning-question"
/// schedule = "30 7 * * MON-FRI"
/// task = { request = { text = "list pods in shop" } }
/// enabled = false               # optional, true by default
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TaskConfig", into = "TaskConfig")]
pub struct HeartbeatTask {
    /// Unique among the tasks: the ledger keys runs by it. Letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// When it runs.
    pub schedule: Schedule,
    /// What it does.
    pub task: HeartbeatKind,
    /// The namespace it looks at; `None` for every namespace (scans) or whatever the
    /// request says.
    pub namespace: Option<String>,
    /// Whether it runs; a disabled task stays in the configuration, ignored.
    pub enabled: bool,
}

/// [`HeartbeatTask`] as written in the configuration, before it is checked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskConfig {
    name: String,
    schedule: String,
    task: HeartbeatKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(default = "enabled_by_default")]
    enabled: bool,
}

fn enabled_by_default() -> bool {
    true
}

impl TryFrom<TaskConfig> for HeartbeatTask {
    type Error = Error;

    fn try_from(config: TaskConfig) -> Result<Self> {
        let mut task = HeartbeatTask::new(&config.name, &config.schedule, config.task)?;
        if let Some(namespace) = config.namespace {
            task = task.in_namespace(namespace)?;
        }
        task.enabled = config.enabled;
        Ok(task)
    }
}

impl From<HeartbeatTask> for TaskConfig {
    fn from(task: HeartbeatTask) -> Self {
        Self {
            name: task.name,
            schedule: task.schedule.expression,
            task: task.task,
            namespace: task.namespace,
            enabled: task.enabled,
        }
    }
}

impl HeartbeatTask {
    /// An enabled task for every namespace.
    ///
    /// # Errors
    /// [`Error::InvalidHeartbeat`] naming the task: a bad name, a schedule that is not a
    /// cron expression or never fires, a request without text.
    pub fn new(name: &str, schedule: &str, task: HeartbeatKind) -> Result<Self> {
        let invalid = |problem: String| Error::InvalidHeartbeat {
            task: name.to_owned(),
            problem,
        };
        if name.is_empty()
            || name.len() > MAX_NAME_LEN
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(invalid(format!(
                "the name must be 1 to {MAX_NAME_LEN} letters, digits, '-', '_' or '.'"
            )));
        }
        let schedule =
            Schedule::parse(schedule).map_err(|reason| invalid(format!("schedule {reason}")))?;
        if let HeartbeatKind::Request { text } = &task {
            if text.trim().is_empty() {
                return Err(invalid("the request has no text".to_owned()));
            }
        }
        Ok(Self {
            name: name.to_owned(),
            schedule,
            task,
            namespace: None,
            enabled: true,
        })
    }

    /// The same task, limited to `namespace`.
    ///
    /// # Errors
    /// [`Error::InvalidHeartbeat`] when `namespace` is not a Kubernetes namespace name.
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Result<Self> {
        let namespace = namespace.into();
        let valid = !namespace.is_empty()
            && namespace.len() <= 63
            && namespace
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !namespace.starts_with('-')
            && !namespace.ends_with('-');
        if !valid {
            return Err(Error::InvalidHeartbeat {
                task: self.name,
                problem: format!("{namespace:?} is not a namespace name"),
            });
        }
        self.namespace = Some(namespace);
        Ok(self)
    }

    /// The request this task stands for, in words: the title of the thread it opens.
    pub fn request_text(&self) -> String {
        let scope = match &self.namespace {
            Some(namespace) => format!("namespace {namespace}"),
            None => "every namespace".to_owned(),
        };
        match &self.task {
            HeartbeatKind::HealthScan => format!("Scheduled health scan of {scope}"),
            HeartbeatKind::SecurityScan => format!("Scheduled security scan of {scope}"),
            HeartbeatKind::Request { text } => text.clone(),
        }
    }
}

/// Checks a set of tasks: names must be unique (the ledger keys runs by name).
///
/// # Errors
/// [`Error::InvalidHeartbeat`] naming the first task whose name is taken.
pub fn validate_tasks(tasks: &[HeartbeatTask]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for task in tasks {
        if !seen.insert(task.name.as_str()) {
            return Err(Error::InvalidHeartbeat {
                task: task.name.clone(),
                problem: "another heartbeat task has the same name".to_owned(),
            });
        }
    }
    Ok(())
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunOutcome {
    /// The launcher started the task in this thread.
    Launched {
        /// The thread.
        thread_id: ThreadId,
    },
    /// The launcher failed.
    Failed {
        /// Why.
        error: String,
    },
    /// The process stopped (crashed, or shut down past the grace period) during the run.
    Interrupted,
}

/// What the ledger knows about one task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatRecord {
    /// The task's name.
    pub task: String,
    /// When the task was first seen: slots before it are never run.
    pub since: DateTime<Utc>,
    /// The slot of the latest run started.
    pub last_scheduled_for: Option<DateTime<Utc>>,
    /// When that run started.
    pub last_started_at: Option<DateTime<Utc>>,
    /// When it ended; `None` while it runs (or when the process died during it).
    pub last_finished_at: Option<DateTime<Utc>>,
    /// How it ended.
    pub last_outcome: Option<RunOutcome>,
    /// Runs started.
    pub runs: u64,
    /// Runs that failed or were interrupted.
    pub failures: u64,
}

impl HeartbeatRecord {
    /// A task seen for the first time at `since`.
    pub fn new(task: impl Into<String>, since: DateTime<Utc>) -> Self {
        Self {
            task: task.into(),
            since,
            last_scheduled_for: None,
            last_started_at: None,
            last_finished_at: None,
            last_outcome: None,
            runs: 0,
            failures: 0,
        }
    }

    /// Whether the latest run started and never finished: it is running, or the process
    /// running it died.
    pub fn in_flight(&self) -> bool {
        self.last_started_at.is_some() && self.last_outcome.is_none()
    }

    /// The slot after which the task is next due: the latest slot started, or when the
    /// task was first seen.
    pub fn done_until(&self) -> DateTime<Utc> {
        self.last_scheduled_for.unwrap_or(self.since)
    }
}

/// Where heartbeat runs are recorded (`deckhand-store` keeps them in the database).
pub trait HeartbeatLedger: Send + Sync {
    /// The task's record; a task seen for the first time is recorded with `since = now`.
    fn register(
        &self,
        task: &str,
        now: DateTime<Utc>,
    ) -> impl Future<Output = Result<HeartbeatRecord>> + Send;

    /// Records that the run for `scheduled_for` starts now, before it is launched. Returns
    /// `false`, changing nothing, when that slot or a later one was already started (by
    /// another runner sharing the ledger, say): the run must not happen.
    fn record_start(
        &self,
        task: &str,
        scheduled_for: DateTime<Utc>,
        started_at: DateTime<Utc>,
    ) -> impl Future<Output = Result<bool>> + Send;

    /// Records how the run for `scheduled_for` ended. Changes nothing when a later run
    /// has started since.
    fn record_finish(
        &self,
        task: &str,
        scheduled_for: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        outcome: &RunOutcome,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Every task's record, by name.
    fn records(&self) -> impl Future<Output = Result<Vec<HeartbeatRecord>>> + Send;
}

/// Starts a heartbeat task: opens a thread for it and sets it going (deckhand plans it and
/// runs what needs no approval). Returns once the task is under way (or has finished).
pub trait HeartbeatLauncher: Send + Sync {
    /// Starts `task` for its slot `scheduled_for`; the thread it runs in, or why it could
    /// not start.
    fn launch(
        &self,
        task: &HeartbeatTask,
        scheduled_for: DateTime<Utc>,
    ) -> impl Future<Output = std::result::Result<ThreadId, String>> + Send;
}

/// The runner's sense of time, injected so tests need not wait for real minutes.
pub trait Clock: Send + Sync {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;

    /// Resolves at `deadline` (at once when it has passed).
    fn sleep_until(&self, deadline: DateTime<Utc>) -> impl Future<Output = ()> + Send;
}

/// The wall clock. Sleeps at most [`MAX_SLEEP`] at a time and looks at the clock again,
/// so a change of the wall clock delays no task by more than that.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        loop {
            let left = (deadline - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(MAX_SLEEP)).await;
        }
    }
}

/// Wall time derived from tokio's clock: starts at a given time and advances with
/// `tokio::time`, so under `tokio::time::pause` (tests, simulations) hours pass at once.
#[derive(Debug, Clone, Copy)]
pub struct TokioClock {
    wall: DateTime<Utc>,
    start: tokio::time::Instant,
}

impl TokioClock {
    /// A clock that reads `wall` now.
    pub fn starting_at(wall: DateTime<Utc>) -> Self {
        Self {
            wall,
            start: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = chrono::Duration::from_std(self.start.elapsed()).unwrap_or_default();
        self.wall + elapsed
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        let offset = (deadline - self.wall).to_std().unwrap_or(Duration::ZERO);
        tokio::time::sleep_until(self.start + offset).await;
    }
}

/// A clock that moves only when told: for tests that run the heartbeat against real I/O
/// (a database), where tokio's paused time would jump ahead while a query is in flight.
/// [`ManualClock::sleeping_until`] tells when the runner has done everything due and
/// sleeps until a given slot.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<tokio::sync::watch::Sender<DateTime<Utc>>>,
    sleepers: Arc<tokio::sync::watch::Sender<BTreeMap<u64, DateTime<Utc>>>>,
    next_sleeper: Arc<std::sync::atomic::AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `now` until it is set or advanced.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            now: Arc::new(tokio::sync::watch::channel(now).0),
            sleepers: Arc::new(tokio::sync::watch::channel(BTreeMap::new()).0),
            next_sleeper: Arc::default(),
        }
    }

    /// Sets the time; sleepers whose deadline has come wake.
    pub fn set(&self, now: DateTime<Utc>) {
        self.now.send_replace(now);
    }

    /// Moves the time forward by `by`.
    pub fn advance(&self, by: chrono::Duration) {
        self.now.send_modify(|now| *now += by);
    }

    /// Resolves once some task sleeps until exactly `deadline`.
    pub async fn sleeping_until(&self, deadline: DateTime<Utc>) {
        let mut sleepers = self.sleepers.subscribe();
        // The sender lives in `self`, so the channel cannot close while this waits.
        let _ = sleepers
            .wait_for(|sleepers| sleepers.values().any(|at| *at == deadline))
            .await;
    }
}

/// Removes a sleeper's entry when its sleep ends or is dropped (cancelled).
struct Sleeper<'a> {
    sleepers: &'a tokio::sync::watch::Sender<BTreeMap<u64, DateTime<Utc>>>,
    id: u64,
}

impl Drop for Sleeper<'_> {
    fn drop(&mut self) {
        self.sleepers.send_modify(|sleepers| {
            sleepers.remove(&self.id);
        });
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    async fn sleep_until(&self, deadline: DateTime<Utc>) {
        let id = self
            .next_sleeper
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut now = self.now.subscribe();
        self.sleepers.send_modify(|sleepers| {
            sleepers.insert(id, deadline);
        });
        let _sleeper = Sleeper {
            sleepers: &self.sleepers,
            id,
        };
        let _ = now.wait_for(|now| *now >= deadline).await;
    }
}

/// A ledger in memory: for tests, and for embedders that keep no store (a restart then
/// forgets what ran).
#[derive(Debug, Default)]
pub struct MemoryLedger {
    records: Mutex<BTreeMap<String, HeartbeatRecord>>,
}

impl MemoryLedger {
    /// A ledger holding `records` (as a previous process left them).
    pub fn with_records(records: impl IntoIterator<Item = HeartbeatRecord>) -> Self {
        Self {
            records: Mutex::new(
                records
                    .into_iter()
                    .map(|record| (record.task.clone(), record))
                    .collect(),
            ),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, HeartbeatRecord>> {
        // A panic elsewhere while holding the lock leaves whole records behind.
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl HeartbeatLedger for MemoryLedger {
    async fn register(&self, task: &str, now: DateTime<Utc>) -> Result<HeartbeatRecord> {
        Ok(self
            .lock()
            .entry(task.to_owned())
            .or_insert_with(|| HeartbeatRecord::new(task, now))
            .clone())
    }

    async fn record_start(
        &self,
        task: &str,
        scheduled_for: DateTime<Utc>,
        started_at: DateTime<Utc>,
    ) -> Result<bool> {
        let mut records = self.lock();
        let record = records
            .entry(task.to_owned())
            .or_insert_with(|| HeartbeatRecord::new(task, started_at));
        if record
            .last_scheduled_for
            .is_some_and(|last| last >= scheduled_for)
        {
            return Ok(false);
        }
        record.last_scheduled_for = Some(scheduled_for);
        record.last_started_at = Some(started_at);
        record.last_finished_at = None;
        record.last_outcome = None;
        record.runs += 1;
        Ok(true)
    }

    async fn record_finish(
        &self,
        task: &str,
        scheduled_for: DateTime<Utc>,
        finished_at: DateTime<Utc>,
        outcome: &RunOutcome,
    ) -> Result<()> {
        let mut records = self.lock();
        if let Some(record) = records
            .get_mut(task)
            .filter(|record| record.last_scheduled_for == Some(scheduled_for))
        {
            if record.last_outcome.is_none() && !matches!(outcome, RunOutcome::Launched { .. }) {
                record.failures += 1;
            }
            record.last_finished_at = Some(finished_at);
            record.last_outcome = Some(outcome.clone());
        }
        Ok(())
    }

    async fn records(&self) -> Result<Vec<HeartbeatRecord>> {
        Ok(self.lock().values().cloned().collect())
    }
}

/// Runs heartbeat tasks on their schedules.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    tasks: Vec<HeartbeatTask>,
}

impl Heartbeat {
    /// A runner for `tasks` (disabled ones are kept but never run).
    ///
    /// # Errors
    /// [`Error::InvalidHeartbeat`] when two tasks share a name.
    pub fn new(tasks: impl IntoIterator<Item = HeartbeatTask>) -> Result<Self> {
        let tasks: Vec<HeartbeatTask> = tasks.into_iter().collect();
        validate_tasks(&tasks)?;
        Ok(Self { tasks })
    }

    /// The tasks, as configured.
    pub fn tasks(&self) -> &[HeartbeatTask] {
        &self.tasks
    }

    /// Runs every enabled task until `shutdown` is cancelled, then waits for their loops
    /// to stop (a launch in progress gets [`SHUTDOWN_GRACE`] to finish). Each task has
    /// its own loop, so tasks never wait for each other and a task never overlaps itself.
    pub async fn run<L, La, C>(
        self,
        ledger: Arc<L>,
        launcher: Arc<La>,
        clock: Arc<C>,
        shutdown: CancellationToken,
    ) where
        L: HeartbeatLedger + 'static,
        La: HeartbeatLauncher + 'static,
        C: Clock + 'static,
    {
        let mut loops = tokio::task::JoinSet::new();
        for task in self.tasks.into_iter().filter(|task| task.enabled) {
            let span =
                tracing::info_span!("heartbeat", task = %task.name, schedule = %task.schedule);
            let driver = Driver {
                task,
                ledger: ledger.clone(),
                launcher: launcher.clone(),
                clock: clock.clone(),
                shutdown: shutdown.clone(),
            };
            loops.spawn(driver.drive().instrument(span));
        }
        shutdown.cancelled().await;
        while let Some(result) = loops.join_next().await {
            if let Err(error) = result {
                tracing::error!(%error, "a heartbeat loop stopped abnormally");
            }
        }
    }
}

/// One task's loop.
struct Driver<L, La, C> {
    task: HeartbeatTask,
    ledger: Arc<L>,
    launcher: Arc<La>,
    clock: Arc<C>,
    shutdown: CancellationToken,
}

impl<L, La, C> Driver<L, La, C>
where
    L: HeartbeatLedger + 'static,
    La: HeartbeatLauncher + 'static,
    C: Clock + 'static,
{
    /// Sleeps (or returns `false` on shutdown) until `deadline`.
    async fn sleep_until(&self, deadline: DateTime<Utc>) -> bool {
        tokio::select! {
            () = self.clock.sleep_until(deadline) => true,
            () = self.shutdown.cancelled() => false,
        }
    }

    async fn drive(self) {
        let name = self.task.name.clone();
        let record = loop {
            match self.ledger.register(&name, self.clock.now()).await {
                Ok(record) => break record,
                Err(error) => {
                    tracing::error!(%error, "cannot read the heartbeat ledger; trying again later");
                    let retry = self.clock.now()
                        + chrono::Duration::from_std(LEDGER_RETRY).unwrap_or_default();
                    if !self.sleep_until(retry).await {
                        return;
                    }
                }
            }
        };
        if let (true, Some(slot)) = (record.in_flight(), record.last_scheduled_for) {
            tracing::warn!(scheduled_for = %slot, "the previous run never finished (the process stopped during it); it is not repeated");
            self.finish(slot, RunOutcome::Interrupted).await;
        }
        // Slots at or before this were run (or predate the task): never again.
        let mut done_until = record.done_until();
        loop {
            let now = self.clock.now();
            match self.task.schedule.latest_at_or_before(now) {
                Some(slot) if slot > done_until => {
                    // Due now, or missed (once however many were missed).
                    if slot < now - chrono::Duration::minutes(1) {
                        tracing::info!(scheduled_for = %slot, "running a missed slot once");
                    }
                    done_until = slot;
                    self.run_once(slot).await;
                    if self.shutdown.is_cancelled() {
                        return;
                    }
                }
                _ => match self.task.schedule.next_after(now.max(done_until)) {
                    Some(next) => {
                        tracing::debug!(next = %next, "sleeping until the next slot");
                        if !self.sleep_until(next).await {
                            return;
                        }
                    }
                    None => {
                        tracing::info!("the schedule has no further slot");
                        self.shutdown.cancelled().await;
                        return;
                    }
                },
            }
        }
    }

    async fn run_once(&self, slot: DateTime<Utc>) {
        let name = self.task.name.as_str();
        match self.ledger.record_start(name, slot, self.clock.now()).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(scheduled_for = %slot, "this slot was already started by another runner");
                return;
            }
            Err(error) => {
                // Without the record a crash would go unseen and the slot could run
                // twice; skip it.
                tracing::error!(scheduled_for = %slot, %error, "cannot record the start of a heartbeat run; skipping this slot");
                return;
            }
        }
        tracing::info!(scheduled_for = %slot, "starting heartbeat task");
        let launcher = self.launcher.clone();
        let task = self.task.clone();
        // A task of its own, so a panicking launcher is a failed run, not a dead loop.
        let mut launch = tokio::spawn(async move { launcher.launch(&task, slot).await });
        let joined = tokio::select! {
            joined = &mut launch => Some(joined),
            () = self.shutdown.cancelled() => {
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut launch).await {
                    Ok(joined) => Some(joined),
                    Err(_) => {
                        launch.abort();
                        None
                    }
                }
            }
        };
        let outcome = match joined {
            Some(Ok(Ok(thread_id))) => {
                tracing::info!(scheduled_for = %slot, thread = %thread_id, "heartbeat task started");
                RunOutcome::Launched { thread_id }
            }
            Some(Ok(Err(error))) => {
                tracing::warn!(scheduled_for = %slot, %error, "heartbeat task failed");
                RunOutcome::Failed { error }
            }
            Some(Err(join_error)) => {
                let error = format!("the launcher panicked: {join_error}");
                tracing::error!(scheduled_for = %slot, %error, "heartbeat task failed");
                RunOutcome::Failed { error }
            }
            None => {
                tracing::warn!(scheduled_for = %slot, "shutdown interrupted the heartbeat task");
                RunOutcome::Interrupted
            }
        };
        self.finish(slot, outcome).await;
    }

    async fn finish(&self, slot: DateTime<Utc>, outcome: RunOutcome) {
        if let Err(error) = self
            .ledger
            .record_finish(&self.task.name, slot, self.clock.now(), &outcome)
            .await
        {
            tracing::error!(scheduled_for = %slot, %error, "cannot record the end of a heartbeat run");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test time")
            .with_timezone(&Utc)
    }

    #[derive(Debug, Default, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ConfigFile {
        #[serde(default)]
        heartbeat: Vec<HeartbeatTask>,
    }

    fn config(text: &str) -> std::result::Result<ConfigFile, String> {
        toml::from_str(text).map_err(|error| error.to_string())
    }

    #[test]
    fn tasks_read_from_toml() {
        let file = config(
            r#"
[[heartbeat]]
name = "nightly-health"
schedule = "0 3 * * *"
task = "health_scan"
namespace = "shop"

[[heartbeat]]
name = "weekly-security"
schedule = "@weekly"
task = "security_scan"

[[heartbeat]]
name = "morning"
schedule = "30 7 * * MON-FRI"
task = { request = { text = "list pods in shop" } }
enabled = false
"#,
        )
        .expect("valid");
        let [health, security, morning] = &file.heartbeat[..] else {
            panic!("three tasks: {:?}", file.heartbeat);
        };
        assert_eq!(health.task, HeartbeatKind::HealthScan);
        assert_eq!(health.namespace.as_deref(), Some("shop"));
        assert!(health.enabled);
        assert_eq!(
            health.request_text(),
            "Scheduled health scan of namespace shop"
        );
        assert_eq!(security.task, HeartbeatKind::SecurityScan);
        assert_eq!(
            security.request_text(),
            "Scheduled security scan of every namespace"
        );
        assert_eq!(
            morning.task,
            HeartbeatKind::Request {
                text: "list pods in shop".into()
            }
        );
        assert!(!morning.enabled);
        // And back: what is written reads the same.
        let json = serde_json::to_value(morning).expect("serialize");
        assert_eq!(json["schedule"], "30 7 * * MON-FRI");
        let again: HeartbeatTask = serde_json::from_value(json).expect("round trip");
        assert_eq!(&again, morning);
    }

    #[test]
    fn bad_tasks_are_refused_naming_the_task() {
        let error = config(
            "[[heartbeat]]\nname = \"nightly\"\nschedule = \"61 * * * *\"\ntask = \"health_scan\"\n",
        )
        .expect_err("minute 61");
        assert!(
            error.contains("heartbeat task \"nightly\"") && error.contains("61 * * * *"),
            "{error}"
        );
        let error = config(
            "[[heartbeat]]\nname = \"seconds\"\nschedule = \"0 0 3 * * *\"\ntask = \"health_scan\"\n",
        )
        .expect_err("six fields");
        assert!(error.contains("\"seconds\""), "{error}");
        let error = config(
            "[[heartbeat]]\nname = \"feb30\"\nschedule = \"0 0 30 2 *\"\ntask = \"health_scan\"\n",
        )
        .expect_err("never");
        assert!(error.contains("never matches"), "{error}");
        let error = config(
            "[[heartbeat]]\nname = \"x\"\nschedule = \"@daily\"\ntask = \"health_scan\"\nnamespce = \"shop\"\n",
        )
        .expect_err("typo");
        assert!(error.contains("namespce"), "{error}");
        let error = config(
            "[[heartbeat]]\nname = \"x\"\nschedule = \"@daily\"\ntask = \"reboot_everything\"\n",
        )
        .expect_err("unknown task");
        assert!(error.contains("reboot_everything"), "{error}");
        let error = config(
            "[[heartbeat]]\nname = \"q\"\nschedule = \"@daily\"\ntask = { request = { text = \" \" } }\n",
        )
        .expect_err("empty request");
        assert!(error.contains("no text"), "{error}");
        let error = config(
            "[[heartbeat]]\nname = \"q\"\nschedule = \"@daily\"\ntask = { request = { text = \"hi\", urgent = true } }\n",
        )
        .expect_err("unknown request field");
        assert!(error.contains("urgent"), "{error}");
        let error = config(
            "[[heartbeat]]\nname = \"a b\"\nschedule = \"@daily\"\ntask = \"health_scan\"\n",
        )
        .expect_err("space in name");
        assert!(error.contains("the name must be"), "{error}");
        let error = config(
            "[[heartbeat]]\nname = \"n\"\nschedule = \"@daily\"\ntask = \"health_scan\"\nnamespace = \"Shop\"\n",
        )
        .expect_err("namespace");
        assert!(error.contains("not a namespace name"), "{error}");

        let task = |name: &str| {
            HeartbeatTask::new(name, "@hourly", HeartbeatKind::HealthScan).expect("valid")
        };
        let error = Heartbeat::new([task("a"), task("b"), task("a")]).expect_err("duplicate");
        assert!(
            error.to_string().contains("heartbeat task \"a\"")
                && error.to_string().contains("same name"),
            "{error}"
        );
    }

    #[test]
    fn schedules_find_the_next_and_the_latest_slot() {
        let schedule = Schedule::parse("0 3 * * *").expect("daily at 3");
        assert_eq!(
            schedule.next_after(at("2026-11-25T03:00:00Z")),
            Some(at("2026-11-26T03:00:00Z")),
            "strictly after"
        );
        assert_eq!(
            schedule.latest_at_or_before(at("2026-11-25T03:00:00Z")),
            Some(at("2026-11-25T03:00:00Z")),
            "at counts"
        );
        assert_eq!(
            schedule.latest_at_or_before(at("2026-11-25T02:59:59Z")),
            Some(at("2026-11-24T03:00:00Z"))
        );
        let weekdays = Schedule::parse("30 7 * * MON-FRI").expect("weekdays");
        // 2026-11-28 is a Saturday.
        assert_eq!(
            weekdays.next_after(at("2026-11-27T08:00:00Z")),
            Some(at("2026-11-30T07:30:00Z"))
        );
        assert_eq!(
            Schedule::parse("@hourly").expect("nickname").expression(),
            "@hourly"
        );
    }

    /// A launch as recorded: the task, its slot, and when it was launched.
    type Launch = (String, DateTime<Utc>, DateTime<Utc>);

    /// Records every launch; optionally slow, failing or panicking.
    #[derive(Default)]
    struct Recorder {
        launches: Mutex<Vec<Launch>>,
        running: AtomicUsize,
        most_at_once: AtomicUsize,
        takes: Duration,
        fail_first: bool,
        panic_first: bool,
        clock: Option<TokioClock>,
    }

    impl Recorder {
        fn launches(&self) -> Vec<Launch> {
            self.launches.lock().expect("lock").clone()
        }
    }

    impl HeartbeatLauncher for Recorder {
        async fn launch(
            &self,
            task: &HeartbeatTask,
            scheduled_for: DateTime<Utc>,
        ) -> std::result::Result<ThreadId, String> {
            let now = self.clock.map(|clock| clock.now()).unwrap_or(scheduled_for);
            let count = {
                let mut launches = self.launches.lock().expect("lock");
                launches.push((task.name.clone(), scheduled_for, now));
                launches.len()
            };
            let running = self.running.fetch_add(1, Ordering::SeqCst) + 1;
            self.most_at_once.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(self.takes).await;
            self.running.fetch_sub(1, Ordering::SeqCst);
            if count == 1 && self.panic_first {
                panic!("launcher bug");
            }
            if count == 1 && self.fail_first {
                return Err("the cluster is unreachable".to_owned());
            }
            Ok(ThreadId::new())
        }
    }

    const START: &str = "2026-11-25T10:00:30Z";

    /// Runs `tasks` against `ledger` for `hours` of (paused) tokio time.
    async fn run_for(
        tasks: Vec<HeartbeatTask>,
        ledger: Arc<MemoryLedger>,
        launcher: Arc<Recorder>,
        clock: TokioClock,
        duration: Duration,
    ) {
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(Heartbeat::new(tasks).expect("valid").run(
            ledger,
            launcher,
            Arc::new(clock),
            shutdown.clone(),
        ));
        tokio::time::sleep(duration).await;
        shutdown.cancel();
        runner.await.expect("runner stops");
    }

    fn hourly(name: &str) -> HeartbeatTask {
        HeartbeatTask::new(name, "0 * * * *", HeartbeatKind::HealthScan).expect("valid")
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_task_waits_for_its_first_slot_then_runs_each_slot_once() {
        let clock = TokioClock::starting_at(at(START));
        let ledger = Arc::new(MemoryLedger::default());
        let launcher = Arc::new(Recorder::default());
        run_for(
            vec![hourly("health")],
            ledger.clone(),
            launcher.clone(),
            clock,
            Duration::from_secs(3 * 3600),
        )
        .await;
        let slots: Vec<DateTime<Utc>> = launcher.launches().iter().map(|l| l.1).collect();
        assert_eq!(
            slots,
            vec![
                at("2026-11-25T11:00:00Z"),
                at("2026-11-25T12:00:00Z"),
                at("2026-11-25T13:00:00Z")
            ],
            "10:00 was before the task was first seen"
        );
        let records = ledger.records().await.expect("records");
        assert_eq!(records.len(), 1);
        let record = &records[0];
        assert_eq!(record.since, at(START));
        assert_eq!(record.runs, 3);
        assert_eq!(record.failures, 0);
        assert_eq!(record.last_scheduled_for, Some(at("2026-11-25T13:00:00Z")));
        assert!(matches!(
            record.last_outcome,
            Some(RunOutcome::Launched { .. })
        ));
        assert!(!record.in_flight());
    }

    #[tokio::test(start_paused = true)]
    async fn three_missed_slots_after_a_restart_run_exactly_once() {
        let clock = TokioClock::starting_at(at(START));
        // The previous process last ran the 06:00 slot; 07:00, 08:00, 09:00 and 10:00
        // passed while it was down.
        let mut record = HeartbeatRecord::new("health", at("2026-11-20T00:00:00Z"));
        record.last_scheduled_for = Some(at("2026-11-25T06:00:00Z"));
        record.last_started_at = Some(at("2026-11-25T06:00:01Z"));
        record.last_finished_at = Some(at("2026-11-25T06:00:02Z"));
        record.last_outcome = Some(RunOutcome::Launched {
            thread_id: ThreadId::new(),
        });
        record.runs = 7;
        let ledger = Arc::new(MemoryLedger::with_records([record]));
        let launcher = Arc::new(Recorder {
            clock: Some(clock),
            ..Recorder::default()
        });
        run_for(
            vec![hourly("health")],
            ledger.clone(),
            launcher.clone(),
            clock,
            Duration::from_secs(3600),
        )
        .await;
        let launches = launcher.launches();
        assert_eq!(launches.len(), 2, "{launches:?}");
        assert_eq!(
            (launches[0].1, launches[0].2),
            (at("2026-11-25T10:00:00Z"), at(START)),
            "once, at start, for the latest missed slot"
        );
        assert_eq!(launches[1].1, at("2026-11-25T11:00:00Z"), "then on time");
        assert_eq!(ledger.records().await.expect("records")[0].runs, 9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_interrupted_by_a_crash_is_marked_and_not_repeated() {
        let clock = TokioClock::starting_at(at(START));
        let mut record = HeartbeatRecord::new("health", at("2026-11-20T00:00:00Z"));
        record.last_scheduled_for = Some(at("2026-11-25T10:00:00Z"));
        record.last_started_at = Some(at("2026-11-25T10:00:00Z"));
        record.runs = 1;
        assert!(record.in_flight());
        let ledger = Arc::new(MemoryLedger::with_records([record]));
        let launcher = Arc::new(Recorder::default());
        run_for(
            vec![hourly("health")],
            ledger.clone(),
            launcher.clone(),
            clock,
            Duration::from_secs(1800),
        )
        .await;
        assert!(launcher.launches().is_empty(), "10:00 was already started");
        let record = &ledger.records().await.expect("records")[0];
        assert_eq!(record.last_outcome, Some(RunOutcome::Interrupted));
        assert_eq!(record.failures, 1);
        assert!(!record.in_flight());
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_task_never_overlaps_itself_and_catches_up_once() {
        let clock = TokioClock::starting_at(at("2026-11-25T10:00:30Z"));
        let ledger = Arc::new(MemoryLedger::default());
        // Every minute, but each run takes 150 s: slots pass while it runs.
        let launcher = Arc::new(Recorder {
            takes: Duration::from_secs(150),
            clock: Some(clock),
            ..Recorder::default()
        });
        let task =
            HeartbeatTask::new("busy", "* * * * *", HeartbeatKind::SecurityScan).expect("valid");
        run_for(
            vec![task],
            ledger,
            launcher.clone(),
            clock,
            Duration::from_secs(6 * 60),
        )
        .await;
        assert_eq!(launcher.most_at_once.load(Ordering::SeqCst), 1);
        let launches: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            launcher.launches().iter().map(|l| (l.1, l.2)).collect();
        assert_eq!(
            launches,
            vec![
                // On time.
                (at("2026-11-25T10:01:00Z"), at("2026-11-25T10:01:00Z")),
                // 10:02 and 10:03 passed during the first run: the latest, once.
                (at("2026-11-25T10:03:00Z"), at("2026-11-25T10:03:30Z")),
                (at("2026-11-25T10:06:00Z"), at("2026-11-25T10:06:00Z")),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_and_panics_are_recorded_and_the_loop_goes_on() {
        for panics in [false, true] {
            let clock = TokioClock::starting_at(at(START));
            let ledger = Arc::new(MemoryLedger::default());
            let launcher = Arc::new(Recorder {
                fail_first: !panics,
                panic_first: panics,
                ..Recorder::default()
            });
            let shutdown = CancellationToken::new();
            let runner = tokio::spawn(Heartbeat::new([hourly("health")]).expect("valid").run(
                ledger.clone(),
                launcher.clone(),
                Arc::new(clock),
                shutdown.clone(),
            ));
            // Just after the first slot: its failure is recorded.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            let record = ledger.records().await.expect("records")[0].clone();
            match &record.last_outcome {
                Some(RunOutcome::Failed { error }) if panics => {
                    assert!(error.contains("panicked"), "{error}")
                }
                Some(RunOutcome::Failed { error }) => {
                    assert_eq!(error, "the cluster is unreachable")
                }
                other => panic!("{other:?}"),
            }
            assert_eq!((record.runs, record.failures), (1, 1));
            // The next slot runs as usual.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            shutdown.cancel();
            runner.await.expect("stops");
            let record = &ledger.records().await.expect("records")[0];
            assert_eq!((record.runs, record.failures), (2, 1));
            assert!(matches!(
                record.last_outcome,
                Some(RunOutcome::Launched { .. })
            ));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn disabled_tasks_never_run_and_claimed_slots_are_skipped() {
        let clock = TokioClock::starting_at(at(START));
        let mut off = hourly("off");
        off.enabled = false;
        let ledger = Arc::new(MemoryLedger::default());
        let launcher = Arc::new(Recorder::default());
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(Heartbeat::new([off, hourly("shared")]).expect("valid").run(
            ledger.clone(),
            launcher.clone(),
            Arc::new(clock),
            shutdown.clone(),
        ));
        // While this runner sleeps, another one sharing the ledger claims 11:00.
        tokio::time::sleep(Duration::from_secs(1800)).await;
        assert!(ledger
            .record_start("shared", at("2026-11-25T11:00:00Z"), clock.now())
            .await
            .expect("claim"));
        tokio::time::sleep(Duration::from_secs(1800)).await;
        shutdown.cancel();
        runner.await.expect("stops");
        assert!(launcher.launches().is_empty(), "{:?}", launcher.launches());
        let names: Vec<String> = ledger
            .records()
            .await
            .expect("records")
            .into_iter()
            .map(|r| r.task)
            .collect();
        assert_eq!(
            names,
            vec!["shared"],
            "a disabled task is not even registered"
        );
        assert!(
            !ledger
                .record_start("shared", at("2026-11-25T11:00:00Z"), clock.now())
                .await
                .expect("claim again"),
            "a slot is claimed once"
        );
    }

    #[tokio::test]
    async fn a_manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(at(START));
        let ledger = Arc::new(MemoryLedger::default());
        let launcher = Arc::new(Recorder::default());
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(Heartbeat::new([hourly("health")]).expect("valid").run(
            ledger.clone(),
            launcher.clone(),
            Arc::new(clock.clone()),
            shutdown.clone(),
        ));
        clock.sleeping_until(at("2026-11-25T11:00:00Z")).await;
        assert!(launcher.launches().is_empty());
        clock.advance(chrono::Duration::minutes(60));
        clock.sleeping_until(at("2026-11-25T12:00:00Z")).await;
        assert_eq!(launcher.launches().len(), 1);
        shutdown.cancel();
        runner.await.expect("stops");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_gives_a_running_launch_its_grace_then_records_it_interrupted() {
        let clock = TokioClock::starting_at(at("2026-11-25T10:59:59Z"));
        let ledger = Arc::new(MemoryLedger::default());
        let launcher = Arc::new(Recorder {
            takes: SHUTDOWN_GRACE * 3,
            ..Recorder::default()
        });
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(Heartbeat::new([hourly("health")]).expect("valid").run(
            ledger.clone(),
            launcher.clone(),
            Arc::new(clock),
            shutdown.clone(),
        ));
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert_eq!(launcher.launches().len(), 1, "11:00 started");
        shutdown.cancel();
        runner.await.expect("stops");
        let record = &ledger.records().await.expect("records")[0];
        assert_eq!(record.last_outcome, Some(RunOutcome::Interrupted));
        assert_eq!(record.runs, 1);
    }
}
