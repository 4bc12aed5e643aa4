"""The statuses of jobs, endpoints and scoring servers: the store, the API, its schema, the CLI
and the benchmarks all take them from here."""

JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "timed_out")
FINAL = ("succeeded", "failed", "cancelled", "timed_out")  # a job in one of these never changes again
REPORTED_STATUSES = ("succeeded", "failed")  # the only ends a job may report of itself
ENDPOINT_STATUSES = ("starting", "ready", "updating", "failed")
SERVER_STATUSES = ("starting", "ready", "failed")
