//! The engine: built once from the guard configuration and the policy directories,
//! then shared (it is `Send + Sync` and cheap to clone) by everything that needs a
//! decision.

use crate::builtin;
use crate::error::{Error, Result};
use crate::gatekeeper::{self, Constraint, Enforcement, Template};
use crate::guards::{self, GuardConfig};
use crate::inventory::Inventory;
use crate::loader::Sources;
use crate::prefilter::Prefilter;
use crate::rego::{self, CompiledRule, RuleKind};
use crate::request::AdmissionRequest;
use crate::review::{self, Review};
use crate::{Decision, Violation};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How long one policy may run on one review before it is stopped and its silence
/// counted as a denial. Real policies take microseconds; this bounds a runaway one so a
/// caller on an async runtime is never blocked for long.
pub const DEFAULT_EVALUATION_TIMEOUT: Duration = Duration::from_millis(100);

/// The policy name under which requests the engine cannot read are denied.
pub const INPUT_POLICY: &str = "builtin/input";

/// How the engine feeds the policies. Every path gives the same decisions (tests run
/// the attack corpus and generated reviews through them); the others are kept so the
/// benchmark can show, in one run, what the default saves.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EvaluationPath {
    /// The built-in Rego guards run as one program over a projection of each review
    /// holding only the fields they read, unless a pre-filter proves from that
    /// projection that none of their rules can hold (see `prefilter.rs`); user policies
    /// share one conversion of the review. The default.
    #[default]
    Projected,
    /// As [`EvaluationPath::Projected`], but the Rego guards run on every review.
    Unfiltered,
    /// As first written: each guard package its own program, and the whole review
    /// converted to a Rego value again for every policy.
    Reference,
}

/// Builds an [`Engine`].
#[derive(Debug, Default)]
#[must_use]
pub struct EngineBuilder {
    guards: GuardConfig,
    directories: Vec<PathBuf>,
    texts: Vec<(String, String)>,
    inventory: Inventory,
    timeout: Option<Duration>,
    path: EvaluationPath,
}

impl EngineBuilder {
    /// Sets what the built-in guards protect.
    pub fn guards(mut self, guards: GuardConfig) -> Self {
        self.guards = guards;
        self
    }

    /// Adds a directory of user policies (`.rego`, ConstraintTemplates, constraints).
    pub fn policy_directory(mut self, directory: impl Into<PathBuf>) -> Self {
        self.directories.push(directory.into());
        self
    }

    /// Adds one policy file's text; `origin` names it in errors and its extension says
    /// what it is (`.rego`, or `.yaml` / `.json` for Gatekeeper documents).
    pub fn policy_text(mut self, origin: impl Into<String>, text: impl Into<String>) -> Self {
        self.texts.push((origin.into(), text.into()));
        self
    }

    /// Sets the objects already in the cluster (`data.inventory`).
    pub fn inventory(mut self, inventory: Inventory) -> Self {
        self.inventory = inventory;
        self
    }

    /// Sets how long one policy may run on one review.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets how the policies are fed; [`EvaluationPath::Projected`] unless changed, which
    /// only the benchmark and the tests comparing both paths need to do.
    pub fn evaluation_path(mut self, path: EvaluationPath) -> Self {
        self.path = path;
        self
    }

