//! Redaction: secrets are replaced with `[REDACTED]` before anything leaves for a backend.
//! It knows Kubernetes Secret manifests (the values of `data` and `stringData`, in YAML
//! and JSON), fields named like credentials (`password:`, `"token":`, `api_key=`), env
//! entries named like credentials (`- name: DB_PASSWORD` / `value: ..`), bearer and basic
//! authorization, private key blocks, JWTs, URL credentials, and the shapes of
//! well-known keys (AWS, OpenAI, GitHub, Slack, Google); configured patterns add to these.
//! It errs on the side of cutting too much.

use crate::error::{Error, Result};
use regex::{Captures, Regex};
use serde_json::Value;
use std::sync::LazyLock;

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Words that make a field name a credential when the name ends with them.
const SENSITIVE: &str = r"(?:password|passwd|passphrase|pwd|secret|token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key|client[_-]?secret|credentials?|auth)";

struct Rule {
    pattern: Regex,
    replacement: &'static str,
}

static RULES: LazyLock<Vec<Rule>> = LazyLock::new(|| {
    let rule = |pattern: &str, replacement: &'static str| Rule {
        pattern: Regex::new(pattern).expect("static regex"),
        replacement,
    };
    vec![
        rule(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\z)",
            "[REDACTED PRIVATE KEY]",
        ),
        rule(
            r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*",
            "$1 [REDACTED]",
        ),
        rule(
            r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+",
            "[REDACTED JWT]",
        ),
        rule(
            r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b",
            "[REDACTED AWS KEY ID]",
        ),
        rule(
            r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}",
            "[REDACTED API KEY]",
        ),
        rule(
            r"\b(?:ghp|gho|ghu|ghs|ghr|github_pat)_[A-Za-z0-9_]{20,}",
            "[REDACTED GITHUB TOKEN]",
        ),
        rule(r"\bglpat-[A-Za-z0-9_-]{20,}", "[REDACTED GITLAB TOKEN]"),
        rule(r"\bxox[abprs]-[A-Za-z0-9-]{10,}", "[REDACTED SLACK TOKEN]"),
        rule(r"\bAIza[0-9A-Za-z_-]{35}\b", "[REDACTED GOOGLE KEY]"),
        rule(
            r"(?i)\b([a-z][a-z0-9+.-]*://[^\s:/@]+):[^\s@/]+@",
            "$1:[REDACTED]@",
        ),
    ]
});

/// `key: value`, `"key": "value"`, `key=value`, where the key ends in a sensitive word.
static FIELD: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r#"(?i)(["']?\b[\w.-]*{SENSITIVE}["']?[ \t]*[:=][ \t]*)("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^\s,;}}\]]+)"#
    ))
    .expect("static regex")
});

/// An env entry's name that holds a credential (`DB_PASSWORD`, `GITHUB_TOKEN`).
static SENSITIVE_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(&format!("(?i){SENSITIVE}")).expect("static regex"));

/// Redacts secrets from text before it is sent.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    extra: Vec<Regex>,
}

impl Redactor {
    /// A redactor with the built-in rules and these extra regular expressions (each match
    /// is replaced whole).
    pub fn new(extra_patterns: &[String]) -> Result<Self> {
        let mut extra = Vec::new();
        let mut problems = Vec::new();
        for pattern in extra_patterns {
            match Regex::new(pattern) {
                Ok(regex) => extra.push(regex),
                Err(error) => problems.push(format!("redaction pattern {pattern:?}: {error}")),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Config { problems });
        }
        Ok(Self { extra })
    }

    /// `text` with its secrets replaced, and how many were.
    pub fn redact(&self, text: &str) -> (String, usize) {
        let mut count = 0;
        let mut text = match serde_json::from_str::<Value>(text) {
            Ok(mut value) if value.is_object() || value.is_array() => {
                count += redact_value(&mut value, false);
                value.to_string()
            }
            _ => text.to_owned(),
        };
        let (yaml, n) = redact_yaml(&text);
        text = yaml;
        count += n;
        for rule in RULES.iter() {
            let n = rule.pattern.find_iter(&text).count();
            if n > 0 {
                text = rule
                    .pattern
                    .replace_all(&text, rule.replacement)
                    .into_owned();
                count += n;
            }
        }
        let mut fields = 0;
        text = FIELD
            .replace_all(&text, |captures: &Captures<'_>| {
                let value = &captures[2];
                let bare = value.trim_matches(['"', '\'']).to_ascii_lowercase();
                // `automountServiceAccountToken: false` is a setting, not a secret.
                let setting = matches!(bare.as_str(), "true" | "false" | "null" | "~" | "");
                if setting || value.contains(REDACTED) || value.starts_with("[REDACTED") {
                    return captures[0].to_owned();
                }
                fields += 1;
                let quoted = match value.chars().next() {
                    Some(q @ ('"' | '\'')) => format!("{q}{REDACTED}{q}"),
                    _ => REDACTED.to_owned(),
                };
                format!("{}{quoted}", &captures[1])
            })
            .into_owned();
        count += fields;
        for pattern in &self.extra {
            let n = pattern.find_iter(&text).count();
            if n > 0 {
                text = pattern.replace_all(&text, REDACTED).into_owned();
                count += n;
            }
        }
        (text, count)
    }

    /// Redacts the string values inside a JSON value (a tool call's arguments).
    pub fn redact_json(&self, value: &mut Value) -> usize {
        let mut count = redact_value(value, false);
        walk_strings(value, &mut |text| {
            let (redacted, n) = self.redact(text);
            count += n;
            redacted
        });
        count
    }
}

