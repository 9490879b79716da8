//! Plans: a request broken into a DAG of steps, each one agent using one tool.
//!
//! A planner (an LLM or a rule-based path) produces a [`PlanDraft`]; [`Plan::new`]
//! validates it against the [`ToolCatalog`] (acyclic, known dependencies and tools,
//! inputs that match the tools' schemas, references only to ancestors' outputs) and
//! seals it with a hash over its canonical JSON. An approval names that hash; a plan
//! changed afterwards no longer matches it.
//!
//! A step's input may use an earlier step's output: a string `{{steps.ID.output}}` (or
//! `{{steps.ID.output.field.0.name}}` for part of it) is replaced by that value when it
//! is the whole string, and by its text when it is part of a longer string.

use crate::agent::AgentRole;
use crate::error::{Error, Result};
use crate::thread::ThreadId;
use petgraph::graph::{DiGraph, NodeIndex};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The most steps one plan may have.
pub const MAX_STEPS: usize = 100_000;
/// The longest step id.
pub const MAX_STEP_ID_LEN: usize = 64;

/// A plan's identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PlanId(pub uuid::Uuid);

impl PlanId {
    /// A new random id.
    pub fn new() -> Self {
        Self(uuid::Uuid::new_v4())
    }
}

impl Default for PlanId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for PlanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::str::FromStr for PlanId {
    type Err = Error;
    fn from_str(text: &str) -> Result<Self> {
        uuid::Uuid::parse_str(text.trim())
            .map(Self)
            .map_err(|source| Error::InvalidId {
                what: "plan",
                input: text.to_owned(),
                source,
            })
    }
}

/// One step: one agent using one tool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Unique within the plan: letters, digits, `_`, `-`, `.`; e.g. `diagnose-web`.
    pub id: String,
    /// The agent that carries the step out.
    pub agent: AgentRole,
    /// What the step does, in a few words a person reads.
    pub title: String,
    /// The tool the step calls.
    pub tool: String,
    /// The tool's input; may use `{{steps.ID.output...}}` of an ancestor step.
    pub input: Value,
    /// Steps that must finish first.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Whether the step changes something (set by validation for every mutating tool,
    /// whatever the planner said); mutating steps wait for approval.
    #[serde(default)]
    pub mutating: bool,
    /// Why the step is there.
    #[serde(default)]
    pub rationale: String,
}

/// What a planner produces: the steps, before validation, ids and hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PlanDraft {
    /// The steps, in any order (dependencies give the order).
    pub steps: Vec<Step>,
}

/// A validated, hashed plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The plan's id.
    pub id: PlanId,
    /// The thread it belongs to.
    pub thread_id: ThreadId,
    /// The person's request, as written.
    pub request: String,
    /// The steps.
    pub steps: Vec<Step>,
    /// Which planner made it (`scarlet/offline`, `scarlet/openai:gpt-4o`, ...).
    pub created_by: String,
    /// `sha256:HEX` over the canonical JSON of every other field.
    pub hash: String,
}

/// A tool as plans see it: enough to validate a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// The tool's name.
    pub name: String,
    /// What it does (planners show this to the model).
    pub description: String,
    /// Its input's JSON Schema.
    pub input_schema: Value,
    /// Whether it changes the workspace or the cluster.
    pub mutating: bool,
}

/// The tools a plan may use.
#[derive(Debug, Clone, Default)]
pub struct ToolCatalog {
    entries: BTreeMap<String, CatalogEntry>,
}

impl ToolCatalog {
    /// A catalog of `entries` (a later entry with the same name replaces an earlier one).
    pub fn new(entries: impl IntoIterator<Item = CatalogEntry>) -> Self {
        Self {
            entries: entries
                .into_iter()
                .map(|entry| (entry.name.clone(), entry))
                .collect(),
        }
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&CatalogEntry> {
        self.entries.get(name)
    }

    /// Every tool, by name.
    pub fn entries(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values()
    }
}

/// A reference from a step's input to an ancestor's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputRef {
    /// The step whose output is used.
    pub step: String,
    /// The path inside that output (empty: all of it).
    pub path: Vec<String>,
}

