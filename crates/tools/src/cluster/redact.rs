//! Secret values never reach an agent or a model: a Secret read through the gate comes
//! back with its keys and the size of each value, nothing else.

use serde_json::{Map, Value};

/// The annotation `kubectl apply` keeps the last applied manifest in: for a Secret it
/// holds the values too.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// `object` with Secret values replaced by their sizes (`data` and `stringData` become
/// `{key: "<redacted: N bytes>"}`); other objects, and lists of them, pass through with
/// every Secret inside redacted.
pub fn redact_secrets(mut object: Value) -> Value {
    redact_in_place(&mut object);
    object
}

fn redact_in_place(object: &mut Value) {
    let Some(fields) = object.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(items)) = fields.get_mut("items") {
        items.iter_mut().for_each(redact_in_place);
    }
    if fields.get("kind").and_then(Value::as_str) != Some("Secret") {
        return;
    }
    for key in ["data", "stringData"] {
        if let Some(Value::Object(values)) = fields.get_mut(key) {
            let sizes: Map<String, Value> = values
                .iter()
                .map(|(name, value)| (name.clone(), Value::String(sized(key, value))))
                .collect();
            *values = sizes;
        }
    }
    if let Some(Value::Object(annotations)) = fields
        .get_mut("metadata")
        .and_then(|metadata| metadata.get_mut("annotations"))
    {
        if annotations.remove(LAST_APPLIED).is_some() {
            annotations.insert(
                LAST_APPLIED.to_owned(),
                Value::String("<redacted>".to_owned()),
            );
        }
    }
}

/// `<redacted: N bytes>`; `data` holds base64, whose decoded size is what people mean.
fn sized(key: &str, value: &Value) -> String {
    let text = value.as_str().unwrap_or_default();
    let bytes = if key == "data" {
        let padding = text.bytes().rev().take_while(|&byte| byte == b'=').count();
        (text.len() / 4 * 3).saturating_sub(padding)
    } else {
        text.len()
    };
    format!("<redacted: {bytes} bytes>")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secrets_keep_their_keys_and_sizes_only() {
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "db", "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "{\"data\":{\"password\":\"aHVudGVyMg==\"}}",
                "team": "payments"}},
            "data": {"password": "aHVudGVyMg==", "user": "YWRtaW4="},
            "stringData": {"token": "s3cr3t"}
        });
        let redacted = redact_secrets(secret);
        assert_eq!(
            redacted["data"],
            json!({"password": "<redacted: 7 bytes>", "user": "<redacted: 5 bytes>"})
        );
        assert_eq!(redacted["stringData"]["token"], "<redacted: 6 bytes>");
        let text = redacted.to_string();
        assert!(!text.contains("aHVudGVyMg"), "{text}");
        assert!(!text.contains("s3cr3t"), "{text}");
        assert_eq!(redacted["metadata"]["annotations"]["team"], "payments");
    }

    #[test]
    fn secrets_inside_lists_are_redacted_and_other_kinds_untouched() {
        let list = json!({"kind": "List", "items": [
            {"kind": "Secret", "data": {"k": "dmFsdWU="}},
            {"kind": "ConfigMap", "data": {"k": "value"}}
        ]});
        let redacted = redact_secrets(list);
        assert_eq!(redacted["items"][0]["data"]["k"], "<redacted: 5 bytes>");
        assert_eq!(redacted["items"][1]["data"]["k"], "value");
    }
}
