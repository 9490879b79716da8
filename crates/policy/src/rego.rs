//! Rego modules compiled once into regorus bytecode programs (RVM) and evaluated per
//! review with a time limit, with OPA's non-strict builtin errors. Modules the bytecode
//! compiler cannot handle yet run on regorus's interpreter instead.

use crate::error::{Error, Result};
use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::{Program, RegoVM};
use regorus::utils::limits::ExecutionTimerConfig;
use regorus::Engine as RegoEngine;
use serde_json::Value as Json;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The rules deckhand evaluates in a module, and what their results mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuleKind {
    /// Gatekeeper's `violation[{"msg": msg}]`: each element denies.
    Violation,
    /// conftest-style `deny[msg]` (or `deny contains msg`, or a boolean `deny`).
    Deny,
    /// `warn[msg]`: each element is a warning.
    Warn,
}

impl RuleKind {
    const ALL: [RuleKind; 3] = [RuleKind::Violation, RuleKind::Deny, RuleKind::Warn];

    fn rule_name(self) -> &'static str {
        match self {
            RuleKind::Violation => "violation",
            RuleKind::Deny => "deny",
            RuleKind::Warn => "warn",
        }
    }
}

/// How often the time limit is checked, in units of regorus work; low enough that a
/// runaway rule is stopped close to its deadline.
const TIMER_CHECK_INTERVAL: u32 = 64;

/// One rule ready to evaluate.
pub(crate) struct CompiledRule {
    /// The package path without `data.`, e.g. `k8srequiredlabels`.
    pub package: String,
    /// What the rule's result means.
    pub kind: RuleKind,
    entry_point: String,
    backend: Backend,
}

enum Backend {
    /// Compiled bytecode; a fresh VM runs it per evaluation.
    Bytecode(Arc<Program>),
    /// The interpreter, cloned per evaluation, for what the bytecode compiler rejects.
    Interpreter(Box<Mutex<RegoEngine>>),
}

/// Loads Rego modules into one regorus engine: Rego v1 first, v0 when v1 does not parse.
pub(crate) fn load_modules(modules: &[(String, String)]) -> Result<(RegoEngine, Vec<String>)> {
    let mut engine = RegoEngine::new();
    // OPA's semantics: a builtin given the wrong types is undefined, not an error.
    engine.set_strict_builtin_errors(false);
    let mut packages = Vec::new();
    for (origin, text) in modules {
        let package = match engine.add_policy(origin.clone(), text.clone()) {
            Ok(package) => package,
            Err(v1_error) => {
                engine.set_rego_v0(true);
                let v0_result = engine.add_policy(origin.clone(), text.clone());
                engine.set_rego_v0(false);
                v0_result.map_err(|v0_error| Error::InvalidRego {
                    origin: origin.clone(),
                    message: format!("as Rego v1: {v1_error}; as Rego v0: {v0_error}"),
                })?
            }
        };
        packages.push(package);
    }
    Ok((engine, packages))
}

/// Compiles the violation / deny / warn rules that the module at `origin` (package
/// `package`, with its leading `data.`) declares.
pub(crate) fn compile_rules(
    engine: &mut RegoEngine,
    origin: &str,
    package: &str,
    wanted: &[RuleKind],
) -> Result<Vec<CompiledRule>> {
    let mut rules = Vec::new();
    for kind in RuleKind::ALL {
        if !wanted.contains(&kind) {
            continue;
        }
        let declared = engine
            .has_declared_rule_rooted_at(origin, kind.rule_name())
            .map_err(|error| Error::InvalidRego {
                origin: origin.to_string(),
                message: error.to_string(),
            })?;
        if !declared {
            continue;
        }
        let entry_point = format!("{package}.{}", kind.rule_name());
        let backend =
            compile_entry_point(engine, &entry_point).map_err(|message| Error::InvalidRego {
                origin: origin.to_string(),
                message,
            })?;
        rules.push(CompiledRule {
            package: package.strip_prefix("data.").unwrap_or(package).to_string(),
            kind,
            entry_point,
            backend,
        });
    }
    Ok(rules)
}

/// Compiles one rule, given by its full path (`data.package.rule`), whose result is read
/// as a whole by the caller.
pub(crate) fn compile_entry(
    engine: &mut RegoEngine,
    origin: &str,
    entry_point: &str,
) -> Result<CompiledRule, String> {
    let backend = compile_entry_point(engine, entry_point)?;
    let package = entry_point
        .strip_prefix("data.")
        .and_then(|path| path.rsplit_once('.'))
        .map(|(package, _)| package.to_string())
        .unwrap_or_else(|| origin.to_string());
    Ok(CompiledRule {
        package,
        kind: RuleKind::Violation,
        entry_point: entry_point.to_string(),
        backend,
    })
}

fn compile_entry_point(engine: &mut RegoEngine, entry_point: &str) -> Result<Backend, String> {
    let rule: regorus::Rc<str> = regorus::Rc::from(entry_point);
    let compiled = engine
        .compile_with_entrypoint(&rule)
        .map_err(|error| error.to_string())?;
    match Compiler::compile_from_policy(&compiled, &[entry_point]) {
        Ok(program) => Ok(Backend::Bytecode(program)),
        // The bytecode compiler does not cover all of Rego yet (`with`, some partial
        // object rules); the interpreter does.
        Err(_) => Ok(Backend::Interpreter(Box::new(Mutex::new(engine.clone())))),
    }
}

