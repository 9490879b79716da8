//! `terraform_module`: writes a Terraform module (versions.tf, variables.tf, main.tf,
//! outputs.tf) into a workspace folder: an AWS S3 bucket with versioning, encryption and
//! public access blocked, or the skeleton of any one resource type the caller names.

#![forbid(unsafe_code)]

#[path = "../generate.rs"]
mod generate;

use deckhand_tool_protocol::{run, ToolError, ToolInfo, WorkspaceAccess};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Old enough to be everywhere, new enough for everything the modules use.
const TERRAFORM_VERSION: &str = ">= 1.5.0";
/// The AWS provider major version whose split S3 resources (versioning, encryption as
/// their own resources) the bucket module uses.
const AWS_PROVIDER_VERSION: &str = ">= 5.0, < 7.0";

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Input {
    /// Workspace-relative folder to write the module into, e.g. `terraform/modules/logs`.
    path: String,
    /// Replace module files that exist (default false: any existing file is an error and
    /// nothing is written).
    #[serde(default)]
    overwrite: bool,
    /// What the module creates.
    module: Module,
}

/// The kinds of module the tool writes.
#[derive(Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum Module {
    /// An S3 bucket (AWS provider v5+): versioning, server-side encryption (SSE-S3, or
    /// SSE-KMS with a key), and all public access blocked.
    S3Bucket {
        /// Versioning on by default (default true).
        versioning: Option<bool>,
        /// Encrypt with a KMS key (SSE-KMS; the module then takes a `kms_key_arn`
        /// variable) instead of S3-managed keys (AES256) (default false).
        kms: Option<bool>,
    },
    /// The skeleton of one resource: a `resource "TYPE" "this"` block whose attributes
    /// come from variables.
    Resource {
        /// The resource type, e.g. `aws_sqs_queue` or `google_storage_bucket`; its
        /// provider is the part before the first `_`.
        resource_type: String,
        /// Provider source address (default `hashicorp/PROVIDER`).
        provider_source: Option<String>,
        /// Provider version constraint (default none: any version).
        provider_version: Option<String>,
        /// The resource's arguments, each becoming a variable of the same name.
        #[serde(default)]
        attributes: BTreeMap<String, Attribute>,
        /// Attributes the resource exports, each becoming an output (default `id`).
        #[serde(default)]
        outputs: Vec<String>,
    },
}

/// One argument of the resource, exposed as a module variable.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Attribute {
    /// Terraform type of the variable, e.g. `string`, `number`, `bool`,
    /// `list(string)`, `map(string)` (default `string`).
    #[serde(rename = "type")]
    type_: Option<String>,
    /// What the attribute is for.
    description: Option<String>,
    /// Default value as JSON (a string, number, bool, list or object); omit to make the
    /// variable required.
    default: Option<serde_json::Value>,
    /// Hide the value in plans and outputs (default false).
    #[serde(default)]
    sensitive: bool,
}

/// One file of the module.
#[derive(Serialize, JsonSchema)]
struct ModuleFile {
    /// Workspace-relative path.
    path: String,
    /// The HCL written.
    content: String,
}

#[derive(Serialize, JsonSchema)]
struct Output {
    /// The module's folder, workspace-relative.
    path: String,
    /// Every file written, with its text.
    files: Vec<ModuleFile>,
}

/// A Terraform identifier: letters, digits, `_` and `-`, starting with a letter or `_`.
fn identifier(field: &str, name: &str) -> Result<(), ToolError> {
    let ok = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ToolError::invalid_input(format!("{field}: {name:?} is not a Terraform identifier")))
    }
}

