//! The cluster gate: the only way deckhand reads or changes a cluster.
//!
//! A write goes through [`ClusterGate::prepare`], which
//! 1. judges the change as asked with the policy engine (checkpoint `requested`),
//! 2. sends it to the API server as a server-side dry run, and
//! 3. judges the dry-run result, the object as the server would store it after defaults
//!    and mutating admission (checkpoint `dry_run`).
//!
//! Nothing is written until [`ClusterGate::execute`] is called with the person's
//! [`Approval`]; it runs both checkpoints and the dry run again on the cluster as it is
//! now, refuses if the result differs from what was approved, and only then writes.
//! Reads ([`ClusterGate::get`], [`ClusterGate::list`]) are judged too (verbs `get` and
//! `list`), so user policies can keep agents away from, say, Secrets. Every decision and
//! every write is audited ([`audit`]) and counted (the policy engine's metrics).
//!
//! # Layout
//! - [`change`]: [`ClusterChange`] and [`ObjectRef`], what callers ask for.
//! - [`audit`]: [`AuditRecord`] and the sinks records go to.
//! - [`tools`]: the cluster tools agents call (`kube_get`, `pod_facts`, `kube_apply`, ...).
//! - [`scan`]: the read-only health scan (`health_scan`).
//! - [`access`]: acting as the person, access reviews, and the [`Alert`]s refusals raise.
//! - [`alerts`]: alerts out to a webhook or Slack ([`WebhookAlerts`]), and to several
//!   sinks at once ([`FanoutAlerts`]).

pub mod access;
pub mod alerts;
pub mod audit;
pub mod change;
pub mod journal;
pub mod read;
pub mod redact;
pub mod restore;
pub mod scan;
pub mod tools;

pub use access::{AccessCheck, AccessDenied, Alert, AlertSink, EventAlerts, Person};
pub use alerts::{
    AlertStats, AlertsConfig, DeliveryOptions, FanoutAlerts, WebhookAlerts, WebhookTarget,
};
pub use audit::{AuditRecord, AuditSink, MemoryAudit, Stage, TracingAudit};
pub use change::{ClusterChange, ObjectRef, PatchType};
pub use journal::{snapshot_of, ChangeJournal, MemoryJournal, PriorState};
pub use read::{ListPage, ListQuery, LogQuery};
pub use redact::redact_secrets;
pub use restore::{RestoreAction, RestorePlan, RestoreReport, RestoreStep};
pub use scan::{assess_health, HealthOptions, HealthReport};
pub use tools::{access_needed_for, planned_changes};

/// Registers every cluster tool over `gate`: the reads and writes of [`tools`] and the
/// health scan of [`scan`].
///
/// # Errors
/// [`Error::DuplicateTool`] when a tool of the same name is already registered.
pub fn register_cluster_tools(
    registry: &mut crate::registry::ToolRegistry,
    gate: &ClusterGate,
) -> Result<()> {
    tools::register_cluster_tools(registry, gate)?;
    scan::register_scan_tools(registry, gate)
}

/// The cluster tools' manifests, for planning where no cluster is connected (plans name
/// these tools; running them needs the cluster).
pub fn cluster_tool_specs() -> Vec<crate::spec::ToolSpec> {
    let mut specs = tools::cluster_tool_specs();
    specs.extend(scan::scan_tool_specs());
    specs
}

use crate::error::{Error, Result};
use deckhand_policy::request::{GroupVersionKind as PolicyGvk, GroupVersionResource, UserInfo};
use deckhand_policy::{AdmissionRequest, Decision, Engine, Violation};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::discovery::Scope;
use serde_json::{json, Map, Value};
use std::sync::Arc;

/// The username deckhand acts as unless configured otherwise: its ServiceAccount.
pub const DEFAULT_IDENTITY: &str = "system:serviceaccount:deckhand:deckhand";
/// The field manager of deckhand's writes (server-side apply ownership).
pub const DEFAULT_FIELD_MANAGER: &str = "deckhand";
/// The `userInfo.extra` key naming the person an operation is done for.
pub const REQUESTED_BY_KEY: &str = "deckhand.io/requested-by";