fn walk_strings(value: &mut Value, f: &mut dyn FnMut(&str) -> String) {
    match value {
        Value::String(text) => *text = f(text),
        Value::Array(items) => items.iter_mut().for_each(|item| walk_strings(item, f)),
        Value::Object(object) => object.values_mut().for_each(|item| walk_strings(item, f)),
        _ => {}
    }
}

fn is_sensitive_key(key: &str) -> bool {
    let lower = key.to_lowercase();
    [
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "token",
        "apikey",
        "api_key",
        "api-key",
        "accesskey",
        "access_key",
        "secretkey",
        "secret_key",
        "privatekey",
        "private_key",
        "client_secret",
        "clientsecret",
        "credential",
        "credentials",
        "auth",
        "authorization",
    ]
    .iter()
    .any(|word| lower.ends_with(word))
}

/// Redacts a parsed JSON document: Secret `data`/`stringData`, credential-named fields and
/// `{"name": "DB_PASSWORD", "value": ..}` env entries. `in_secret` is true inside an
/// object whose `kind` is `Secret`.
fn redact_value(value: &mut Value, in_secret: bool) -> usize {
    let mut count = 0;
    match value {
        Value::Object(object) => {
            let secret = in_secret || object.get("kind").and_then(Value::as_str) == Some("Secret");
            let env_secret = object
                .get("name")
                .and_then(Value::as_str)
                .is_some_and(|name| SENSITIVE_NAME.is_match(name));
            for (key, item) in object.iter_mut() {
                let blank = (secret && (key == "data" || key == "stringData"))
                    || (env_secret && key == "value")
                    || (is_sensitive_key(key) && !item.is_object() && !item.is_array());
                if blank {
                    count += blank_out(item);
                } else {
                    count += redact_value(item, false);
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                count += redact_value(item, in_secret);
            }
        }
        _ => {}
    }
    count
}

/// Replaces every leaf under `value` with [`REDACTED`].
fn blank_out(value: &mut Value) -> usize {
    match value {
        Value::Object(object) => object.values_mut().map(blank_out).sum(),
        Value::Array(items) => items.iter_mut().map(blank_out).sum(),
        Value::Null | Value::Bool(_) => 0,
        Value::String(text) if text == REDACTED => 0,
        leaf => {
            *leaf = Value::String(REDACTED.into());
            1
        }
    }
}

static KIND_SECRET: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#"(?m)^\s*kind:\s*["']?Secret["']?\s*$"#).expect("static regex"));
static YAML_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"^(\s*(?:-\s+)?)(["']?[^\s:#"']+["']?)\s*:(?:\s+(.*))?$"#).expect("static regex")
});

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Redacts YAML (or YAML-like log text) line by line: in documents of `kind: Secret`,
/// every value under `data:` and `stringData:`; everywhere, the `value:` after a
/// `- name: SOMETHING_PASSWORD`.
fn redact_yaml(text: &str) -> (String, usize) {
    let mut out = Vec::new();
    let mut count = 0;
    for document in split_documents(text) {
        let secret = KIND_SECRET.is_match(document);
        // (indent of the `data:` key) while inside its block.
        let mut block: Option<usize> = None;
        // A `- name: X_TOKEN` was seen at this indent; its `value:` follows.
        let mut env_name: Option<usize> = None;
        for line in document.split_inclusive('\n') {
            let (body, ending) = match line.strip_suffix('\n') {
                Some(body) => (body, "\n"),
                None => (line, ""),
            };
            let level = indent(body);
            if let Some(parent) = block {
                if body.trim().is_empty() || level > parent {
                    if let Some(captures) = YAML_KEY.captures(body) {
                        let value = captures.get(3).map_or("", |m| m.as_str());
                        if !value.is_empty() && value != REDACTED {
                            out.push(format!(
                                "{}{}: {REDACTED}{ending}",
                                &captures[1], &captures[2]
                            ));
                            count += 1;
                            continue;
                        }
                        out.push(line.to_owned());
                    } else if body.trim().is_empty() {
                        out.push(line.to_owned());
                    } else {
                        // A block scalar's continuation lines.
                        out.push(format!("{}{REDACTED}{ending}", " ".repeat(level)));
                        count += 1;
                    }
                    continue;
                }
                block = None;
            }
            if let Some(captures) = YAML_KEY.captures(body) {
                let key = captures[2].trim_matches(['"', '\'']);
                let value = captures.get(3).map_or("", |m| m.as_str()).trim();
                if secret && (key == "data" || key == "stringData") {
                    if value.is_empty() {
                        block = Some(level);
                    } else if value != "{}" {
                        out.push(format!(
                            "{}{}: {{{REDACTED}}}{ending}",
                            &captures[1], &captures[2]
                        ));
                        count += 1;
                        continue;
                    }
                } else if key == "name" && SENSITIVE_NAME.is_match(value) {
                    env_name = Some(captures[1].len());
                } else if key == "value"
                    && env_name.is_some()
                    && !value.is_empty()
                    && value != REDACTED
                {
                    env_name = None;
                    out.push(format!(
                        "{}{}: {REDACTED}{ending}",
                        &captures[1], &captures[2]
                    ));
                    count += 1;
                    continue;
                } else if captures[1].contains('-') {
                    env_name = None;
                }
            }
            out.push(line.to_owned());
        }
    }
    (out.concat(), count)
}