impl Plan {
    /// Validates `draft` against `catalog` and seals it. Every problem is reported at
    /// once, each naming its step, so a planner can repair them all in one round.
    ///
    /// # Errors
    /// [`Error::InvalidPlan`] with one line per problem.
    pub fn new(
        thread_id: ThreadId,
        request: impl Into<String>,
        created_by: impl Into<String>,
        draft: PlanDraft,
        catalog: &ToolCatalog,
    ) -> Result<Self> {
        let mut steps = draft.steps;
        let problems = validate(&mut steps, catalog);
        if !problems.is_empty() {
            return Err(Error::InvalidPlan { problems });
        }
        let mut plan = Self {
            id: PlanId::new(),
            thread_id,
            request: request.into(),
            steps,
            created_by: created_by.into(),
            hash: String::new(),
        };
        plan.hash = plan.compute_hash();
        Ok(plan)
    }

    /// The hash of this plan's content (every field but `hash`).
    pub fn compute_hash(&self) -> String {
        let mut value = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Some(fields) = value.as_object_mut() {
            fields.remove("hash");
        }
        let digest = Sha256::digest(canonical_json(&value).as_bytes());
        let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        format!("sha256:{hex}")
    }

    /// Checks that the plan is unchanged since it was sealed and that `approved_hash`
    /// names it.
    ///
    /// # Errors
    /// [`Error::ApprovalMismatch`] when the hash stored in the plan is not its content's
    /// (the plan was edited) or the approval names another plan.
    pub fn check_approval(&self, approved_hash: &str) -> Result<()> {
        let actual = self.compute_hash();
        if actual != self.hash {
            return Err(Error::ApprovalMismatch {
                reason: format!(
                    "the plan was changed after it was made: its content hashes to {actual}, not {}",
                    self.hash
                ),
            });
        }
        if approved_hash.trim() != self.hash {
            return Err(Error::ApprovalMismatch {
                reason: format!(
                    "the approval names {}, but this plan is {}",
                    approved_hash.trim(),
                    self.hash
                ),
            });
        }
        Ok(())
    }

    /// Re-validates a plan read from outside (a file, the API) against `catalog`.
    ///
    /// # Errors
    /// [`Error::InvalidPlan`].
    pub fn validate(&self, catalog: &ToolCatalog) -> Result<()> {
        let mut steps = self.steps.clone();
        let problems = validate(&mut steps, catalog);
        if !problems.is_empty() {
            return Err(Error::InvalidPlan { problems });
        }
        if steps != self.steps {
            return Err(Error::InvalidPlan {
                problems: vec!["a step that uses a mutating tool is not marked mutating".into()],
            });
        }
        Ok(())
    }

    /// Whether any step changes something.
    pub fn is_mutating(&self) -> bool {
        self.steps.iter().any(|step| step.mutating)
    }
}

