//! `AIRequest`: a request to deckhand in plain words, its plan, the approval and the outcome.
//!
//! The person (or a GitOps pipeline acting for them) writes the spec; deckhand's controller
//! owns the status. The status subresource keeps the two apart: a spec change bumps
//! `metadata.generation`, a status write does not, and a user allowed to edit requests is
//! not thereby allowed to forge their outcome.

use crate::condition::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The longest `requestText` or `context` accepted, in characters: a request is a few
/// paragraphs; logs and manifests belong in the workspace, not in etcd.
pub const MAX_REQUEST_TEXT_CHARS: u32 = 16 * 1024;

/// What the person asks for. The controller plans it, writes the plan to the status, and
/// runs it once `approve` names the plan's hash.
// Several printer columns share `type_ = "string"`, which clippy takes for a repeated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "deckhand.dev",
    version = "v1alpha1",
    kind = "AIRequest",
    plural = "airequests",
    singular = "airequest",
    namespaced,
    status = "AIRequestStatus",
    derive = "PartialEq",
    shortname = "aireq",
    category = "deckhand",
    label("app.kubernetes.io/part-of", "deckhand"),
    doc = "A request to deckhand in plain words. deckhand plans it, writes the plan and its hash to the status, and runs it only after spec.approve is set to that hash.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "Where the request is in its life"
    ),
    printcolumn(
        name = "User",
        type_ = "string",
        json_path = ".spec.user",
        description = "Who asked"
    ),
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.namespace",
        description = "The namespace the request is about",
        priority = "1"
    ),
    printcolumn(
        name = "Plan",
        type_ = "string",
        json_path = ".status.planHash",
        description = "The hash to approve",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AIRequestSpec {
    /// What the person wants, in plain words ("why is checkout crash-looping?").
    #[schemars(length(min = 1, max = MAX_REQUEST_TEXT_CHARS))]
    pub request_text: String,
    /// Who asks: the user name the cluster knows them by. deckhand checks this user's
    /// permissions for every step and, with impersonation on, acts as them.
    #[schemars(length(min = 1, max = 253))]
    pub user: String,
    /// The namespace the request is about.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(pattern(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub namespace: String,
    /// Anything else the planner should know, in plain words: what was tried, the alert's
    /// text, a link to the incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = MAX_REQUEST_TEXT_CHARS))]
    pub context: Option<String>,
    /// The approval: the hash of the plan in `status.planHash`. Only a plan with exactly
    /// this hash runs; a plan made again after a change needs a new approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^sha256:[0-9a-f]{64}$"))]
    pub approve: Option<String>,
    /// The undo: set to `true` once the request has run, and deckhand puts every object
    /// the request changed back as it was before it (deleting what it created); the phase
    /// becomes `Restored`. Setting it again after that does nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore: Option<bool>,
}

/// What deckhand has made of a request. Written only by deckhand's controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AIRequestStatus {
    /// Where the request is in its life; absent until the controller first sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// The plan as deckhand's runtime writes it (steps, their tools and inputs, the DAG),
    /// kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserved_object")]
    pub plan: Option<serde_json::Value>,
    /// The plan's hash (`sha256:` and 64 hex digits): what `spec.approve` must name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^sha256:[0-9a-f]{64}$"))]
    pub plan_hash: Option<String>,
    /// deckhand's answer for the person: the explanation, the findings, what was done.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// The thread this request is stored as (see the `AIConversation` of the same thread).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread_id: Option<String>,
    /// The `metadata.generation` of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    /// Details of the state (`Planned`, `Approved`, `Succeeded`...), one per type, errors
    /// included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Where a request is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Seen, not planned yet.
    Pending,
    /// A plan is written to the status; permissions are being checked.
    Planned,
    /// The plan changes the cluster and waits for `spec.approve` to name its hash.
    AwaitingApproval,
    /// The approved plan is executing.
    Running,
    /// Every step finished.
    Succeeded,
    /// Planning or a step failed, or a check denied it; the conditions say why.
    Failed,
    /// The objects the request changed were put back as they were before it.
    Restored,
}

impl Phase {
    /// Whether the request is done: nothing happens until someone changes it (a new spec,
    /// a restore).
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Restored)
    }
}

/// How `spec.approve` stands against the plan in the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approval<'a> {
    /// No approval given.
    NotGiven,
    /// An approval was given but there is no plan (yet) to match it against.
    NoPlan {
        /// The hash the person approved.
        approved: &'a str,
    },
    /// The approval names the current plan: it may run.
    Matches {
        /// The approved (and planned) hash.
        hash: &'a str,
    },
    /// The approval names another plan, e.g. one replaced after the person approved it.
    Stale {
        /// The hash the person approved.
        approved: &'a str,
        /// The hash of the plan in the status.
        planned: &'a str,
    },
}

impl AIRequestStatus {
    /// The body of a server-side apply of this status (`Patch::Apply` on the status
    /// subresource): server-side apply needs `apiVersion` and `kind` beside the fields.
    /// Apply the whole status the controller owns each time: fields the same field manager
    /// applied before and leaves out are removed.
    pub fn apply_body(&self) -> serde_json::Value {
        serde_json::json!({
            "apiVersion": <AIRequest as kube::Resource>::api_version(&()),
            "kind": <AIRequest as kube::Resource>::kind(&()),
            "status": self,
        })
    }
}

