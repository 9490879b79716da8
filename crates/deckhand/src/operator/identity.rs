//! Who asked for, approved and asked to restore an `AIRequest`, as the API server
//! authenticated them.
//!
//! `spec.user` is whatever the creator wrote, so an operator that acted as it would let
//! anyone who may create AIRequests act as anyone. With the mutating admission webhook
//! installed (`k8s/components/attested-identity`, served by `deckhand operator
//! --webhook-listen`), the API server sends every create and update of an AIRequest
//! through [`admit`] first, with the caller's authenticated `userInfo`:
//!
//! - on create, `spec.user` becomes the creator's username and the creator (username and
//!   groups) is recorded in the annotation [`REQUESTED_BY`];
//! - when `spec.approve` or `spec.restore` changes, who changed it, with the value they
//!   set, is recorded in [`APPROVED_BY`] or [`RESTORE_REQUESTED_BY`];
//! - otherwise `spec.user` and those annotations are put back as they were: nobody can
//!   write them by hand, not even on create.
//!
//! With `--identity attested` the operator acts only on these records ([`attested`]): it
//! plans as the creator, runs as the approver of exactly the approved hash and restores as
//! who asked for it (impersonating them when `[cluster] impersonate` is on), and refuses a
//! request or an approval that has no record.

use deckhand_crds::AIRequest;
use deckhand_tools::cluster::Person;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::core::DynamicObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Who created the request (set on create).
pub const REQUESTED_BY: &str = "deckhand.dev/requested-by";
/// Who set `spec.approve`, and to what.
pub const APPROVED_BY: &str = "deckhand.dev/approved-by";
/// Who set `spec.restore`, and to what.
pub const RESTORE_REQUESTED_BY: &str = "deckhand.dev/restore-requested-by";

/// Where the operator takes the person a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IdentitySource {
    /// `spec.user` as written: recorded in the thread, but the operator acts as its own
    /// ServiceAccount (the name is not verified, so it is never impersonated).
    #[default]
    Declared,
    /// Only what the admission webhook recorded: requests and approvals without a record
    /// are refused; with `[cluster] impersonate` the operator acts as the recorded people.
    Attested,
}

impl std::str::FromStr for IdentitySource {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "declared" => Ok(Self::Declared),
            "attested" => Ok(Self::Attested),
            other => Err(format!(
                "unknown identity source {other:?}: expected \"declared\" or \"attested\""
            )),
        }
    }
}

/// One record the webhook wrote: the authenticated person and, for an approval or a
/// restore, the value they set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    /// The username the API server authenticated.
    pub user: String,
    /// Their groups, as the API server saw them.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The value of the field they set (`spec.approve`'s hash, `spec.restore`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

impl Attestation {
    /// The person to act as.
    ///
    /// The groups `system:authenticated` and `system:serviceaccounts*` are added by the
    /// API server to whoever it authenticates; impersonating them is allowed but adds
    /// nothing, and `system:masters` must never be borrowed from a record.
    pub fn person(&self) -> Person {
        Person {
            user: self.user.clone(),
            groups: self
                .groups
                .iter()
                .filter(|group| group.as_str() != "system:authenticated")
                .filter(|group| group.as_str() != "system:masters")
                .cloned()
                .collect(),
        }
    }

    /// The value as text (a hash stays a hash; `true` becomes `"true"`).
    pub fn value_text(&self) -> Option<String> {
        match &self.value {
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
            None => None,
        }
    }
}

/// The record under `key` on `request`, when there is a readable one.
pub fn attested(request: &AIRequest, key: &str) -> Option<Attestation> {
    request
        .metadata
        .annotations
        .as_ref()
        .and_then(|annotations| annotations.get(key))
        .and_then(|text| serde_json::from_str(text).ok())
}

/// The webhook's answer to one admission request for an AIRequest: allowed, with a JSON
/// patch that records who did what (see the module's documentation). Denied only when
/// the API server did not say who is asking.
pub fn admit(request: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let response = AdmissionResponse::from(request);
    if !matches!(request.operation, Operation::Create | Operation::Update) {
        return response;
    }
    let Some(object) = &request.object else {
        return response;
    };
    let Some(user) = request
        .user_info
        .username
        .as_deref()
        .filter(|name| !name.is_empty())
    else {
        return response.deny("the API server sent no username: cannot record who asks");
    };
    let (original, old) = match (
        serde_json::to_value(object),
        request
            .old_object
            .as_ref()
            .map(serde_json::to_value)
            .transpose(),
    ) {
        (Ok(original), Ok(old)) => (original, old),
        (Err(error), _) | (_, Err(error)) => {
            return response.deny(format!("cannot read the AIRequest: {error}"))
        }
    };
    let caller = Attestation {
        user: user.to_owned(),
        groups: request.user_info.groups.clone().unwrap_or_default(),
        value: None,
    };
    let mut recorded = original.clone();
    if let Err(why) = record(&mut recorded, old.as_ref(), &caller) {
        return response.deny(why);
    }
    let patch = json_patch::diff(&original, &recorded);
    if patch.0.is_empty() {
        return response;
    }
    match response.clone().with_patch(patch) {
        Ok(patched) => patched,
        Err(error) => response.deny(format!("cannot write the patch: {error}")),
    }
}

