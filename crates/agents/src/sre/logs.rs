//! Log compression to a token budget, so no model ever reads ten thousand copies of the
//! same line. Repeated lines are folded by template (timestamps, ids, addresses and
//! numbers masked), every distinct error and every stack trace is kept, the rest is kept
//! newest first while it fits, and the result says what was dropped.

use regex::Regex;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;

/// Characters per token in the estimate: the usual figure for English and log text.
const CHARS_PER_TOKEN: usize = 4;

/// The fewest tokens a budget may have; below it nothing useful fits.
pub const MIN_BUDGET_TOKENS: usize = 64;

/// Timestamps, UUIDs, long hex ids, IP addresses (with ports), durations and numbers, in
/// the order they are masked: the most specific first, so a timestamp is not masked as
/// six numbers.
static MASKS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d+)?(?:Z|[+-]\d{2}:?\d{2})?",
            "<TS>",
        ),
        (
            r"\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} \d{2}:\d{2}:\d{2}\b",
            "<TS>",
        ),
        (r"\b[IWEF]\d{4} \d{2}:\d{2}:\d{2}\.\d+\b", "<TS>"),
        (r"\b\d{2}:\d{2}:\d{2}(?:\.\d+)?\b", "<TS>"),
        (
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b",
            "<ID>",
        ),
        (r"\b(?:\d{1,3}\.){3}\d{1,3}(?::\d+)?\b", "<IP>"),
        (r"\b0x[0-9a-fA-F]+\b", "<HEX>"),
        (r"\b[0-9a-f]{10,}\b", "<ID>"),
        (r"\b\d+(?:\.\d+)?(?:ms|µs|us|ns|s|m|h)\b", "<DUR>"),
        (r"\d+", "<N>"),
    ]
    .into_iter()
    .filter_map(|(pattern, mask)| Regex::new(pattern).ok().map(|regex| (regex, mask)))
    .collect()
});

/// A line that reports a failure.
static ERROR_LINE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)\b(?:\w*error|err|\w*exception|fatal|panic(?:ked)?|critical|crit|traceback|failed|failure|refused|denied|unable to|cannot|can't|could not|timed? ?out|oomkilled|out of memory|segmentation fault|killed)\b|level=(?:error|fatal)|"level":\s*"(?:error|fatal)"|^E\d{4} "#,
    )
    .ok()
});

/// A line that warns.
static WARN_LINE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(r#"(?i)\b(?:warn|warning|deprecated)\b|level=warn|"level":\s*"warn"|^W\d{4} "#).ok()
});

/// A line that continues a stack trace (Java, Python, Go, Node, Rust, .NET).
static TRACE_LINE: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"^(?:\s+at\s|\s+File "|\s+\.\.\. \d+ more|Caused by:|\s*Traceback \(most recent call last\)|goroutine \d+ \[|\t\S+\.go:\d+|\S+\(0x[0-9a-f]+|\s+\d+: \S|\s+--- End of|\s{2,}\S.*\.(?:py|js|ts|rs|go|java|cs):\d+)"#,
    )
    .ok()
});

/// Whether `line` reports an error.
pub fn is_error_line(line: &str) -> bool {
    ERROR_LINE
        .as_ref()
        .is_some_and(|regex| regex.is_match(line))
}

fn is_warn_line(line: &str) -> bool {
    WARN_LINE.as_ref().is_some_and(|regex| regex.is_match(line))
}

fn is_trace_line(line: &str) -> bool {
    TRACE_LINE
        .as_ref()
        .is_some_and(|regex| regex.is_match(line))
}

/// `line` with its variable parts masked, so repeats of one message look alike.
pub fn template(line: &str) -> String {
    MASKS
        .iter()
        .fold(line.trim_end().to_owned(), |text, (regex, mask)| {
            regex.replace_all(&text, *mask).into_owned()
        })
}

/// Tokens a text is estimated to take.
pub fn estimate_tokens(text: &str) -> usize {
    text.chars().count().div_ceil(CHARS_PER_TOKEN)
}

/// How important a kept unit is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LineClass {
    /// Anything else.
    Info,
    /// A warning.
    Warning,
    /// An error message.
    Error,
    /// A stack trace (with the line that introduces it).
    StackTrace,
}

/// What was left out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Dropped {
    /// Repeats folded into the first line of their template (`[x37]`).
    pub duplicate_lines: usize,
    /// Distinct informational lines left out to fit the budget (the oldest first).
    pub info_lines: usize,
    /// Distinct warning lines left out to fit the budget.
    pub warning_lines: usize,
    /// Blank lines.
    pub blank_lines: usize,
}

