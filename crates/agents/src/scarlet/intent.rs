//! Reading a request without a model: the common requests, recognised by their words,
//! become an [`Intent`] with the names, numbers and namespace they mention. Anything not
//! recognised is `None`, never a guess.

use regex::Regex;
use serde_json::Value;
use std::sync::LazyLock;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Intent {
    /// Why is a pod or workload failing.
    Diagnose {
        /// Pod or workload name.
        name: String,
    },
    /// Set a workload's replicas.
    Scale {
        /// Deployment, StatefulSet or ReplicaSet.
        kind: &'static str,
        /// Its name.
        name: String,
        /// The replicas asked for.
        replicas: u64,
    },
    /// Rollout restart of a workload.
    Restart {
        /// Deployment, StatefulSet or DaemonSet.
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// Write a Deployment (and a Service, an Ingress) and apply them.
    CreateApp {
        /// The workload's name.
        name: String,
        /// The image as given.
        image: String,
        /// Replicas, when given.
        replicas: Option<u64>,
        /// Container port, when given.
        port: Option<u64>,
        /// Whether a Service was asked for.
        service: bool,
        /// The Ingress host, when an Ingress was asked for.
        ingress_host: Option<String>,
    },
    /// An HPA for a workload.
    Autoscale {
        /// The workload.
        target: String,
        /// Fewest replicas.
        min: u64,
        /// Most replicas.
        max: u64,
        /// Target CPU percent, when given.
        cpu_percent: Option<u64>,
    },
    /// Scan workloads for security issues.
    ScanWorkloads,
    /// Scan RBAC (who can read Secrets, wildcards, cluster-admin).
    ScanRbac,
    /// Delete one object.
    Delete {
        /// apiVersion.
        api_version: &'static str,
        /// Kind.
        kind: &'static str,
        /// Name.
        name: String,
    },
    /// Delete a namespace (refused: the policy never allows it).
    DeleteNamespace {
        /// The namespace named.
        name: String,
    },
    /// Triage a pasted Alertmanager payload.
    TriageAlert {
        /// The payload.
        payload: Value,
    },
    /// Compress pasted logs.
    CompressLogs {
        /// The pasted text.
        text: String,
    },
    /// Show a workload's or pod's logs.
    ShowLogs {
        /// Pod or workload.
        name: String,
    },
    /// List objects of one kind.
    List {
        /// apiVersion.
        api_version: &'static str,
        /// Kind.
        kind: &'static str,
        /// Whether the kind lives in namespaces.
        namespaced: bool,
    },
    /// A Terraform module for an S3 bucket.
    S3Bucket {
        /// Bucket name.
        name: String,
        /// AWS region, when given.
        region: Option<String>,
    },
    /// A ConfigMap with data.
    ConfigMap {
        /// Its name.
        name: String,
        /// KEY=VALUE pairs.
        data: Vec<(String, String)>,
    },
    /// A Secret template with keys.
    SecretTemplate {
        /// Its name.
        name: String,
        /// Key names.
        keys: Vec<String>,
    },
    /// A Helm chart for an image.
    HelmChart {
        /// Chart name.
        name: String,
        /// Image repository.
        repository: String,
        /// Tag, when given.
        tag: Option<String>,
    },
    /// An Ingress for an existing Service.
    Ingress {
        /// The Service.
        service: String,
        /// The host.
        host: String,
        /// The Service port, when given.
        port: Option<u64>,
    },
}

/// Words that follow "in" but are not namespaces.
const NOT_NAMESPACES: &[&str] = &[
    "for",
    "to",
    "with",
    "and",
    "of",
    "default-namespace",
    "the",
    "a",
    "an",
    "it",
    "this",
    "that",
    "there",
    "my",
    "our",
    "pending",
    "crashloopbackoff",
    "crashloop",
    "a-loop",
    "loop",
    "production",
    "order",
    "place",
    "cluster",
    "staging-cluster",
    "us",
    "eu",
    "error",
];

/// Words that look like names but are not.
const NOT_NAMES: &[&str] = &[
    "why",
    "what",
    "how",
    "who",
    "when",
    "where",
    "can",
    "could",
    "please",
    "pending",
    "crashing",
    "failing",
    "stuck",
    "restarting",
    "running",
    "not",
    "keeps",
    "keep",
    "crash-looping",
    "in",
    "with",
    "anything",
    "something",
    "the",
    "a",
    "an",
    "my",
    "our",
    "this",
    "that",
    "it",
    "its",
    "pod",
    "pods",
    "deployment",
    "deployments",
    "service",
    "up",
    "down",
    "is",
    "are",
    "to",
    "for",
    "of",
    "namespace",
    "all",
    "every",
];

fn regex(pattern: &str) -> Option<Regex> {
    Regex::new(pattern).ok()
}

macro_rules! pattern {
    ($name:ident, $pattern:expr) => {
        static $name: LazyLock<Option<Regex>> = LazyLock::new(|| regex($pattern));
    };
}

pattern!(
    NS_FLAG,
    r"(?:^|\s)(?:-n|--namespace)[ =]([a-z0-9][a-z0-9-]*)"
);
pattern!(NS_WORD, r"\bnamespace[ =:]+([a-z0-9][a-z0-9-]*)");
pattern!(
    NS_SUFFIX,
    r"\b(?:(?:in|from) (?:the )?|the )([a-z0-9][a-z0-9-]*) namespace\b"
);
pattern!(NS_IN, r"\bin ([a-z0-9][a-z0-9-]*)\s*(?:[?.!,]|$)");
pattern!(NAME_TOKEN, r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$");

/// The namespace the text names, if any.
pub fn namespace_in(text: &str) -> Option<String> {
    let lower = text.to_lowercase();
    [&NS_FLAG, &NS_SUFFIX, &NS_WORD, &NS_IN]
        .iter()
        .find_map(|pattern| {
            pattern.as_ref().and_then(|re| {
                re.captures_iter(&lower)
                    .map(|found| found[1].to_owned())
                    .find(|candidate| {
                        !NOT_NAMESPACES.contains(&candidate.as_str())
                            && !candidate.chars().all(|c| c.is_ascii_digit())
                    })
            })
        })
}

/// Whether `word` can be a Kubernetes name (a DNS-1123 label) and is not a filler word.
pub fn is_name(word: &str) -> bool {
    !NOT_NAMES.contains(&word)
        && word.len() <= 253
        && NAME_TOKEN.as_ref().is_some_and(|re| re.is_match(word))
}

fn first_name(text: &str, patterns: &[&LazyLock<Option<Regex>>]) -> Option<String> {
    patterns.iter().find_map(|pattern| {
        pattern.as_ref().and_then(|re| {
            re.captures_iter(text)
                .map(|c| c[1].trim_end_matches(['.', ',', '?']).to_owned())
                .find(|n| is_name(n))
        })
    })
}

fn kind_of(word: &str) -> Option<&'static str> {
    match word {
        "deployment" | "deploy" | "deployments" => Some("Deployment"),
        "statefulset" | "sts" | "statefulsets" => Some("StatefulSet"),
        "daemonset" | "ds" | "daemonsets" => Some("DaemonSet"),
        "replicaset" | "rs" => Some("ReplicaSet"),
        _ => None,
    }
}

pattern!(
    DIAGNOSE_VERB,
    r"\b(?:why|what'?s wrong|what is wrong|(?:is )?(?:anything|something) wrong|wrong with|what happened|diagnose|debug|troubleshoot|investigate|explain|figure out|look into|find out)\b"
);
pattern!(
    SYMPTOM,
    r"crash|fail|pending|restart|oom|imagepull|errimage|backoff|not ready|not starting|won'?t start|stuck|broken|erroring|unhealthy|evicted|down\b|error|wrong|keeps dying|dying|unavailable"
);
pattern!(POD_NAME, r"\bpod(?:/| )([a-z0-9][a-z0-9.-]*)");
pattern!(
    WORKLOAD_NAME,
    r"\b(?:deployment|deploy|statefulset|sts|daemonset|app|service)(?:/| )([a-z0-9][a-z0-9-]*)"
);
pattern!(
    IS_NAME,
    r"\b(?:is|are|does|did|has|keeps) (?:the )?([a-z0-9][a-z0-9.-]*)(?: pods?| deployment| app| service)? (?:crash|fail|pending|restart|oom|not|stuck|down|broken|erroring|in|keep|dying|unhealthy|unavailable|getting|being|still|always|so)"
);
pattern!(
    WITH_NAME,
    r"\bwrong with (?:the )?(?:pod |deployment |app |service )?([a-z0-9][a-z0-9.-]*)"
);
pattern!(
    NAME_FIRST,
    r"^(?:the )?([a-z0-9][a-z0-9.-]*)(?: pods?| deployment| app| service)? (?:keeps|keep|is|are|won'?t|can'?t|fails|failed|crashes|crashed|crash)"
);
pattern!(
    VERB_NAME,
    r"\b(?:diagnose|debug|troubleshoot|investigate|look into) (?:the )?([a-z0-9][a-z0-9.-]*)"
);
pattern!(
    NAME_POD,
    r"\b([a-z0-9][a-z0-9.-]*) (?:pods?|deployment|app) (?:is|are|keeps|keep|won'?t|can'?t|fails|crash)"
);

pattern!(
    SCALE,
    r"\bscale (?:up |down |out |in )?(?:the )?(?:(deployment|deploy|statefulset|sts|replicaset|rs)[/ ])?([a-z0-9][a-z0-9-]*)(?: (?:deployment|statefulset))?(?: (?:up|down|out|in))? ?(?:to|=) ?(\d+)"
);
pattern!(
    SET_REPLICAS,
    r"\b(?:set|change) (?:the )?(?:replicas|replica count) (?:of|for) (?:(deployment|deploy|statefulset|sts)[/ ])?([a-z0-9][a-z0-9-]*) to (\d+)"
);
pattern!(
    NAME_REPLICAS,
    r"\b(?:set|give|run) (?:(deployment|deploy|statefulset|sts)[/ ])?([a-z0-9][a-z0-9-]*) (?:to |with )?(\d+) replicas?"
);

pattern!(
    RESTART,
    r"\b(?:restart|rollout restart|bounce|redeploy) (?:the )?(?:(deployment|deploy|statefulset|sts|daemonset|ds|pod)[/ ])?([a-z0-9][a-z0-9.-]*)"
);

pattern!(
    DELETE,
    r"\b(?:delete|remove|kill|destroy|drop) (?:the )?(pod|deployment|service|svc|configmap|cm|secret|job|cronjob|statefulset|sts|daemonset|ingress|namespace|ns|hpa|horizontalpodautoscaler|persistentvolumeclaim|pvc)s?(?:/| )(?:named |called )?([a-z0-9][a-z0-9.-]*)"
);
pattern!(
    DELETE_REVERSED,
    r"\b(?:delete|remove|kill|destroy|drop) (?:the )?([a-z0-9][a-z0-9.-]*) (pod|deployment|service|configmap|secret|job|namespace|ingress)\b"
);

pattern!(HPA, r"\b(?:hpa|autoscal\w*|horizontal pod autoscaler)\b");
pattern!(
    HPA_TARGET,
    r"\b(?:give|for|to|autoscale|add an hpa to|put an hpa on|on) (?:the )?(?:(?:deployment|deploy|statefulset)[/ ])?([a-z0-9][a-z0-9-]*)"
);
pattern!(RANGE, r"(\d+)\s*(?:-|–|—|to|and|\.\.)\s*(\d+)");
pattern!(
    MIN_MAX,
    r"\bmin(?:imum)?(?: replicas)?[ =:]*(\d+).*?\bmax(?:imum)?(?: replicas)?[ =:]*(\d+)"
);
pattern!(PERCENT, r"(\d+)\s*%");

pattern!(
    CREATE_VERB,
    r"\b(?:create|deploy|generate|write|make|set up|setup|run|add|launch|spin up|draft)\b"
);
pattern!(
    IMAGE_WITH_TAG,
    r"(?:^|[\s(])((?:[a-z0-9.-]+(?::\d+)?/)?[a-z0-9._-]+(?:/[a-z0-9._-]+)*(?::[A-Za-z0-9._-]+|@sha256:[a-f0-9]{64}))"
);
pattern!(
    IMAGE_AFTER,
    r"\b(?:for|of|running|image|with image|from) (?:the )?(?:image )?([a-z0-9][a-z0-9./_-]*)"
);
pattern!(REPLICAS, r"(\d+) (?:replicas?|pods?|instances?|copies)");
pattern!(
    PORT,
    r"\bport (\d+)|:(\d+) port|listening on (\d+)|on port (\d+)"
);
pattern!(NAMED, r"\b(?:named|called|name) ([a-z0-9][a-z0-9-]*)");
pattern!(
    HOST,
    r"\b(?:at|host|on|for|domain) ((?:[a-z0-9-]+\.)+[a-z]{2,})(?:[^a-z0-9./:-]|$)"
);

pattern!(
    SECURITY_SCAN,
    r"\b(?:scan|audit|check|review|assess|inspect|look for)\b.*\b(?:secur\w*|misconfig\w*|vulnerab\w*|harden\w*|risk\w*|privileged|best practices|cis|unsafe|insecure)"
);
pattern!(
    SECURITY_FIRST,
    r"\b(?:security|misconfigurations?|vulnerabilities|hardening) (?:scan|audit|check|review|issues|problems|findings|report)"
);
pattern!(
    RBAC,
    r"\brbac\b|who (?:can|could|is able to|has access to) (?:read|get|list|see|access|view) (?:the )?secrets|(?:read|access) (?:to )?secrets\b|\bcluster-admin\b|role ?bindings?|\bpermissions?\b.*\b(?:audit|check|review|scan)|\b(?:audit|check|review|scan)\b.*\bpermissions?\b"
);

pattern!(
    LIST,
    r"^\s*(?:please )?(?:list|show|get|display|what)(?: me)?(?: all)?(?: the)? (pods|deployments|services|svc|nodes|statefulsets|daemonsets|configmaps|ingresses|namespaces|jobs|cronjobs|hpas?|horizontalpodautoscalers|events|pvcs|persistentvolumeclaims|replicasets|secrets)\b"
);
pattern!(S3, r"\bs3 bucket\b");
pattern!(
    S3_NAME,
    r"\bs3 bucket (?:named |called )?([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])|\b(?:named|called) ([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])"
);
pattern!(
    REGION,
    r"\b((?:us|eu|ap|sa|ca|me|af|il|mx)-(?:gov-)?(?:north|south|east|west|central|northeast|southeast|northwest|southwest)-\d)\b"
);
pattern!(CONFIGMAP, r"\bconfig ?map\b");
pattern!(KEY_VALUE, r"([A-Za-z_][A-Za-z0-9_.-]*)=([^\s,]+)");
pattern!(SECRET_TEMPLATE, r"\bsecret\b");
pattern!(
    KEYS,
    r"\bkeys? ([A-Za-z0-9_.,\- ]+?)(?:$|\s+(?:in|for|to)\b)"
);
pattern!(HELM, r"\bhelm chart\b");
pattern!(INGRESS, r"\bingress\b");
pattern!(
    INGRESS_SERVICE,
    r"\b(?:for|to) (?:the )?(?:service )?([a-z0-9][a-z0-9-]*)(?: service)?\b"
);
pattern!(LOGS, r"\blogs?\b");
pattern!(
    LOGS_OF,
    r"\blogs? (?:of|for|from) (?:the )?(?:pod |deployment )?([a-z0-9][a-z0-9.-]*)|\b([a-z0-9][a-z0-9.-]*)(?:'s| pod'?s?) logs\b"
);

/// Reads `text`. `None` when no rule recognises it.
pub fn parse(text: &str) -> Option<Intent> {
    // A pasted payload or log is recognised before anything else: its words would
    // otherwise trigger other rules.
    if let Some(payload) = pasted_alert(text) {
        return Some(Intent::TriageAlert { payload });
    }
    let lower = text.trim().to_lowercase();
    let first_line = lower.lines().next().unwrap_or("").to_owned();
    let rest: Vec<&str> = text.lines().skip(1).collect();
    if rest.len() >= 2 && has(&LOGS, &first_line) {
        return Some(Intent::CompressLogs {
            text: rest.join("\n"),
        });
    }
    let lower = first_line.as_str();

    if let Some(intent) = delete(lower) {
        return Some(intent);
    }
    if has(&S3, lower) {
        let name = S3_NAME
            .as_ref()
            .and_then(|re| re.captures(lower))
            .and_then(|c| c.get(1).or(c.get(2)).map(|m| m.as_str().to_owned()))?;
        let region = REGION
            .as_ref()
            .and_then(|re| re.captures(lower))
            .map(|c| c[1].to_owned());
        return Some(Intent::S3Bucket { name, region });
    }
    if let Some(intent) = scale(lower) {
        return Some(intent);
    }
    if has(&HPA, lower) {
        return autoscale(lower);
    }
    if has(&RBAC, lower) {
        return Some(Intent::ScanRbac);
    }
    if has(&SECURITY_SCAN, lower) || has(&SECURITY_FIRST, lower) {
        return Some(Intent::ScanWorkloads);
    }
    if let Some(intent) = restart(lower) {
        return Some(intent);
    }
    if has(&DIAGNOSE_VERB, lower) && (has(&SYMPTOM, lower) || lower.contains("pod")) {
        if let Some(name) = first_name(
            lower,
            &[
                &POD_NAME,
                &WITH_NAME,
                &VERB_NAME,
                &NAME_FIRST,
                &NAME_POD,
                &IS_NAME,
                &WORKLOAD_NAME,
            ],
        ) {
            return Some(Intent::Diagnose { name });
        }
    }
    if has(&CREATE_VERB, lower) {
        if has(&HELM, lower) {
            let image = image_in(lower)?;
            let (repository, tag) = split_image(&image);
            let name = named(lower).unwrap_or_else(|| name_from_image(&repository));
            return Some(Intent::HelmChart {
                name,
                repository,
                tag,
            });
        }
        if has(&CONFIGMAP, lower) {
            let original_first = text.trim().lines().next().unwrap_or("");
            let data: Vec<(String, String)> = KEY_VALUE
                .as_ref()
                .map(|re| {
                    re.captures_iter(original_first)
                        .map(|c| (c[1].to_owned(), c[2].to_owned()))
                        .collect()
                })
                .unwrap_or_default();
            let name = named(lower).or_else(|| after_word(lower, "configmap"))?;
            return Some(Intent::ConfigMap { name, data });
        }
        if has(&SECRET_TEMPLATE, lower) && !lower.contains("deployment") {
            let original_first = text.trim().lines().next().unwrap_or("");
            let keys: Vec<String> = KEYS
                .as_ref()
                .and_then(|re| re.captures(original_first))
                .map(|c| {
                    c[1].split([',', ' '])
                        .map(str::trim)
                        .filter(|k| !k.is_empty() && *k != "and")
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default();
            let name = named(lower).or_else(|| after_word(lower, "secret"))?;
            return Some(Intent::SecretTemplate { name, keys });
        }
        if let Some(intent) = create_app(lower) {
            return Some(intent);
        }
        if has(&INGRESS, lower) {
            let host = HOST
                .as_ref()
                .and_then(|re| re.captures(lower))
                .map(|c| c[1].to_owned())?;
            let service = first_name(lower, &[&INGRESS_SERVICE])
                .filter(|s| !host.starts_with(s.as_str()) || s.len() > 3)?;
            let port = capture_number(&PORT, lower);
            return Some(Intent::Ingress {
                service,
                host,
                port,
            });
        }
    }
    if has(&LOGS, lower) {
        if let Some(found) = LOGS_OF.as_ref().and_then(|re| re.captures(lower)) {
            if let Some(name) = found
                .get(1)
                .or(found.get(2))
                .map(|m| m.as_str().to_owned())
                .filter(|n| is_name(n))
            {
                return Some(Intent::ShowLogs { name });
            }
        }
    }
    if let Some(found) = LIST.as_ref().and_then(|re| re.captures(lower)) {
        let (api_version, kind, namespaced) = match &found[1] {
            "pods" => ("v1", "Pod", true),
            "deployments" => ("apps/v1", "Deployment", true),
            "services" | "svc" => ("v1", "Service", true),
            "nodes" => ("v1", "Node", false),
            "statefulsets" => ("apps/v1", "StatefulSet", true),
            "daemonsets" => ("apps/v1", "DaemonSet", true),
            "configmaps" => ("v1", "ConfigMap", true),
            "ingresses" => ("networking.k8s.io/v1", "Ingress", true),
            "namespaces" => ("v1", "Namespace", false),
            "jobs" => ("batch/v1", "Job", true),
            "cronjobs" => ("batch/v1", "CronJob", true),
            "events" => ("v1", "Event", true),
            "pvcs" | "persistentvolumeclaims" => ("v1", "PersistentVolumeClaim", true),
            "replicasets" => ("apps/v1", "ReplicaSet", true),
            "secrets" => ("v1", "Secret", true),
            _ => ("autoscaling/v2", "HorizontalPodAutoscaler", true),
        };
        return Some(Intent::List {
            api_version,
            kind,
            namespaced,
        });
    }
    None
}

fn has(pattern: &LazyLock<Option<Regex>>, text: &str) -> bool {
    pattern.as_ref().is_some_and(|re| re.is_match(text))
}

fn capture_number(pattern: &LazyLock<Option<Regex>>, text: &str) -> Option<u64> {
    pattern
        .as_ref()
        .and_then(|re| re.captures(text))
        .and_then(|c| {
            c.iter()
                .skip(1)
                .flatten()
                .next()
                .and_then(|m| m.as_str().parse().ok())
        })
}

fn named(text: &str) -> Option<String> {
    first_name(text, &[&NAMED])
}

fn after_word(text: &str, word: &str) -> Option<String> {
    let mut words = text
        .split_whitespace()
        .skip_while(|w| !w.starts_with(word))
        .skip(1);
    words
        .next()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_ascii_alphanumeric() && c != '-')
                .to_owned()
        })
        .filter(|w| is_name(w) && w != "with")
}

