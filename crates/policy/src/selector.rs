//! Kubernetes label selectors (`matchLabels` and `matchExpressions`), for Gatekeeper's
//! `spec.match.labelSelector` and for the ClusterRoles an aggregation rule pulls in.

use serde_json::{Map, Value};

/// Whether `selector` selects an object with `labels`.
///
/// A selector that cannot be read (an unknown operator, a non-string value) selects
/// everything: for a guard that over-approximates what an aggregation rule pulls in, and
/// for a constraint it means the policy runs rather than being silently skipped.
pub fn matches(selector: &Value, labels: &Map<String, Value>) -> bool {
    let Some(selector) = selector.as_object() else {
        return true;
    };
    if let Some(match_labels) = selector.get("matchLabels") {
        let Some(match_labels) = match_labels.as_object() else {
            return true;
        };
        for (key, wanted) in match_labels {
            if labels.get(key) != Some(wanted) {
                return false;
            }
        }
    }
    if let Some(expressions) = selector.get("matchExpressions") {
        let Some(expressions) = expressions.as_array() else {
            return true;
        };
        for expression in expressions {
            if !expression_matches(expression, labels) {
                return false;
            }
        }
    }
    true
}

/// Whether a selector selects every object: no `matchLabels` and no `matchExpressions`.
pub fn is_empty(selector: &Value) -> bool {
    let field_is_empty = |name: &str| match selector.get(name) {
        None | Some(Value::Null) => true,
        Some(Value::Object(fields)) => fields.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    };
    field_is_empty("matchLabels") && field_is_empty("matchExpressions")
}

fn expression_matches(expression: &Value, labels: &Map<String, Value>) -> bool {
    let Some(key) = expression.get("key").and_then(Value::as_str) else {
        return true;
    };
    let values: Vec<&Value> = expression
        .get("values")
        .and_then(Value::as_array)
        .map(|values| values.iter().collect())
        .unwrap_or_default();
    let label = labels.get(key);
    match expression.get("operator").and_then(Value::as_str) {
        Some("In") => label.is_some_and(|label| values.contains(&label)),
        Some("NotIn") => label.is_none_or(|label| !values.contains(&label)),
        Some("Exists") => label.is_some(),
        Some("DoesNotExist") => label.is_none(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn match_labels_and_expressions_all_have_to_hold() {
        let selector = json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "edge"]},
                {"key": "legacy", "operator": "DoesNotExist"},
            ]
        });
        assert!(matches(
            &selector,
            &labels(json!({"app": "web", "tier": "edge"}))
        ));
        assert!(!matches(
            &selector,
            &labels(json!({"app": "web", "tier": "back"}))
        ));
        assert!(!matches(
            &selector,
            &labels(json!({"app": "web", "tier": "edge", "legacy": "1"}))
        ));
        assert!(!matches(&selector, &labels(json!({"tier": "edge"}))));
    }

    #[test]
    fn empty_selectors_select_everything() {
        assert!(is_empty(&json!({})));
        assert!(is_empty(&json!({"matchLabels": {}})));
        assert!(!is_empty(&json!({"matchLabels": {"a": "b"}})));
        assert!(matches(&json!({}), &labels(json!({"any": "thing"}))));
    }
}
