//! Jamie, the copilot: explains a plan in plain words before approval and reports what
//! happened after. Jamie's voice is a calm British DevOps engineer: measured, dry,
//! precise, no hype. Without a model Jamie writes from the plan and the step results
//! alone, and says once that no model is in use; with a model (route `copilot`) the
//! model rewrites that same factual draft in Jamie's voice, and never adds steps.

use deckhand_llm::{CancellationToken, ChatRequest, Message, Router};
use deckhand_runtime::plan::topological_order;
use deckhand_runtime::{AgentRole, Plan};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The LLM route Jamie uses.
pub const ROUTE: &str = "copilot";

/// Said once when no model is in use.
pub const OFFLINE_NOTE: &str =
    "(No language model is in use, so this is deckhand's own plain summary rather than a model's.)";

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    /// It ran and succeeded.
    Succeeded,
    /// It ran and failed.
    Failed,
    /// It did not run because a step it depends on failed.
    Skipped,
    /// The plan was cancelled before it finished.
    Cancelled,
    /// It has not run (waiting for approval, say).
    Pending,
}

/// What one step did, as Jamie reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's id.
    pub step_id: String,
    /// How it ended.
    pub status: StepStatus,
    /// Its output, when it succeeded.
    #[serde(default)]
    pub output: Option<Value>,
    /// Its error, when it failed.
    #[serde(default)]
    pub error: Option<String>,
}

/// What Jamie says, and whether a model said it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Said {
    /// The text for the person.
    pub text: String,
    /// True when no model wrote it.
    pub offline: bool,
}

/// The most tokens Jamie's model may spend on one explanation or report: it rewrites a
/// draft, it does not write essays.
pub const JAMIE_MAX_TOKENS: u32 = 1024;

/// Receives Jamie's words as the model writes them (for live replies in a GUI or chat).
pub type TokenSink = Arc<dyn Fn(&str) + Send + Sync>;

/// The copilot. One Jamie per conversation: the offline note is said once per Jamie.
pub struct Jamie {
    router: Option<Arc<Router>>,
    offline_noted: AtomicBool,
    tokens: Option<TokenSink>,
    thread: Option<String>,
}

impl std::fmt::Debug for Jamie {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Jamie")
            .field("router", &self.router.is_some())
            .field("streams_tokens", &self.tokens.is_some())
            .finish()
    }
}

impl Jamie {
    /// Jamie without a model.
    pub fn offline() -> Self {
        Self {
            router: None,
            offline_noted: AtomicBool::new(false),
            tokens: None,
            thread: None,
        }
    }

    /// Jamie using `router`'s `copilot` route.
    pub fn new(router: Arc<Router>) -> Self {
        Self {
            router: Some(router),
            offline_noted: AtomicBool::new(false),
            tokens: None,
            thread: None,
        }
    }

    /// Jamie speaking in `thread`: the model's usage is accounted to it.
    #[must_use]
    pub fn in_thread(mut self, thread: impl Into<String>) -> Self {
        self.thread = Some(thread.into());
        self
    }

    /// Jamie streaming the model's words to `sink` as they come (the whole text is still
    /// returned at the end). Nothing is streamed when only the offline backend answers.
    #[must_use]
    pub fn with_token_sink(mut self, sink: TokenSink) -> Self {
        self.tokens = Some(sink);
        self
    }

    /// Asks the model, streaming its words to the sink when there is one and a real
    /// model may answer.
    async fn ask(
        &self,
        router: &Router,
        request: ChatRequest,
    ) -> Result<deckhand_llm::ChatResponse, deckhand_llm::Error> {
        let cancel = CancellationToken::new();
        let request = match &self.thread {
            Some(thread) => request.with_thread(thread.clone()),
            None => request,
        };
        let streams = self.tokens.as_ref().filter(|_| {
            let chain = router.chain(ROUTE);
            router.backends().any(|backend| {
                chain.iter().any(|name| name == backend.name()) && !backend.capabilities().offline
            })
        });
        let Some(sink) = streams else {
            return router.chat(ROUTE, request, &cancel).await;
        };
        let mut stream = router.chat_stream(ROUTE, request, &cancel).await?;
        while let Some(event) = stream.next().await {
            match event? {
                deckhand_llm::StreamEvent::Text(text) => sink(&text),
                deckhand_llm::StreamEvent::Done(answer) => return Ok(answer),
                deckhand_llm::StreamEvent::ToolCallDelta { .. } => {}
            }
        }
        Err(deckhand_llm::Error::BadResponse {
            backend: ROUTE.to_owned(),
            message: "the stream ended before the answer was complete".to_owned(),
        })
    }

    /// Explains `plan` before approval.
    pub async fn explain_plan(&self, plan: &Plan) -> Said {
        self.say(
            explain_plan(plan),
            "Explain this plan to the engineer before they approve it.",
        )
        .await
    }

