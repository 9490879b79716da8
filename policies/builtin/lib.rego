# Shared helpers of deckhand's built-in guards: the facts every guard compares, read
# from input.review and normalised the same way the Rust guards normalise them
# (lower case, no whitespace, no invisible characters), so "Kube-System\u200b" is
# kube-system here too.
package deckhand.builtin.lib

review := input.review

# Whitespace, control and zero-width / formatting characters that render as nothing,
# as explicit code point ranges (regorus's regex has no Unicode class tables): the same
# set the Rust guards remove.
invisible := `[\x{0}-\x{20}\x{7f}-\x{a0}\x{ad}\x{34f}\x{61c}\x{115f}\x{1160}\x{1680}\x{17b4}\x{17b5}\x{180b}-\x{180e}\x{2000}-\x{200f}\x{2028}-\x{202f}\x{205f}-\x{206f}\x{3000}\x{fe00}-\x{fe0f}\x{feff}]`

# Characters that can never be invisible: text made only of these needs no regex (the
# common case, and the regex is most of a decision's cost when it runs).
plain := "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.:_/@"

norm(text) := lower(text) if {
	trim(text, plain) == ""
} else := lower(regex.replace(text, invisible, ""))

# A field that should be one string, or a list of strings: both are read, so
# ["cluster-admin"] does not slip past a check for "cluster-admin".
strings_in(value) := {norm(value)} if is_string(value)

strings_in(value) := {norm(item) | some item in value; is_string(item)} if is_array(value)

verbs contains verb if {
	verb := norm(review.verb)
	verb != ""
}

verbs contains verb if {
	verb := norm(review.operation)
	verb != ""
}

read_verbs := {"get", "list", "watch"}

# A request that names no verb may be anything, so it counts as a write.
is_write if count(verbs) == 0

is_write if {
	some verb in verbs
	not verb in read_verbs
}

objects contains review.object if is_object(review.object)

objects contains review.oldObject if is_object(review.oldObject)

kind_of_resource(resource) := "namespace" if norm(split(resource, "/")[0]) == "ns"

kind_of_resource(resource) := "serviceaccount" if norm(split(resource, "/")[0]) == "sa"

kind_of_resource(resource) := trim_suffix(plural, "s") if {
	plural := norm(split(resource, "/")[0])
	not plural in {"ns", "sa"}
}

kinds contains kind if {
	some field in ["kind", "requestKind"]
	kind := norm(review[field].kind)
	kind != ""
}

kinds contains kind if {
	some field in ["resource", "requestResource"]
	kind := kind_of_resource(review[field].resource)
	kind != ""
}

kinds contains kind if {
	some object in objects
	kind := norm(object.kind)
	kind != ""
}

subresources contains subresource if {
	some field in ["subResource", "requestSubResource"]
	subresource := norm(review[field])
	subresource != ""
}

subresources contains subresource if {
	some field in ["resource", "requestResource"]
	subresource := norm(split(review[field].resource, "/")[1])
	subresource != ""
}

namespaces contains namespace if {
	namespace := norm(review.namespace)
	namespace != ""
}

namespaces contains namespace if {
	some object in objects
	namespace := norm(object.metadata.namespace)
	namespace != ""
}

names contains name if {
	name := norm(review.name)
	name != ""
}

names contains name if {
	some object in objects
	some field in ["name", "generateName"]
	name := norm(object.metadata[field])
	name != ""
}
