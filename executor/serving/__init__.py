"""Model serving: endpoints and their rolling updates (``endpoints.py``) and the invocation router (``router.py``); the HTTP side is api/endpoints.py and api/invocations.py."""
