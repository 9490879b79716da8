//! The tool registry: every tool an agent may use, wasm or host-side, behind one trait.
//! Inputs are checked against the tool's schema before it runs, and outputs after.

use crate::error::{Error, InputProblem, Result};
use crate::spec::{FunctionDefinition, ToolSpec};
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

/// At most this many schema problems are reported for one input.
const MAX_REPORTED_PROBLEMS: usize = 10;

/// What a call may touch, passed in by the caller: nothing is ambient.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ToolContext {
    /// The thread's workspace folder; tools that access the workspace see only this.
    pub workspace: PathBuf,
    /// The person the call is made for (cluster tools pass it to the policies and the
    /// audit log).
    pub requested_by: String,
    /// Who approved the step, for mutating tools: they refuse to run without it.
    pub approved_by: Option<String>,
    /// The thread the call belongs to: cluster writes keep each object's prior state
    /// under it, so the thread can be restored.
    pub thread_id: Option<String>,
    /// The person whose Kubernetes identity cluster calls use (`Impersonate-User` /
    /// `Impersonate-Group`), so their own RBAC applies; `None` calls as deckhand itself.
    pub acting_as: Option<crate::cluster::Person>,
}

/// The future a tool call returns.
pub type ToolFuture<'a> = Pin<Box<dyn Future<Output = Result<Value>> + Send + 'a>>;

/// A tool: a manifest and a way to call it.
pub trait Tool: Send + Sync {
    /// The tool's manifest.
    fn spec(&self) -> &ToolSpec;

    /// Runs the tool on an input that already matches its input schema.
    fn call<'a>(&'a self, context: &'a ToolContext, input: &'a Value) -> ToolFuture<'a>;
}

struct Registered {
    tool: Arc<dyn Tool>,
    source: String,
    input_validator: jsonschema::Validator,
    output_validator: jsonschema::Validator,
}

/// The tools deckhand can use, by name.
#[derive(Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Registered>,
}

impl std::fmt::Debug for ToolRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToolRegistry")
            .field("tools", &self.tools.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `tool`, which came from `source` (a path or "built-in"). Refuses a malformed
    /// manifest and a name that is already taken: a plugin never shadows another tool.
    pub fn register(&mut self, tool: Arc<dyn Tool>, source: impl Into<String>) -> Result<()> {
        let source = source.into();
        let spec = tool.spec();
        let problems = spec.problems();
        if !problems.is_empty() {
            return Err(Error::InvalidManifest {
                path: PathBuf::from(&source),
                problems,
            });
        }
        if let Some(existing) = self.tools.get(&spec.name) {
            return Err(Error::DuplicateTool {
                name: spec.name.clone(),
                first: existing.source.clone(),
                second: source,
            });
        }
        let compile = |schema: &Value| {
            jsonschema::validator_for(schema).map_err(|error| Error::InvalidManifest {
                path: PathBuf::from(&source),
                problems: vec![error.to_string()],
            })
        };
        let input_validator = compile(&spec.input_schema)?;
        let output_validator = compile(&spec.output_schema)?;
        let name = spec.name.clone();
        self.tools.insert(
            name,
            Registered {
                tool,
                source,
                input_validator,
                output_validator,
            },
        );
        Ok(())
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name).map(|registered| &registered.tool)
    }

    /// Where the tool called `name` came from.
    pub fn source(&self, name: &str) -> Option<&str> {
        self.tools
            .get(name)
            .map(|registered| registered.source.as_str())
    }

    /// Every tool's manifest, by name.
    pub fn specs(&self) -> impl Iterator<Item = &ToolSpec> {
        self.tools.values().map(|registered| registered.tool.spec())
    }

    /// How many tools there are.
    pub fn len(&self) -> usize {
        self.tools.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tools.is_empty()
    }

    /// The tools as function-calling definitions for an LLM.
    pub fn function_definitions(&self) -> Vec<FunctionDefinition> {
        self.specs().map(ToolSpec::function_definition).collect()
    }

    fn registered(&self, name: &str) -> Result<&Registered> {
        self.tools.get(name).ok_or_else(|| Error::UnknownTool {
            name: name.to_owned(),
            known: self.tools.keys().cloned().collect(),
        })
    }

    /// Checks `input` against the input schema of tool `name`, naming each offending field.
    pub fn validate_input(&self, name: &str, input: &Value) -> Result<()> {
        check_input(self.registered(name)?, name, input)
    }

    /// Validates `input`, runs tool `name`, and checks its output against the output
    /// schema (a tool that breaks its own contract is reported, not trusted).
    pub async fn call(&self, name: &str, context: &ToolContext, input: &Value) -> Result<Value> {
        let registered = self.registered(name)?;
        check_input(registered, name, input)?;
        let output = registered.tool.call(context, input).await?;
        let problems = schema_problems(&registered.output_validator, &output);
        if !problems.is_empty() {
            let problems: Vec<String> = problems.iter().map(ToString::to_string).collect();
            return Err(Error::MalformedResult {
                tool: name.to_owned(),
                message: format!(
                    "output does not match the tool's output schema: {}",
                    problems.join("; ")
                ),
            });
        }
        Ok(output)
    }
}