/// The person's go-ahead for one prepared change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// Who approved it.
    pub approved_by: String,
    /// The thread the change belongs to: its prior state goes to the gate's journal under
    /// this id before the write, so the thread can be restored.
    pub thread_id: Option<String>,
}

impl Approval {
    /// An approval by `who`, outside any thread.
    pub fn by(who: impl Into<String>) -> Self {
        Self {
            approved_by: who.into(),
            thread_id: None,
        }
    }

    /// The same approval, for a change made in `thread`.
    #[must_use]
    pub fn in_thread(mut self, thread: impl Into<String>) -> Self {
        self.thread_id = Some(thread.into());
        self
    }
}

/// A change that passed both checkpoints and waits for approval: what the person sees
/// before saying yes.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedChange {
    /// The change as asked.
    pub change: ClusterChange,
    /// The object, with its namespace resolved.
    pub target: ObjectRef,
    /// The object as it is now (`None` when it does not exist yet).
    pub current: Option<Value>,
    /// The object as the API server's dry run says it would be (for a delete: the object
    /// that would be deleted).
    pub dry_run: Value,
    /// What the policies want the person to know, from both checkpoints.
    pub warnings: Vec<Violation>,
    /// The person the change is done for.
    pub requested_by: String,
}

impl PreparedChange {
    /// What the change does to the object, as a unified diff of YAML (live object before,
    /// dry-run result after, bookkeeping left out, Secret values replaced by their sizes):
    /// what the person reads before approving.
    pub fn diff(&self) -> String {
        let before = self
            .current
            .as_ref()
            .map(|object| redact_secrets(comparable(object)));
        let after = match &self.change {
            ClusterChange::Delete { .. } => None,
            // The dry run of a scale answers with the Scale subresource; the person
            // reads the workload with its new replica count.
            ClusterChange::Scale { replicas, .. } => self.current.as_ref().map(|object| {
                let mut scaled = comparable(object);
                if let Some(spec) = scaled.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.insert("replicas".to_owned(), Value::from(*replicas));
                }
                redact_secrets(scaled)
            }),
            _ => Some(redact_secrets(comparable(&self.dry_run))),
        };
        let as_yaml = |object: Option<Value>| {
            object
                .map(|object| serde_yaml_ng::to_string(&object).unwrap_or_default())
                .unwrap_or_default()
        };
        let (before, after) = (as_yaml(before), as_yaml(after));
        similar::TextDiff::from_lines(&before, &after)
            .unified_diff()
            .context_radius(3)
            .header(
                &format!("{} (live)", self.target),
                &format!("{} (after)", self.target),
            )
            .to_string()
    }
}

/// The policy gate in front of one cluster. Cheap to clone.
#[derive(Clone)]
pub struct ClusterGate {
    client: kube::Client,
    policy: Engine,
    identity: String,
    field_manager: String,
    audit: Arc<dyn AuditSink>,
    journal: Option<Arc<dyn ChangeJournal>>,
    alerts: Option<Arc<dyn AlertSink>>,
    /// Kept to make impersonating clients ([`ClusterGate::acting_as`]).
    config: Option<kube::Config>,
    groups: Vec<String>,
    acting_as: Option<Person>,
}

impl std::fmt::Debug for ClusterGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterGate")
            .field("identity", &self.identity)
            .field("field_manager", &self.field_manager)
            .finish_non_exhaustive()
    }
}

/// What discovery says about the object's kind, and the API handle to reach it.
struct Resolved {
    api: Api<DynamicObject>,
    resource: ApiResource,
    target: ObjectRef,
}

impl ClusterGate {
    /// A gate over `client` judged by `policy`, auditing to the `deckhand::audit` log.
    pub fn new(client: kube::Client, policy: Engine) -> Self {
        Self {
            client,
            policy,
            identity: DEFAULT_IDENTITY.to_owned(),
            field_manager: DEFAULT_FIELD_MANAGER.to_owned(),
            audit: Arc::new(TracingAudit),
            journal: None,
            alerts: None,
            config: None,
            groups: Vec::new(),
            acting_as: None,
        }
    }