/// An HCL quoted string: escapes, and `${`/`%{` doubled so text is never interpolated.
fn quote(text: &str) -> String {
    let mut quoted = String::from("\"");
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            '$' | '%' if chars.peek() == Some(&'{') => {
                quoted.push(c);
                quoted.push(c);
            }
            c if c.is_control() => {
                let _ = write!(quoted, "\\u{:04X}", c as u32);
            }
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

/// A JSON value as an HCL expression.
fn expression(value: &serde_json::Value) -> String {
    use serde_json::Value;
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => quote(s),
        Value::Array(items) => format!("[{}]", items.iter().map(expression).collect::<Vec<_>>().join(", ")),
        Value::Object(map) => {
            let fields: Vec<String> = map.iter().map(|(k, v)| format!("{} = {}", quote(k), expression(v))).collect();
            format!("{{ {} }}", fields.join(", "))
        }
    }
}

/// A Terraform type constraint: primitive names and `list(...)`, `set(...)`, `map(...)`
/// around them (objects and tuples are left to hand editing).
fn type_constraint(field: &str, text: &str) -> Result<(), ToolError> {
    let mut inner = text.trim();
    while let Some(rest) = ["list(", "set(", "map("].iter().find_map(|p| inner.strip_prefix(p)) {
        inner = rest.strip_suffix(')').ok_or_else(|| ToolError::invalid_input(format!("{field}: {text:?} has an unclosed '('")))?;
    }
    if ["string", "number", "bool", "any"].contains(&inner) {
        Ok(())
    } else {
        Err(ToolError::invalid_input(format!("{field}: {text:?} is not string, number, bool, any, or list/set/map of them")))
    }
}

fn variable(out: &mut String, name: &str, type_: &str, description: &str, default: Option<&str>, sensitive: bool) {
    let _ = writeln!(out, "variable \"{name}\" {{");
    let _ = writeln!(out, "  description = {}", quote(description));
    let _ = writeln!(out, "  type        = {type_}");
    if let Some(default) = default {
        let _ = writeln!(out, "  default     = {default}");
    }
    if sensitive {
        let _ = writeln!(out, "  sensitive   = true");
    }
    let _ = writeln!(out, "}}\n");
}

fn output(out: &mut String, name: &str, description: &str, value: &str) {
    let _ = writeln!(out, "output \"{name}\" {{\n  description = {}\n  value       = {value}\n}}\n", quote(description));
}

fn versions(provider: &str, source: &str, version: Option<&str>) -> String {
    let mut out = format!("terraform {{\n  required_version = {}\n\n  required_providers {{\n", quote(TERRAFORM_VERSION));
    let _ = writeln!(out, "    {provider} = {{");
    let _ = writeln!(out, "      source  = {}", quote(source));
    if let Some(version) = version {
        let _ = writeln!(out, "      version = {}", quote(version));
    }
    out.push_str("    }\n  }\n}\n");
    out
}

fn s3_bucket(versioning: bool, kms: bool) -> Vec<(&'static str, String)> {
    let mut variables = String::new();
    variable(&mut variables, "bucket_name", "string", "Globally unique name of the bucket.", None, false);
    variable(&mut variables, "versioning_enabled", "bool", "Keep every version of every object.", Some(&versioning.to_string()), false);
    if kms {
        variable(&mut variables, "kms_key_arn", "string", "ARN of the KMS key that encrypts objects (SSE-KMS).", None, false);
    }
    variable(&mut variables, "force_destroy", "bool", "Allow destroying the bucket while it still holds objects.", Some("false"), false);
    variable(&mut variables, "tags", "map(string)", "Tags for the bucket.", Some("{}"), false);

    let encryption = if kms {
        "      sse_algorithm     = \"aws:kms\"\n      kms_master_key_id = var.kms_key_arn\n"
    } else {
        "      sse_algorithm = \"AES256\"\n"
    };
    let main = format!(
        r#"resource "aws_s3_bucket" "this" {{
  bucket        = var.bucket_name
  force_destroy = var.force_destroy
  tags          = var.tags
}}

resource "aws_s3_bucket_versioning" "this" {{
  bucket = aws_s3_bucket.this.id

  versioning_configuration {{
    status = var.versioning_enabled ? "Enabled" : "Suspended"
  }}
}}

resource "aws_s3_bucket_server_side_encryption_configuration" "this" {{
  bucket = aws_s3_bucket.this.id

  rule {{
    apply_server_side_encryption_by_default {{
{encryption}    }}
    bucket_key_enabled = {kms}
  }}
}}

