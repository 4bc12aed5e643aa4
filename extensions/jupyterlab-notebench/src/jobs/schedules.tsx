// The user's schedules (admins: everyone's): when each runs next; pause, resume, delete.
import * as React from 'react';

import { api, Schedule, ScheduleList } from '../api';
import { useAsync, usePolled } from '../hooks';
import { useTranslation } from '../i18n';
import { confirm, currentUser, localTime } from './common';

const SCHEDULES_POLL_MS = 10000;

function ScheduleRow(props: {
  schedule: Schedule;
  showOwner: boolean;
  onChange: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const { schedule } = props;
  const { error, run } = useAsync();
  const notebook =
    (schedule.job.notebook as any)?.metadata?.notebench?.path ?? '';

  const setActive = (active: boolean) =>
    run(() =>
      api(`schedules/${schedule.id}`, 'PATCH', { active }).then(props.onChange)
    );
  const remove = async () => {
    const title = trans.__(
      'Delete schedule #%1 (%2)?',
      schedule.id,
      schedule.name
    );
    const body = trans.__(
      'No more jobs are started by it; the jobs it started stay.'
    );
    if (await confirm(trans, title, body, trans.__('Delete'))) {
      await api(`schedules/${schedule.id}`, 'DELETE');
      props.onChange();
    }
  };

  return (
    <li className="nb-schedule" data-schedule-id={schedule.id}>
      <div className="nb-job-head">
        <span className="nb-job-name" title={notebook}>
          #{schedule.id} {schedule.name}
        </span>
        {props.showOwner && (
          <span className="nb-owner" title={trans.__('Owner')}>
            {schedule.owner}
          </span>
        )}
        <span
          className="nb-badge"
          data-status={schedule.active ? 'running' : 'cancelled'}
        >
          {schedule.active ? trans.__('active') : trans.__('paused')}
        </span>
      </div>
      <div className="nb-job-meta">
        <code>{schedule.cron}</code> ({schedule.timezone}) ·{' '}
        <span className="nb-next-run">
          {schedule.next_run_at
            ? trans.__('next run %1', localTime(schedule.next_run_at))
            : trans.__('no next run')}
        </span>
      </div>
      <div className="nb-actions">
        {schedule.active ? (
          <button onClick={() => setActive(false)}>{trans.__('Pause')}</button>
        ) : (
          <button onClick={() => setActive(true)}>{trans.__('Resume')}</button>
        )}
        <button onClick={() => run(remove)}>{trans.__('Delete')}</button>
      </div>
      {error && <div className="nb-error">{error}</div>}
    </li>
  );
}

export function SchedulesList(props: { refresh: number }): JSX.Element {
  const trans = useTranslation();
  const { data, error, refresh } = usePolled(
    () => api<ScheduleList>('schedules'),
    SCHEDULES_POLL_MS,
    [props.refresh]
  );
  const schedules = data?.schedules ?? [];
  const me = currentUser();
  const showOwner = schedules.some(s => s.owner !== me);
  return (
    <div
      className="nb-section"
      role="region"
      aria-label={trans.__('Schedules')}
    >
      <div className="nb-section-title">{trans.__('Schedules')}</div>
      {error && <p className="nb-error">{error}</p>}
      {data && schedules.length === 0 && !error && (
        <p className="nb-hint">
          {trans.__(
            'No schedules. Tick “Repeat on a schedule” in the form to make one.'
          )}
        </p>
      )}
      <ul className="nb-jobs">
        {schedules.map(s => (
          <ScheduleRow
            key={s.id}
            schedule={s}
            showOwner={showOwner}
            onChange={refresh}
          />
        ))}
      </ul>
    </div>
  );
}