impl CompiledRule {
    /// Whether this rule runs on the interpreter rather than bytecode.
    pub(crate) fn is_interpreted(&self) -> bool {
        matches!(self.backend, Backend::Interpreter(_))
    }

    /// The bytecode as regorus lists it, for tests on what the compiler made of a rule.
    #[cfg(test)]
    pub(crate) fn listing(&self) -> Option<String> {
        match &self.backend {
            Backend::Bytecode(program) => Some(regorus::rvm::generate_assembly_listing(
                program,
                &Default::default(),
            )),
            Backend::Interpreter(_) => None,
        }
    }

    /// Evaluates the rule and returns its result as JSON (`None` when undefined).
    pub(crate) fn evaluate(
        &self,
        input: &regorus::Value,
        data: &regorus::Value,
        timeout: Duration,
    ) -> Result<Option<Json>, String> {
        let timer = ExecutionTimerConfig {
            limit: timeout,
            check_interval: NonZeroU32::new(TIMER_CHECK_INTERVAL).unwrap_or(NonZeroU32::MIN),
        };
        let value = match &self.backend {
            Backend::Bytecode(program) => {
                let mut vm = RegoVM::new();
                vm.load_program(program.clone());
                vm.set_execution_timer_config(Some(timer));
                vm.set_data(data.clone())
                    .map_err(|error| error.to_string())?;
                vm.set_input(input.clone());
                vm.execute().map_err(|error| error.to_string())?
            }
            Backend::Interpreter(engine) => {
                let mut engine = engine
                    .lock()
                    .map_err(|_| "a previous evaluation panicked".to_string())?
                    .clone();
                engine.set_execution_timer_config(timer);
                engine
                    .add_data(data.clone())
                    .map_err(|error| error.to_string())?;
                engine.set_input(input.clone());
                engine
                    .eval_rule(self.entry_point.clone())
                    .map_err(|error| error.to_string())?
            }
        };
        if value == regorus::Value::Undefined {
            return Ok(None);
        }
        serde_json::to_value(&value)
            .map(Some)
            .map_err(|error| error.to_string())
    }
}

/// The messages in a rule's result: each element of a set or array, as its `msg` when it
/// is an object with one, as itself when it is a string, as JSON otherwise. A boolean
/// `true` (a `deny if {...}` rule) is one message; `false` none.
pub(crate) fn messages_of(result: &Json) -> Vec<String> {
    let message_of = |element: &Json| match element {
        Json::String(text) => text.clone(),
        Json::Object(fields) => match fields.get("msg") {
            Some(Json::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => element.to_string(),
        },
        other => other.to_string(),
    };
    match result {
        Json::Array(elements) => elements.iter().map(message_of).collect(),
        Json::Bool(true) => vec!["denied".to_string()],
        Json::Bool(false) | Json::Null => Vec::new(),
        Json::Object(fields) if fields.is_empty() => Vec::new(),
        other => vec![message_of(other)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn compile(text: &str) -> Vec<CompiledRule> {
        let modules = vec![("test.rego".to_string(), text.to_string())];
        let (mut engine, packages) = load_modules(&modules).expect("module loads");
        compile_rules(&mut engine, "test.rego", &packages[0], &RuleKind::ALL).expect("compiles")
    }

    fn run(rule: &CompiledRule, input: Json) -> Result<Option<Json>, String> {
        rule.evaluate(
            &regorus::Value::from(input),
            &regorus::Value::new_object(),
            Duration::from_secs(1),
        )
    }

    #[test]
    fn v1_and_v0_modules_both_load() {
        let v1 = compile("package a\nviolation contains {\"msg\": m} if { m := input.x }\n");
        let v0 = compile("package b\ndeny[msg] { msg := input.x }\n");
        assert_eq!(v1.len(), 1);
        assert_eq!(v0.len(), 1);
        assert_eq!(v0[0].kind, RuleKind::Deny);
        let result = run(&v0[0], json!({"x": "no"})).expect("evaluates");
        assert_eq!(
            messages_of(&result.unwrap_or(Json::Null)),
            vec!["no".to_string()]
        );
    }

    #[test]
    fn builtin_type_errors_are_undefined_as_in_opa() {
        let rules = compile("package c\ndeny contains \"upper\" if { upper(input.n) == \"X\" }\ndeny contains \"plain\" if { input.n == 5 }\n");
        let result = run(&rules[0], json!({"n": 5})).expect("evaluates despite the bad upper()");
        assert_eq!(
            messages_of(&result.unwrap_or(Json::Null)),
            vec!["plain".to_string()]
        );
    }

    #[test]
    fn a_runaway_rule_times_out() {
        let rules = compile(
            "package d\ndeny contains x if { some i, j, k; numbers.range(1, 200)[i]; numbers.range(1, 200)[j]; numbers.range(1, 200)[k]; x := i + j + k; x < 0 }\n",
        );
        let outcome = rules[0].evaluate(
            &regorus::Value::new_object(),
            &regorus::Value::new_object(),
            Duration::from_millis(5),
        );
        assert!(outcome.is_err(), "expected a timeout, got {outcome:?}");
    }

    #[test]
    fn invalid_rego_is_an_error_naming_the_file() {
        let modules = vec![(
            "broken.rego".to_string(),
            "package x\ndeny contains if {".to_string(),
        )];
        let error = load_modules(&modules)
            .err()
            .map(|error| error.to_string())
            .unwrap_or_default();
        assert!(error.contains("broken.rego"), "{error}");
    }
}
