//! Restore: putting every object a thread touched back as it was before the thread.
//!
//! From the thread's [`PriorState`]s (first touched first), [`ClusterGate::plan_restore`]
//! works backwards: an object the thread changed is replaced by its prior state, one it
//! deleted is created again, one it created is deleted. Each step is prepared like any
//! other change (both policy checkpoints around a server-side dry run), so the person
//! sees a diff per object and approves the plan by its hash; [`ClusterGate::restore`]
//! then writes step by step. Planning compares with the live objects, so a restore that
//! already ran (or stopped half-way) plans only what is still left: it is idempotent.

use super::journal::PriorState;
use super::{comparable, Approval, ClusterChange, ClusterGate, ObjectRef, PreparedChange};
use crate::error::{Error, Result};
use serde::Serialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Annotations that controllers keep on objects (a Deployment's revision): a restore
/// neither compares nor writes them back, or it would fight the controller forever.
const CONTROLLER_ANNOTATION_PREFIXES: [&str; 1] = ["deployment.kubernetes.io/"];

/// What a restore does to one object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestoreAction {
    /// The thread changed it: put the prior state back (a replace).
    Replace,
    /// The thread deleted it: create it again from the prior state.
    Recreate,
    /// The thread created it: delete it.
    Delete,
    /// It already is as it was: nothing to do.
    Unchanged,
    /// The thread created it and it is gone already: nothing to do.
    AlreadyGone,
}

impl RestoreAction {
    /// Whether this action writes to the cluster.
    pub fn writes(self) -> bool {
        matches!(self, Self::Replace | Self::Recreate | Self::Delete)
    }
}

/// One object's step in a restore.
#[derive(Debug, Clone, PartialEq)]
pub struct RestoreStep {
    /// The object.
    pub object: ObjectRef,
    /// What happens to it.
    pub action: RestoreAction,
    /// The prepared change (policies passed, dry run done) for a writing action.
    pub prepared: Option<PreparedChange>,
}

impl RestoreStep {
    /// The diff the person reads (empty when nothing is written).
    pub fn diff(&self) -> String {
        self.prepared
            .as_ref()
            .map(PreparedChange::diff)
            .unwrap_or_default()
    }
}

/// A restore, ready for approval.
#[derive(Debug, Clone, PartialEq)]
pub struct RestorePlan {
    /// The steps, in the order they run (last touched first).
    pub steps: Vec<RestoreStep>,
    /// The SHA-256 of what the plan writes (objects, actions, the states written): the
    /// person approves this, and a plan computed again later must match it.
    pub hash: String,
}

impl RestorePlan {
    /// Whether the restore writes anything at all.
    pub fn has_writes(&self) -> bool {
        self.steps.iter().any(|step| step.action.writes())
    }

    /// The plan as JSON for people and APIs: each step's object, action and diff.
    pub fn to_json(&self) -> Value {
        json!({
            "hash": self.hash,
            "steps": self.steps.iter().map(|step| json!({
                "object": step.object.to_string(),
                "action": step.action,
                "diff": step.diff(),
                "warnings": step.prepared.as_ref().map(|p| p.warnings.clone()).unwrap_or_default(),
            })).collect::<Vec<_>>(),
        })
    }
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RestoreReport {
    /// Each object and what was done to it, in order.
    pub done: Vec<(String, RestoreAction)>,
}

impl ClusterGate {
    /// Plans the restore of a thread from its prior states (first touched first).
    ///
    /// # Errors
    /// [`Error::PolicyDenied`] when the policies refuse a step (say, deleting a Namespace
    /// the thread created), [`Error::Cluster`], [`Error::InvalidChange`] for a prior state
    /// that is not an object.
    pub async fn plan_restore(
        &self,
        priors: &[PriorState],
        requested_by: &str,
    ) -> Result<RestorePlan> {
        let mut steps = Vec::with_capacity(priors.len());
        let mut hasher = Sha256::new();
        for state in priors.iter().rev() {
            check_prior(state)?;
            let resolved = self.resolve(state.object.clone()).await?;
            let live = self.fetch(&resolved).await?;
            let (action, change) = match (&state.prior, live) {
                (None, None) => (RestoreAction::AlreadyGone, None),
                (None, Some(_)) => (
                    RestoreAction::Delete,
                    Some(ClusterChange::Delete {
                        target: resolved.target.clone(),
                    }),
                ),
                (Some(prior), None) => (
                    RestoreAction::Recreate,
                    Some(ClusterChange::Create {
                        object: prior.clone(),
                    }),
                ),
                (Some(prior), Some(live)) if restorable(prior) == restorable(&live) => {
                    (RestoreAction::Unchanged, None)
                }
                (Some(prior), Some(live)) => (
                    RestoreAction::Replace,
                    Some(ClusterChange::Replace {
                        object: with_controller_annotations(prior, &live),
                    }),
                ),
            };
            hasher.update(
                json!({
                    "object": resolved.target,
                    "action": action,
                    "state": state.prior.as_ref().map(restorable),
                })
                .to_string(),
            );
            hasher.update(b"\n");
            let prepared = match change {
                Some(change) => Some(self.prepare(change, requested_by).await?),
                None => None,
            };
            steps.push(RestoreStep {
                object: resolved.target,
                action,
                prepared,
            });
        }
        let hash = hasher
            .finalize()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        Ok(RestorePlan { steps, hash })
    }