    /// A gate over a client made from `config`, which it keeps so that it can act as
    /// the people it serves ([`ClusterGate::acting_as`]).
    ///
    /// # Errors
    /// [`Error::Cluster`] when the configuration makes no client.
    pub fn from_config(config: kube::Config, policy: Engine) -> Result<Self> {
        let client = kube::Client::try_from(config.clone()).map_err(|source| Error::Cluster {
            action: "make a Kubernetes client".to_owned(),
            source: Box::new(source),
        })?;
        Ok(Self {
            config: Some(config),
            ..Self::new(client, policy)
        })
    }

    /// Raises an [`Alert`] to `sink` for every policy denial and every failed
    /// permission check.
    #[must_use]
    pub fn with_alerts(mut self, sink: Arc<dyn AlertSink>) -> Self {
        self.alerts = Some(sink);
        self
    }

    /// The Kubernetes client requests go through (impersonating, after
    /// [`ClusterGate::acting_as`]).
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Keeps prior states in `journal` before changes made in a thread (see
    /// [`Approval::in_thread`]), so the thread can be restored.
    #[must_use]
    pub fn with_journal(mut self, journal: Arc<dyn ChangeJournal>) -> Self {
        self.journal = Some(journal);
        self
    }

    /// Sends audit records to `sink` instead.
    #[must_use]
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = sink;
        self
    }

    /// The username policies see in `userInfo.username`.
    #[must_use]
    pub fn with_identity(mut self, identity: impl Into<String>) -> Self {
        self.identity = identity.into();
        self
    }

    /// The policy engine this gate judges with.
    pub fn policy(&self) -> &Engine {
        &self.policy
    }

    /// Checks `change` at both checkpoints around a server-side dry run, without
    /// writing anything.
    ///
    /// # Errors
    /// [`Error::PolicyDenied`] naming the checkpoint and every objection;
    /// [`Error::InvalidChange`] for a malformed change or a missing object;
    /// [`Error::Cluster`] when the API server refuses the dry run or cannot be reached.
    pub async fn prepare(
        &self,
        change: ClusterChange,
        requested_by: &str,
    ) -> Result<PreparedChange> {
        let resolved = self.resolve(change.target()?).await?;
        let target = resolved.target.clone();
        let generated_name = matches!(&change, ClusterChange::Create { object } if object.pointer("/metadata/name").is_none());
        let current = if generated_name {
            None
        } else {
            self.fetch(&resolved).await?
        };
        let needs_existing = matches!(
            change,
            ClusterChange::Patch { .. }
                | ClusterChange::Scale { .. }
                | ClusterChange::Delete { .. }
                | ClusterChange::Replace { .. }
        );
        if needs_existing && current.is_none() {
            return Err(Error::InvalidChange {
                message: format!("{target} does not exist"),
            });
        }
        let change = with_live_version(with_namespace(change, &target), current.as_ref());

        let asked = self.requested_review(&resolved, &change, current.clone(), requested_by);
        let first = self.judge(&asked, &change, &target, Stage::Requested, requested_by)?;

        let dry_run = self.send(&resolved, &change, true).await?;

        let stored = self.stored_review(
            &resolved,
            &change,
            current.clone(),
            dry_run.clone(),
            requested_by,
        );
        let second = self.judge(&stored, &change, &target, Stage::DryRun, requested_by)?;

        let mut warnings = first.warnings;
        warnings.extend(second.warnings);
        Ok(PreparedChange {
            change,
            target,
            current,
            dry_run,
            warnings,
            requested_by: requested_by.to_owned(),
        })
    }