/// Checks the steps and marks every step with a mutating tool as mutating.
fn validate(steps: &mut [Step], catalog: &ToolCatalog) -> Vec<String> {
    let mut problems = Vec::new();
    if steps.is_empty() {
        problems.push("the plan has no steps".to_owned());
        return problems;
    }
    if steps.len() > MAX_STEPS {
        problems.push(format!(
            "the plan has {} steps; at most {MAX_STEPS} are allowed",
            steps.len()
        ));
        return problems;
    }
    let mut index_of: HashMap<String, usize> = HashMap::with_capacity(steps.len());
    for (index, step) in steps.iter().enumerate() {
        if !valid_step_id(&step.id) {
            problems.push(format!(
                "step {:?}: an id is 1-{MAX_STEP_ID_LEN} letters, digits, '_', '-' or '.'",
                step.id
            ));
        }
        if index_of.insert(step.id.clone(), index).is_some() {
            problems.push(format!("step {:?}: the id is used twice", step.id));
        }
    }
    // The graph: an edge from each dependency to its dependant.
    let mut graph: DiGraph<usize, ()> = DiGraph::with_capacity(steps.len(), steps.len());
    let nodes: Vec<NodeIndex> = (0..steps.len())
        .map(|index| graph.add_node(index))
        .collect();
    for (index, step) in steps.iter().enumerate() {
        for dependency in &step.depends_on {
            match index_of.get(dependency.as_str()) {
                Some(&from) if from == index => {
                    problems.push(format!("step {:?}: depends on itself", step.id));
                }
                Some(&from) => {
                    graph.add_edge(nodes[from], nodes[index], ());
                }
                None => problems.push(format!(
                    "step {:?}: depends on {dependency:?}, which is not a step of this plan",
                    step.id
                )),
            }
        }
    }
    if let Err(cycle) = petgraph::algo::toposort(&graph, None) {
        let step = &steps[graph[cycle.node_id()]].id;
        problems.push(format!(
            "step {step:?}: is part of a dependency cycle; a plan must be acyclic"
        ));
        return problems;
    }
    let mut validators: HashMap<String, std::result::Result<jsonschema::Validator, String>> =
        HashMap::new();
    for (index, step) in steps.iter_mut().enumerate() {
        let Some(tool) = catalog.get(&step.tool) else {
            let known: Vec<&str> = catalog.entries().map(|entry| entry.name.as_str()).collect();
            problems.push(format!(
                "step {:?}: no tool named {:?}; the tools are: {}",
                step.id,
                step.tool,
                known.join(", ")
            ));
            continue;
        };
        if tool.mutating {
            step.mutating = true;
        }
        let references = output_refs(&step.input);
        for reference in &references {
            match index_of.get(reference.step.as_str()) {
                None => problems.push(format!(
                    "step {:?}: uses the output of {:?}, which is not a step of this plan",
                    step.id, reference.step
                )),
                Some(&source) if !is_ancestor(&graph, nodes[source], nodes[index]) => {
                    problems.push(format!(
                        "step {:?}: uses the output of {:?} without depending on it (directly or through other steps)",
                        step.id, reference.step
                    ))
                }
                Some(_) => {}
            }
        }
        // One compiled validator per tool, however many steps use it.
        let validator = validators.entry(tool.name.clone()).or_insert_with(|| {
            jsonschema::validator_for(&tool.input_schema).map_err(|error| error.to_string())
        });
        problems.extend(
            schema_problems(validator, &step.input)
                .into_iter()
                .map(|problem| format!("step {:?}: input {problem}", step.id)),
        );
    }
    problems
}

fn valid_step_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_STEP_ID_LEN
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

fn is_ancestor(graph: &DiGraph<usize, ()>, ancestor: NodeIndex, node: NodeIndex) -> bool {
    petgraph::algo::has_path_connecting(graph, ancestor, node, None)
}

/// Where the input breaks the tool's schema. Values that are output references stand
/// for what the ancestor will produce, so the schema is not applied to them.
fn schema_problems(
    validator: &std::result::Result<jsonschema::Validator, String>,
    input: &Value,
) -> Vec<String> {
    let validator = match validator {
        Ok(validator) => validator,
        Err(error) => {
            return vec![format!(
                "cannot be checked: the tool's schema is invalid: {error}"
            )]
        }
    };
    validator
        .iter_errors(input)
        .filter(|error| {
            let pointer = error.instance_path().to_string();
            let value = input.pointer(&pointer);
            value.is_none_or(|value| output_refs(value).is_empty())
        })
        .map(|error| {
            let path = error.instance_path().to_string();
            if path.is_empty() {
                error.to_string()
            } else {
                format!("{path}: {error}")
            }
        })
        .collect()
}

/// The output references in a step input.
pub fn output_refs(input: &Value) -> Vec<OutputRef> {
    let mut references = Vec::new();
    collect_refs(input, &mut references);
    references
}

fn collect_refs(value: &Value, references: &mut Vec<OutputRef>) {
    match value {
        Value::String(text) => references.extend(refs_in_text(text).into_iter().map(|(_, r)| r)),
        Value::Array(items) => items.iter().for_each(|item| collect_refs(item, references)),
        Value::Object(fields) => fields
            .values()
            .for_each(|item| collect_refs(item, references)),
        _ => {}
    }
}

