//! A sound pre-filter for the Rego guards: it reads the same projection of a review the
//! guards read and says when none of their `violation` rules can possibly hold, so the
//! engine may skip the VM run (tens to hundreds of µs) for the common review that
//! touches no Namespace, no protected namespace and no RBAC. The Rust guards run on
//! every review regardless; this only decides whether the Rego layer has anything to say.
//!
//! # Why skipping is sound
//!
//! Each `violation` rule of `policies/builtin/*.rego` needs at least one of these facts
//! (written as the guards compute them, `norm` being `lib.norm`):
//!
//! | guard rule | needs |
//! |---|---|
//! | no_namespace_deletion: all three | `"namespace" in lib.kinds` |
//! | protected_namespaces: writes in a namespace | `lib.is_write` and a protected `lib.namespaces` |
//! | protected_namespaces: writes to a Namespace | `"namespace" in lib.kinds` |
//! | no_cluster_admin: escalating verb | a verb that is escalate, bind or impersonate |
//! | no_cluster_admin: own RBAC, edits to cluster-admin | a name in `lib.names` that is cluster-admin or starts with an own name |
//! | no_cluster_admin: binding to cluster-admin or to a dangerous inventory role | an object with `roleRef`, and a string in it that is cluster-admin or an inventory holding something |
//! | no_cluster_admin: bindings to system:masters, system:serviceaccounts(:ns), deckhand's ServiceAccount | an object with `subjects` and a string in them starting with `system:` or an own name |
//! | no_cluster_admin: dangerous rules | an object with `rules` and a string in them containing `*` or being an escalating verb |
//! | no_cluster_admin: aggregation rules | an object with `aggregationRule` |
//!
//! [`Prefilter::may_fire`] answers yes when any of these may hold. It over-approximates
//! on purpose: every object counts as both a binding and a role (the guards recognise
//! them by kind *or* content, and every content rule needs the field it reads), every
//! string anywhere inside `roleRef`, `subjects` and `rules` is looked at whatever its
//! place, and an own name matches as a prefix. A "no" from it is therefore a proof that
//! every rule body fails, and running the VM could only have returned empty sets.
//!
//! `norm` is reproduced only for ASCII text, where it is exact: regorus's `lower` and
//! the `invisible` class reduce to removing bytes 0x00–0x20 and 0x7f and lower-casing
//! A–Z. Any non-ASCII character in a string the filter reads (or in the guard
//! configuration) answers yes, so Unicode case folding and invisible characters are
//! always left to the VM. A value of another type than the guards expect is ignored
//! only where the guards ignore it too (`norm` of a non-string is undefined); inside
//! `roleRef`, `subjects` and `rules` every string counts, whatever the shape.
//!
//! The VM could also fail (a timeout, or a function with conflicting outputs) and so
//! deny; the only function that can conflict, `inventory_role`, needs a `roleRef` and
//! an inventory, for which the filter answers yes.
//!
//! Tests run the attack corpus and generated reviews through both paths; the one in
//! this module asserts that whenever the filter says no, the VM's sets are empty.

use serde_json::{Map, Value as Json};

/// Verbs whose presence is a violation on its own.
const ESCALATING_VERBS: [&str; 3] = ["escalate", "bind", "impersonate"];
/// Verbs that are not writes, as `lib.read_verbs`.
const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
/// The namespace the guards protect whatever the configuration says.
const ALWAYS_PROTECTED: &str = "kube-system";
/// The ClusterRole the guards forbid binding to, or editing.
const CLUSTER_ADMIN: &str = "cluster-admin";
/// Every subject name the guards treat specially, except own names, starts so:
/// `system:masters`, `system:serviceaccounts[:ns]`, `system:serviceaccount:ns:name`.
const SYSTEM_PREFIX: &str = "system:";

/// Decides, from the guards' projection of a review, whether the Rego guards could
/// report anything. Built once per engine and inventory.
#[derive(Debug, Clone)]
pub(crate) struct Prefilter {
    /// `None` when the configuration itself is not plain ASCII: then the VM always runs.
    facts: Option<Facts>,
}

