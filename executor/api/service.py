"""The service's own paths: what a job may ask for (profiles, kernels), the OpenAPI document, health."""

from __future__ import annotations

import json

from tornado import web

from notebench.executor.api.base import APIHandler
from notebench.executor.schemas import ProfileInfo, ProfilesResponse


class ProfilesHandler(APIHandler):
    """What a job may ask for: the hub's profiles and the kernels installed (the panel's pickers)."""

    async def get(self):
        default = self.app.profiles.get(None).name
        profiles = [
            ProfileInfo(name=p.name, display_name=p.display_name, description=p.description, gpus=p.gpus,
                        cpu_limit=p.cpu_limit, mem_limit=p.mem_limit, default=p.name == default)
            for p in self.app.profiles.all()
        ]
        self.write_json(ProfilesResponse(profiles=profiles, kernels=sorted(self.app.kernel_names())))
        # Asked for by the job form: a job is likely to follow, let it start on a warm kernel.
        self.app.dispatcher.tasks.start(self.app.dispatcher.prewarm(self.user_name))


class OpenAPIHandler(APIHandler):
    async def get(self):
        from notebench.executor.api.openapi import spec

        self.write_json(spec(self.settings["prefix"]))


class HealthHandler(web.RequestHandler):
    def get(self):
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"status": "ok"}))