fn pasted_alert(text: &str) -> Option<Value> {
    if !(text.contains("\"alerts\"") || text.contains("\"alertname\"")) {
        return None;
    }
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    let payload: Value = serde_json::from_str(text.get(start..=end)?).ok()?;
    payload.is_object().then_some(payload)
}

fn delete(text: &str) -> Option<Intent> {
    let (kind_word, name) = match DELETE.as_ref().and_then(|re| re.captures(text)) {
        Some(c) => (c[1].to_owned(), c[2].to_owned()),
        None => {
            let c = DELETE_REVERSED.as_ref().and_then(|re| re.captures(text))?;
            (c[2].to_owned(), c[1].to_owned())
        }
    };
    if !is_name(&name) {
        return None;
    }
    let (api_version, kind) = match kind_word.as_str() {
        "namespace" | "ns" => return Some(Intent::DeleteNamespace { name }),
        "pod" => ("v1", "Pod"),
        "deployment" => ("apps/v1", "Deployment"),
        "service" | "svc" => ("v1", "Service"),
        "configmap" | "cm" => ("v1", "ConfigMap"),
        "secret" => ("v1", "Secret"),
        "job" => ("batch/v1", "Job"),
        "cronjob" => ("batch/v1", "CronJob"),
        "statefulset" | "sts" => ("apps/v1", "StatefulSet"),
        "daemonset" => ("apps/v1", "DaemonSet"),
        "ingress" => ("networking.k8s.io/v1", "Ingress"),
        "persistentvolumeclaim" | "pvc" => ("v1", "PersistentVolumeClaim"),
        _ => ("autoscaling/v2", "HorizontalPodAutoscaler"),
    };
    Some(Intent::Delete {
        api_version,
        kind,
        name,
    })
}

