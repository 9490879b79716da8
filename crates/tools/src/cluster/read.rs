//! Reads through the gate: lists (selectors, pages), events, `describe` (an object, its
//! events and its owners), and container logs. Each is judged by the policies as the
//! Kubernetes verb it uses (`list`, `get`, `get` on `pods/log`), and Secret values never
//! come back ([`redact_secrets`]).

use super::{redact_secrets, ClusterGate, ObjectRef, Resolved};
use crate::error::{Error, Result};
use kube::api::{Api, DynamicObject, ListParams, LogParams};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The most owners `describe` follows up an owner chain (a Pod's ReplicaSet's Deployment
/// is two; the cap only stops a cycle).
const MAX_OWNER_DEPTH: usize = 5;
/// The most objects one page may ask for: larger lists come in pages.
pub const MAX_PAGE: u32 = 500;

/// Which objects to list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListQuery {
    /// `v1`, `apps/v1`, ...
    pub api_version: String,
    /// `Pod`, `Deployment`, ...
    pub kind: String,
    /// One namespace; `None` for every namespace (or a cluster-scoped kind).
    pub namespace: Option<String>,
    /// A label selector, e.g. `app=web,tier!=cache`.
    pub label_selector: Option<String>,
    /// A field selector, e.g. `status.phase=Running` or `involvedObject.name=web`.
    pub field_selector: Option<String>,
    /// At most this many objects (capped at [`MAX_PAGE`]); more come with
    /// [`ListPage::continue_token`].
    pub limit: Option<u32>,
    /// Where the previous page stopped.
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListPage {
    /// The objects.
    pub items: Vec<Value>,
    /// Pass this back in [`ListQuery::continue_token`] for the next page; `None` when
    /// this was the last.
    pub continue_token: Option<String>,
}

/// Which log to read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogQuery {
    /// The pod's namespace.
    pub namespace: String,
    /// The pod.
    pub pod: String,
    /// The container.
    pub container: String,
    /// The container's previous run (after a crash) instead of the current one.
    pub previous: bool,
    /// Only the last lines.
    pub tail_lines: Option<u32>,
    /// Only lines from the last seconds.
    pub since_seconds: Option<u32>,
    /// At most this many bytes.
    pub limit_bytes: usize,
}

