# Built-in guard: nothing deckhand does may grant cluster-admin or its equivalents:
# bindings to cluster-admin (or to a role the inventory shows granting as much), roles
# with wildcard verbs or resources or with escalate / bind / impersonate, bindings to
# system:masters, aggregation rules pulling such rights in, and any edit to deckhand's
# own RBAC or ServiceAccount (or new rights for it).
package deckhand.builtin.no_cluster_admin

import data.deckhand.builtin.lib

escalating := {"escalate", "bind", "impersonate"}

binding_kinds := {"rolebinding", "clusterrolebinding"}

role_kinds := {"role", "clusterrole"}

identity_kinds := {"role", "clusterrole", "rolebinding", "clusterrolebinding", "serviceaccount"}

bootstrap_label := "kubernetes.io/bootstrapping"

own_namespace := lib.norm(data.deckhand.config.own_namespace)

own_name(name) if {
	some own in data.deckhand.config.own_names
	name == lib.norm(own)
}

own_name(name) if {
	some own in data.deckhand.config.own_names
	some separator in ["-", ":"]
	startswith(name, concat("", [lib.norm(own), separator]))
}

violation contains {"msg": sprintf("the %s verb grants rights beyond one's own", [verb])} if {
	some verb in lib.verbs
	verb in escalating
}

violation contains {"msg": sprintf("no edits to deckhand's own RBAC or ServiceAccount (%s)", [name])} if {
	lib.is_write
	some kind in lib.kinds
	kind in identity_kinds
	some name in lib.names
	own_name(name)
}

violation contains {"msg": "no edits to cluster-admin"} if {
	lib.is_write
	some kind in lib.kinds
	kind in {"clusterrole", "clusterrolebinding"}
	"cluster-admin" in lib.names
}

# Bindings and roles are recognised by their content as well as their kind, so a
# request that lies about its kind is still judged.
bindings contains object if {
	lib.is_write
	some object in lib.objects
	some field in ["roleRef", "subjects"]
	_ = object[field]
}

bindings contains object if {
	lib.is_write
	some object in lib.objects
	lib.norm(object.kind) in binding_kinds
}

bindings contains object if {
	lib.is_write
	some object in lib.objects
	not object.kind
	some kind in lib.kinds
	kind in binding_kinds
}

roles contains object if {
	lib.is_write
	some object in lib.objects
	some field in ["rules", "aggregationRule"]
	_ = object[field]
}

roles contains object if {
	lib.is_write
	some object in lib.objects
	lib.norm(object.kind) in role_kinds
}

roles contains object if {
	lib.is_write
	some object in lib.objects
	not object.kind
	some kind in lib.kinds
	kind in role_kinds
}

as_list(value) := value if is_array(value)

as_list(value) := [value] if is_object(value)

rules_of(role) := as_list(role.rules)

dangerous_reasons(role) := reasons if {
	wildcard_verbs := {sprintf("a rule grants the wildcard verb %q", [verb]) |
		some rule in rules_of(role)
		some verb in lib.strings_in(rule.verbs)
		contains(verb, "*")
	}
	escalating_verbs := {sprintf("a rule grants the %s verb", [verb]) |
		some rule in rules_of(role)
		some verb in lib.strings_in(rule.verbs)
		verb in escalating
	}
	wildcard_resources := {sprintf("a rule grants the wildcard resource %q", [resource]) |
		some rule in rules_of(role)
		some resource in lib.strings_in(rule.resources)
		contains(resource, "*")
	}
	reasons := (wildcard_verbs | escalating_verbs) | wildcard_resources
}

dangerous(role) if count(dangerous_reasons(role)) > 0

# --- bindings ---

violation contains {"msg": "no binding to cluster-admin"} if {
	some binding in bindings
	"cluster-admin" in lib.strings_in(binding.roleRef.name)
}

binds_cluster_role(binding) if not binding.roleRef.kind

binds_cluster_role(binding) if lib.norm(binding.roleRef.kind) == "clusterrole"

inventory_role(binding, name) := role if {
	binds_cluster_role(binding)
	some group_version, kind, role_name
	role := data.inventory.cluster[group_version][kind][role_name]
	lib.norm(kind) == "clusterrole"
	lib.norm(role_name) == name
}

inventory_role(binding, name) := role if {
	not binds_cluster_role(binding)
	some namespace, group_version, kind, role_name
	role := data.inventory.namespace[namespace][group_version][kind][role_name]
	lib.norm(kind) == "role"
	lib.norm(namespace) == lib.norm(binding.metadata.namespace)
	lib.norm(role_name) == name
}

violation contains {"msg": sprintf("no binding to %s: it grants cluster-admin-like rights", [name])} if {
	some binding in bindings
	some name in lib.strings_in(binding.roleRef.name)
	name != "cluster-admin"
	dangerous(inventory_role(binding, name))
}

