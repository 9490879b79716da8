//! The SRE agent's deterministic analyzers: pod diagnosis, log compression, alert
//! triage and resource suggestions. They answer the common cases without a model; with
//! one configured, the model reads their output instead of raw cluster data.

pub mod alerts;
pub mod diagnose;
pub mod logs;
pub mod resources;

pub use alerts::{triage_alert, AlertTriage, LikelyCause, Triage};
pub use diagnose::{diagnose_pod, Cause, Diagnosis, Issue};
pub use logs::{compress_logs, CompressedLogs};
pub use resources::{suggest_resources, ObservedUsage, ResourceSuggestion};
