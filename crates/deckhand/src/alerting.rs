//! Where admin alerts go: every policy denial and failed permission check the cluster gate
//! sees becomes a Kubernetes Event on deckhand's own object, a count in `/metrics`
//! (`deckhand_alerts_total{reason}`), and a message to each configured webhook or Slack
//! destination (`[alerts]`).

use crate::config::Config;
use crate::journal::MetricsCell;
use deckhand_tools::cluster::{Alert, AlertSink, EventAlerts, FanoutAlerts, WebhookAlerts};
use k8s_openapi::api::core::v1::ObjectReference;
use std::sync::Arc;
use std::time::Duration;

/// How long queued alerts may still be sent when deckhand stops.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Counts alerts by reason in deckhand's metrics (when `deckhand serve` set them).
struct MetricAlerts {
    metrics: MetricsCell,
}

impl AlertSink for MetricAlerts {
    fn raise(&self, alert: &Alert) {
        if let Some(metrics) = self.metrics.get() {
            metrics.alert(&alert.reason);
        }
    }
}

/// The alert destinations of one process; close it to send what is still queued.
pub struct Alerting {
    sink: Arc<dyn AlertSink>,
    webhooks: Vec<Arc<WebhookAlerts>>,
}

impl Alerting {
    /// Starts the destinations `config` names, on the cluster `client` talks to. Call
    /// inside a tokio runtime.
    ///
    /// # Errors
    /// A destination is misconfigured (the message names the key).
    pub fn start(
        config: &Config,
        client: kube::Client,
        metrics: MetricsCell,
    ) -> Result<Self, String> {
        let cluster = &config.cluster;
        let api_version = match cluster.alert_object_kind.as_str() {
            "Deployment" | "StatefulSet" | "DaemonSet" => "apps/v1",
            _ => "v1",
        };
        let events = EventAlerts::new(
            client,
            ObjectReference {
                api_version: Some(api_version.to_owned()),
                kind: Some(cluster.alert_object_kind.clone()),
                name: Some(cluster.alert_object_name.clone()),
                namespace: Some(cluster.alert_namespace.clone()),
                ..ObjectReference::default()
            },
        );
        let webhooks = config
            .alerts
            .start(&|name| std::env::var(name).ok(), None)
            .map_err(|error| format!("{error:#}"))?;
        let mut sinks: Vec<Arc<dyn AlertSink>> = vec![events, Arc::new(MetricAlerts { metrics })];
        sinks.extend(
            webhooks
                .iter()
                .map(|webhook| webhook.clone() as Arc<dyn AlertSink>),
        );
        Ok(Self {
            sink: Arc::new(FanoutAlerts::new(sinks)),
            webhooks,
        })
    }

    /// The sink the cluster gate raises alerts to.
    pub fn sink(&self) -> Arc<dyn AlertSink> {
        self.sink.clone()
    }

    /// Stops taking alerts and sends what is queued (for at most a few seconds each).
    pub async fn close(self) {
        for webhook in self.webhooks {
            let stats = webhook.close(CLOSE_GRACE).await;
            tracing::debug!(?stats, "alert destination closed");
        }
    }
}