    /// Writes an approved change: both checkpoints and the dry run again on the cluster
    /// as it is now, then the real write. Returns the object as written (for a delete,
    /// the object as deleted or being deleted).
    ///
    /// # Errors
    /// As [`ClusterGate::prepare`], plus [`Error::ChangedSinceApproval`] when what would
    /// be written now differs from what was approved.
    pub async fn execute(&self, prepared: &PreparedChange, approval: &Approval) -> Result<Value> {
        let fresh = self
            .prepare(prepared.change.clone(), &prepared.requested_by)
            .await?;
        let operation = describe(&prepared.change, &prepared.target);
        if let Some(difference) = first_difference(
            &comparable(&prepared.dry_run),
            &comparable(&fresh.dry_run),
            "",
        ) {
            return Err(Error::ChangedSinceApproval {
                operation,
                difference,
            });
        }
        let resolved = self.resolve(fresh.target.clone()).await?;
        let generated_name = matches!(&fresh.change, ClusterChange::Create { object } if object.pointer("/metadata/name").is_none());
        if !generated_name {
            let prior = fresh.current.as_ref().map(snapshot_of);
            self.journal_prior(approval, &fresh.target, prior.as_ref(), &operation)
                .await?;
        }
        let written = self.send(&resolved, &fresh.change, false).await;
        if generated_name {
            // The name exists only now; a crash right here leaves this one object out
            // of the thread's restore plan.
            if let Ok(object) = &written {
                let mut created = fresh.target.clone();
                if let Some(name) = object.pointer("/metadata/name").and_then(Value::as_str) {
                    created.name = name.to_owned();
                }
                self.journal_prior(approval, &created, None, &operation)
                    .await?;
            }
        }
        self.audit.record(&AuditRecord {
            at_micros: AuditRecord::now_micros(),
            requested_by: prepared.requested_by.clone(),
            approved_by: Some(approval.approved_by.clone()),
            verb: fresh.change.verb().to_owned(),
            object: fresh.target.to_string(),
            stage: Stage::Write,
            allowed: written.is_ok(),
            violations: Vec::new(),
            warnings: fresh.warnings.clone(),
            error: written.as_ref().err().map(|error| format!("{error:#}")),
        });
        written
    }

    /// Records the prior state of `object` for the approval's thread, if there is a thread
    /// and a journal. A journal that cannot take it stops the write.
    async fn journal_prior(
        &self,
        approval: &Approval,
        object: &ObjectRef,
        prior: Option<&Value>,
        operation: &str,
    ) -> Result<()> {
        let (Some(journal), Some(thread)) = (&self.journal, &approval.thread_id) else {
            return Ok(());
        };
        journal
            .record_prior(thread, object, prior)
            .await
            .map(drop)
            .map_err(|message| Error::Journal {
                operation: operation.to_owned(),
                message,
            })
    }

    /// Reads one object (`None` when it does not exist), after the policy allows `get`.
    ///
    /// # Errors
    /// [`Error::PolicyDenied`], [`Error::InvalidChange`] for a malformed reference,
    /// [`Error::Cluster`].
    pub async fn get(&self, target: &ObjectRef, requested_by: &str) -> Result<Option<Value>> {
        let resolved = self.resolve(target.clone()).await?;
        let mut request = self.base_request(&resolved, "get", None, requested_by);
        request.name = Some(resolved.target.name.clone());
        self.judge_read(&request, &resolved.target.to_string(), "get", requested_by)?;
        Ok(self.fetch(&resolved).await?.map(redact_secrets))
    }

