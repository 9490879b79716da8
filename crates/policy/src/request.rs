//! The engine's input: a Kubernetes `admission.k8s.io/v1` AdmissionRequest plus
//! deckhand's authorization `verb`, read from JSON or YAML, bare or inside an
//! AdmissionReview.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A group, version and kind, as in `AdmissionRequest.kind`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionKind {
    /// The API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// The API version.
    #[serde(default)]
    pub version: String,
    /// The kind, e.g. `Namespace`.
    #[serde(default)]
    pub kind: String,
}

/// A group, version and resource, as in `AdmissionRequest.resource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupVersionResource {
    /// The API group; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// The API version.
    #[serde(default)]
    pub version: String,
    /// The plural resource, e.g. `namespaces`.
    #[serde(default)]
    pub resource: String,
}

/// The user an operation runs as, as in `AdmissionRequest.userInfo`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UserInfo {
    /// The user name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The user's UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The groups the user belongs to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Extra attributes from the authenticator.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// One operation to judge: the fields of an `admission.k8s.io/v1` AdmissionRequest plus
/// deckhand's `verb`.
///
/// Fields deckhand does not model are kept in [`AdmissionRequest::extra`] and passed on
/// to policies untouched, so a policy sees what the API server would have sent.
///
/// For a `patch`, `object` may be the patch itself (a JSON patch array, or a merge /
/// strategic-merge / server-side-apply object); the engine applies it to `oldObject`
/// (or to an empty object) and judges the result.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRequest {
    /// The request's UID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The kind of the object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<GroupVersionKind>,
    /// The resource being requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<GroupVersionResource>,
    /// The subresource, e.g. `status`, `scale` or `finalize`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_resource: Option<String>,
    /// The kind as originally requested, before conversion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_kind: Option<GroupVersionKind>,
    /// The resource as originally requested, before conversion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_resource: Option<GroupVersionResource>,
    /// The subresource as originally requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_sub_resource: Option<String>,
    /// The object's name; empty for creates with `generateName` and for collections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The namespace; absent for cluster-scoped resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// CREATE, UPDATE, DELETE or CONNECT; absent for reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// deckhand's addition: the Kubernetes authorization verb (get, list, watch, create,
    /// update, patch, delete, deletecollection, escalate, bind, impersonate, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verb: Option<String>,
    /// Who asks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<UserInfo>,
    /// The new object (or, for a patch, the patch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Value>,
    /// The existing object, for updates and deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_object: Option<Value>,
    /// Whether the request is a dry run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    /// The operation's options (CreateOptions, PatchOptions, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<Value>,
    /// Any other field, passed to policies as is.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AdmissionRequest {
    /// Reads a request from JSON or YAML text: either an AdmissionReview (its `request`)
    /// or a bare AdmissionRequest.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the text is not a JSON or YAML mapping of that shape.
    pub fn from_text(text: &str) -> Result<Self> {
        let document = parse_json_or_yaml(text)?;
        Self::from_value(document)
    }

    /// Reads a request from a parsed document: an AdmissionReview or a bare request.
    ///
    /// # Errors
    /// [`Error::InvalidRequest`] when the document is not of that shape.
    pub fn from_value(document: Value) -> Result<Self> {
        let Value::Object(mut fields) = document else {
            return Err(Error::InvalidRequest {
                message: "expected a mapping (an AdmissionReview or an AdmissionRequest)".into(),
            });
        };
        let is_review = fields
            .get("kind")
            .and_then(Value::as_str)
            .is_some_and(|kind| kind == "AdmissionReview");
        let request = if is_review {
            match fields.remove("request") {
                Some(request @ Value::Object(_)) => request,
                _ => {
                    return Err(Error::InvalidRequest {
                        message: "the AdmissionReview has no `request` mapping".into(),
                    })
                }
            }
        } else {
            Value::Object(fields)
        };
        serde_json::from_value(request).map_err(|error| Error::InvalidRequest {
            message: error.to_string(),
        })
    }

    /// The request as policies see it in `input.review`.
    pub fn to_value(&self) -> Value {
        // Serialising plain serde structs with string keys cannot fail.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Parses JSON, or YAML when the text is not JSON (YAML is a superset, but JSON's own
/// parser gives better errors for JSON input).
pub(crate) fn parse_json_or_yaml(text: &str) -> Result<Value> {
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(json_error) => {
            serde_yaml_ng::from_str::<Value>(text).map_err(|yaml_error| Error::InvalidRequest {
                message: format!("not JSON ({json_error}) nor YAML ({yaml_error})"),
            })
        }
    }
}

/// Parses every document of a YAML (or JSON) stream, skipping empty ones.
pub(crate) fn parse_documents(text: &str) -> std::result::Result<Vec<Value>, String> {
    if let Ok(value) = serde_json::from_str::<Value>(text) {
        return Ok(vec![value]);
    }
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|error| error.to_string())?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_review_and_a_bare_request_alike() {
        let review = r#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview",
            "request":{"uid":"1","kind":{"group":"","version":"v1","kind":"Namespace"},
            "name":"team-a","operation":"DELETE","verb":"delete","somethingNew":true}}"#;
        let from_review = AdmissionRequest::from_text(review).expect("review parses");
        let bare = "uid: '1'\nkind: {group: '', version: v1, kind: Namespace}\nname: team-a\n\
                    operation: DELETE\nverb: delete\nsomethingNew: true\n";
        let from_bare = AdmissionRequest::from_text(bare).expect("YAML request parses");
        assert_eq!(from_review, from_bare);
        assert_eq!(from_review.name.as_deref(), Some("team-a"));
        // Unknown fields reach policies unchanged.
        assert_eq!(from_review.to_value()["somethingNew"], Value::Bool(true));
    }

    #[test]
    fn rejects_what_is_not_a_request() {
        assert!(AdmissionRequest::from_text("- a\n- b\n").is_err());
        assert!(AdmissionRequest::from_text("{\"kind\":\"AdmissionReview\"}").is_err());
        assert!(AdmissionRequest::from_text("name: [unclosed").is_err());
        assert!(AdmissionRequest::from_text("{\"name\": 5}").is_err());
    }
}