/// The configuration as the guards normalise it.
#[derive(Debug, Clone)]
struct Facts {
    /// `protected_namespaces.protected`: the configured ones and kube-system.
    protected: Vec<String>,
    /// The normalised own names; a name starting with one may be deckhand's own.
    own_names: Vec<String>,
    /// Whether `data.inventory` holds any object (bindings are then checked against it).
    inventory_holds_objects: bool,
}

impl Prefilter {
    /// A filter for the guards' configuration (`data.deckhand.config`) and
    /// `data.inventory`, read from the same values the guards are given.
    pub(crate) fn new(config: &Json, inventory: &Json) -> Self {
        Self {
            facts: Facts::read(config, inventory),
        }
    }

    /// Whether some built-in Rego guard may report a violation for this projection of
    /// `input.review`; `false` only when none can (see the module's documentation).
    pub(crate) fn may_fire(&self, review: &Map<String, Json>) -> bool {
        match &self.facts {
            Some(facts) => facts.may_fire(review).unwrap_or(true),
            None => true,
        }
    }
}

impl Facts {
    fn read(config: &Json, inventory: &Json) -> Option<Self> {
        // The guards iterate these lists and skip what `norm` cannot read (non-strings).
        let strings = |field: &str| -> Option<Vec<String>> {
            match config.get(field) {
                Some(Json::Array(items)) => items
                    .iter()
                    .filter_map(Json::as_str)
                    .map(norm)
                    .collect::<Option<Vec<String>>>(),
                None => Some(Vec::new()),
                // Anything else: not what the guards are given; let the VM judge.
                Some(_) => None,
            }
        };
        let mut protected = strings("protected_namespaces")?;
        protected.push(ALWAYS_PROTECTED.to_string());
        let own_names = strings("own_names")?;
        let inventory_holds_objects = ["cluster", "namespace"].iter().any(|scope| match inventory
            .get(scope)
        {
            None | Some(Json::Null) => false,
            Some(Json::Object(entries)) => !entries.is_empty(),
            Some(_) => true,
        });
        Some(Self {
            protected,
            own_names,
            inventory_holds_objects,
        })
    }

    /// Whether a normalised name is, or starts like, an own name (`own_name` in the
    /// guards matches it whole or followed by `-` or `:`; a prefix is looser).
    fn may_be_own(&self, name: &str) -> bool {
        self.own_names
            .iter()
            .any(|own| name.starts_with(own.as_str()))
    }