fn scale(text: &str) -> Option<Intent> {
    let found = [&SCALE, &SET_REPLICAS, &NAME_REPLICAS]
        .iter()
        .find_map(|pattern| pattern.as_ref().and_then(|re| re.captures(text)))?;
    let kind = found
        .get(1)
        .and_then(|m| kind_of(m.as_str()))
        .unwrap_or("Deployment");
    let name = found[2].to_owned();
    let replicas = found[3].parse().ok()?;
    is_name(&name).then_some(Intent::Scale {
        kind,
        name,
        replicas,
    })
}

fn restart(text: &str) -> Option<Intent> {
    let found = RESTART.as_ref().and_then(|re| re.captures(text))?;
    let name = found[2].to_owned();
    if !is_name(&name) {
        return None;
    }
    match found.get(1).map(|m| m.as_str()) {
        // A pod restarts by being deleted; its controller makes a new one.
        Some("pod") => Some(Intent::Delete {
            api_version: "v1",
            kind: "Pod",
            name,
        }),
        Some(word) => Some(Intent::Restart {
            kind: kind_of(word).unwrap_or("Deployment"),
            name,
        }),
        None => Some(Intent::Restart {
            kind: "Deployment",
            name,
        }),
    }
}

fn autoscale(text: &str) -> Option<Intent> {
    let target = first_name(text, &[&HPA_TARGET]).filter(|t| t != "hpa" && t != "an")?;
    let (min, max) = MIN_MAX
        .as_ref()
        .and_then(|re| re.captures(text))
        .or_else(|| RANGE.as_ref().and_then(|re| re.captures(text)))
        .and_then(|c| Some((c[1].parse().ok()?, c[2].parse().ok()?)))?;
    let cpu_percent = capture_number(&PERCENT, text);
    Some(Intent::Autoscale {
        target,
        min,
        max,
        cpu_percent,
    })
}