    /// Loads and compiles every policy, reporting the first that does not load.
    ///
    /// # Errors
    /// Any [`Error`] from reading or compiling a policy.
    pub fn build(self) -> Result<Engine> {
        let builtin_program = builtin::compile_combined()?;
        let builtin_rules = match self.path {
            EvaluationPath::Projected | EvaluationPath::Unfiltered => Vec::new(),
            EvaluationPath::Reference => compile_module_set(&builtin::modules(), true)?,
        };

        let mut sources = Sources::default();
        for directory in &self.directories {
            sources.add_directory(directory)?;
        }
        for (origin, text) in &self.texts {
            sources.add_text(origin, text)?;
        }
        let user_rules = compile_module_set(&sources.rego, false)?;

        let mut templates: BTreeMap<String, Template> = BTreeMap::new();
        for (origin, document) in &sources.templates {
            let template = gatekeeper::compile_template(document, origin)?;
            if let Some(existing) = templates.get(&template.kind) {
                return Err(Error::DuplicateTemplate {
                    kind: template.kind.clone(),
                    first: existing.origin.clone(),
                    second: origin.clone(),
                });
            }
            templates.insert(template.kind.clone(), template);
        }
        let mut constraints = Vec::new();
        for (origin, document) in &sources.constraints {
            let constraint = gatekeeper::read_constraint(document, origin)?;
            if !templates.contains_key(&constraint.kind) {
                return Err(Error::UnknownConstraintKind {
                    constraint: constraint.name.clone(),
                    kind: constraint.kind.clone(),
                    origin: origin.clone(),
                });
            }
            constraints.push(constraint);
        }
        let shared = Shared {
            guards: self.guards,
            path: self.path,
            builtin_program,
            builtin_rules,
            user_rules,
            templates,
            constraints,
            timeout: self.timeout.unwrap_or(DEFAULT_EVALUATION_TIMEOUT),
            metrics: Default::default(),
        };
        Ok(Engine::assemble(Arc::new(shared), Arc::new(self.inventory)))
    }
}

/// Loads a set of modules into one regorus engine and compiles each module's rules.
fn compile_module_set(modules: &[(String, String)], builtin: bool) -> Result<Vec<CompiledRule>> {
    if modules.is_empty() {
        return Ok(Vec::new());
    }
    let (mut engine, packages) = rego::load_modules(modules)?;
    let mut rules = Vec::new();
    for ((origin, _), package) in modules.iter().zip(&packages) {
        let reserved = package
            .strip_prefix("data.")
            .is_some_and(|package| package.starts_with(builtin::PACKAGE_PREFIX));
        if reserved != builtin {
            return Err(Error::InvalidRego {
                origin: origin.clone(),
                message: format!(
                    "the package {package} is reserved for deckhand's built-in guards"
                ),
            });
        }
        rules.extend(rego::compile_rules(
            &mut engine,
            origin,
            package,
            &[RuleKind::Violation, RuleKind::Deny, RuleKind::Warn],
        )?);
    }
    Ok(rules)
}

struct Shared {
    guards: GuardConfig,
    path: EvaluationPath,
    /// The Rego guards as one program (see [`builtin`]).
    builtin_program: CompiledRule,
    /// The Rego guards one program per package, for [`EvaluationPath::Reference`] only.
    builtin_rules: Vec<CompiledRule>,
    user_rules: Vec<CompiledRule>,
    templates: BTreeMap<String, Template>,
    constraints: Vec<Constraint>,
    timeout: Duration,
    /// Counted across every clone and every inventory snapshot.
    metrics: crate::metrics::Metrics,
}

/// The policy engine. Clone it freely: clones share the compiled policies.
///
/// [`Engine::evaluate`] is synchronous and CPU-bound: the built-in guards take
/// microseconds, and each policy is stopped after its timeout; callers evaluating many
/// user policies on an async runtime can move the call to a blocking thread.
#[derive(Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    inventory: Arc<Inventory>,
    /// `data` as the Rego policies see it: the guard configuration and the inventory.
    data: regorus::Value,
    /// Which reviews the Rego guards need not see, for this configuration and inventory.
    prefilter: Prefilter,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Engine")
            .field("guards", &self.shared.guards)
            .field("user_rules", &self.shared.user_rules.len())
            .field("templates", &self.shared.templates.len())
            .field("constraints", &self.shared.constraints.len())
            .finish()
    }
}