    /// Runs an approved restore plan, step by step; each write is checked again against
    /// the cluster as it is now (see [`ClusterGate::execute`]). Stops at the first
    /// failure: planning again afterwards picks up what is left.
    ///
    /// # Errors
    /// The first step's error, naming its object.
    pub async fn restore(&self, plan: &RestorePlan, approval: &Approval) -> Result<RestoreReport> {
        let mut done = Vec::with_capacity(plan.steps.len());
        for step in &plan.steps {
            if let Some(prepared) = &step.prepared {
                self.execute(prepared, approval).await?;
            }
            done.push((step.object.to_string(), step.action));
        }
        Ok(RestoreReport { done })
    }
}

/// What a restore compares: the object without bookkeeping, status, or the annotations
/// controllers keep.
fn restorable(object: &Value) -> Value {
    let mut object = comparable(object);
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(Value::Object(annotations)) = metadata.get_mut("annotations") {
            annotations.retain(|key, _| !is_controller_annotation(key));
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    object
}

fn is_controller_annotation(key: &str) -> bool {
    CONTROLLER_ANNOTATION_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// The prior state with the live object's controller annotations, which are the
/// controller's to change, not the restore's.
fn with_controller_annotations(prior: &Value, live: &Value) -> Value {
    let mut object = prior.clone();
    let live_annotations: Map<String, Value> = live
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|annotations| {
            annotations
                .iter()
                .filter(|(key, _)| is_controller_annotation(key))
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect()
        })
        .unwrap_or_default();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        let annotations = metadata
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(annotations) = annotations.as_object_mut() {
            annotations.retain(|key, _| !is_controller_annotation(key));
            annotations.extend(live_annotations);
            if annotations.is_empty() {
                metadata.remove("annotations");
            }
        }
    }
    object
}

/// A prior state that is not an object cannot be restored.
pub(crate) fn check_prior(state: &PriorState) -> Result<()> {
    match &state.prior {
        Some(Value::Object(_)) | None => Ok(()),
        Some(_) => Err(Error::InvalidChange {
            message: format!("the prior state of {} is not an object", state.object),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_annotations_neither_count_nor_are_written_back() {
        let prior = json!({"metadata": {"name": "web", "annotations": {
            "deployment.kubernetes.io/revision": "1", "team": "shop"}},
            "spec": {"replicas": 2}});
        let live = json!({"metadata": {"name": "web", "resourceVersion": "9", "annotations": {
            "deployment.kubernetes.io/revision": "3", "team": "shop"}},
            "spec": {"replicas": 2}, "status": {"replicas": 2}});
        assert_eq!(restorable(&prior), restorable(&live));
        let written = with_controller_annotations(&prior, &live);
        assert_eq!(
            written["metadata"]["annotations"],
            json!({"deployment.kubernetes.io/revision": "3", "team": "shop"})
        );
        let changed = json!({"metadata": {"name": "web"}, "spec": {"replicas": 5}});
        assert_ne!(restorable(&prior), restorable(&changed));
    }

    #[test]
    fn prior_states_must_be_objects() {
        let object = ObjectRef {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            namespace: Some("shop".into()),
            name: "app".into(),
        };
        let bad = PriorState {
            object: object.clone(),
            prior: Some(json!("text")),
        };
        assert!(check_prior(&bad).is_err());
        let created = PriorState {
            object,
            prior: None,
        };
        assert!(check_prior(&created).is_ok());
    }
}