fn check_input(registered: &Registered, name: &str, input: &Value) -> Result<()> {
    let problems = schema_problems(&registered.input_validator, input);
    match problems.is_empty() {
        true => Ok(()),
        false => Err(Error::InvalidInput {
            tool: name.to_owned(),
            problems,
        }),
    }
}

fn schema_problems(validator: &jsonschema::Validator, value: &Value) -> Vec<InputProblem> {
    validator
        .iter_errors(value)
        .take(MAX_REPORTED_PROBLEMS)
        .map(|error| InputProblem {
            path: error.instance_path().to_string(),
            message: error.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::WorkspaceAccess;
    use serde_json::json;

    /// A host-side tool that adds two numbers, to exercise the registry without wasm.
    struct Add {
        spec: ToolSpec,
        lie: bool,
    }

    impl Add {
        fn tool(name: &str, lie: bool) -> Arc<dyn Tool> {
            Arc::new(Self {
                spec: ToolSpec {
                    name: name.to_owned(),
                    description: "adds a and b".to_owned(),
                    workspace: WorkspaceAccess::None,
                    mutating: false,
                    input_schema: json!({
                        "type": "object",
                        "properties": {"a": {"type": "integer"}, "b": {"type": "integer", "minimum": 0}},
                        "required": ["a", "b"],
                        "additionalProperties": false
                    }),
                    output_schema: json!({"type": "object", "required": ["sum"], "properties": {"sum": {"type": "integer"}}}),
                },
                lie,
            })
        }
    }

    impl Tool for Add {
        fn spec(&self) -> &ToolSpec {
            &self.spec
        }

        fn call<'a>(&'a self, _context: &'a ToolContext, input: &'a Value) -> ToolFuture<'a> {
            let sum = input["a"].as_i64().unwrap_or(0) + input["b"].as_i64().unwrap_or(0);
            let lie = self.lie;
            Box::pin(async move {
                Ok(if lie {
                    json!({"total": sum})
                } else {
                    json!({"sum": sum})
                })
            })
        }
    }

    fn context() -> ToolContext {
        ToolContext {
            workspace: PathBuf::from("/nonexistent"),
            ..ToolContext::default()
        }
    }

    #[tokio::test]
    async fn valid_inputs_run_and_invalid_ones_name_the_field() {
        let mut registry = ToolRegistry::new();
        registry
            .register(Add::tool("add", false), "built-in")
            .unwrap();
        assert_eq!(
            registry
                .call("add", &context(), &json!({"a": 1, "b": 2}))
                .await
                .unwrap(),
            json!({"sum": 3})
        );

        let error = registry
            .call("add", &context(), &json!({"a": "one", "b": -1}))
            .await
            .unwrap_err();
        let Error::InvalidInput { problems, .. } = &error else {
            panic!("{error}")
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        assert!(
            paths.contains(&"/a") && paths.contains(&"/b"),
            "{problems:?}"
        );
        assert!(error.is_usage_error());

        let error = registry
            .call("add", &context(), &json!({"a": 1, "b": 2, "c": 3}))
            .await
            .unwrap_err();
        assert!(error.to_string().contains('c'), "{error}");
        let error = registry
            .call("add", &context(), &json!({"a": 1}))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("\"b\" is a required property"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn unknown_tools_and_broken_contracts_are_errors() {
        let mut registry = ToolRegistry::new();
        registry
            .register(Add::tool("liar", true), "plugin")
            .unwrap();
        let error = registry
            .call("nope", &context(), &json!({}))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "unknown_tool");
        assert!(
            error.to_string().contains("liar"),
            "the message lists known tools: {error}"
        );
        let error = registry
            .call("liar", &context(), &json!({"a": 1, "b": 2}))
            .await
            .unwrap_err();
        assert_eq!(error.kind(), "malformed_result");
    }

    #[test]
    fn names_are_unique_and_manifests_checked() {
        let mut registry = ToolRegistry::new();
        registry
            .register(Add::tool("add", false), "built-in")
            .unwrap();
        let error = registry
            .register(Add::tool("add", false), "plugins/add.json")
            .unwrap_err();
        assert!(matches!(error, Error::DuplicateTool { .. }), "{error}");
        let error = registry
            .register(Add::tool("Bad Name", false), "plugins/x.json")
            .unwrap_err();
        assert!(matches!(error, Error::InvalidManifest { .. }), "{error}");
        assert_eq!(registry.len(), 1);
        assert_eq!(registry.function_definitions()[0].name, "add");
    }
}
