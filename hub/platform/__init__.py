"""Platform primitives the hub and the executor share: profiles, GPU leases, OS accounts, cgroup
limits, scopes, the environment of servers and jobs, hub-service authentication, statuses.

Nothing here imports an authenticator, a spawner or the executor: both sides import this, never
the other way round (tests/unit/test_layers.py keeps it so).
"""
