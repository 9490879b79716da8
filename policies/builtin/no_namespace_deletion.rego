# Built-in guard: no Namespace is ever deleted, whatever the route (delete,
# deletecollection, or its finalize subresource, which can empty it).
package deckhand.builtin.no_namespace_deletion

import data.deckhand.builtin.lib

violation contains {"msg": "deleting a Namespace is never allowed"} if {
	"namespace" in lib.kinds
	some verb in {"delete", "deletecollection"}
	verb in lib.verbs
}

violation contains {"msg": "writing a Namespace's finalize subresource (which can empty it) is never allowed"} if {
	"namespace" in lib.kinds
	lib.is_write
	"finalize" in lib.subresources
}

violation contains {"msg": "an operation on a Namespace must say its verb or operation"} if {
	"namespace" in lib.kinds
	count(lib.verbs) == 0
}