impl Engine {
    /// Starts building an engine.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// An engine with the built-in guards only and the default configuration.
    ///
    /// # Errors
    /// Only if the embedded built-in policies fail to compile, which their tests rule out.
    pub fn with_builtins() -> Result<Self> {
        Self::builder().build()
    }

    fn assemble(shared: Arc<Shared>, inventory: Arc<Inventory>) -> Self {
        let config = shared.guards.to_data();
        let prefilter = Prefilter::new(&config, inventory.gatekeeper_data());
        let data = regorus::Value::from(json!({
            "deckhand": {"config": config},
            "inventory": inventory.gatekeeper_data(),
        }));
        Self {
            shared,
            inventory,
            data,
            prefilter,
        }
    }

    /// The same policies over another snapshot of the cluster; nothing is recompiled.
    #[must_use]
    pub fn with_inventory(&self, inventory: Inventory) -> Self {
        Self::assemble(self.shared.clone(), Arc::new(inventory))
    }

    /// What the built-in guards protect.
    pub fn guards(&self) -> &GuardConfig {
        &self.shared.guards
    }

    /// How many user policies are loaded: Rego rules, templates and constraints.
    pub fn user_policy_counts(&self) -> (usize, usize, usize) {
        (
            self.shared.user_rules.len(),
            self.shared.templates.len(),
            self.shared.constraints.len(),
        )
    }

    /// How many compiled rules run on regorus's interpreter instead of its bytecode VM.
    pub fn interpreted_rule_count(&self) -> usize {
        let shared = &self.shared;
        std::iter::once(&shared.builtin_program)
            .chain(&shared.builtin_rules)
            .chain(&shared.user_rules)
            .chain(shared.templates.values().map(|template| &template.rule))
            .filter(|rule| rule.is_interpreted())
            .count()
    }

    /// Judges one request: the built-in guards in Rust and in Rego, then the user's
    /// Rego policies and Gatekeeper constraints, on every review the request expands to.
    pub fn evaluate(&self, request: &AdmissionRequest) -> Decision {
        let decision = self.judge(request);
        self.shared.metrics.record(&decision);
        decision
    }

    /// The decision counters so far (shared by every clone of this engine).
    pub fn metrics(&self) -> crate::MetricsSnapshot {
        self.shared.metrics.snapshot()
    }

    fn judge(&self, request: &AdmissionRequest) -> Decision {
        let mut decision = Decision::default();
        let reviews = match review::expand(request) {
            Ok(reviews) => reviews,
            Err(message) => {
                decision.deny(
                    INPUT_POLICY,
                    format!("the request cannot be judged: {message}"),
                );
                return decision.finish();
            }
        };
        for review in &reviews {
            for violation in guards::check(review, &self.shared.guards, &self.inventory) {
                decision.deny(&violation.policy, violation.message);
            }
            match self.shared.path {
                EvaluationPath::Projected => self.judge_projected(review, true, &mut decision),
                EvaluationPath::Unfiltered => self.judge_projected(review, false, &mut decision),
                EvaluationPath::Reference => self.judge_reference(review, &mut decision),
            }
        }
        decision.finish()
    }

    /// The Rego guards in one run over the projection of the review (skipped when
    /// `filtered` and the pre-filter proves they cannot fire), then the user's policies
    /// over one conversion of the whole review.
    fn judge_projected(&self, review: &Review, filtered: bool, decision: &mut Decision) {
        let projection = builtin::projection(review);
        if !filtered || self.prefilter.may_fire(&projection) {
            self.judge_builtin_rego(projection, decision);
        }
        self.judge_user_policies(review, decision);
    }

