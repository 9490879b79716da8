//! Acting as the person, and asking the cluster what they may do.
//!
//! When configured, deckhand talks to the API server *as the requesting person*
//! (`Impersonate-User` / `Impersonate-Group`), so their own RBAC applies on top of the
//! policies; deckhand's ServiceAccount needs only `impersonate` on the people it serves.
//! Before a plan is proposed, each cluster step becomes an [`AccessCheck`] and the cluster
//! answers it with a SubjectAccessReview (a SelfSubjectAccessReview when impersonating),
//! so the person learns up front exactly which permission they lack. Refusals raise an
//! [`Alert`] for the admins.

use super::{ClusterChange, ClusterGate, ObjectRef};
use crate::error::{Error, Result};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec, SubjectAccessReview,
    SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::{Event, ObjectReference};
use kube::api::{Api, PostParams};
use serde::Serialize;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Someone deckhand acts for: a Kubernetes username and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Person {
    /// The username the cluster knows them by.
    pub user: String,
    /// Their groups.
    pub groups: Vec<String>,
}

impl Person {
    /// A person with no groups beyond what the cluster adds.
    pub fn named(user: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            groups: Vec::new(),
        }
    }
}

/// One permission a step needs, as RBAC names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessCheck {
    /// `get`, `patch`, `create`, `delete`, ...
    pub verb: String,
    /// The API group (`""` for the core group).
    pub group: String,
    /// The resource (plural): `deployments`, `configmaps`, ...
    pub resource: String,
    /// `scale`, `log`, ...
    pub subresource: Option<String>,
    /// The namespace; `None` for cluster-scoped resources.
    pub namespace: Option<String>,
    /// The object's name, when there is one.
    pub name: Option<String>,
}

impl fmt::Display for AccessCheck {
    /// As `kubectl auth can-i` reads: `patch deployments.apps/scale "web" in shop`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.verb, self.resource)?;
        if !self.group.is_empty() {
            write!(f, ".{}", self.group)?;
        }
        if let Some(subresource) = &self.subresource {
            write!(f, "/{subresource}")?;
        }
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        match &self.namespace {
            Some(namespace) => write!(f, " in namespace {namespace}"),
            None => write!(f, " (cluster-wide)"),
        }
    }
}

/// A permission the person lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessDenied {
    /// What was asked.
    pub check: AccessCheck,
    /// The authorizer's reason, when it gave one.
    pub reason: String,
}

impl fmt::Display for AccessDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "missing permission: {}", self.check)?;
        if !self.reason.is_empty() {
            write!(f, " ({})", self.reason)?;
        }
        Ok(())
    }
}

/// Something the admins should hear about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// `policy_denied` or `access_denied`.
    pub reason: String,
    /// Who the attempt was for.
    pub user: String,
    /// What was attempted and why it was refused.
    pub message: String,
}

/// Where alerts go: a Kubernetes Event, a metric, a webhook or Slack (wired by `deckhand`).
pub trait AlertSink: Send + Sync {
    /// Raises `alert`. Must not block: sinks that talk to the network spawn.
    fn raise(&self, alert: &Alert);
}

/// Alerts as Kubernetes Events on one of deckhand's own objects (its Deployment, say),
/// where `kubectl describe` and any event exporter see them; also counted.
pub struct EventAlerts {
    client: kube::Client,
    involved: ObjectReference,
    raised: AtomicU64,
}

impl EventAlerts {
    /// Events about `involved` (it needs a namespace: Events are namespaced).
    pub fn new(client: kube::Client, involved: ObjectReference) -> Arc<Self> {
        Arc::new(Self {
            client,
            involved,
            raised: AtomicU64::new(0),
        })
    }

    /// How many alerts were raised (the `deckhand_alerts_total` metric).
    pub fn raised(&self) -> u64 {
        self.raised.load(Ordering::Relaxed)
    }
}

impl AlertSink for EventAlerts {
    fn raise(&self, alert: &Alert) {
        self.raised.fetch_add(1, Ordering::Relaxed);
        let namespace = self
            .involved
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_owned());
        let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            k8s_openapi::jiff::Timestamp::now(),
        );
        let event = Event {
            metadata: kube::api::ObjectMeta {
                generate_name: Some("deckhand-alert-".to_owned()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: self.involved.clone(),
            reason: Some(camel(&alert.reason)),
            message: Some(format!("{}: {}", alert.user, alert.message)),
            type_: Some("Warning".to_owned()),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            count: Some(1),
            source: Some(k8s_openapi::api::core::v1::EventSource {
                component: Some("deckhand".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        };
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        // An alert must never hold up (or fail) the refusal it reports.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = api.create(&PostParams::default(), &event).await {
                    tracing::warn!(%error, "could not record an alert as a Kubernetes Event");
                }
            });
        }
    }
}

/// `access_denied` → `AccessDenied`, as Event reasons are written.
fn camel(reason: &str) -> String {
    reason
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect::<String>())
                .unwrap_or_default()
        })
        .collect()
}

impl ClusterGate {
    /// The same gate acting as `person`: every request carries `Impersonate-User` and
    /// `Impersonate-Group`, and the policies see them as `userInfo`.
    ///
    /// # Errors
    /// [`Error::InvalidChange`] when the gate was not built with
    /// [`ClusterGate::from_config`]; [`Error::Cluster`] when no client can be made.
    pub fn acting_as(&self, person: &Person) -> Result<Self> {
        let Some(config) = &self.config else {
            return Err(Error::InvalidChange {
                message: "acting as a person needs a gate built from a kube config".to_owned(),
            });
        };
        let mut config = config.clone();
        config.auth_info.impersonate = Some(person.user.clone());
        config.auth_info.impersonate_groups =
            (!person.groups.is_empty()).then(|| person.groups.clone());
        let client = kube::Client::try_from(config).map_err(|source| Error::Cluster {
            action: format!("make a client acting as {}", person.user),
            source: Box::new(source),
        })?;
        Ok(Self {
            client,
            identity: person.user.clone(),
            groups: person.groups.clone(),
            acting_as: Some(person.clone()),
            ..self.clone()
        })
    }