resource "aws_s3_bucket_public_access_block" "this" {{
  bucket = aws_s3_bucket.this.id

  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}}
"#
    );
    let mut outputs = String::new();
    output(&mut outputs, "bucket_id", "Name of the bucket.", "aws_s3_bucket.this.id");
    output(&mut outputs, "bucket_arn", "ARN of the bucket.", "aws_s3_bucket.this.arn");
    output(&mut outputs, "bucket_regional_domain_name", "Regional domain name of the bucket.", "aws_s3_bucket.this.bucket_regional_domain_name");
    vec![
        ("versions.tf", versions("aws", "hashicorp/aws", Some(AWS_PROVIDER_VERSION))),
        ("variables.tf", variables),
        ("main.tf", main),
        ("outputs.tf", outputs),
    ]
}

fn resource(
    resource_type: &str,
    provider_source: Option<&str>,
    provider_version: Option<&str>,
    attributes: &BTreeMap<String, Attribute>,
    outputs: &[String],
) -> Result<Vec<(&'static str, String)>, ToolError> {
    identifier("module.resource_type", resource_type)?;
    let provider = resource_type
        .split_once('_')
        .map(|(provider, _)| provider)
        .ok_or_else(|| ToolError::invalid_input(format!("module.resource_type: {resource_type:?} has no provider prefix (e.g. aws_sqs_queue)")))?;
    let source = provider_source.map(str::to_owned).unwrap_or_else(|| format!("hashicorp/{provider}"));
    let source_ok = source.split('/').count() >= 2 && source.split('/').all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !source_ok {
        return Err(ToolError::invalid_input(format!("module.provider_source: {source:?} is not NAMESPACE/TYPE")));
    }
    if let Some(version) = provider_version {
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_alphanumeric() || b" .,<>=!~-".contains(&b)) {
            return Err(ToolError::invalid_input(format!("module.provider_version: {version:?} is not a version constraint")));
        }
    }
    let mut variables = String::new();
    let mut body = String::new();
    for (name, attribute) in attributes {
        let field = format!("module.attributes.{name}");
        identifier(&field, name)?;
        let type_ = attribute.type_.as_deref().unwrap_or("string");
        type_constraint(&format!("{field}.type"), type_)?;
        let description = attribute.description.clone().unwrap_or_else(|| format!("{name} of the {resource_type}."));
        let default = attribute.default.as_ref().map(expression);
        variable(&mut variables, name, type_, &description, default.as_deref(), attribute.sensitive);
        let _ = writeln!(body, "  {name} = var.{name}");
    }
    let main = format!("resource \"{resource_type}\" \"this\" {{\n{body}}}\n");
    let mut out = String::new();
    let exported: Vec<String> = if outputs.is_empty() { vec!["id".to_owned()] } else { outputs.to_vec() };
    for name in &exported {
        identifier(&format!("module.outputs[{name}]"), name)?;
        output(&mut out, name, &format!("{name} of the {resource_type}."), &format!("{resource_type}.this.{name}"));
    }
    Ok(vec![
        ("versions.tf", versions(provider, &source, provider_version)),
        ("variables.tf", variables),
        ("main.tf", main),
        ("outputs.tf", out),
    ])
}

fn build(module: &Module) -> Result<Vec<(&'static str, String)>, ToolError> {
    match module {
        Module::S3Bucket { versioning, kms } => Ok(s3_bucket(versioning.unwrap_or(true), kms.unwrap_or(false))),
        Module::Resource { resource_type, provider_source, provider_version, attributes, outputs } => {
            resource(resource_type, provider_source.as_deref(), provider_version.as_deref(), attributes, outputs)
        }
    }
}

