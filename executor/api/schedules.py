"""Schedules: cron-timed job templates of a user (the loop that submits them: schedules/)."""

from __future__ import annotations

import sqlalchemy as sa

from notebench.executor.api.base import APIHandler
from notebench.executor.db import PromotionDecision, Schedule
from notebench.executor.errors import NotebenchError
from notebench.executor.schedules.cron import next_run
from notebench.executor.schedules.promotion import check_policy
from notebench.executor.schemas import (
    PromotionDecisionPage,
    PromotionDecisionResponse,
    ScheduleList,
    SchedulePatch,
    ScheduleRequest,
    ScheduleResponse,
)


class SchedulesHandler(APIHandler):
    async def get(self):
        q = sa.select(Schedule).order_by(Schedule.id)
        if not self.is_admin:
            q = q.where(Schedule.owner == self.user_name)
        with self.app.sessions() as s:
            schedules = s.scalars(q).all()
        self.write_json(ScheduleList(schedules=[ScheduleResponse.of(x) for x in schedules]))

    async def post(self):
        request = self.parse(ScheduleRequest)
        try:
            self.app.dispatcher.resolve(self.user_name, request.job)
        except NotebenchError as e:
            raise e.within("job") from None
        if request.promotion is not None:
            await check_policy(self.app, self.user_name, request.promotion)
        schedule = Schedule(
            owner=self.user_name,
            name=request.name,
            cron=request.cron,
            timezone=request.timezone,
            active=request.active,
            job_template=request.job.model_dump(),
            promotion=request.promotion.model_dump() if request.promotion else None,
            next_run_at=next_run(request.cron, request.timezone) if request.active else None,
        )
        with self.app.sessions() as s:
            s.add(schedule)
            s.commit()
        self.audit("schedule.create", f"schedule {schedule.id}", schedule.owner, name=schedule.name,
                   cron=schedule.cron, timezone=schedule.timezone, active=schedule.active, promotion=schedule.promotion)
        self.set_header("Location", f"{self.settings['prefix']}api/schedules/{schedule.id}")
        self.write_json(ScheduleResponse.of(schedule), 201)


class ScheduleHandler(APIHandler):
    async def get(self, schedule_id):
        self.write_json(ScheduleResponse.of(self.load(Schedule, schedule_id)))

    async def patch(self, schedule_id):
        schedule = self.load(Schedule, schedule_id)
        patch = self.parse(SchedulePatch)
        if patch.job is not None:
            try:
                self.app.dispatcher.resolve(schedule.owner, patch.job)
            except NotebenchError as e:
                raise e.within("job") from None
        if patch.promotion is not None:  # the owner's model and endpoint, whoever changes it
            await check_policy(self.app, schedule.owner, patch.promotion)
        changes = patch.model_dump(exclude_unset=True)
        if "job" in changes:
            changes["job_template"] = patch.job.model_dump()
            del changes["job"]
        with self.app.sessions() as s:
            schedule = s.get(Schedule, schedule.id)
            if schedule is None:  # deleted meanwhile
                raise NotebenchError(404, None, f"no schedule {schedule_id}")
            for key, value in changes.items():
                setattr(schedule, key, value)
            schedule.next_run_at = next_run(schedule.cron, schedule.timezone) if schedule.active else None
            s.commit()
        self.audit("schedule.update", f"schedule {schedule.id}", schedule.owner, name=schedule.name,
                   changed=sorted(patch.model_dump(exclude_unset=True)))
        self.write_json(ScheduleResponse.of(schedule))

    async def delete(self, schedule_id):
        schedule = self.load(Schedule, schedule_id)
        with self.app.sessions() as s:
            s.execute(sa.delete(Schedule).where(Schedule.id == schedule.id))
            s.commit()
        self.audit("schedule.delete", f"schedule {schedule.id}", schedule.owner, name=schedule.name)
        self.set_status(204)
        self.finish()


class ScheduleDecisionsHandler(APIHandler):
    """The promotion decisions of a schedule (schedules/promotion.py), newest first, paged."""

    query_params = frozenset({"limit", "cursor"})

    async def get(self, schedule_id):
        schedule = self.load(Schedule, schedule_id)  # others': 404
        q = sa.select(PromotionDecision).where(PromotionDecision.schedule_id == schedule.id).order_by(PromotionDecision.id.desc())
        page, next_cursor = self.page(q, PromotionDecision.id)
        self.write_json(PromotionDecisionPage(decisions=[PromotionDecisionResponse.of(d) for d in page], next_cursor=next_cursor))