fn image_in(text: &str) -> Option<String> {
    IMAGE_WITH_TAG
        .as_ref()
        .and_then(|re| re.captures(text))
        .map(|c| c[1].to_owned())
        .filter(|image| !image.chars().all(|c| c.is_ascii_digit() || c == ':'))
        .or_else(|| {
            IMAGE_AFTER.as_ref().and_then(|re| {
                re.captures_iter(text)
                    .map(|c| c[1].trim_end_matches(['.', ',']).to_owned())
                    .find(|w| {
                        is_name(w.rsplit('/').next().unwrap_or(w))
                            && !matches!(w.as_str(), "deployment" | "service" | "app" | "replicas")
                    })
            })
        })
}

fn split_image(image: &str) -> (String, Option<String>) {
    let last_slash = image.rfind('/').map(|i| i + 1).unwrap_or(0);
    match image[last_slash..].split_once(':') {
        Some((_, tag)) => (
            image[..last_slash + image[last_slash..].find(':').unwrap_or(0)].to_owned(),
            Some(tag.to_owned()),
        ),
        None => (image.to_owned(), None),
    }
}

/// A DNS-1123 name from an image: its last path segment without the tag.
pub fn name_from_image(image: &str) -> String {
    let (repository, _) = split_image(image.split('@').next().unwrap_or(image));
    let base = repository.rsplit('/').next().unwrap_or(&repository);
    let cleaned: String = base
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches('-');
    if trimmed.is_empty() {
        "app".to_owned()
    } else {
        trimmed.chars().take(63).collect()
    }
}

