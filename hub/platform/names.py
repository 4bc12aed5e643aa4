"""Names users choose that end up in URLs and Kubernetes objects."""

# An endpoint's name: a DNS label (it names Kubernetes objects and URL paths).
ENDPOINT_NAME = r"[a-z0-9][a-z0-9-]{0,62}"
