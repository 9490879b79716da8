//! Conditions in the shape of Kubernetes' `metav1.Condition`, and how to set one.
//!
//! Own types rather than `k8s_openapi`'s: its `Condition` has no JSON schema unless
//! k8s-openapi's `schemars` feature is on, which would make every crate that shares the
//! build compile k8s-openapi again with it. The wire format is the same, so tools that
//! read conditions (`kubectl wait --for=condition=...`) see the standard shape.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One aspect of an object's state, as `metav1.Condition` has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The aspect, in CamelCase (`Planned`, `Approved`, `Succeeded`...).
    #[schemars(length(min = 1, max = 316))]
    #[schemars(pattern(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"))]
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// A one-word CamelCase reason for the last transition.
    #[schemars(length(min = 1, max = 1024))]
    #[schemars(pattern(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"))]
    pub reason: String,
    /// What happened, for a person.
    #[schemars(length(max = 32768))]
    pub message: String,
    /// When `status` last changed.
    #[schemars(schema_with = "crate::schema::date_time")]
    pub last_transition_time: Time,
    /// The object's `metadata.generation` the condition was set for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

/// A condition's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// It cannot be told yet.
    Unknown,
}

/// Sets `new` in `conditions`, the way `meta.SetStatusCondition` does in Go: a condition
/// of the same type is replaced, but keeps its `lastTransitionTime` when its status did not
/// change (so the time says when the state changed, not when it was last confirmed).
/// Returns whether anything changed, so a controller can skip a status write that would
/// change nothing.
pub fn set_condition(conditions: &mut Vec<Condition>, new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        None => {
            conditions.push(new);
            true
        }
        Some(existing) => {
            let mut changed = false;
            if existing.status != new.status {
                existing.status = new.status;
                existing.last_transition_time = new.last_transition_time;
                changed = true;
            }
            if existing.reason != new.reason {
                existing.reason = new.reason;
                changed = true;
            }
            if existing.message != new.message {
                existing.message = new.message;
                changed = true;
            }
            if existing.observed_generation != new.observed_generation {
                existing.observed_generation = new.observed_generation;
                changed = true;
            }
            changed
        }
    }
}

/// The condition of type `type_`, if set.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(seconds).expect("a valid timestamp"))
    }

    fn condition(status: ConditionStatus, reason: &str, seconds: i64) -> Condition {
        Condition {
            type_: "Planned".into(),
            status,
            reason: reason.into(),
            message: format!("{reason} at {seconds}"),
            last_transition_time: at(seconds),
            observed_generation: Some(1),
        }
    }

    #[test]
    fn a_new_type_is_added() {
        let mut conditions = Vec::new();
        assert!(set_condition(
            &mut conditions,
            condition(ConditionStatus::True, "PlanMade", 10)
        ));
        assert_eq!(conditions.len(), 1);
        assert!(find_condition(&conditions, "Planned").is_some());
        assert!(find_condition(&conditions, "Succeeded").is_none());
    }

    #[test]
    fn the_transition_time_moves_only_when_the_status_changes() {
        let mut conditions = vec![condition(ConditionStatus::False, "Planning", 10)];

        // Same status, new reason and message: the time stays at 10.
        assert!(set_condition(
            &mut conditions,
            condition(ConditionStatus::False, "StillPlanning", 20)
        ));
        assert_eq!(conditions[0].last_transition_time, at(10));
        assert_eq!(conditions[0].reason, "StillPlanning");

        // The status flips: the time follows.
        assert!(set_condition(
            &mut conditions,
            condition(ConditionStatus::True, "PlanMade", 30)
        ));
        assert_eq!(conditions[0].last_transition_time, at(30));
        assert_eq!(conditions.len(), 1);
    }

    #[test]
    fn setting_the_same_condition_again_changes_nothing() {
        let mut conditions = vec![condition(ConditionStatus::True, "PlanMade", 10)];
        let again = Condition {
            last_transition_time: at(99),
            ..condition(ConditionStatus::True, "PlanMade", 10)
        };
        assert!(!set_condition(&mut conditions, again));
        assert_eq!(conditions[0].last_transition_time, at(10));
    }

    #[test]
    fn it_serializes_as_metav1_condition() {
        let value = serde_json::to_value(condition(ConditionStatus::True, "PlanMade", 0))
            .expect("serializable");
        assert_eq!(value["type"], "Planned");
        assert_eq!(value["status"], "True");
        assert_eq!(value["lastTransitionTime"], "1970-01-01T00:00:00Z");
        assert_eq!(value["observedGeneration"], 1);
    }
}
