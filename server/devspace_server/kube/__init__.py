"""Pure builders for the Kubernetes objects that make up a space.

Each module covers one object family and holds `make_*()` functions that take a typed
desired state (`spec.SpaceSpec`, `spec.ClusterSettings`) and return `kubernetes.client.V1*`
objects. They call nothing: no API, no clock, no randomness, so the same input always gives the
same manifest, and the reconciler can apply them again and again. `space.make_space_objects`
lists everything one space needs, in the order it is applied.
"""