    /// Reports what `plan`'s steps did.
    pub async fn report(&self, plan: &Plan, results: &[StepReport]) -> Said {
        self.say(
            report(plan, results),
            "Tell the engineer what happened when the plan ran.",
        )
        .await
    }

    async fn say(&self, draft: String, task: &str) -> Said {
        if let Some(router) = &self.router {
            let messages = vec![
                Message::system(format!(
                    "You are Jamie, deckhand's copilot: a calm British DevOps engineer. Measured, dry, precise; no hype, no exclamation marks, no emoji. \
{task} Rewrite the factual draft below in your own words for a busy engineer. Keep every fact, step, namespace, number and hash exactly; add no steps, \
claims or promises that are not in the draft; say plainly what changes the cluster and that nothing runs before approval."
                )),
                Message::user(draft.clone()),
            ];
            match self
                .ask(
                    router,
                    ChatRequest::new(messages)
                        .with_temperature(0.3)
                        .with_max_tokens(JAMIE_MAX_TOKENS),
                )
                .await
            {
                Ok(answer) if !answer.offline && !answer.text.trim().is_empty() => {
                    return Said {
                        text: answer.text.trim().to_owned(),
                        offline: false,
                    };
                }
                Ok(_) => {}
                Err(error) if error.is_offline() => {}
                Err(error) => tracing::warn!(%error, "Jamie's model failed; answering without it"),
            }
        }
        let text = match self.offline_noted.swap(true, Ordering::Relaxed) {
            false => format!("{OFFLINE_NOTE}\n\n{draft}"),
            true => draft,
        };
        Said {
            text,
            offline: true,
        }
    }
}

fn agent_name(agent: AgentRole) -> &'static str {
    agent.display_name()
}

fn short_hash(hash: &str) -> &str {
    let hex = hash.strip_prefix("sha256:").unwrap_or(hash);
    hex.get(..12).unwrap_or(hex)
}

/// The plain explanation of a plan, without a model.
pub fn explain_plan(plan: &Plan) -> String {
    let total = plan.steps.len();
    let changes: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.mutating)
        .map(|s| s.title.as_str())
        .collect();
    let mut text = match (total, changes.len()) {
        (1, 0) => "Right. One step, and it only reads; nothing in the cluster changes.\n".to_owned(),
        (_, 0) => format!("Right. {total} steps, all of them reads or local work; nothing in the cluster changes.\n"),
        (_, 1) => format!("Right. {total} step(s), one of which changes the cluster: {}.\n", changes[0]),
        (_, n) => format!("Right. {total} steps, {n} of which change the cluster.\n"),
    };
    text.push('\n');
    for (position, index) in topological_order(&plan.steps).into_iter().enumerate() {
        let step = &plan.steps[index];
        let mut line = format!(
            "{}. {} ({}, {})",
            position + 1,
            step.title,
            agent_name(step.agent),
            step.tool
        );
        if step.mutating {
            line.push_str(" - changes the cluster, so it waits for your approval");
        }
        line.push('.');
        if !step.depends_on.is_empty() {
            line.push_str(&format!(" After {}.", step.depends_on.join(", ")));
        }
        text.push_str(&line);
        text.push('\n');
        if !step.rationale.trim().is_empty() {
            text.push_str(&format!("   {}\n", step.rationale.trim()));
        }
    }
    text.push('\n');
    text.push_str(&match changes.is_empty() {
        true => "It is safe to run as it stands. ".to_owned(),
        false => format!(
            "Nothing changes until you approve plan {} (hash {}...). ",
            plan.id,
            short_hash(&plan.hash)
        ),
    });
    text.push_str("If you would like anything done differently, say so and I will rework it.");
    text
}