impl AIRequest {
    /// The phase, `Pending` before the controller wrote one.
    pub fn phase(&self) -> Phase {
        self.status
            .as_ref()
            .and_then(|status| status.phase)
            .unwrap_or(Phase::Pending)
    }

    /// Whether `spec.approve` names the plan in the status.
    pub fn approval(&self) -> Approval<'_> {
        let Some(approved) = self.spec.approve.as_deref().map(str::trim) else {
            return Approval::NotGiven;
        };
        match self
            .status
            .as_ref()
            .and_then(|status| status.plan_hash.as_deref())
        {
            None => Approval::NoPlan { approved },
            Some(planned) if planned == approved => Approval::Matches { hash: planned },
            Some(planned) => Approval::Stale { approved, planned },
        }
    }

    /// Whether the status describes the current spec (the controller has seen the latest
    /// change).
    pub fn is_observed(&self) -> bool {
        let observed = self
            .status
            .as_ref()
            .and_then(|status| status.observed_generation);
        observed.is_some() && observed == self.metadata.generation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const HASH_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn request(approve: Option<&str>, plan_hash: Option<&str>) -> AIRequest {
        let mut request = AIRequest::new(
            "scale-web",
            AIRequestSpec {
                request_text: "scale web to 3 replicas".into(),
                user: "alice@example.com".into(),
                namespace: "shop".into(),
                context: None,
                approve: approve.map(str::to_owned),
                restore: None,
            },
        );
        request.status = plan_hash.map(|hash| AIRequestStatus {
            plan_hash: Some(hash.to_owned()),
            ..AIRequestStatus::default()
        });
        request
    }

    #[test]
    fn approval_matches_only_the_planned_hash() {
        assert_eq!(request(None, Some(HASH_A)).approval(), Approval::NotGiven);
        assert_eq!(
            request(Some(HASH_A), None).approval(),
            Approval::NoPlan { approved: HASH_A }
        );
        assert_eq!(
            request(Some(HASH_A), Some(HASH_A)).approval(),
            Approval::Matches { hash: HASH_A }
        );
        assert_eq!(
            request(Some(HASH_A), Some(HASH_B)).approval(),
            Approval::Stale {
                approved: HASH_A,
                planned: HASH_B
            }
        );
    }

    #[test]
    fn a_request_without_status_is_pending_and_unobserved() {
        let mut fresh = request(None, None);
        assert_eq!(fresh.phase(), Phase::Pending);
        assert!(!fresh.is_observed());

        fresh.metadata.generation = Some(2);
        fresh.status = Some(AIRequestStatus {
            phase: Some(Phase::AwaitingApproval),
            observed_generation: Some(1),
            ..AIRequestStatus::default()
        });
        assert_eq!(fresh.phase(), Phase::AwaitingApproval);
        assert!(!fresh.is_observed(), "generation 2 was not observed yet");
        fresh.metadata.generation = Some(1);
        assert!(fresh.is_observed());
    }

    #[test]
    fn the_apply_body_names_the_kind() {
        let status = AIRequestStatus {
            phase: Some(Phase::Running),
            ..AIRequestStatus::default()
        };
        assert_eq!(
            status.apply_body(),
            serde_json::json!({
                "apiVersion": "deckhand.dev/v1alpha1",
                "kind": "AIRequest",
                "status": {"phase": "Running"}
            })
        );
    }

    #[test]
    fn finished_phases() {
        let finished: Vec<Phase> = [
            Phase::Pending,
            Phase::Planned,
            Phase::AwaitingApproval,
            Phase::Running,
            Phase::Succeeded,
            Phase::Failed,
            Phase::Restored,
        ]
        .into_iter()
        .filter(|phase| phase.is_finished())
        .collect();
        assert_eq!(finished, [Phase::Succeeded, Phase::Failed, Phase::Restored]);
    }

    #[test]
    fn the_wire_format_is_camel_case_and_skips_what_is_unset() {
        let mut request = request(Some(HASH_A), Some(HASH_A));
        if let Some(status) = request.status.as_mut() {
            status.phase = Some(Phase::AwaitingApproval);
            status.plan = Some(serde_json::json!({"steps": [{"id": "s1", "x-extra": 1}]}));
        }
        let value = serde_json::to_value(&request).expect("serializable");
        assert_eq!(value["apiVersion"], "deckhand.dev/v1alpha1");
        assert_eq!(value["kind"], "AIRequest");
        assert_eq!(value["spec"]["requestText"], "scale web to 3 replicas");
        assert!(value["spec"].get("context").is_none());
        assert_eq!(value["status"]["phase"], "AwaitingApproval");
        assert_eq!(value["status"]["planHash"], HASH_A);
        assert_eq!(value["status"]["plan"]["steps"][0]["x-extra"], 1);
        assert!(value["status"].get("conditions").is_none());
        let back: AIRequest = serde_json::from_value(value).expect("deserializable");
        assert_eq!(back, request);
    }
}