/// Every `{{steps.ID.output[.path]}}` in `text`, with its byte range.
fn refs_in_text(text: &str) -> Vec<(std::ops::Range<usize>, OutputRef)> {
    let mut found = Vec::new();
    let mut offset = 0;
    while let Some(start) = text[offset..].find("{{") {
        let start = offset + start;
        let Some(length) = text[start..].find("}}") else {
            break;
        };
        let end = start + length + 2;
        let inner = text[start + 2..end - 2].trim();
        let mut parts = inner.split('.');
        if let (Some("steps"), Some(step), Some("output")) =
            (parts.next(), parts.next(), parts.next())
        {
            found.push((
                start..end,
                OutputRef {
                    step: step.to_owned(),
                    path: parts.map(str::to_owned).collect(),
                },
            ));
        }
        offset = end;
    }
    found
}

/// Replaces the output references in `input` with the outputs they name.
///
/// # Errors
/// [`Error::MissingOutput`] when a named output or path is absent.
pub fn resolve_refs(input: &Value, outputs: &dyn Fn(&str) -> Option<Value>) -> Result<Value> {
    match input {
        Value::String(text) => {
            let references = refs_in_text(text);
            if references.is_empty() {
                return Ok(input.clone());
            }
            let lookup = |reference: &OutputRef| -> Result<Value> {
                let output = outputs(&reference.step).ok_or_else(|| Error::MissingOutput {
                    reference: format!("steps.{}.output", reference.step),
                })?;
                let mut current = &output;
                for part in &reference.path {
                    current = match current {
                        Value::Object(fields) => fields.get(part),
                        Value::Array(items) => {
                            part.parse::<usize>().ok().and_then(|i| items.get(i))
                        }
                        _ => None,
                    }
                    .ok_or_else(|| Error::MissingOutput {
                        reference: format!(
                            "steps.{}.output.{}",
                            reference.step,
                            reference.path.join(".")
                        ),
                    })?;
                }
                Ok(current.clone())
            };
            // The whole string is one reference: the value itself, with its type.
            if let [(range, reference)] = references.as_slice() {
                if range.start == 0 && range.end == text.len() {
                    return lookup(reference);
                }
            }
            let mut result = String::with_capacity(text.len());
            let mut last = 0;
            for (range, reference) in &references {
                result.push_str(&text[last..range.start]);
                match lookup(reference)? {
                    Value::String(value) => result.push_str(&value),
                    other => result.push_str(&other.to_string()),
                }
                last = range.end;
            }
            result.push_str(&text[last..]);
            Ok(Value::String(result))
        }
        Value::Array(items) => items
            .iter()
            .map(|item| resolve_refs(item, outputs))
            .collect::<Result<Vec<_>>>()
            .map(Value::Array),
        Value::Object(fields) => fields
            .iter()
            .map(|(key, item)| Ok((key.clone(), resolve_refs(item, outputs)?)))
            .collect::<Result<serde_json::Map<_, _>>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

/// JSON with object keys sorted at every level and no insignificant whitespace: the same
/// plan always gives the same text, whatever order its maps were built in.
pub fn canonical_json(value: &Value) -> String {
    let mut text = String::new();
    write_canonical(value, &mut text);
    text
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(fields) => {
            out.push('{');
            let mut keys: Vec<&String> = fields.keys().collect();
            keys.sort();
            for (position, key) in keys.into_iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(item) = fields.get(key) {
                    write_canonical(item, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The steps in an order where each comes after its dependencies (for display).
pub fn topological_order(steps: &[Step]) -> Vec<usize> {
    let index_of: HashMap<&str, usize> = steps
        .iter()
        .enumerate()
        .map(|(index, step)| (step.id.as_str(), index))
        .collect();
    let mut placed = HashSet::new();
    let mut order = Vec::with_capacity(steps.len());
    fn visit(
        index: usize,
        steps: &[Step],
        index_of: &HashMap<&str, usize>,
        placed: &mut HashSet<usize>,
        order: &mut Vec<usize>,
    ) {
        if !placed.insert(index) {
            return;
        }
        for dependency in &steps[index].depends_on {
            if let Some(&parent) = index_of.get(dependency.as_str()) {
                visit(parent, steps, index_of, placed, order);
            }
        }
        order.push(index);
    }
    for index in 0..steps.len() {
        visit(index, steps, &index_of, &mut placed, &mut order);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn catalog() -> ToolCatalog {
        ToolCatalog::new([
            CatalogEntry {
                name: "read_pod".into(),
                description: "reads a pod".into(),
                input_schema: json!({"type": "object", "required": ["namespace", "name"],
                    "properties": {"namespace": {"type": "string"}, "name": {"type": "string"}},
                    "additionalProperties": false}),
                mutating: false,
            },
            CatalogEntry {
                name: "scale".into(),
                description: "scales".into(),
                input_schema: json!({"type": "object", "required": ["name", "replicas"],
                    "properties": {"name": {"type": "string"}, "replicas": {"type": "integer", "minimum": 0}}}),
                mutating: true,
            },
        ])
    }

    fn step(id: &str, tool: &str, input: Value, depends_on: &[&str]) -> Step {
        Step {
            id: id.into(),
            agent: AgentRole::Sre,
            title: id.into(),
            tool: tool.into(),
            input,
            depends_on: depends_on.iter().map(|d| d.to_string()).collect(),
            mutating: false,
            rationale: String::new(),
        }
    }

    fn plan(steps: Vec<Step>) -> Result<Plan> {
        Plan::new(
            ThreadId::new(),
            "scale web",
            "test",
            PlanDraft { steps },
            &catalog(),
        )
    }

    fn problems(result: Result<Plan>) -> Vec<String> {
        match result {
            Err(Error::InvalidPlan { problems }) => problems,
            other => panic!("expected an invalid plan, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_plan_is_sealed_and_mutating_tools_mark_their_steps() {
        let plan = plan(vec![
            step(
                "look",
                "read_pod",
                json!({"namespace": "shop", "name": "web"}),
                &[],
            ),
            step(
                "scale",
                "scale",
                json!({"name": "{{steps.look.output.name}}", "replicas": 3}),
                &["look"],
            ),
        ])
        .unwrap();
        assert!(plan.hash.starts_with("sha256:"));
        assert!(plan.steps[1].mutating, "the planner's false is overridden");
        assert!(plan.check_approval(&plan.hash).is_ok());
        assert!(plan.validate(&catalog()).is_ok());
    }

    #[test]
    fn any_edit_after_sealing_voids_the_approval() {
        let mut plan = plan(vec![step(
            "s",
            "scale",
            json!({"name": "web", "replicas": 3}),
            &[],
        )])
        .unwrap();
        let approved = plan.hash.clone();
        plan.steps[0].input["replicas"] = json!(30);
        let error = plan.check_approval(&approved).unwrap_err();
        assert!(error.to_string().contains("changed after"), "{error}");
        plan.hash = plan.compute_hash();
        assert!(
            plan.check_approval(&approved).is_err(),
            "the old approval names another plan"
        );
    }

    #[test]
    fn the_hash_does_not_depend_on_key_order() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, {"q": 1, "p": 2}], "x": null}}"#)
                .unwrap();
        let b: Value =
            serde_json::from_str(r#"{"a": {"x": null, "y": [1, {"p": 2, "q": 1}]}, "b": 1}"#)
                .unwrap();
        assert_eq!(canonical_json(&a), canonical_json(&b));
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"p":2,"q":1}]},"b":1}"#
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_step() {
        let found = problems(plan(vec![
            step("a", "read_pod", json!({"namespace": "shop"}), &["ghost"]),
            step("b", "no_such_tool", json!({}), &[]),
            step("c", "scale", json!({"name": "web", "replicas": -1}), &[]),
            step("c", "scale", json!({"name": "web", "replicas": 1}), &[]),
            step(
                "bad id!",
                "scale",
                json!({"name": "web", "replicas": 1}),
                &[],
            ),
        ]));
        let text = found.join("\n");
        for expected in [
            "step \"a\": depends on \"ghost\"",
            "step \"a\": input",
            "name",
            "step \"b\": no tool named \"no_such_tool\"",
            "step \"c\": the id is used twice",
            "step \"c\": input /replicas",
            "step \"bad id!\"",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in\n{text}");
        }
    }

    #[test]
    fn cycles_and_self_dependencies_are_refused() {
        let found = problems(plan(vec![
            step(
                "a",
                "read_pod",
                json!({"namespace": "s", "name": "a"}),
                &["c"],
            ),
            step(
                "b",
                "read_pod",
                json!({"namespace": "s", "name": "b"}),
                &["a"],
            ),
            step(
                "c",
                "read_pod",
                json!({"namespace": "s", "name": "c"}),
                &["b"],
            ),
        ]));
        assert!(found.iter().any(|p| p.contains("cycle")), "{found:?}");
        let found = problems(plan(vec![step(
            "a",
            "read_pod",
            json!({"namespace": "s", "name": "a"}),
            &["a"],
        )]));
        assert!(
            found.iter().any(|p| p.contains("depends on itself")),
            "{found:?}"
        );
        assert!(!problems(plan(vec![])).is_empty());
    }

    #[test]
    fn outputs_may_come_only_from_ancestors() {
        let found = problems(plan(vec![
            step("a", "read_pod", json!({"namespace": "s", "name": "a"}), &[]),
            step("b", "read_pod", json!({"namespace": "s", "name": "b"}), &[]),
            step(
                "c",
                "scale",
                json!({"name": "{{steps.b.output.name}}", "replicas": 1}),
                &["a"],
            ),
            step(
                "d",
                "scale",
                json!({"name": "{{steps.zz.output}}", "replicas": 1}),
                &["a"],
            ),
        ]));
        assert!(
            found
                .iter()
                .any(|p| p.contains("\"c\": uses the output of \"b\" without depending")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.contains("\"d\": uses the output of \"zz\"")),
            "{found:?}"
        );
        // Through another step counts.
        assert!(plan(vec![
            step("a", "read_pod", json!({"namespace": "s", "name": "a"}), &[]),
            step(
                "b",
                "read_pod",
                json!({"namespace": "s", "name": "b"}),
                &["a"]
            ),
            step(
                "c",
                "scale",
                json!({"name": "{{steps.a.output.name}}", "replicas": "{{steps.b.output.n}}"}),
                &["b"]
            ),
        ])
        .is_ok());
    }

    #[test]
    fn references_resolve_to_values_or_text() {
        let outputs = |step: &str| match step {
            "a" => Some(json!({"name": "web", "pods": [{"n": 3}]})),
            _ => None,
        };
        let input = json!({
            "whole": "{{steps.a.output.pods.0.n}}",
            "text": "deployment {{ steps.a.output.name }} has {{steps.a.output.pods.0.n}} pods",
            "all": ["{{steps.a.output}}"],
            "plain": "no {braces} here",
        });
        let resolved = resolve_refs(&input, &outputs).unwrap();
        assert_eq!(resolved["whole"], json!(3));
        assert_eq!(resolved["text"], json!("deployment web has 3 pods"));
        assert_eq!(resolved["all"][0]["name"], json!("web"));
        assert_eq!(resolved["plain"], json!("no {braces} here"));
        assert!(resolve_refs(&json!("{{steps.a.output.nothing}}"), &outputs).is_err());
        assert!(resolve_refs(&json!("{{steps.b.output}}"), &outputs).is_err());
    }

    #[test]
    fn the_planner_schema_is_generated_from_the_types() {
        let schema = serde_json::to_value(schemars::schema_for!(PlanDraft)).unwrap();
        let text = schema.to_string();
        for field in [
            "depends_on",
            "mutating",
            "rationale",
            "agent",
            "tool",
            "input",
        ] {
            assert!(text.contains(field), "{field} missing from {text}");
        }
        assert!(text.contains("\"sre\""), "agents are an enum: {text}");
    }
}