/// What a step's output says, in one or two sentences, for the outputs deckhand knows.
fn describe_output(tool: &str, output: &Value) -> Option<String> {
    let text = |path: &str| output.pointer(path).and_then(Value::as_str);
    match tool {
        "diagnose_pod" => {
            let summary = text("/summary")?;
            let remedy = text("/remediation/0/action")
                .map(|r| format!(" Suggested: {r}"))
                .unwrap_or_default();
            Some(format!("{summary}{remedy}"))
        }
        "scan_workloads" => {
            let findings = output.get("findings").and_then(Value::as_array)?;
            let counts = output.get("counts").and_then(Value::as_object).map(|c| {
                c.iter()
                    .map(|(k, v)| format!("{v} {k}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            });
            Some(match findings.first() {
                None => "no findings.".to_owned(),
                Some(worst) => format!(
                    "{} finding(s) ({}); the worst: {} {}",
                    findings.len(),
                    counts.unwrap_or_default(),
                    worst.get("object").and_then(Value::as_str).unwrap_or(""),
                    worst.get("message").and_then(Value::as_str).unwrap_or("")
                ),
            })
        }
        "scan_rbac" => {
            let findings = output
                .get("findings")
                .and_then(Value::as_array)
                .map(Vec::len)
                .unwrap_or(0);
            let readers: Vec<&str> = output
                .get("secret_readers")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(|r| r.get("subject").and_then(Value::as_str))
                        .collect()
                })
                .unwrap_or_default();
            Some(format!(
                "{findings} finding(s); {} subject(s) can read Secrets{}",
                readers.len(),
                if readers.is_empty() {
                    String::new()
                } else {
                    format!(": {}", readers.join(", "))
                }
            ))
        }
        "triage_alert" => text("/summary").map(str::to_owned),
        "compress_logs" => text("/summary").map(str::to_owned),
        "kube_get" => Some(match output.get("found").and_then(Value::as_bool) {
            Some(true) => "found.".to_owned(),
            _ => "not found.".to_owned(),
        }),
        "kube_list" => output
            .get("items")
            .and_then(Value::as_array)
            .map(|i| format!("{} object(s).", i.len())),
        "kube_dry_run" => output.get("results").and_then(Value::as_array).map(|r| {
            let warnings: usize = r
                .iter()
                .filter_map(|x| x.get("warnings").and_then(Value::as_array))
                .map(Vec::len)
                .sum();
            format!(
                "the server accepted {} object(s){}.",
                r.len(),
                if warnings > 0 {
                    format!(" with {warnings} warning(s)")
                } else {
                    String::new()
                }
            )
        }),
        "terraform_plan" => {
            let summary = text("/summary")?;
            let saved = text("/plan_file")
                .map(|file| format!(" Saved as {file}; nothing was applied, that is yours to do."))
                .unwrap_or_default();
            Some(format!("{summary}{saved}"))
        }
        "kube_apply" => output
            .get("applied")
            .and_then(Value::as_array)
            .map(|a| format!("applied {} object(s).", a.len())),
        _ => text("/path").map(|p| format!("wrote {p}.")),
    }
}

/// The plain report of what a plan did, without a model.
pub fn report(plan: &Plan, results: &[StepReport]) -> String {
    let by_id = |id: &str| results.iter().find(|r| r.step_id == id);
    let mut lines = Vec::new();
    let mut failed = Vec::new();
    let mut skipped = Vec::new();
    let mut succeeded = 0;
    for index in topological_order(&plan.steps) {
        let step = &plan.steps[index];
        let line = match by_id(&step.id) {
            Some(StepReport {
                status: StepStatus::Succeeded,
                output,
                ..
            }) => {
                succeeded += 1;
                let said = output
                    .as_ref()
                    .and_then(|o| describe_output(&step.tool, o))
                    .unwrap_or_else(|| "done.".to_owned());
                format!("- {}: {said}", step.title)
            }
            Some(StepReport {
                status: StepStatus::Failed,
                error,
                ..
            }) => {
                failed.push(step.id.as_str());
                format!(
                    "- {}: failed - {}",
                    step.title,
                    error.as_deref().unwrap_or("no reason given")
                )
            }
            Some(StepReport {
                status: StepStatus::Skipped,
                ..
            }) => {
                skipped.push(step.id.as_str());
                format!(
                    "- {}: not run, because a step before it failed.",
                    step.title
                )
            }
            Some(StepReport {
                status: StepStatus::Cancelled,
                ..
            }) => format!("- {}: cancelled.", step.title),
            Some(StepReport {
                status: StepStatus::Pending,
                ..
            })
            | None => format!("- {}: not run yet.", step.title),
        };
        lines.push(line);
    }
    let total = plan.steps.len();
    let opening = match (failed.len(), succeeded) {
        (0, done) if done == total => format!("All {total} step(s) finished."),
        (0, done) => format!("{done} of {total} step(s) finished; the rest have not run."),
        (n, done) => format!("{done} of {total} step(s) finished and {n} failed ({}); I stopped what depended on them.", failed.join(", ")),
    };
    let mut text = format!("{opening}\n\n{}", lines.join("\n"));
    if !skipped.is_empty() {
        text.push_str(&format!(
            "\n\nNot run: {}. Fix the failure and I can plan the rest again.",
            skipped.join(", ")
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use deckhand_runtime::{CatalogEntry, PlanDraft, Step, ThreadId, ToolCatalog};
    use serde_json::json;

    fn plan() -> Plan {
        let catalog = ToolCatalog::new([
            CatalogEntry {
                name: "kube_get".into(),
                description: "read".into(),
                input_schema: json!({"type": "object"}),
                mutating: false,
            },
            CatalogEntry {
                name: "kube_scale".into(),
                description: "scale".into(),
                input_schema: json!({"type": "object"}),
                mutating: true,
            },
        ]);
        let step = |id: &str, tool: &str, title: &str, deps: &[&str]| Step {
            id: id.into(),
            agent: AgentRole::Sre,
            title: title.into(),
            tool: tool.into(),
            input: json!({}),
            depends_on: deps.iter().map(|d| d.to_string()).collect(),
            mutating: false,
            rationale: "Because.".into(),
        };
        Plan::new(
            ThreadId::new(),
            "scale web to 3",
            "test",
            PlanDraft {
                steps: vec![
                    step(
                        "check",
                        "kube_get",
                        "Check that Deployment web exists in shop",
                        &[],
                    ),
                    step(
                        "scale",
                        "kube_scale",
                        "Scale Deployment web in shop to 3",
                        &["check"],
                    ),
                ],
            },
            &catalog,
        )
        .unwrap()
    }

    #[tokio::test]
    async fn offline_explanations_say_what_changes_and_mention_the_offline_backend_once() {
        let jamie = Jamie::offline();
        let plan = plan();
        let first = jamie.explain_plan(&plan).await;
        assert!(first.offline);
        assert!(first.text.starts_with(OFFLINE_NOTE));
        assert!(
            first
                .text
                .contains("one of which changes the cluster: Scale Deployment web in shop to 3"),
            "{}",
            first.text
        );
        assert!(first.text.contains("waits for your approval"));
        assert!(first.text.contains(short_hash(&plan.hash)));
        assert!(!first.text.contains('!'), "no hype: {}", first.text);
        let second = jamie.explain_plan(&plan).await;
        assert!(!second.text.contains(OFFLINE_NOTE), "said once");
    }

    #[test]
    fn reports_say_what_failed_and_what_was_not_run() {
        let plan = plan();
        let text = report(
            &plan,
            &[
                StepReport {
                    step_id: "check".into(),
                    status: StepStatus::Failed,
                    output: None,
                    error: Some("deployments.apps \"web\" not found".into()),
                },
                StepReport {
                    step_id: "scale".into(),
                    status: StepStatus::Skipped,
                    output: None,
                    error: None,
                },
            ],
        );
        assert!(
            text.starts_with("0 of 2 step(s) finished and 1 failed (check)"),
            "{text}"
        );
        assert!(text.contains("not found"));
        assert!(text.contains("Not run: scale"));
        let text = report(
            &plan,
            &[
                StepReport {
                    step_id: "check".into(),
                    status: StepStatus::Succeeded,
                    output: Some(json!({"found": true, "object": {}})),
                    error: None,
                },
                StepReport {
                    step_id: "scale".into(),
                    status: StepStatus::Succeeded,
                    output: Some(json!({})),
                    error: None,
                },
            ],
        );
        assert!(text.starts_with("All 2 step(s) finished."), "{text}");
        assert!(text.contains("Check that Deployment web exists in shop: found."));
    }

    #[test]
    fn a_terraform_plan_is_reported_by_what_it_would_do_or_why_it_did_not_run() {
        let catalog = ToolCatalog::new([CatalogEntry {
            name: "terraform_plan".into(),
            description: "plan".into(),
            input_schema: json!({"type": "object"}),
            mutating: false,
        }]);
        let plan = Plan::new(
            ThreadId::new(),
            "create an S3 bucket named logs",
            "test",
            PlanDraft {
                steps: vec![Step {
                    id: "plan".into(),
                    agent: AgentRole::Cloud,
                    title: "terraform plan of terraform/logs".into(),
                    tool: "terraform_plan".into(),
                    input: json!({"path": "terraform/logs"}),
                    depends_on: Vec::new(),
                    mutating: false,
                    rationale: String::new(),
                }],
            },
            &catalog,
        )
        .unwrap();
        let text = report(
            &plan,
            &[StepReport {
                step_id: "plan".into(),
                status: StepStatus::Succeeded,
                output: Some(json!({
                    "summary": "Plan: 4 to add, 0 to change, 0 to destroy.",
                    "plan_file": "terraform/logs/tfplan",
                })),
                error: None,
            }],
        );
        assert!(
            text.contains("terraform plan of terraform/logs: Plan: 4 to add, 0 to change, 0 to destroy. Saved as terraform/logs/tfplan; nothing was applied"),
            "{text}"
        );
        let text = report(
            &plan,
            &[StepReport {
                step_id: "plan".into(),
                status: StepStatus::Failed,
                output: None,
                error: Some("tool terraform_plan failed (terraform_init_failed): terraform init in terraform/logs failed (exit status 1): a provider could not be installed (...); Error: Failed to query available provider packages. The plan was not run.".into()),
            }],
        );
        assert!(
            text.contains("failed - tool terraform_plan failed"),
            "{text}"
        );
        assert!(text.contains("a provider could not be installed"), "{text}");
        assert!(text.contains("The plan was not run."), "{text}");
    }
}