fn terraform_module(input: Input) -> Result<Output, ToolError> {
    let files = build(&input.module)?;
    let paths: Vec<String> = files.iter().map(|(name, _)| generate::join(&input.path, name)).collect();
    // All or nothing: every refusal comes before the first write.
    for path in &paths {
        generate::check_writable(path, input.overwrite)?;
    }
    let mut written = Vec::new();
    for (path, (_, content)) in paths.into_iter().zip(files) {
        let path = generate::write_file(&path, input.overwrite, &content)?;
        written.push(ModuleFile { path, content });
    }
    Ok(Output { path: input.path, files: written })
}

fn main() {
    run(
        ToolInfo {
            name: "terraform_module",
            description: "Write a Terraform module (versions.tf, variables.tf, main.tf, outputs.tf) into a workspace folder: an S3 bucket with versioning and encryption, or the skeleton of a named resource type.",
            workspace: WorkspaceAccess::Write,
        },
        terraform_module,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_are_quoted_and_never_interpolated() {
        assert_eq!(quote("a \"b\" \\ ${x} %{y} $z\n"), r#""a \"b\" \\ $${x} %%{y} $z\n""#);
        assert_eq!(expression(&json!({ "a": [1, true, null, "s"] })), r#"{ "a" = [1, true, null, "s"] }"#);
    }

    #[test]
    fn the_s3_module_has_versioning_and_encryption() {
        let files = build(&Module::S3Bucket { versioning: None, kms: Some(true) }).unwrap();
        let main = &files.iter().find(|(n, _)| *n == "main.tf").unwrap().1;
        assert!(main.contains("resource \"aws_s3_bucket_versioning\" \"this\""));
        assert!(main.contains("sse_algorithm     = \"aws:kms\""));
        let variables = &files.iter().find(|(n, _)| *n == "variables.tf").unwrap().1;
        assert!(variables.contains("variable \"kms_key_arn\""));
        assert!(variables.contains("default     = true"), "{variables}");
    }

    #[test]
    fn resource_skeletons_take_their_attributes_from_variables() {
        let module: Module = serde_json::from_value(json!({
            "kind": "resource", "resource_type": "aws_sqs_queue",
            "attributes": { "name": {}, "delay_seconds": { "type": "number", "default": 0 } },
            "outputs": ["arn", "url"],
        }))
        .unwrap();
        let files = build(&module).unwrap();
        assert_eq!(files[0].1, "terraform {\n  required_version = \">= 1.5.0\"\n\n  required_providers {\n    aws = {\n      source  = \"hashicorp/aws\"\n    }\n  }\n}\n");
        assert_eq!(files[2].1, "resource \"aws_sqs_queue\" \"this\" {\n  delay_seconds = var.delay_seconds\n  name = var.name\n}\n");
        assert!(files[3].1.contains("value       = aws_sqs_queue.this.url"));
    }

    #[test]
    fn unknown_module_fields_are_refused() {
        assert!(serde_json::from_value::<Module>(json!({ "kind": "s3_bucket", "bucket": "x" })).is_err());
        assert!(serde_json::from_value::<Module>(json!({ "kind": "vpc" })).is_err());
    }

    #[test]
    fn bad_fields_are_named() {
        let cases = [
            (json!({ "kind": "resource", "resource_type": "sqs" }), "module.resource_type:"),
            (json!({ "kind": "resource", "resource_type": "aws sqs" }), "module.resource_type:"),
            (json!({ "kind": "resource", "resource_type": "aws_x", "attributes": { "1a": {} } }), "module.attributes.1a:"),
            (json!({ "kind": "resource", "resource_type": "aws_x", "attributes": { "a": { "type": "object" } } }), "module.attributes.a.type:"),
            (json!({ "kind": "resource", "resource_type": "aws_x", "provider_source": "aws" }), "module.provider_source:"),
            (json!({ "kind": "resource", "resource_type": "aws_x", "outputs": ["a b"] }), "module.outputs[a b]:"),
        ];
        for (module, prefix) in cases {
            let module: Module = serde_json::from_value(module.clone()).unwrap();
            let error = build(&module).unwrap_err();
            assert!(error.message.starts_with(prefix), "{}", error.message);
        }
    }
}
