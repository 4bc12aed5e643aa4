"""Names users choose that end up in URLs and Kubernetes objects."""

# An endpoint's name: a DNS label (it names Kubernetes objects and URL paths). One spelling valid
# in Python's re, Rust's regex (pydantic), and JavaScript with the `v` flag, which browsers use
# for an HTML input's `pattern`: there a `-` in a class must be escaped. The Models panel's form
# gets this very string from its server (GET /notebench/models/context).
ENDPOINT_NAME = r"[a-z0-9][a-z0-9\-]{0,62}"