subjects_of(binding) := as_list(binding.subjects)

violation contains {"msg": "no binding to the system:masters group"} if {
	some binding in bindings
	some subject in subjects_of(binding)
	"system:masters" in lib.strings_in(subject.name)
}

violation contains {"msg": sprintf("no binding to %s, which includes deckhand's own ServiceAccount", [name])} if {
	some binding in bindings
	some subject in subjects_of(binding)
	some name in lib.strings_in(subject.name)
	name in {"system:serviceaccounts", concat("", ["system:serviceaccounts:", own_namespace])}
}

violation contains {"msg": sprintf("no new rights for deckhand's own ServiceAccount (%s)", [name])} if {
	some binding in bindings
	some subject in subjects_of(binding)
	some name in lib.strings_in(subject.name)
	prefix := concat("", ["system:serviceaccount:", own_namespace, ":"])
	startswith(name, prefix)
	own_name(trim_prefix(name, prefix))
}

subject_namespace(subject, binding) := lib.norm(subject.namespace) if {
	is_string(subject.namespace)
} else := lib.norm(binding.metadata.namespace) if {
	is_string(binding.metadata.namespace)
} else := lib.norm(input.review.namespace) if {
	is_string(input.review.namespace)
} else := own_namespace

violation contains {"msg": sprintf("no new rights for deckhand's own ServiceAccount (%s)", [name])} if {
	some binding in bindings
	some subject in subjects_of(binding)
	"serviceaccount" in lib.strings_in(subject.kind)
	some name in lib.strings_in(subject.name)
	own_name(name)
	subject_namespace(subject, binding) == own_namespace
}

# --- roles ---

violation contains {"msg": sprintf("no role with cluster-admin-like rights: %s", [reason])} if {
	some role in roles
	some reason in dangerous_reasons(role)
}

violation contains {"msg": "an aggregation rule without readable clusterRoleSelectors"} if {
	some role in roles
	_ = role.aggregationRule
	not is_array(role.aggregationRule.clusterRoleSelectors)
}

selectors_of(role) := role.aggregationRule.clusterRoleSelectors if is_array(role.aggregationRule.clusterRoleSelectors)

has_entries(value) if count(value) > 0

violation contains {"msg": "an aggregation rule selecting every ClusterRole"} if {
	some role in roles
	some selector in selectors_of(role)
	not has_entries(selector.matchLabels)
	not has_entries(selector.matchExpressions)
}

violation contains {"msg": sprintf("an aggregation rule selecting the bootstrap roles (%s), cluster-admin among them", [bootstrap_label])} if {
	some role in roles
	some selector in selectors_of(role)
	some key, _ in selector.matchLabels
	lib.norm(key) == bootstrap_label
}

violation contains {"msg": sprintf("an aggregation rule selecting the bootstrap roles (%s), cluster-admin among them", [bootstrap_label])} if {
	some role in roles
	some selector in selectors_of(role)
	some expression in selector.matchExpressions
	lib.norm(expression.key) == bootstrap_label
}

expression_matches(expression, labels) if {
	expression.operator == "In"
	labels[expression.key] in expression.values
}

expression_matches(expression, labels) if {
	expression.operator == "NotIn"
	not labels[expression.key] in expression.values
}

expression_matches(expression, labels) if {
	expression.operator == "Exists"
	_ = labels[expression.key]
}

expression_matches(expression, labels) if {
	expression.operator == "DoesNotExist"
	not labels[expression.key]
}

# An operator the guard cannot read selects everything: over-approximate.
expression_matches(expression, _) if not expression.operator in {"In", "NotIn", "Exists", "DoesNotExist"}

selector_matches(selector, labels) if {
	every key, value in object.get(selector, "matchLabels", {}) {
		labels[key] == value
	}
	every expression in object.get(selector, "matchExpressions", []) {
		expression_matches(expression, labels)
	}
}

# The inventory's ClusterRoles a role's aggregation rule selects, as [name, role] pairs.
aggregated(role) := {[role_name, candidate] |
	some selector in selectors_of(role)
	some group_version, kind, role_name
	candidate := data.inventory.cluster[group_version][kind][role_name]
	lib.norm(kind) == "clusterrole"
	selector_matches(selector, object.get(candidate.metadata, "labels", {}))
}

violation contains {"msg": "an aggregation rule pulling in cluster-admin"} if {
	some role in roles
	some [role_name, _] in aggregated(role)
	lib.norm(role_name) == "cluster-admin"
}

violation contains {"msg": sprintf("an aggregation rule pulling in %s: it grants cluster-admin-like rights", [role_name])} if {
	some role in roles
	some [role_name, candidate] in aggregated(role)
	dangerous(candidate)
}