/// Compressed logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CompressedLogs {
    /// The kept lines in their original order, repeats marked `[xN]`, gaps marked.
    pub text: String,
    /// Lines in the input.
    pub original_lines: usize,
    /// Lines in `text` (gap markers excluded).
    pub kept_lines: usize,
    /// Distinct templates in the input.
    pub distinct_templates: usize,
    /// Distinct error messages (all kept).
    pub error_templates: usize,
    /// Stack traces (all kept).
    pub stack_traces: usize,
    /// Estimated tokens of `text`.
    pub estimated_tokens: usize,
    /// The budget asked for.
    pub budget_tokens: usize,
    /// True when the errors and stack traces alone exceed the budget (they are kept
    /// anyway: they are what a diagnosis needs).
    pub over_budget: bool,
    /// What was left out.
    pub dropped: Dropped,
    /// One sentence saying what was done.
    pub summary: String,
}

/// One kept unit: a line, or a stack trace with its heading line.
struct Unit {
    class: LineClass,
    first_index: usize,
    lines: Vec<String>,
    repeats: usize,
}

impl Unit {
    fn render(&self) -> String {
        let mut text = self.lines.join("\n");
        if self.repeats > 1 {
            text = format!("[x{}] {text}", self.repeats);
        }
        text
    }
}

/// Compresses `text` to about `budget_tokens` tokens (at least [`MIN_BUDGET_TOKENS`]).
pub fn compress_logs(text: &str, budget_tokens: usize) -> CompressedLogs {
    let budget = budget_tokens.max(MIN_BUDGET_TOKENS);
    let lines: Vec<&str> = text.lines().collect();
    let mut dropped = Dropped::default();

    // Group stack traces with the line that introduces them.
    let mut raw_units: Vec<(usize, Vec<String>, bool)> = Vec::new();
    for (index, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            dropped.blank_lines += 1;
            continue;
        }
        let in_trace = raw_units.last().is_some_and(|(_, _, is_trace)| *is_trace);
        let indented = line.starts_with(' ') || line.starts_with('\t');
        let continues_trace = (is_trace_line(line) || (in_trace && indented))
            && !line.trim_start().starts_with("Traceback");
        match raw_units.last_mut() {
            Some((_, unit_lines, is_trace)) if continues_trace => {
                unit_lines.push((*line).to_owned());
                *is_trace = true;
            }
            _ => raw_units.push((
                index,
                vec![(*line).to_owned()],
                line.trim_start().starts_with("Traceback"),
            )),
        }
    }

    // Fold repeats by the template of the whole unit.
    let mut units: Vec<Unit> = Vec::new();
    let mut by_template: HashMap<String, usize> = HashMap::new();
    for (first_index, unit_lines, is_trace) in raw_units {
        let key = unit_lines
            .iter()
            .map(|line| template(line))
            .collect::<Vec<_>>()
            .join("\n");
        if let Some(&existing) = by_template.get(&key) {
            units[existing].repeats += 1;
            dropped.duplicate_lines += unit_lines.len();
            continue;
        }
        let class = if is_trace || unit_lines.len() > 1 {
            LineClass::StackTrace
        } else if unit_lines.first().is_some_and(|line| is_error_line(line)) {
            LineClass::Error
        } else if unit_lines.first().is_some_and(|line| is_warn_line(line)) {
            LineClass::Warning
        } else {
            LineClass::Info
        };
        by_template.insert(key, units.len());
        units.push(Unit {
            class,
            first_index,
            lines: unit_lines,
            repeats: 1,
        });
    }
    let distinct_templates = units.len();

    // Errors and traces always; then warnings and info, newest first, while they fit.
    let mut keep = vec![false; units.len()];
    let mut used = 0;
    for (index, unit) in units.iter().enumerate() {
        if unit.class >= LineClass::Error {
            keep[index] = true;
            used += estimate_tokens(&unit.render()) + 1;
        }
    }
    let over_budget = used > budget;
    for class in [LineClass::Warning, LineClass::Info] {
        for index in (0..units.len()).rev() {
            let unit = &units[index];
            if unit.class != class {
                continue;
            }
            let cost = estimate_tokens(&unit.render()) + 1;
            if used + cost <= budget {
                keep[index] = true;
                used += cost;
            } else if class == LineClass::Warning {
                dropped.warning_lines += 1;
            } else {
                dropped.info_lines += 1;
            }
        }
    }

    let mut out = Vec::new();
    let mut kept_lines = 0;
    let mut gap = 0;
    for (index, unit) in units.iter().enumerate() {
        if keep[index] {
            if gap > 0 {
                out.push(format!("... ({gap} distinct line(s) left out) ..."));
                gap = 0;
            }
            kept_lines += unit.lines.len();
            out.push(unit.render());
        } else {
            gap += 1;
        }
    }
    if gap > 0 {
        out.push(format!("... ({gap} distinct line(s) left out) ..."));
    }
    units.sort_by_key(|unit| unit.first_index);
    let text = out.join("\n");
    let error_templates = units.iter().filter(|u| u.class == LineClass::Error).count();
    let stack_traces = units
        .iter()
        .filter(|u| u.class == LineClass::StackTrace)
        .count();
    let summary = format!(
        "{} lines became {kept_lines}: {} repeat(s) folded, {} info and {} warning line(s) left out for the {budget}-token budget; all {error_templates} distinct error(s) and {stack_traces} stack trace(s) kept{}.",
        lines.len(),
        dropped.duplicate_lines,
        dropped.info_lines,
        dropped.warning_lines,
        if over_budget { " (they alone exceed the budget)" } else { "" }
    );
    CompressedLogs {
        estimated_tokens: estimate_tokens(&text),
        text,
        original_lines: lines.len(),
        kept_lines,
        distinct_templates,
        error_templates,
        stack_traces,
        budget_tokens: budget,
        over_budget,
        dropped,
        summary,
    }
}