/// Splits on YAML document markers, keeping them with the following document.
fn split_documents(text: &str) -> Vec<&str> {
    let mut documents = Vec::new();
    let mut start = 0;
    let mut position = 0;
    for line in text.split_inclusive('\n') {
        if position > start && line.trim_end() == "---" {
            documents.push(&text[start..position]);
            start = position;
        }
        position += line.len();
    }
    documents.push(&text[start..]);
    documents
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redact(text: &str) -> String {
        Redactor::default().redact(text).0
    }

    #[test]
    fn secret_manifests_lose_their_data() {
        let yaml = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\ndata:\n  password: aHVudGVyMg==\n  user: YWRtaW4=\nstringData:\n  cert: |\n    MIIBkTCB+wIJA\n    more\ntype: Opaque\n---\nkind: ConfigMap\ndata:\n  mode: fast\n";
        let out = redact(yaml);
        assert!(!out.contains("aHVudGVyMg=="), "{out}");
        assert!(!out.contains("YWRtaW4="), "{out}");
        assert!(!out.contains("MIIBkTCB"), "{out}");
        assert!(out.contains("name: db"));
        assert!(out.contains("type: Opaque"));
        assert!(
            out.contains("mode: fast"),
            "ConfigMaps keep their data: {out}"
        );

        let json = r#"{"kind":"Secret","metadata":{"name":"db"},"data":{"token":"c2VjcmV0"}}"#;
        let out = redact(json);
        assert!(!out.contains("c2VjcmV0"), "{out}");
        assert!(out.contains("\"name\":\"db\""));
    }

    #[test]
    fn credentials_in_logs_and_fields() {
        let cases = [
            (
                "Authorization: Bearer abcdefghijklmnop.qrstu",
                "abcdefghijklmnop",
            ),
            ("password: hunter2", "hunter2"),
            ("db_password=\"s3cr3t value\"", "s3cr3t"),
            ("{\"apiKey\": \"k-123456\"}", "k-123456"),
            (
                "aws_access_key_id = AKIAABCDEFGHIJKLMNOP",
                "AKIAABCDEFGHIJKLMNOP",
            ),
            (
                "key sk-proj-abcdefghijklmnopqrstuvwx used",
                "abcdefghijklmnopqrstuvwx",
            ),
            ("postgres://app:pa55word@db:5432/app", "pa55word"),
            (
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----",
                "MIIEow",
            ),
            (
                "token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzYSJ9.c2lnbmF0dXJl",
                "eyJzdWIi",
            ),
        ];
        for (input, secret) in cases {
            let out = redact(input);
            assert!(!out.contains(secret), "{input:?} became {out:?}");
            assert!(out.contains("REDACTED"), "{input:?} became {out:?}");
        }
    }

    #[test]
    fn env_entries_named_like_credentials() {
        let yaml =
            "env:\n- name: DB_PASSWORD\n  value: hunter2\n- name: LOG_LEVEL\n  value: debug\n";
        let out = redact(yaml);
        assert!(!out.contains("hunter2"), "{out}");
        assert!(out.contains("value: debug"), "{out}");
    }

    #[test]
    fn ordinary_text_is_left_alone() {
        let text = "max_tokens: 100\nsecretName: db-creds\nreplicas: 3\nautomountServiceAccountToken: false\nThe pod restarted 5 times.";
        assert_eq!(redact(text), text);
    }

    #[test]
    fn extra_patterns() {
        let redactor = Redactor::new(&["ACME-[0-9]{6}".to_owned()]).unwrap();
        assert_eq!(redactor.redact("id ACME-123456 ok").0, "id [REDACTED] ok");
        assert!(Redactor::new(&["(".to_owned()]).is_err());
    }
}
