// The jobs list: filters by status and name, pages of jobs (newest first), each row opening its detail.
import * as React from 'react';

import { api, Job, JobPage, query } from '../api';
import { useAsync, usePolled } from '../hooks';
import { useTranslation } from '../i18n';
import { ACTIVE, confirm, currentUser, POLL_MS, statusText } from './common';
import { JobDetail } from './detail';

export interface IJobActions {
  openOutput(job: Job, cellIndex?: number | null): Promise<void>;
  openHtml(job: Job): void;
  /** Put the job's notebook and parameters into the form, to run it again (edited or not). */
  rerun(job: Job): void;
}

const PAGE_SIZE = 20;
const STATUSES = [
  'queued',
  'running',
  'succeeded',
  'failed',
  'cancelled',
  'timed_out'
];

function JobRow(props: {
  job: Job;
  actions: IJobActions;
  showOwner: boolean;
  onChange: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const { job, actions } = props;
  const [open, setOpen] = React.useState(false);
  const { error, run } = useAsync();
  const { cells_completed, cells_total } = job.progress;
  const percent = cells_total
    ? Math.round((100 * cells_completed) / cells_total)
    : 0;
  const active = ACTIVE.includes(job.status);
  const detailId = `nb-job-detail-${job.id}`;
  // The executor counts cells from 0 in the user's notebook; people count them from 1.
  const failedCell = job.error?.cell_index ?? null;

  const cancel = async () => {
    const title = trans.__('Cancel job #%1 (%2)?', job.id, job.name);
    const body = trans.__(
      'Its kernel is stopped; what it wrote so far is kept.'
    );
    if (await confirm(trans, title, body, trans.__('Cancel job'))) {
      await api(`jobs/${job.id}/cancel`, 'POST');
      props.onChange();
    }
  };
  const remove = async () => {
    const title = trans.__('Delete job #%1 (%2)?', job.id, job.name);
    const body = trans.__(
      'Its log and output notebook are deleted; its MLflow run stays.'
    );
    if (await confirm(trans, title, body, trans.__('Delete'))) {
      await api(`jobs/${job.id}`, 'DELETE');
      props.onChange();
    }
  };

  return (
    <li className={`nb-job nb-status-${job.status}`} data-job-id={job.id}>
      <div className="nb-job-head">
        <button
          className="nb-job-name"
          aria-expanded={open}
          aria-controls={open ? detailId : undefined}
          title={trans.__('Show the details of job #%1', job.id)}
          onClick={() => setOpen(!open)}
        >
          <span aria-hidden="true">{open ? '▾' : '▸'}</span> #{job.id}{' '}
          {job.name}
        </button>
        {props.showOwner && (
          <span className="nb-owner" title={trans.__('Owner')}>
            {job.owner}
          </span>
        )}
        <span className="nb-badge" data-status={job.status}>
          {statusText(trans, job.status)}
        </span>
      </div>
      <div
        className="nb-progress"
        role="progressbar"
        aria-label={trans.__('Cells of job #%1 run', job.id)}
        aria-valuemin={0}
        aria-valuemax={cells_total}
        aria-valuenow={cells_completed}
        title={trans.__('%1 of %2 cells', cells_completed, cells_total)}
      >
        <div style={{ width: `${percent}%` }} />
      </div>
      <div className="nb-job-meta">
        {job.profile}
        {job.workers ? trans.__(' · %1 workers', job.workers) : ''} ·{' '}
        {new Date(job.created_at).toLocaleString()}
      </div>
      {job.error && (
        <div className="nb-error">
          {failedCell !== null && trans.__('Cell %1: ', failedCell + 1)}
          {job.error.ename}: {job.error.evalue}
        </div>
      )}
      <div className="nb-actions">
        {active && (
          <button onClick={() => run(cancel)}>{trans.__('Cancel')}</button>
        )}
        {job.started_at && !active && (
          <>
            <button onClick={() => run(() => actions.openOutput(job))}>
              {trans.__('Open output')}
            </button>
            <button onClick={() => actions.openHtml(job)}>
              {trans.__('HTML')}
            </button>
            {failedCell !== null && (
              <button
                onClick={() => run(() => actions.openOutput(job, failedCell))}
              >
                {trans.__('Failing cell')}
              </button>
            )}
          </>
        )}
        <button onClick={() => actions.rerun(job)}>
          {trans.__('Re-run…')}
        </button>
        {!active && (
          <button onClick={() => run(remove)}>{trans.__('Delete')}</button>
        )}
      </div>
      {error && <div className="nb-error">{error}</div>}
      {open && <JobDetail job={job} id={detailId} />}
    </li>
  );
}

export function JobsList(props: {
  actions: IJobActions;
  refresh: number;
}): JSX.Element {
  const trans = useTranslation();
  const [status, setStatus] = React.useState('');
  const [name, setName] = React.useState('');
  // The cursors of the pages before this one: Older pushes, Newer pops.
  const [cursors, setCursors] = React.useState<string[]>([]);
  const cursor = cursors[cursors.length - 1];
  const { data, error, refresh } = usePolled(
    () =>
      api<JobPage>(
        `jobs${query({ limit: String(PAGE_SIZE), status, name: name.trim(), cursor })}`
      ),
    POLL_MS,
    [props.refresh, status, name, cursor]
  );
  const jobs = data?.jobs ?? [];
  const me = currentUser();
  const showOwner = jobs.some(j => j.owner !== me);
  const filtered = status !== '' || name.trim() !== '';

  return (
    <div
      className="nb-section"
      role="region"
      aria-label={trans.__('Your jobs')}
    >
      <div className="nb-section-title">
        {trans.__('Your jobs')}{' '}
        <button
          onClick={refresh}
          title={trans.__('Refresh')}
          aria-label={trans.__('Refresh')}
        >
          ↻
        </button>
      </div>
      <div className="nb-filters">
        <label className="nb-field">
          <span>{trans.__('Status')}</span>
          <select
            name="status-filter"
            value={status}
            onChange={e => {
              setStatus(e.target.value);
              setCursors([]);
            }}
          >
            <option value="">{trans.__('All')}</option>
            {STATUSES.map(s => (
              <option key={s} value={s}>
                {statusText(trans, s)}
              </option>
            ))}
          </select>
        </label>
        <label className="nb-field">
          <span>{trans.__('Name starts with')}</span>
          <input
            type="search"
            name="name-filter"
            value={name}
            onChange={e => {
              setName(e.target.value);
              setCursors([]);
            }}
          />
        </label>
      </div>
      {error && <p className="nb-error">{error}</p>}
      {data && jobs.length === 0 && !error && (
        <p className="nb-hint">
          {filtered ? trans.__('No jobs match.') : trans.__('No jobs yet.')}
        </p>
      )}
      <ul className="nb-jobs">
        {jobs.map(job => (
          <JobRow
            key={job.id}
            job={job}
            actions={props.actions}
            showOwner={showOwner}
            onChange={refresh}
          />
        ))}
      </ul>
      {(cursors.length > 0 || data?.next_cursor) && (
        <nav className="nb-pager" aria-label={trans.__('Pages of jobs')}>
          <button
            disabled={cursors.length === 0}
            onClick={() => setCursors(cursors.slice(0, -1))}
          >
            {trans.__('‹ Newer')}
          </button>
          <span>{trans.__('Page %1', cursors.length + 1)}</span>
          <button
            disabled={!data?.next_cursor}
            onClick={() =>
              data?.next_cursor && setCursors([...cursors, data.next_cursor])
            }
          >
            {trans.__('Older ›')}
          </button>
        </nav>
      )}
    </div>
  );
}