    async fn discover(&self, target: &ObjectRef) -> Result<(ApiResource, bool)> {
        let (group, version) = match target.api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", target.api_version.as_str()),
        };
        let gvk = GroupVersionKind::gvk(group, version, &target.kind);
        let (resource, capabilities) = kube::discovery::pinned_kind(&self.client, &gvk)
            .await
            .map_err(|source| Error::Cluster {
                action: format!(
                    "look up {} {} (is the kind spelled as in its manifests, e.g. Deployment?)",
                    target.api_version, target.kind
                ),
                source: Box::new(source),
            })?;
        Ok((resource, capabilities.scope == Scope::Namespaced))
    }

    async fn resolve(&self, mut target: ObjectRef) -> Result<Resolved> {
        let (resource, namespaced) = self.discover(&target).await?;
        let api = if namespaced {
            let namespace = target
                .namespace
                .get_or_insert_with(|| self.client.default_namespace().to_owned());
            Api::namespaced_with(self.client.clone(), namespace, &resource)
        } else {
            if target.namespace.is_some() {
                return Err(Error::InvalidChange {
                    message: format!(
                        "{} is cluster-scoped: remove the namespace from {}",
                        target.kind, target.name
                    ),
                });
            }
            Api::all_with(self.client.clone(), &resource)
        };
        Ok(Resolved {
            api,
            resource,
            target,
        })
    }

    async fn fetch(&self, resolved: &Resolved) -> Result<Option<Value>> {
        let object = resolved
            .api
            .get_opt(&resolved.target.name)
            .await
            .map_err(|source| Error::Cluster {
                action: format!("read {}", resolved.target),
                source: Box::new(source),
            })?;
        object.map(to_value).transpose()
    }

    /// Sends the change, as a dry run or for real.
    async fn send(
        &self,
        resolved: &Resolved,
        change: &ClusterChange,
        dry_run: bool,
    ) -> Result<Value> {
        let name = resolved.target.name.as_str();
        let action = format!(
            "{}{}",
            if dry_run { "dry run of " } else { "" },
            describe(change, &resolved.target)
        );
        let failed = |source: kube::Error| Error::Cluster {
            action: action.clone(),
            source: Box::new(source),
        };
        let patch_params = PatchParams {
            dry_run,
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        };
        let result = match change {
            ClusterChange::Apply { object } => {
                let params = PatchParams {
                    force: true,
                    ..patch_params
                };
                resolved
                    .api
                    .patch(name, &params, &Patch::Apply(object))
                    .await
            }
            ClusterChange::Create { object } => {
                let object: DynamicObject =
                    serde_json::from_value(object.clone()).map_err(|error| {
                        Error::InvalidChange {
                            message: format!("the object is not a Kubernetes object: {error}"),
                        }
                    })?;
                let params = PostParams {
                    dry_run,
                    field_manager: Some(self.field_manager.clone()),
                };
                resolved.api.create(&params, &object).await
            }
            ClusterChange::Replace { object } => {
                let object: DynamicObject =
                    serde_json::from_value(object.clone()).map_err(|error| {
                        Error::InvalidChange {
                            message: format!("the object is not a Kubernetes object: {error}"),
                        }
                    })?;
                let params = PostParams {
                    dry_run,
                    field_manager: Some(self.field_manager.clone()),
                };
                resolved.api.replace(name, &params, &object).await
            }
            ClusterChange::Patch {
                patch_type, patch, ..
            } => match patch_type {
                PatchType::Merge => {
                    resolved
                        .api
                        .patch(name, &patch_params, &Patch::Merge(patch))
                        .await
                }
                PatchType::Strategic => {
                    resolved
                        .api
                        .patch(name, &patch_params, &Patch::Strategic(patch))
                        .await
                }
                PatchType::Json => {
                    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
                        .map_err(|error| Error::InvalidChange {
                            message: format!("not a JSON patch (RFC 6902): {error}"),
                        })?;
                    resolved
                        .api
                        .patch(name, &patch_params, &Patch::<Value>::Json(operations))
                        .await
                }
            },
            ClusterChange::Scale { replicas, .. } => {
                let patch = json!({"spec": {"replicas": replicas}});
                resolved
                    .api
                    .patch_subresource("scale", name, &patch_params, &Patch::Merge(&patch))
                    .await
            }
            ClusterChange::Delete { .. } => {
                let params = DeleteParams {
                    dry_run,
                    ..DeleteParams::default()
                };
                match resolved.api.delete(name, &params).await {
                    Ok(either) => {
                        return match either.left() {
                            Some(object) => to_value(object),
                            // Deleted at once: the object as it was is what went.
                            None => Ok(
                                json!({"status": "Success", "deleted": resolved.target.to_string()}),
                            ),
                        };
                    }
                    Err(error) => Err(error),
                }
            }
        };
        result.map_err(failed).and_then(to_value)
    }

    /// The request's common fields: kind, resource, namespace, who asks.
    fn base_request(
        &self,
        resolved: &Resolved,
        verb: &str,
        operation: Option<&str>,
        requested_by: &str,
    ) -> AdmissionRequest {
        let resource = &resolved.resource;
        let mut extra = Map::new();
        extra.insert(REQUESTED_BY_KEY.to_owned(), json!([requested_by]));
        AdmissionRequest {
            kind: Some(PolicyGvk {
                group: resource.group.clone(),
                version: resource.version.clone(),
                kind: resource.kind.clone(),
            }),
            resource: Some(GroupVersionResource {
                group: resource.group.clone(),
                version: resource.version.clone(),
                resource: resource.plural.clone(),
            }),
            namespace: resolved.target.namespace.clone(),
            operation: operation.map(str::to_owned),
            verb: Some(verb.to_owned()),
            user_info: Some(UserInfo {
                username: Some(self.identity.clone()),
                groups: self.groups.clone(),
                extra,
                ..UserInfo::default()
            }),
            ..AdmissionRequest::default()
        }
    }

    /// Checkpoint `requested`: the change as asked (a patch as a patch).
    fn requested_review(
        &self,
        resolved: &Resolved,
        change: &ClusterChange,
        current: Option<Value>,
        requested_by: &str,
    ) -> AdmissionRequest {
        let exists = current.is_some();
        let upsert = if exists { "UPDATE" } else { "CREATE" };
        let (operation, object, options) = match change {
            ClusterChange::Apply { object } => (
                upsert,
                Some(object.clone()),
                json!({"kind": "PatchOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": self.field_manager, "force": true}),
            ),
            ClusterChange::Create { object } => (
                "CREATE",
                Some(object.clone()),
                json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": self.field_manager}),
            ),
            ClusterChange::Replace { object } => (
                "UPDATE",
                Some(object.clone()),
                json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": self.field_manager}),
            ),
            ClusterChange::Patch { patch, .. } => (
                "UPDATE",
                Some(patch.clone()),
                json!({"kind": "PatchOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": self.field_manager}),
            ),
            ClusterChange::Scale { replicas, .. } => (
                "UPDATE",
                Some(self.scale_object(resolved, *replicas)),
                json!({"kind": "PatchOptions", "apiVersion": "meta.k8s.io/v1", "fieldManager": self.field_manager}),
            ),
            ClusterChange::Delete { .. } => (
                "DELETE",
                None,
                json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
            ),
        };
        let mut request = self.base_request(resolved, change.verb(), Some(operation), requested_by);
        request.name = name_of(change, &resolved.target);
        request.object = object;
        request.old_object = match change {
            // A scale is judged on the Scale object alone.
            ClusterChange::Scale { .. } => None,
            _ => current,
        };
        request.options = Some(options);
        request.dry_run = Some(false);
        if matches!(change, ClusterChange::Scale { .. }) {
            make_scale_request(&mut request);
        }
        request
    }

    /// Checkpoint `dry_run`: the whole object as the server would store it, shaped as
    /// the API server's own admission request for the write would be.
    fn stored_review(
        &self,
        resolved: &Resolved,
        change: &ClusterChange,
        current: Option<Value>,
        dry_run: Value,
        requested_by: &str,
    ) -> AdmissionRequest {
        let (verb, operation) = match change {
            ClusterChange::Delete { .. } => ("delete", "DELETE"),
            _ if current.is_none() => ("create", "CREATE"),
            _ => ("update", "UPDATE"),
        };
        let mut request = self.base_request(resolved, verb, Some(operation), requested_by);
        request.name = dry_run
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| name_of(change, &resolved.target));
        request.dry_run = Some(true);
        match change {
            ClusterChange::Delete { .. } => {
                request.old_object =
                    if dry_run.get("kind").is_some() && dry_run.get("deleted").is_none() {
                        Some(dry_run)
                    } else {
                        current
                    };
                request.options = Some(
                    json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"]}),
                );
            }
            ClusterChange::Scale { .. } => {
                request.object = Some(dry_run);
                request.options = Some(
                    json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"]}),
                );
                make_scale_request(&mut request);
            }
            _ => {
                request.object = Some(dry_run);
                request.old_object = current;
                let options_kind = if operation == "CREATE" {
                    "CreateOptions"
                } else {
                    "UpdateOptions"
                };
                request.options = Some(
                    json!({"kind": options_kind, "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"]}),
                );
            }
        }
        request
    }

    fn scale_object(&self, resolved: &Resolved, replicas: i32) -> Value {
        json!({
            "apiVersion": "autoscaling/v1",
            "kind": "Scale",
            "metadata": {"name": resolved.target.name, "namespace": resolved.target.namespace},
            "spec": {"replicas": replicas},
        })
    }

    /// Judges a change at one checkpoint.
    fn judge(
        &self,
        request: &AdmissionRequest,
        change: &ClusterChange,
        target: &ObjectRef,
        stage: Stage,
        requested_by: &str,
    ) -> Result<Decision> {
        let operation = describe(change, target);
        self.decide(request, operation, target.to_string(), stage, requested_by)
    }

    /// Judges a read (`what` names it for the audit log and messages).
    fn judge_read(
        &self,
        request: &AdmissionRequest,
        what: &str,
        verb: &str,
        requested_by: &str,
    ) -> Result<()> {
        let operation = format!("{verb} {what}");
        self.decide(
            request,
            operation,
            what.to_owned(),
            Stage::Read,
            requested_by,
        )
        .map(drop)
    }

    /// Evaluates, audits, and turns a denial into an error.
    fn decide(
        &self,
        request: &AdmissionRequest,
        operation: String,
        object: String,
        stage: Stage,
        requested_by: &str,
    ) -> Result<Decision> {
        let decision = self.policy.evaluate(request);
        self.audit.record(&AuditRecord {
            at_micros: AuditRecord::now_micros(),
            requested_by: requested_by.to_owned(),
            approved_by: None,
            verb: request.verb.clone().unwrap_or_default(),
            object,
            stage,
            allowed: decision.allowed,
            violations: decision.violations.clone(),
            warnings: decision.warnings.clone(),
            error: None,
        });
        if decision.allowed {
            Ok(decision)
        } else {
            self.alert(&Alert {
                reason: "policy_denied".to_owned(),
                user: requested_by.to_owned(),
                message: format!(
                    "{operation} refused: {}",
                    decision
                        .violations
                        .iter()
                        .map(|violation| format!("{}: {}", violation.policy, violation.message))
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            });
            Err(Error::PolicyDenied {
                operation,
                checkpoint: match stage {
                    Stage::DryRun => "dry_run",
                    _ => "requested",
                },
                violations: decision.violations,
            })
        }
    }
}