/// Writes the records into `object` (the AIRequest as sent), given the stored `old` one
/// (`None` on create) and the `caller`.
fn record(object: &mut Value, old: Option<&Value>, caller: &Attestation) -> Result<(), String> {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return Err("the AIRequest has no spec".to_owned());
    };
    // Who asks is fixed at creation.
    let user = match old {
        None => Some(Value::String(caller.user.clone())),
        Some(old) => old.pointer("/spec/user").cloned(),
    };
    match user {
        Some(user) => {
            spec.insert("user".to_owned(), user);
        }
        None => {
            spec.remove("user");
        }
    }
    let requested_by = match old {
        None => Some(text_of(caller)?),
        Some(old) => annotation(old, REQUESTED_BY),
    };
    set_annotation(object, REQUESTED_BY, requested_by);
    for (field, key) in [("approve", APPROVED_BY), ("restore", RESTORE_REQUESTED_BY)] {
        let now = set_field(object, field);
        let before = old.and_then(|old| set_field(old, field));
        let record = if now == before {
            old.and_then(|old| annotation(old, key))
        } else if let Some(value) = now {
            Some(text_of(&Attestation {
                value: Some(value),
                ..caller.clone()
            })?)
        } else {
            None
        };
        set_annotation(object, key, record);
    }
    Ok(())
}

fn text_of(attestation: &Attestation) -> Result<String, String> {
    serde_json::to_string(attestation).map_err(|error| format!("cannot write a record: {error}"))
}

/// `spec.FIELD` when it is set (`null` counts as unset).
fn set_field(object: &Value, field: &str) -> Option<Value> {
    object
        .get("spec")
        .and_then(|spec| spec.get(field))
        .filter(|value| !value.is_null())
        .cloned()
}

