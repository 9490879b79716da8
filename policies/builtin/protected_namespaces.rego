# Built-in guard: no write of any kind in a protected namespace, nor to the protected
# Namespace objects themselves. kube-system is protected whatever the configuration says.
package deckhand.builtin.protected_namespaces

import data.deckhand.builtin.lib

protected := {lib.norm(namespace) | some namespace in data.deckhand.config.protected_namespaces} | {"kube-system"}

violation contains {"msg": sprintf("no writes in the protected namespace %s", [namespace])} if {
	lib.is_write
	some namespace in lib.namespaces
	namespace in protected
}

violation contains {"msg": sprintf("no writes to the protected Namespace %s", [name])} if {
	lib.is_write
	"namespace" in lib.kinds
	some name in lib.names
	name in protected
}