    /// `Some(false)` when no rule can hold; `None` when a string is not plain ASCII.
    fn may_fire(&self, review: &Map<String, Json>) -> Option<bool> {
        // lib.verbs: norm(verb) and norm(operation), empty ones dropped.
        let mut verbs = Vec::new();
        for field in ["verb", "operation"] {
            if let Some(Json::String(text)) = review.get(field) {
                let verb = norm(text)?;
                if !verb.is_empty() {
                    verbs.push(verb);
                }
            }
        }
        if verbs
            .iter()
            .any(|verb| ESCALATING_VERBS.contains(&verb.as_str()))
        {
            return Some(true);
        }
        let is_write = verbs.is_empty()
            || verbs
                .iter()
                .any(|verb| !READ_VERBS.contains(&verb.as_str()));

        let objects: Vec<&Map<String, Json>> = ["object", "oldObject"]
            .iter()
            .filter_map(|field| review.get(*field).and_then(Json::as_object))
            .collect();

        // "namespace" in lib.kinds, from the four places a kind is read.
        for field in ["kind", "requestKind"] {
            if let Some(Json::String(kind)) = review.get(field).and_then(|gvk| gvk.get("kind")) {
                if norm(kind)? == "namespace" {
                    return Some(true);
                }
            }
        }
        for field in ["resource", "requestResource"] {
            if let Some(Json::String(resource)) =
                review.get(field).and_then(|gvr| gvr.get("resource"))
            {
                let plural = norm(resource.split('/').next().unwrap_or(""))?;
                // kind_of_resource: "ns", or the plural with its trailing "s" trimmed
                // (trimming every trailing "s" here covers either reading of trim_suffix).
                if plural == "ns" || plural.trim_end_matches('s') == "namespace" {
                    return Some(true);
                }
            }
        }
        for object in &objects {
            if let Some(Json::String(kind)) = object.get("kind") {
                if norm(kind)? == "namespace" {
                    return Some(true);
                }
            }
        }

        // lib.namespaces against the protected ones, for writes.
        let metadata = |object: &&Map<String, Json>, field: &str| -> Option<String> {
            object
                .get("metadata")
                .and_then(|metadata| metadata.get(field))
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        let mut namespaces: Vec<String> = Vec::new();
        if let Some(Json::String(namespace)) = review.get("namespace") {
            namespaces.push(namespace.clone());
        }
        namespaces.extend(
            objects
                .iter()
                .filter_map(|object| metadata(object, "namespace")),
        );
        for namespace in &namespaces {
            let namespace = norm(namespace)?;
            if is_write && self.protected.contains(&namespace) {
                return Some(true);
            }
        }

        // lib.names: cluster-admin itself, or deckhand's own objects.
        let mut names: Vec<String> = Vec::new();
        if let Some(Json::String(name)) = review.get("name") {
            names.push(name.clone());
        }
        for object in &objects {
            names.extend(metadata(object, "name"));
            names.extend(metadata(object, "generateName"));
        }
        for name in &names {
            let name = norm(name)?;
            if !name.is_empty() && (name == CLUSTER_ADMIN || self.may_be_own(&name)) {
                return Some(true);
            }
        }

        // Bindings and roles, by content: every object counts as both.
        for object in &objects {
            if object.contains_key("aggregationRule") {
                return Some(true);
            }
            if let Some(role_ref) = object.get("roleRef") {
                if self.inventory_holds_objects || any_string(role_ref, |s| s == CLUSTER_ADMIN)? {
                    return Some(true);
                }
            }
            if let Some(subjects) = object.get("subjects") {
                if any_string(subjects, |s| {
                    s.starts_with(SYSTEM_PREFIX) || self.may_be_own(s)
                })? {
                    return Some(true);
                }
            }
            if let Some(rules) = object.get("rules") {
                if any_string(rules, |s| s.contains('*') || ESCALATING_VERBS.contains(&s))? {
                    return Some(true);
                }
            }
        }
        Some(false)
    }
}

/// `lib.norm` for ASCII text: control characters, space and DEL removed, A–Z lowered.
/// `None` for text with any other character, which only the VM may judge.
fn norm(text: &str) -> Option<String> {
    if !text.is_ascii() {
        return None;
    }
    Some(
        text.bytes()
            .filter(|byte| *byte > b' ' && *byte != 0x7f)
            .map(|byte| char::from(byte.to_ascii_lowercase()))
            .collect(),
    )
}

/// Whether any string anywhere in `value` (array items and object values, at any
/// depth), normalised, satisfies `test`; `None` when one is not plain ASCII. Walks with
/// its own stack, so a deeply nested value cannot exhaust the thread's.
fn any_string(value: &Json, test: impl Fn(&str) -> bool) -> Option<bool> {
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Json::String(text) => {
                if test(&norm(text)?) {
                    return Some(true);
                }
            }
            Json::Array(items) => pending.extend(items),
            Json::Object(fields) => pending.extend(fields.values()),
            Json::Null | Json::Bool(_) | Json::Number(_) => {}
        }
    }
    Some(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builtin;
    use crate::guards::GuardConfig;
    use crate::inventory::Inventory;
    use crate::request::AdmissionRequest;
    use crate::review;
    use serde_json::json;

    /// The Rego guards as the engine runs them, with the filter the engine would use.
    struct Setup {
        program: crate::rego::CompiledRule,
        data: regorus::Value,
        prefilter: Prefilter,
    }

    impl Setup {
        fn new(config: &GuardConfig, inventory: &Inventory) -> Self {
            let config = config.to_data();
            Self {
                program: builtin::compile_combined().expect("the guards compile"),
                data: regorus::Value::from(json!({
                    "deckhand": {"config": config},
                    "inventory": inventory.gatekeeper_data(),
                })),
                prefilter: Prefilter::new(&config, inventory.gatekeeper_data()),
            }
        }

        /// For each review of the request: whether the filter lets the VM run, and
        /// what the VM reports (every guard's messages, or its error).
        fn judge(&self, request: &AdmissionRequest) -> Vec<(bool, Result<Vec<String>, String>)> {
            let Ok(reviews) = review::expand(request) else {
                return Vec::new();
            };
            reviews
                .iter()
                .map(|review| {
                    let projection = builtin::projection(review);
                    let may_fire = self.prefilter.may_fire(&projection);
                    let outcome = self
                        .program
                        .evaluate(
                            &builtin::input(projection),
                            &self.data,
                            std::time::Duration::from_secs(10),
                        )
                        .and_then(|result| builtin::messages(result.as_ref()))
                        .map(|by_guard| {
                            by_guard
                                .into_iter()
                                .flat_map(|(_, messages)| messages)
                                .collect()
                        });
                    (may_fire, outcome)
                })
                .collect()
        }
    }

    fn request(value: Json) -> AdmissionRequest {
        AdmissionRequest::from_value(value).expect("request")
    }

    #[test]
    fn common_reviews_skip_the_vm() {
        let setup = Setup::new(&GuardConfig::default(), &Inventory::default());
        let skipped = [
            json!({"verb": "get", "kind": {"kind": "Pod"}, "namespace": "shop", "name": "web"}),
            json!({"verb": "get", "kind": {"kind": "Pod"}, "namespace": "kube-system", "name": "dns"}),
            json!({"verb": "create", "operation": "CREATE", "namespace": "shop",
                   "object": {"apiVersion": "apps/v1", "kind": "Deployment",
                              "metadata": {"name": "web", "namespace": "shop"},
                              "spec": {"replicas": 3}}}),
            json!({"verb": "create", "operation": "CREATE", "namespace": "shop",
                   "object": {"kind": "RoleBinding", "metadata": {"name": "devs-view"},
                              "roleRef": {"kind": "ClusterRole", "name": "view"},
                              "subjects": [{"kind": "Group", "name": "devs"},
                                           {"kind": "ServiceAccount", "name": "ci", "namespace": "shop"}]}}),
            json!({"verb": "create", "namespace": "shop",
                   "object": {"kind": "Role", "metadata": {"name": "reader"},
                              "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}}),
        ];
        for value in skipped {
            let judged = setup.judge(&request(value.clone()));
            assert!(!judged.is_empty());
            for (may_fire, outcome) in judged {
                assert!(!may_fire, "{value}");
                assert_eq!(outcome, Ok(Vec::new()), "{value}");
            }
        }
    }

    #[test]
    fn risky_reviews_run_the_vm() {
        let setup = Setup::new(&GuardConfig::default(), &Inventory::default());
        let run = [
            // Each would be denied, or is close enough that only the VM may say no.
            json!({"verb": "delete", "kind": {"kind": "Namespace"}, "name": "shop"}),
            json!({"verb": "delete", "resource": {"resource": "ns"}, "name": "shop"}),
            json!({"verb": "create", "namespace": "Kube-System ", "kind": {"kind": "Pod"}}),
            json!({"verb": "create", "namespace": "\u{212a}ube-system", "kind": {"kind": "Pod"}}),
            json!({"verb": "impersonate", "kind": {"kind": "User"}}),
            json!({"verb": "update", "kind": {"kind": "ServiceAccount"}, "namespace": "shop", "name": "deckhand"}),
            json!({"verb": "create", "object": {"kind": "ConfigMap", "roleRef": {"name": ["Cluster-Admin"]}}}),
            json!({"verb": "create", "object": {"kind": "RoleBinding", "subjects": {"name": "SYSTEM:masters"}}}),
            json!({"verb": "create", "object": {"kind": "Role", "rules": [{"verbs": "*"}]}}),
            json!({"verb": "create", "object": {"kind": "ClusterRole", "aggregationRule": {}}}),
            json!({"verb": "create", "object": {"kind": "RoleBinding", "metadata": {"name": "b"},
                   "roleRef": {"kind": "ClusterRole", "name": "vi\u{200b}ew"}}}),
        ];
        for value in run {
            for (may_fire, _) in setup.judge(&request(value.clone())) {
                assert!(may_fire, "{value}");
            }
        }
    }

    #[test]
    fn an_inventory_makes_every_binding_run_the_vm() {
        let inventory = Inventory::new(vec![json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "everything"},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        })]);
        let setup = Setup::new(&GuardConfig::default(), &inventory);
        let binding = request(json!({"verb": "create", "namespace": "shop",
            "object": {"kind": "RoleBinding", "metadata": {"name": "b"},
                       "roleRef": {"kind": "ClusterRole", "name": "everything"},
                       "subjects": [{"kind": "User", "name": "alice"}]}}));
        let judged = setup.judge(&binding);
        assert!(judged.iter().all(|(may_fire, _)| *may_fire));
        assert!(judged
            .iter()
            .any(|(_, outcome)| outcome.as_ref().is_ok_and(|m| !m.is_empty())));
    }

    #[test]
    fn a_configuration_beyond_ascii_always_runs_the_vm() {
        let config = GuardConfig::default().protect_namespace("prod\u{e9}");
        let setup = Setup::new(&config, &Inventory::default());
        let read = request(json!({"verb": "get", "kind": {"kind": "Pod"}, "namespace": "shop"}));
        assert!(setup.judge(&read).iter().all(|(may_fire, _)| *may_fire));
    }

    #[test]
    fn norm_agrees_with_the_guards_on_ascii_and_refuses_the_rest() {
        assert_eq!(
            norm(" Kube-\tSystem\u{7f}\u{0}").as_deref(),
            Some("kube-system")
        );
        assert_eq!(norm("kube\u{200b}-system"), None);
        assert_eq!(norm("\u{212a}ube-system"), None);
    }

    /// A small deterministic generator (xorshift), so the property test needs no crate
    /// and a failure names a reproducible case.
    struct Random(u64);

    impl Random {
        fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            &items[(self.0 % items.len() as u64) as usize]
        }

        /// Mostly the first `benign` items (nothing to deny there), sometimes any, so
        /// generated reviews land on both sides of the filter.
        fn pick_mostly<'a, T>(&mut self, items: &'a [T], benign: usize) -> &'a T {
            if *self.pick(&[true, true, true, false]) {
                self.pick(&items[..benign])
            } else {
                self.pick(items)
            }
        }
    }

    const KINDS: &[Option<&str>] = &[
        None,
        Some("Pod"),
        Some("Deployment"),
        Some("Namespace"),
        Some("NAMESPACE"),
        Some("Name\u{200b}space"),
        Some(" namespace"),
        Some("RoleBinding"),
        Some("ClusterRoleBinding"),
        Some("Role"),
        Some("ClusterRole"),
        Some("ServiceAccount"),
        Some("Scale"),
        Some("ConfigMap"),
        Some("\u{ff2e}amespace"),
        Some(""),
    ];
    const RESOURCES: &[Option<&str>] = &[
        None,
        Some("pods"),
        Some("deployments"),
        Some("namespaces"),
        Some("ns"),
        Some("NS"),
        Some("Namespaces"),
        Some("namespaces/finalize"),
        Some("namespace\u{ad}s"),
        Some("rolebindings"),
        Some("clusterroles"),
        Some("serviceaccounts"),
        Some("sa"),
        Some("pods/exec"),
        Some("deployments/scale"),
        Some("namespacess"),
    ];
    const SUBRESOURCES: &[Option<&str>] = &[
        None,
        Some("status"),
        Some("scale"),
        Some("finalize"),
        Some("Finalize "),
        Some("exec"),
    ];
    const VERBS: &[Option<&str>] = &[
        None,
        Some("get"),
        Some("list"),
        Some("watch"),
        Some("create"),
        Some("update"),
        Some("patch"),
        Some("delete"),
        Some("deletecollection"),
        Some("escalate"),
        Some("bind"),
        Some("impersonate"),
        Some("GET"),
        Some(" Delete"),
        Some("get\u{200b}"),
        Some("\u{ff47}et"),
        Some("Bind"),
        Some(""),
        Some("LIST\t"),
    ];
    const OPERATIONS: &[Option<&str>] = &[
        None,
        None,
        None,
        Some("CREATE"),
        Some("UPDATE"),
        Some("DELETE"),
        Some("CONNECT"),
        Some("delete"),
        Some("\u{ff24}elete"),
    ];
    const NAMESPACES: &[Option<&str>] = &[
        None,
        Some("shop"),
        Some("team-a"),
        Some("kube-system"),
        Some("Kube-System"),
        Some(" kube-system\u{200b}"),
        Some("kube\u{ad}system"),
        Some("kube-public"),
        Some("kube-node-lease"),
        Some("deckhand"),
        Some("DECKHAND"),
        Some("ops"),
        Some("kube-s\u{443}stem"),
        Some(""),
        Some("\u{212a}ube-system"),
        Some("kube-systems"),
    ];
    const NAMES: &[Option<&str>] = &[
        None,
        Some("web"),
        Some("deckhand"),
        Some("Deckhand-x"),
        Some("deckhand:sa"),
        Some("cluster-admin"),
        Some("Cluster-Admin "),
        Some("cluster\u{200b}-admin"),
        Some("\u{3a3}\u{391}"),
        Some("deck"),
        Some("x-deckhand"),
        Some("bot-1"),
        Some("kube-system"),
        Some("\u{212a}ube-public"),
    ];

    /// Objects (and old objects) with the contents the guards read, benign and not.
    fn objects() -> Vec<Option<Json>> {
        vec![
            None,
            Some(json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "shop"}})),
            Some(json!({"apiVersion": "apps/v1", "kind": "Deployment",
                        "metadata": {"name": "web"}, "spec": {"replicas": 2}})),
            Some(json!({"kind": "Namespace", "metadata": {"name": "shop"}})),
            Some(json!({"kind": "Pod", "metadata": {"namespace": "Kube-System"}})),
            Some(json!({"kind": "Pod", "metadata": {"namespace": "kube-sy\u{200b}stem"}})),
            Some(json!({"kind": "ServiceAccount", "metadata": {"generateName": "deckhand-"}})),
            Some(
                json!({"kind": "RoleBinding", "metadata": {"name": "v", "namespace": "shop"},
                        "roleRef": {"kind": "ClusterRole", "name": "view"},
                        "subjects": [{"kind": "Group", "name": "devs"}]}),
            ),
            Some(
                json!({"kind": "ClusterRoleBinding", "metadata": {"name": "a"},
                        "roleRef": {"kind": "ClusterRole", "name": "Cluster-Admin"},
                        "subjects": [{"kind": "User", "name": "alice"}]}),
            ),
            Some(json!({"roleRef": {"name": ["cluster-admin"]}})),
            Some(json!({"roleRef": {"name": "cluster\u{feff}-admin"}})),
            Some(json!({"kind": "RoleBinding", "roleRef": {"name": "edit"},
                        "subjects": [{"kind": "Group", "name": " System:Masters"}]})),
            Some(json!({"kind": "RoleBinding", "roleRef": {"name": "edit"},
                        "subjects": {"kind": "Group", "name": "system:serviceaccounts:deckhand"}})),
            Some(json!({"kind": "RoleBinding", "roleRef": {"name": "edit"},
                        "subjects": [{"kind": "ServiceAccount", "name": "Deckhand", "namespace": "deckhand"}]})),
            Some(json!({"kind": "RoleBinding", "roleRef": {"name": "edit"},
                        "subjects": [{"kind": "ServiceAccount", "name": "deckhand"}]})),
            Some(json!({"kind": "RoleBinding", "roleRef": null, "subjects": "system:masters"})),
            Some(json!({"kind": "Role", "rules": [{"resources": ["pods"], "verbs": ["get"]}]})),
            Some(json!({"kind": "Role", "rules": [{"resources": ["pods"], "verbs": ["*"]}]})),
            Some(json!({"kind": "Role", "rules": {"resources": "secrets", "verbs": " BIND"}})),
            Some(json!({"kind": "Role", "rules": [{"resources": ["*"], "verbs": "get"}]})),
            Some(
                json!({"kind": "Role", "rules": [{"resources": ["pods"], "verbs": ["\u{130}mpersonate"]}]}),
            ),
            Some(json!({"kind": "ClusterRole", "aggregationRule": {"clusterRoleSelectors": [{}]}})),
            Some(
                json!({"kind": "ClusterRole", "aggregationRule": {"clusterRoleSelectors": [
                {"matchLabels": {"team": "a"}}]}}),
            ),
            Some(json!({"kind": 7, "metadata": {"name": 3, "namespace": ["kube-system"]}})),
            Some(json!({"kind": "List", "items": [
                {"kind": "Pod", "metadata": {"name": "a"}},
                {"kind": "RoleBinding", "roleRef": {"name": "cluster-admin"}},
                {"kind": "Pod", "metadata": {"name": "b", "namespace": "kube-system"}}]})),
            Some(json!("not an object")),
        ]
    }

    fn generated_request(random: &mut Random, objects: &[Option<Json>]) -> Json {
        let mut request = Map::new();
        let mut put = |field: &str, value: Option<Json>| {
            if let Some(value) = value {
                request.insert(field.to_string(), value);
            }
        };
        put(
            "kind",
            random
                .pick_mostly(KINDS, 3)
                .map(|kind| json!({"kind": kind})),
        );
        put(
            "resource",
            random
                .pick_mostly(RESOURCES, 3)
                .map(|resource| json!({"resource": resource})),
        );
        put(
            "subResource",
            random.pick_mostly(SUBRESOURCES, 3).map(Json::from),
        );
        put("verb", random.pick_mostly(VERBS, 8).map(Json::from));
        put(
            "operation",
            random.pick_mostly(OPERATIONS, 5).map(Json::from),
        );
        put(
            "namespace",
            random.pick_mostly(NAMESPACES, 3).map(Json::from),
        );
        put("name", random.pick_mostly(NAMES, 2).map(Json::from));
        put("object", random.pick_mostly(objects, 3).clone());
        put("oldObject", random.pick_mostly(objects, 3).clone());
        Json::Object(request)
    }

    /// The filter's promise, over generated reviews: whenever it lets the VM be skipped,
    /// the VM would have reported nothing and failed in nothing. Run under three
    /// configurations and inventories; also checks both outcomes are well exercised.
    #[test]
    fn whenever_the_filter_skips_the_vm_reports_nothing() {
        let dangerous_role = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "edit", "labels": {"team": "a"}},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}],
        });
        let setups = [
            Setup::new(&GuardConfig::default(), &Inventory::default()),
            Setup::new(
                &GuardConfig::default()
                    .own_namespace("Ops")
                    .own_name("bot")
                    .protect_namespace("shop"),
                &Inventory::default(),
            ),
            Setup::new(
                &GuardConfig::default(),
                &Inventory::new(vec![dangerous_role]),
            ),
        ];
        let objects = objects();
        let mut random = Random(0x9e37_79b9_7f4a_7c15);
        let (mut skipped, mut ran, mut fired) = (0, 0, 0);
        for round in 0..2_000 {
            let value = generated_request(&mut random, &objects);
            let Ok(request) = AdmissionRequest::from_value(value.clone()) else {
                continue;
            };
            for (index, setup) in setups.iter().enumerate() {
                for (may_fire, outcome) in setup.judge(&request) {
                    if may_fire {
                        ran += 1;
                        if !matches!(&outcome, Ok(messages) if messages.is_empty()) {
                            fired += 1;
                        }
                    } else {
                        skipped += 1;
                        assert_eq!(
                            outcome,
                            Ok(Vec::new()),
                            "round {round}, setup {index}: the filter skipped {value}"
                        );
                    }
                }
            }
        }
        assert!(
            skipped > 500 && ran > 500 && fired > 500,
            "skipped {skipped}, ran {ran}, fired {fired}"
        );
    }
}