fn create_app(text: &str) -> Option<Intent> {
    let mentions_workload =
        text.contains("deployment") || text.contains(" app") || text.contains("workload");
    let image = image_in(text)?;
    if !mentions_workload && !image.contains(':') {
        return None;
    }
    let name = named(text).unwrap_or_else(|| name_from_image(&image));
    let replicas = capture_number(&REPLICAS, text);
    let port = capture_number(&PORT, text);
    let service =
        (text.contains("service") && !text.contains("service account")) || text.contains("expose");
    let ingress_host = has(&INGRESS, text)
        .then(|| {
            HOST.as_ref()
                .and_then(|re| re.captures(text))
                .map(|c| c[1].to_owned())
        })
        .flatten();
    Some(Intent::CreateApp {
        name,
        image,
        replicas,
        port,
        service,
        ingress_host,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_in_every_common_form() {
        assert_eq!(
            namespace_in("scale web to 3 in namespace shop").as_deref(),
            Some("shop")
        );
        assert_eq!(
            namespace_in("restart checkout -n payments").as_deref(),
            Some("payments")
        );
        assert_eq!(
            namespace_in("why is web failing in the shop namespace?").as_deref(),
            Some("shop")
        );
        assert_eq!(
            namespace_in("why is web crash-looping in shop?").as_deref(),
            Some("shop")
        );
        assert_eq!(namespace_in("why is web stuck in pending").as_deref(), None);
        assert_eq!(namespace_in("scale web to 5").as_deref(), None);
    }

    #[test]
    fn the_three_done_when_requests() {
        assert_eq!(
            parse("why is pod web-7d4b9c-x2x7k crash-looping"),
            Some(Intent::Diagnose {
                name: "web-7d4b9c-x2x7k".into()
            })
        );
        assert_eq!(
            parse("scale deployment web to 3 in namespace shop"),
            Some(Intent::Scale {
                kind: "Deployment",
                name: "web".into(),
                replicas: 3
            })
        );
        assert_eq!(
            parse("create a deployment for nginx:1.27 with 2 replicas and a service"),
            Some(Intent::CreateApp {
                name: "nginx".into(),
                image: "nginx:1.27".into(),
                replicas: Some(2),
                port: None,
                service: true,
                ingress_host: None
            })
        );
    }

    #[test]
    fn other_phrasings() {
        assert_eq!(
            parse("scale web to 5"),
            Some(Intent::Scale {
                kind: "Deployment",
                name: "web".into(),
                replicas: 5
            })
        );
        assert_eq!(
            parse("scale statefulset/redis to 1"),
            Some(Intent::Scale {
                kind: "StatefulSet",
                name: "redis".into(),
                replicas: 1
            })
        );
        assert_eq!(
            parse("restart checkout"),
            Some(Intent::Restart {
                kind: "Deployment",
                name: "checkout".into()
            })
        );
        assert_eq!(
            parse("give payments an HPA, 2–10 replicas"),
            Some(Intent::Autoscale {
                target: "payments".into(),
                min: 2,
                max: 10,
                cpu_percent: None
            })
        );
        assert_eq!(
            parse("delete pod web-1"),
            Some(Intent::Delete {
                api_version: "v1",
                kind: "Pod",
                name: "web-1".into()
            })
        );
        assert_eq!(
            parse("delete namespace prod"),
            Some(Intent::DeleteNamespace {
                name: "prod".into()
            })
        );
        assert_eq!(
            parse("who can read secrets in shop?"),
            Some(Intent::ScanRbac)
        );
        assert_eq!(
            parse("scan namespace shop for security issues"),
            Some(Intent::ScanWorkloads)
        );
        assert_eq!(
            parse("why is the api pod pending?"),
            Some(Intent::Diagnose { name: "api".into() })
        );
        assert_eq!(
            parse("create an S3 bucket named backup-storage in us-west-1"),
            Some(Intent::S3Bucket {
                name: "backup-storage".into(),
                region: Some("us-west-1".into())
            })
        );
        assert_eq!(parse("what's the weather like"), None);
        assert_eq!(name_from_image("ghcr.io/acme/Web_API:1.2"), "web-api");
        assert_eq!(
            split_image("registry:5000/acme/web:1.2"),
            ("registry:5000/acme/web".into(), Some("1.2".into()))
        );
    }
}
