# Example user policy in plain Rego v1: images must name a version; ":latest" (or no tag
# at all) means the cluster runs whatever was pushed last. Images from the team's own
# registry without a digest only get a warning.
package examples.no_latest_tag

containers contains container if {
	some container in input.review.object.spec.containers
}

containers contains container if {
	some container in input.review.object.spec.template.spec.containers
}

image_name(image) := name if {
	parts := split(image, "/")
	name := parts[count(parts) - 1]
}

deny contains sprintf("container %s uses the :latest tag (%s)", [container.name, container.image]) if {
	some container in containers
	endswith(container.image, ":latest")
}

deny contains sprintf("container %s names no tag (%s)", [container.name, container.image]) if {
	some container in containers
	not contains(image_name(container.image), ":")
	not contains(container.image, "@")
}

warn contains sprintf("container %s is not pinned by digest (%s)", [container.name, container.image]) if {
	some container in containers
	startswith(container.image, "registry.example.com/")
	not contains(container.image, "@sha256:")
}
