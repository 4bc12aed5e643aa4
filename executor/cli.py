"""`notebench jobs …`: submit and follow notebook jobs from a terminal (being written)."""


def add_jobs_commands(subparsers) -> None:
    jobs = subparsers.add_parser("jobs", help="submit and follow notebook jobs")
    jobs.add_subparsers(dest="jobs_command", required=True)