    fn judge_builtin_rego(
        &self,
        projection: serde_json::Map<String, Value>,
        decision: &mut Decision,
    ) {
        let outcome = self.shared.builtin_program.evaluate(
            &builtin::input(projection),
            &self.data,
            self.shared.timeout,
        );
        match outcome.and_then(|result| builtin::messages(result.as_ref())) {
            Ok(by_guard) => {
                for (policy, messages) in by_guard {
                    for message in messages {
                        decision.deny(&policy, message);
                    }
                }
            }
            // Whatever went wrong, every guard denies: none of them has said yes.
            Err(error) => {
                for guard in builtin::GUARDS {
                    let policy =
                        builtin::policy_name(&format!("{}.{guard}", builtin::PACKAGE_PREFIX));
                    decision.deny(&policy, format!("evaluation failed: {error}"));
                }
            }
        }
    }

    /// The user's Rego policies and constraints, sharing one conversion of the review.
    fn judge_user_policies(&self, review: &Review, decision: &mut Decision) {
        // The list object itself is not judged by user policies: its items are, one by
        // one, as Gatekeeper would see them.
        if is_list_wrapper(review) {
            return;
        }
        let constraints = applies_to_constraints(review) && !self.shared.constraints.is_empty();
        if self.shared.user_rules.is_empty() && !constraints {
            return;
        }
        let review_value = regorus::Value::from(review.request.to_value());
        let input_with = |parameters: regorus::Value| {
            regorus::Value::from(BTreeMap::from([
                (regorus::Value::from("review"), review_value.clone()),
                (regorus::Value::from("parameters"), parameters),
            ]))
        };
        if !self.shared.user_rules.is_empty() {
            let input = input_with(regorus::Value::new_object());
            for rule in &self.shared.user_rules {
                self.run_rule(rule, &rule.package, &input, decision);
            }
        }
        if constraints {
            self.run_constraints(review, decision, |constraint| {
                input_with(regorus::Value::from(constraint.parameters.clone()))
            });
        }
    }

    /// The path as first written; see [`EvaluationPath::Reference`].
    fn judge_reference(&self, review: &Review, decision: &mut Decision) {
        let input = regorus::Value::from(json!({
            "review": review.request.to_value(),
            "parameters": {},
        }));
        for rule in &self.shared.builtin_rules {
            let policy = builtin::policy_name(&rule.package);
            self.run_rule(rule, &policy, &input, decision);
        }
        if is_list_wrapper(review) {
            return;
        }
        for rule in &self.shared.user_rules {
            self.run_rule(rule, &rule.package, &input, decision);
        }
        if applies_to_constraints(review) {
            let review_json = review.request.to_value();
            self.run_constraints(review, decision, |constraint| {
                regorus::Value::from(json!({
                    "review": review_json,
                    "parameters": constraint.parameters,
                }))
            });
        }
    }

    fn run_rule(
        &self,
        rule: &CompiledRule,
        policy: &str,
        input: &regorus::Value,
        decision: &mut Decision,
    ) {
        match rule.evaluate(input, &self.data, self.shared.timeout) {
            Ok(Some(result)) => {
                for message in rego::messages_of(&result) {
                    match rule.kind {
                        RuleKind::Warn => decision.warn(policy, message),
                        RuleKind::Violation | RuleKind::Deny => decision.deny(policy, message),
                    }
                }
            }
            Ok(None) => {}
            Err(error) => decision.deny(policy, format!("evaluation failed: {error}")),
        }
    }

    fn run_constraints(
        &self,
        review: &Review,
        decision: &mut Decision,
        input_for: impl Fn(&Constraint) -> regorus::Value,
    ) {
        for constraint in &self.shared.constraints {
            if !constraint.matches(review, &self.inventory) {
                continue;
            }
            let Some(template) = self.shared.templates.get(&constraint.kind) else {
                continue;
            };
            let input = input_for(constraint);
            let policy = constraint.policy_name();
            let outcome = template
                .rule
                .evaluate(&input, &self.data, self.shared.timeout);
            let messages = match outcome {
                Ok(Some(result)) => rego::messages_of(&result),
                Ok(None) => Vec::new(),
                // An error denies whatever the enforcement action: a policy that cannot
                // run has not said yes.
                Err(error) => {
                    decision.deny(&policy, format!("evaluation failed: {error}"));
                    continue;
                }
            };
            for message in messages {
                match constraint.enforcement {
                    Enforcement::Deny => decision.deny(&policy, message),
                    Enforcement::Warn => decision.warn(&policy, message),
                    Enforcement::DryRun => {}
                }
            }
        }
    }
}