/// A scale goes to the `scale` subresource of the workload and carries a Scale object.
fn make_scale_request(request: &mut AdmissionRequest) {
    request.sub_resource = Some("scale".to_owned());
    request.kind = Some(PolicyGvk {
        group: "autoscaling".to_owned(),
        version: "v1".to_owned(),
        kind: "Scale".to_owned(),
    });
}

/// The name the request carries: none for a create with `generateName`.
fn name_of(change: &ClusterChange, target: &ObjectRef) -> Option<String> {
    match change {
        ClusterChange::Create { object } if object.pointer("/metadata/name").is_none() => None,
        _ => Some(target.name.clone()),
    }
}

/// The change with the resolved namespace written into its manifest, so the policies,
/// the dry run and the write all see the same namespace.
fn with_namespace(change: ClusterChange, target: &ObjectRef) -> ClusterChange {
    let set = |mut object: Value| {
        if let (Some(namespace), Some(metadata)) = (
            &target.namespace,
            object.get_mut("metadata").and_then(Value::as_object_mut),
        ) {
            metadata.insert("namespace".to_owned(), Value::String(namespace.clone()));
        }
        object
    };
    match change {
        ClusterChange::Apply { object } => ClusterChange::Apply {
            object: set(object),
        },
        ClusterChange::Create { object } => ClusterChange::Create {
            object: set(object),
        },
        ClusterChange::Replace { object } => ClusterChange::Replace {
            object: set(object),
        },
        ClusterChange::Patch {
            patch_type, patch, ..
        } => ClusterChange::Patch {
            target: target.clone(),
            patch_type,
            patch,
        },
        ClusterChange::Scale { replicas, .. } => ClusterChange::Scale {
            target: target.clone(),
            replicas,
        },
        ClusterChange::Delete { .. } => ClusterChange::Delete {
            target: target.clone(),
        },
    }
}