    /// The person this gate acts as, if it impersonates.
    pub fn person(&self) -> Option<&Person> {
        self.acting_as.as_ref()
    }

    /// The permission `change` needs, as RBAC names it (discovery gives the resource).
    ///
    /// # Errors
    /// [`Error::InvalidChange`], [`Error::Cluster`] (unknown kinds among them).
    pub async fn access_needed(&self, change: &ClusterChange) -> Result<AccessCheck> {
        let target: ObjectRef = change.target()?;
        let resolved = self.resolve(target).await?;
        let resource = &resolved.resource;
        let (verb, subresource) = match change {
            ClusterChange::Scale { .. } => ("patch", Some("scale".to_owned())),
            other => (other.verb(), None),
        };
        let generated = matches!(change, ClusterChange::Create { object } if object.pointer("/metadata/name").is_none());
        Ok(AccessCheck {
            verb: verb.to_owned(),
            group: resource.group.clone(),
            resource: resource.plural.clone(),
            subresource,
            namespace: resolved.target.namespace.clone(),
            name: (!generated && !matches!(change, ClusterChange::Create { .. }))
                .then(|| resolved.target.name.clone()),
        })
    }

    /// The permission to `verb` (`get`, `list`, ...) `target`, or its `subresource`; for
    /// `list` the name is left out (RBAC lists a whole kind). Discovery gives the resource.
    ///
    /// # Errors
    /// [`Error::InvalidChange`], [`Error::Cluster`] (unknown kinds among them).
    pub async fn access_to(
        &self,
        target: ObjectRef,
        verb: &str,
        subresource: Option<&str>,
    ) -> Result<AccessCheck> {
        let resolved = self.resolve(target).await?;
        Ok(AccessCheck {
            verb: verb.to_owned(),
            group: resolved.resource.group.clone(),
            resource: resolved.resource.plural.clone(),
            subresource: subresource.map(str::to_owned),
            namespace: resolved.target.namespace.clone(),
            name: (verb != "list" && !resolved.target.name.is_empty())
                .then(|| resolved.target.name.clone()),
        })
    }

    /// Asks the cluster which of `checks` `person` is denied, and raises an alert for
    /// each. Acting as the person, the gate asks about itself (SelfSubjectAccessReview);
    /// otherwise it asks about the person (SubjectAccessReview, which deckhand's own
    /// identity must be allowed to create).
    ///
    /// # Errors
    /// [`Error::Cluster`] when a review cannot be made.
    pub async fn check_access(
        &self,
        person: &Person,
        checks: &[AccessCheck],
    ) -> Result<Vec<AccessDenied>> {
        let mut denied = Vec::new();
        let as_self = self.acting_as.as_ref() == Some(person);
        for check in checks {
            let attributes = ResourceAttributes {
                verb: Some(check.verb.clone()),
                group: Some(check.group.clone()),
                resource: Some(check.resource.clone()),
                subresource: check.subresource.clone(),
                namespace: check.namespace.clone(),
                name: check.name.clone(),
                ..Default::default()
            };
            let failed = |source: kube::Error| Error::Cluster {
                action: format!("ask whether {} may {check}", person.user),
                source: Box::new(source),
            };
            let status = if as_self {
                let review = SelfSubjectAccessReview {
                    spec: SelfSubjectAccessReviewSpec {
                        resource_attributes: Some(attributes),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                Api::<SelfSubjectAccessReview>::all(self.client.clone())
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(failed)?
                    .status
            } else {
                let review = SubjectAccessReview {
                    spec: SubjectAccessReviewSpec {
                        user: Some(person.user.clone()),
                        groups: (!person.groups.is_empty()).then(|| person.groups.clone()),
                        resource_attributes: Some(attributes),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                Api::<SubjectAccessReview>::all(self.client.clone())
                    .create(&PostParams::default(), &review)
                    .await
                    .map_err(failed)?
                    .status
            };
            let allowed = status.as_ref().is_some_and(|status| status.allowed);
            if !allowed {
                let reason = status
                    .and_then(|status| status.reason.or(status.evaluation_error))
                    .unwrap_or_default();
                let refusal = AccessDenied {
                    check: check.clone(),
                    reason,
                };
                self.alert(&Alert {
                    reason: "access_denied".to_owned(),
                    user: person.user.clone(),
                    message: refusal.to_string(),
                });
                denied.push(refusal);
            }
        }
        Ok(denied)
    }

    /// Sends `alert` to the gate's alert sink, if it has one.
    pub(crate) fn alert(&self, alert: &Alert) {
        if let Some(alerts) = &self.alerts {
            alerts.raise(alert);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_read_like_kubectl_auth_can_i() {
        let check = AccessCheck {
            verb: "patch".into(),
            group: "apps".into(),
            resource: "deployments".into(),
            subresource: Some("scale".into()),
            namespace: Some("shop".into()),
            name: Some("web".into()),
        };
        assert_eq!(
            check.to_string(),
            "patch deployments.apps/scale \"web\" in namespace shop"
        );
        let namespaces = AccessCheck {
            verb: "delete".into(),
            group: String::new(),
            resource: "namespaces".into(),
            subresource: None,
            namespace: None,
            name: Some("shop".into()),
        };
        assert_eq!(
            namespaces.to_string(),
            "delete namespaces \"shop\" (cluster-wide)"
        );
        assert_eq!(camel("access_denied"), "AccessDenied");
    }
}