fn is_list_wrapper(review: &Review) -> bool {
    review
        .request
        .object
        .as_ref()
        .and_then(|object| object.get("items"))
        .is_some_and(Value::is_array)
}

/// Gatekeeper's admission webhook sees creates and updates with their object; so do the
/// constraints here. Reads and deletes are left to the guards and to plain Rego policies.
fn applies_to_constraints(review: &Review) -> bool {
    review.is_write()
        && review.request.object.is_some()
        && !review.has_verb(&["delete", "deletecollection", "connect"])
}

impl Decision {
    fn deny(&mut self, policy: &str, message: String) {
        let violation = Violation {
            policy: policy.to_string(),
            message,
        };
        if !self.violations.contains(&violation) {
            self.violations.push(violation);
        }
    }

    fn warn(&mut self, policy: &str, message: String) {
        let warning = Violation {
            policy: policy.to_string(),
            message,
        };
        if !self.warnings.contains(&warning) {
            self.warnings.push(warning);
        }
    }

    fn finish(mut self) -> Self {
        self.allowed = self.violations.is_empty();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn the_engine_can_be_shared_across_tasks() {
        assert_send_sync::<Engine>();
    }

    #[test]
    fn decisions_are_counted_across_clones() {
        let engine = Engine::with_builtins().expect("built-ins compile");
        let clone = engine.with_inventory(Inventory::default());
        let delete_namespace = AdmissionRequest::from_text(
            r#"{"verb":"delete","operation":"DELETE","kind":{"group":"","version":"v1","kind":"Namespace"},"name":"prod"}"#,
        )
        .expect("request");
        let read = AdmissionRequest::from_text(
            r#"{"verb":"get","kind":{"group":"","version":"v1","kind":"Pod"},"namespace":"shop","name":"web"}"#,
        )
        .expect("request");
        assert!(!engine.evaluate(&delete_namespace).allowed);
        assert!(clone.evaluate(&read).allowed);
        let metrics = engine.metrics();
        assert_eq!(
            (metrics.evaluations, metrics.allowed, metrics.denied),
            (2, 1, 1)
        );
        assert_eq!(
            metrics
                .denials_by_policy
                .get(crate::guards::NO_NAMESPACE_DELETION),
            Some(&1),
            "{metrics:?}"
        );
        let text = metrics.to_prometheus();
        assert!(
            text.contains("deckhand_policy_decisions_total{outcome=\"denied\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn builtins_compile_to_bytecode() {
        let engine = Engine::with_builtins().expect("built-ins compile");
        assert_eq!(engine.interpreted_rule_count(), 0);
        assert!(engine.shared.builtin_rules.is_empty());
        let reference = Engine::builder()
            .evaluation_path(EvaluationPath::Reference)
            .build()
            .expect("built-ins compile");
        assert_eq!(reference.interpreted_rule_count(), 0);
        assert_eq!(reference.shared.builtin_rules.len(), 3);
    }

    #[test]
    fn user_policies_cannot_take_the_builtin_packages() {
        let result = Engine::builder()
            .policy_text(
                "evil.rego",
                "package deckhand.builtin.no_cluster_admin\nviolation := set()\n",
            )
            .build();
        assert!(result.is_err());
    }

    #[test]
    fn constraints_need_their_template() {
        let result = Engine::builder()
            .policy_text(
                "c.yaml",
                "apiVersion: constraints.gatekeeper.sh/v1beta1\nkind: K8sNothing\nmetadata: {name: x}\n",
            )
            .build();
        assert!(matches!(result, Err(Error::UnknownConstraintKind { .. })));
    }
}