/// A replace carries the live object's `resourceVersion`, so the API server refuses it
/// if the object changes between this read and the write (optimistic concurrency).
fn with_live_version(change: ClusterChange, current: Option<&Value>) -> ClusterChange {
    match change {
        ClusterChange::Replace { mut object } => {
            let version = current
                .and_then(|live| live.pointer("/metadata/resourceVersion"))
                .cloned();
            if let (Some(version), Some(metadata)) = (
                version,
                object.get_mut("metadata").and_then(Value::as_object_mut),
            ) {
                metadata.insert("resourceVersion".to_owned(), version);
            }
            ClusterChange::Replace { object }
        }
        other => other,
    }
}

/// `apply apps/v1 Deployment shop/web`, for messages and the audit log.
fn describe(change: &ClusterChange, target: &ObjectRef) -> String {
    let action = match change {
        ClusterChange::Apply { .. } => "apply".to_owned(),
        ClusterChange::Create { .. } => "create".to_owned(),
        ClusterChange::Replace { .. } => "replace".to_owned(),
        ClusterChange::Patch { .. } => "patch".to_owned(),
        ClusterChange::Scale { replicas, .. } => format!("scale to {replicas}"),
        ClusterChange::Delete { .. } => "delete".to_owned(),
    };
    format!("{action} of {target}")
}