/// The distinct error lines of `text` (first occurrence of each template), at most
/// `max`, newest last; the last lines when there are no error lines at all.
pub fn error_lines(text: &str, max: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let errors: Vec<String> = text
        .lines()
        .filter(|line| is_error_line(line))
        .filter(|line| seen.insert(template(line)))
        .map(|line| line.trim().to_owned())
        .collect();
    let chosen = if errors.is_empty() {
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| line.trim().to_owned())
            .collect::<Vec<_>>()
    } else {
        errors
    };
    let skip = chosen.len().saturating_sub(max);
    chosen.into_iter().skip(skip).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noisy_log() -> String {
        let mut text = String::new();
        for i in 0..400 {
            text.push_str(&format!(
                "2025-03-02T10:{:02}:{:02}.{:03}Z INFO GET /api/orders/{} 200 {}ms from 10.42.0.{}\n",
                i / 60 % 60, i % 60, i, 1000 + i, 5 + i % 7, i % 250
            ));
            if i % 50 == 0 {
                text.push_str(&format!(
                    "2025-03-02T10:00:{:02}Z INFO cache warmed ({} keys)\n",
                    i % 60,
                    i * 3
                ));
            }
        }
        text.push_str("2025-03-02T10:07:00Z WARN slow query on orders_by_customer took 2300ms\n");
        text.push_str("2025-03-02T10:07:01Z ERROR payment gateway returned 502 for order 88213\n");
        text.push_str("2025-03-02T10:07:02Z ERROR payment gateway returned 502 for order 88214\n");
        text.push_str("2025-03-02T10:07:03Z ERROR could not connect to redis at 10.43.12.9:6379: connection refused\n");
        text.push_str(
            "Exception in thread \"main\" java.lang.IllegalStateException: pool exhausted\n",
        );
        text.push_str("\tat com.acme.orders.Pool.borrow(Pool.java:88)\n");
        text.push_str("\tat com.acme.orders.Handler.handle(Handler.java:41)\n");
        text.push_str("Caused by: java.util.concurrent.TimeoutException: 30000ms\n");
        text.push_str("\t... 12 more\n");
        text
    }

    #[test]
    fn repeats_fold_and_every_error_and_trace_survives() {
        let compressed = compress_logs(&noisy_log(), 300);
        assert!(compressed.text.contains("[x400]"), "{}", compressed.text);
        assert!(compressed.text.contains("payment gateway returned 502"));
        assert!(compressed.text.contains("connection refused"));
        assert!(compressed.text.contains("Pool.java:88"));
        assert!(compressed
            .text
            .contains("Caused by: java.util.concurrent.TimeoutException"));
        assert_eq!(compressed.stack_traces, 1);
        assert_eq!(
            compressed.error_templates, 2,
            "the two 502 lines are one template"
        );
        assert!(
            compressed.estimated_tokens <= 300,
            "{}",
            compressed.estimated_tokens
        );
        assert!(compressed.dropped.duplicate_lines >= 400);
        assert!(compressed.summary.contains("repeat(s) folded"));
        assert!(!compressed.over_budget);
    }

    #[test]
    fn a_tight_budget_drops_info_first_and_says_so() {
        let compressed = compress_logs(&noisy_log(), 64);
        assert!(compressed.text.contains("connection refused"));
        assert!(compressed.dropped.info_lines > 0 || compressed.over_budget);
        assert!(compressed.text.contains("left out"));
    }

    #[test]
    fn templates_mask_what_varies() {
        assert_eq!(
            template("2025-01-01T00:00:00Z user 5f0c2b1e-0d2a-4c1e-9b7a-0a1b2c3d4e5f from 10.0.0.1:443 took 35ms"),
            "<TS> user <ID> from <IP> took <DUR>"
        );
        assert_eq!(
            error_lines("ok\nstarting\nfatal: no config\n", 5),
            vec!["fatal: no config"]
        );
        assert_eq!(error_lines("a\nb\nc\n", 2), vec!["b", "c"]);
    }

    #[test]
    fn python_tracebacks_are_one_unit() {
        let text = "starting worker\nTraceback (most recent call last):\n  File \"app.py\", line 3, in <module>\n    main()\nKeyError: 'DATABASE_URL'\n";
        let compressed = compress_logs(text, 200);
        assert!(compressed.stack_traces >= 1, "{compressed:?}");
        assert!(compressed.text.contains("File \"app.py\""));
    }
}