impl ClusterGate {
    /// Lists objects (one page), after the policy allows `list`.
    ///
    /// # Errors
    /// [`Error::PolicyDenied`], [`Error::InvalidChange`] for a bad query,
    /// [`Error::Cluster`].
    pub async fn list(&self, query: &ListQuery, requested_by: &str) -> Result<ListPage> {
        // Discovery needs a name only for messages; a list has none.
        let reference = ObjectRef {
            api_version: query.api_version.clone(),
            kind: query.kind.clone(),
            namespace: query.namespace.clone(),
            name: "list".to_owned(),
        };
        let (resource, namespaced) = self.discover(&reference).await?;
        let api: Api<DynamicObject> = match (namespaced, query.namespace.as_deref()) {
            (true, Some(namespace)) => {
                Api::namespaced_with(self.client.clone(), namespace, &resource)
            }
            (_, None) => Api::all_with(self.client.clone(), &resource),
            (false, Some(_)) => {
                return Err(Error::InvalidChange {
                    message: format!(
                        "{} is cluster-scoped: list it without a namespace",
                        query.kind
                    ),
                })
            }
        };
        let resolved = Resolved {
            api,
            resource,
            target: reference,
        };
        let request = self.base_request(&resolved, "list", None, requested_by);
        let what = match &query.namespace {
            Some(namespace) => format!("{} {} in {namespace}", query.api_version, query.kind),
            None => format!("{} {} in all namespaces", query.api_version, query.kind),
        };
        self.judge_read(&request, &what, "list", requested_by)?;
        let mut params = ListParams::default();
        if let Some(selector) = &query.label_selector {
            params = params.labels(selector);
        }
        if let Some(selector) = &query.field_selector {
            params = params.fields(selector);
        }
        if let Some(limit) = query.limit {
            params = params.limit(limit.clamp(1, MAX_PAGE));
        }
        if let Some(token) = &query.continue_token {
            params = params.continue_token(token);
        }
        let list = resolved
            .api
            .list(&params)
            .await
            .map_err(|source| Error::Cluster {
                action: format!("list {what}"),
                source: Box::new(source),
            })?;
        let continue_token = list.metadata.continue_.filter(|token| !token.is_empty());
        let items = list
            .items
            .into_iter()
            .map(|object| {
                super::to_value(object).map(|mut object| {
                    // List items come without their type; agents (and the Secret
                    // redaction) need it.
                    if let Some(fields) = object.as_object_mut() {
                        fields
                            .entry("apiVersion")
                            .or_insert_with(|| Value::String(query.api_version.clone()));
                        fields
                            .entry("kind")
                            .or_insert_with(|| Value::String(query.kind.clone()));
                    }
                    redact_secrets(object)
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ListPage {
            items,
            continue_token,
        })
    }

    /// Every object a query matches, page after page (where the whole set matters, e.g.
    /// the events of one object).
    pub(crate) async fn list_all(
        &self,
        query: &ListQuery,
        requested_by: &str,
    ) -> Result<Vec<Value>> {
        let mut query = query.clone();
        query.limit = Some(MAX_PAGE);
        let mut items = Vec::new();
        loop {
            let page = self.list(&query, requested_by).await?;
            items.extend(page.items);
            match page.continue_token {
                Some(token) => query.continue_token = Some(token),
                None => return Ok(items),
            }
        }
    }

    /// The events about one object (by kind and name, and uid when given), oldest first,
    /// at most `limit` (the newest are kept).
    ///
    /// # Errors
    /// As [`ClusterGate::list`].
    pub async fn events_of(
        &self,
        object: &ObjectRef,
        uid: Option<&str>,
        limit: usize,
        requested_by: &str,
    ) -> Result<Vec<Value>> {
        let mut selector = format!(
            "involvedObject.kind={},involvedObject.name={}",
            object.kind, object.name
        );
        if let Some(uid) = uid {
            selector.push_str(&format!(",involvedObject.uid={uid}"));
        }
        let query = ListQuery {
            api_version: "v1".to_owned(),
            kind: "Event".to_owned(),
            namespace: object.namespace.clone(),
            field_selector: Some(selector),
            ..ListQuery::default()
        };
        let mut events = self.list_all(&query, requested_by).await?;
        events.sort_by_key(event_time);
        if events.len() > limit {
            events.drain(..events.len() - limit);
        }
        Ok(events)
    }

    /// What `kubectl describe` shows: the object, its events, and the chain of its
    /// owners (a Pod's ReplicaSet, that ReplicaSet's Deployment, ...). `None` when the
    /// object does not exist.
    ///
    /// # Errors
    /// As [`ClusterGate::get`].
    pub async fn describe(
        &self,
        target: &ObjectRef,
        max_events: usize,
        requested_by: &str,
    ) -> Result<Option<Value>> {
        let Some(object) = self.get(target, requested_by).await? else {
            return Ok(None);
        };
        let uid = object.pointer("/metadata/uid").and_then(Value::as_str);
        let events = self
            .events_of(target, uid, max_events, requested_by)
            .await?;
        let mut owners = Vec::new();
        let mut current = object.clone();
        while owners.len() < MAX_OWNER_DEPTH {
            let Some(owner) = controller_of(&current, target.namespace.as_deref()) else {
                break;
            };
            let found = match self.get(&owner, requested_by).await {
                // A namespaced object may be owned by a cluster-scoped one (a Node).
                Err(Error::InvalidChange { .. }) if owner.namespace.is_some() => {
                    let cluster_scoped = ObjectRef {
                        namespace: None,
                        ..owner.clone()
                    };
                    self.get(&cluster_scoped, requested_by).await?
                }
                other => other?,
            };
            match found {
                Some(found) => {
                    owners.push(json!({"ref": owner, "object": summary_of(&found)}));
                    current = found;
                }
                None => {
                    owners.push(json!({"ref": owner, "missing": true}));
                    break;
                }
            }
        }
        Ok(Some(json!({
            "object": object,
            "events": events,
            "owners": owners,
        })))
    }

    /// A container's log, after the policy allows `get` on the pod's `log` subresource.
    ///
    /// # Errors
    /// [`Error::PolicyDenied`]; [`Error::Cluster`] when there is no log (no kubelet ran
    /// the container, or it has no previous run).
    pub async fn logs(&self, query: &LogQuery, requested_by: &str) -> Result<String> {
        let target = ObjectRef {
            api_version: "v1".into(),
            kind: "Pod".into(),
            namespace: Some(query.namespace.clone()),
            name: query.pod.clone(),
        };
        let resolved = self.resolve(target).await?;
        let mut request = self.base_request(&resolved, "get", None, requested_by);
        request.name = Some(query.pod.clone());
        request.sub_resource = Some("log".to_owned());
        let what = format!("{} log of {}", resolved.target, query.container);
        self.judge_read(&request, &what, "get", requested_by)?;
        let pods: Api<k8s_openapi::api::core::v1::Pod> =
            Api::namespaced(self.client.clone(), &query.namespace);
        let params = LogParams {
            container: Some(query.container.clone()),
            previous: query.previous,
            limit_bytes: i64::try_from(query.limit_bytes).ok(),
            tail_lines: query.tail_lines.map(i64::from),
            since_seconds: query.since_seconds.map(i64::from),
            ..LogParams::default()
        };
        pods.logs(&query.pod, &params)
            .await
            .map_err(|source| Error::Cluster {
                action: format!(
                    "read the {}log of {} in pod {}/{}",
                    if query.previous { "previous " } else { "" },
                    query.container,
                    query.namespace,
                    query.pod
                ),
                source: Box::new(source),
            })
    }
}

/// The owner that controls `object` (the one with `controller: true`, else the first).
fn controller_of(object: &Value, namespace: Option<&str>) -> Option<ObjectRef> {
    let owners = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)?;
    let owner = owners
        .iter()
        .find(|owner| owner.get("controller") == Some(&Value::Bool(true)))
        .or_else(|| owners.first())?;
    Some(ObjectRef {
        api_version: owner.get("apiVersion")?.as_str()?.to_owned(),
        kind: owner.get("kind")?.as_str()?.to_owned(),
        // Owners are in the same namespace, or cluster-scoped (a Node): discovery in
        // `get` decides, so keep the namespace only for namespaced objects.
        namespace: namespace.map(str::to_owned),
        name: owner.get("name")?.as_str()?.to_owned(),
    })
}

/// An owner as `describe` shows it: what it is and how it is doing, not its whole spec.
fn summary_of(object: &Value) -> Value {
    json!({
        "kind": object.get("kind"),
        "name": object.pointer("/metadata/name"),
        "replicas": object.pointer("/spec/replicas"),
        "status": object.get("status"),
    })
}

/// When an event last happened, as sortable text.
pub(crate) fn event_time(event: &Value) -> String {
    [
        "/lastTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|pointer| event.pointer(pointer).and_then(Value::as_str))
    .unwrap_or("")
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_controller_is_the_owner_followed() {
        let pod = json!({"metadata": {"ownerReferences": [
            {"apiVersion": "v1", "kind": "Node", "name": "n1"},
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d", "controller": true}
        ]}});
        let owner = controller_of(&pod, Some("shop")).unwrap();
        assert_eq!(owner.kind, "ReplicaSet");
        assert_eq!(owner.name, "web-5d");
        assert_eq!(owner.namespace.as_deref(), Some("shop"));
        assert!(controller_of(&json!({"metadata": {}}), None).is_none());
    }
}