fn to_value(object: DynamicObject) -> Result<Value> {
    serde_json::to_value(object).map_err(|error| Error::InvalidChange {
        message: format!("the API server's answer cannot be represented as JSON: {error}"),
    })
}

/// The parts of an object that say what it is, without the bookkeeping the API server
/// changes on its own (versions, timestamps, status).
fn comparable(object: &Value) -> Value {
    let mut object = snapshot_of(object);
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if metadata.contains_key("generateName") {
            metadata.remove("name");
        }
    }
    object
}

/// The first path where two documents differ, if any.
fn first_difference(before: &Value, after: &Value, path: &str) -> Option<String> {
    match (before, after) {
        (Value::Object(left), Value::Object(right)) => {
            let keys: std::collections::BTreeSet<&String> =
                left.keys().chain(right.keys()).collect();
            keys.into_iter()
                .find_map(|key| match (left.get(key), right.get(key)) {
                    (Some(l), Some(r)) => first_difference(l, r, &format!("{path}/{key}")),
                    _ => Some(format!("{path}/{key}")),
                })
        }
        (Value::Array(left), Value::Array(right)) if left.len() == right.len() => left
            .iter()
            .zip(right)
            .enumerate()
            .find_map(|(index, (l, r))| first_difference(l, r, &format!("{path}/{index}"))),
        _ if before == after => None,
        _ => Some(if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bookkeeping_is_not_a_difference_but_content_is() {
        let before = json!({
            "metadata": {"name": "web", "resourceVersion": "10", "uid": "a"},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [{"image": "web:1"}]}}},
            "status": {"readyReplicas": 1}
        });
        let mut after = before.clone();
        after["metadata"]["resourceVersion"] = json!("11");
        after["status"]["readyReplicas"] = json!(3);
        assert_eq!(
            first_difference(&comparable(&before), &comparable(&after), ""),
            None
        );
        after["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:2");
        assert_eq!(
            first_difference(&comparable(&before), &comparable(&after), "").as_deref(),
            Some("/spec/template/spec/containers/0/image")
        );
    }
}