fn annotation(object: &Value, key: &str) -> Option<String> {
    object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

fn set_annotation(object: &mut Value, key: &str, value: Option<String>) {
    let Some(object) = object.as_object_mut() else {
        return;
    };
    let metadata = object
        .entry("metadata")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(metadata) = metadata.as_object_mut() else {
        return;
    };
    match value {
        Some(value) => {
            let annotations = metadata
                .entry("annotations")
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if !annotations.is_object() {
                *annotations = Value::Object(serde_json::Map::new());
            }
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(key.to_owned(), Value::String(value));
            }
        }
        None => {
            if let Some(annotations) = metadata
                .get_mut("annotations")
                .and_then(Value::as_object_mut)
            {
                annotations.remove(key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use kube::core::admission::AdmissionReview;
    use serde_json::json;

    const HASH: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

    fn airequest(spec: Value, annotations: Value) -> Value {
        json!({
            "apiVersion": "deckhand.dev/v1alpha1",
            "kind": "AIRequest",
            "metadata": {"name": "scale-web", "namespace": "shop", "annotations": annotations},
            "spec": spec,
        })
    }

    fn review(
        operation: &str,
        user: &str,
        object: Value,
        old: Option<Value>,
    ) -> AdmissionRequest<DynamicObject> {
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "0d4a1c2e-1111-2222-3333-444455556666",
                "kind": {"group": "deckhand.dev", "version": "v1alpha1", "kind": "AIRequest"},
                "resource": {"group": "deckhand.dev", "version": "v1alpha1", "resource": "airequests"},
                "name": "scale-web",
                "namespace": "shop",
                "operation": operation,
                "userInfo": {"username": user, "groups": ["team-web", "system:authenticated"]},
                "object": object,
                "oldObject": old,
                "dryRun": false,
            }
        }))
        .unwrap();
        review.try_into().unwrap()
    }

    /// The object after the response's patch.
    fn patched(request: &AdmissionRequest<DynamicObject>) -> Value {
        let response = admit(request);
        assert!(response.allowed, "{:?}", response.result);
        let mut object = serde_json::to_value(request.object.as_ref().unwrap()).unwrap();
        if let Some(patch) = &response.patch {
            let patch: json_patch::Patch = serde_json::from_slice(patch).unwrap();
            json_patch::patch(&mut object, &patch.0).unwrap();
        }
        object
    }

    fn record_of(object: &Value, key: &str) -> Option<Attestation> {
        annotation(object, key).map(|text| serde_json::from_str(&text).unwrap())
    }

    #[test]
    fn create_records_the_creator_over_what_they_wrote() {
        let sent = airequest(
            json!({"requestText": "scale web to 3", "user": "admin", "namespace": "shop"}),
            json!({APPROVED_BY: "{\"user\":\"admin\"}", REQUESTED_BY: "{\"user\":\"admin\"}", "keep": "me"}),
        );
        let object = patched(&review("CREATE", "bob", sent, None));
        assert_eq!(object["spec"]["user"], "bob");
        let requested = record_of(&object, REQUESTED_BY).unwrap();
        assert_eq!(requested.user, "bob");
        assert_eq!(requested.groups, ["team-web", "system:authenticated"]);
        assert_eq!(requested.person().groups, ["team-web"]);
        assert_eq!(
            record_of(&object, APPROVED_BY),
            None,
            "a forged approval is dropped"
        );
        assert_eq!(object["metadata"]["annotations"]["keep"], "me");
    }

    #[test]
    fn create_without_annotations_gets_them() {
        let mut sent = airequest(
            json!({"requestText": "scale web to 3", "user": "bob", "namespace": "shop"}),
            Value::Null,
        );
        sent["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("annotations");
        let object = patched(&review("CREATE", "bob", sent, None));
        assert_eq!(record_of(&object, REQUESTED_BY).unwrap().user, "bob");
    }

    #[test]
    fn an_approval_is_recorded_with_its_hash_and_kept_until_it_changes() {
        let stored = airequest(
            json!({"requestText": "scale web to 3", "user": "bob", "namespace": "shop"}),
            json!({REQUESTED_BY: "{\"user\":\"bob\",\"groups\":[]}"}),
        );
        let mut approving = stored.clone();
        approving["spec"]["approve"] = json!(HASH);
        let approved = patched(&review("UPDATE", "carol", approving, Some(stored.clone())));
        let approval = record_of(&approved, APPROVED_BY).unwrap();
        assert_eq!(approval.user, "carol");
        assert_eq!(approval.value_text().as_deref(), Some(HASH));
        assert_eq!(record_of(&approved, REQUESTED_BY).unwrap().user, "bob");

        // Bob edits something else and tries to rewrite both records and spec.user.
        let mut edit = approved.clone();
        edit["spec"]["context"] = json!("it is urgent");
        edit["spec"]["user"] = json!("carol");
        edit["metadata"]["annotations"][APPROVED_BY] = json!("{\"user\":\"bob\"}");
        edit["metadata"]["annotations"][REQUESTED_BY] = json!("{\"user\":\"carol\"}");
        let after = patched(&review("UPDATE", "bob", edit, Some(approved.clone())));
        assert_eq!(after["spec"]["user"], "bob");
        assert_eq!(record_of(&after, APPROVED_BY).unwrap().user, "carol");
        assert_eq!(record_of(&after, REQUESTED_BY).unwrap().user, "bob");
        assert_eq!(after["spec"]["context"], "it is urgent");

        // Removing the approval removes its record.
        let mut withdrawn = approved.clone();
        withdrawn["spec"].as_object_mut().unwrap().remove("approve");
        let after = patched(&review("UPDATE", "bob", withdrawn, Some(approved)));
        assert_eq!(record_of(&after, APPROVED_BY), None);
    }

    #[test]
    fn a_restore_is_recorded() {
        let stored = airequest(
            json!({"requestText": "scale web to 3", "user": "bob", "namespace": "shop", "approve": HASH}),
            json!({REQUESTED_BY: "{\"user\":\"bob\"}", APPROVED_BY: "{\"user\":\"carol\",\"value\":\"x\"}"}),
        );
        let mut restoring = stored.clone();
        restoring["spec"]["restore"] = json!(true);
        let after = patched(&review("UPDATE", "dave", restoring, Some(stored)));
        let restore = record_of(&after, RESTORE_REQUESTED_BY).unwrap();
        assert_eq!(restore.user, "dave");
        assert_eq!(restore.value_text().as_deref(), Some("true"));
        assert_eq!(record_of(&after, APPROVED_BY).unwrap().user, "carol");
    }

    #[test]
    fn an_unchanged_object_needs_no_patch() {
        let stored = airequest(
            json!({"requestText": "scale web to 3", "user": "bob", "namespace": "shop"}),
            json!({REQUESTED_BY: "{\"user\":\"bob\"}"}),
        );
        let response = admit(&review("UPDATE", "bob", stored.clone(), Some(stored)));
        assert!(response.allowed);
        assert!(response.patch.is_none());
    }

    #[test]
    fn no_username_is_refused() {
        let sent = airequest(
            json!({"requestText": "scale web to 3", "user": "bob", "namespace": "shop"}),
            json!({}),
        );
        let response = admit(&review("CREATE", "", sent, None));
        assert!(!response.allowed);
        assert!(response.result.message.contains("no username"));
    }

    #[test]
    fn identity_sources_parse() {
        assert_eq!("attested".parse(), Ok(IdentitySource::Attested));
        assert_eq!("declared".parse(), Ok(IdentitySource::Declared));
        assert!("trusted".parse::<IdentitySource>().is_err());
    }
}
