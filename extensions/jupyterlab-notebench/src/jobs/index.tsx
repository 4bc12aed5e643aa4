// The Jobs panel: run a notebook as a job (form from its parameters cell) and follow your jobs.
import { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import {
  api,
  Job,
  JobPage,
  Parameter,
  Profile,
  ProfilesResponse,
  query
} from './api';
import { useAsync, usePolled } from './hooks';
import { TranslationContext, useTranslation } from './i18n';

export interface IJobActions {
  openOutput(job: Job, cellIndex?: number | null): Promise<void>;
  openHtml(job: Job): void;
}

const ACTIVE = ['queued', 'running'];
const POLL_MS = 2000;

/** Parse a form value into the parameter's type; throws with a message the form shows. */
function convert(
  parameter: Parameter,
  raw: string | boolean,
  trans: TranslationBundle
): unknown {
  const name = parameter.name;
  switch (parameter.type) {
    case 'bool':
      return Boolean(raw);
    case 'int': {
      const value = Number(raw);
      if (String(raw).trim() === '' || !Number.isInteger(value)) {
        throw new Error(trans.__('%1 must be an integer', name));
      }
      return value;
    }
    case 'float': {
      const value = Number(raw);
      if (String(raw).trim() === '' || Number.isNaN(value)) {
        throw new Error(trans.__('%1 must be a number', name));
      }
      return value;
    }
    case 'str':
      return String(raw);
    default:
      try {
        return JSON.parse(String(raw));
      } catch {
        throw new Error(
          trans.__('%1 must be JSON (e.g. [1, 2] or null)', name)
        );
      }
  }
}

function initialValue(parameter: Parameter): string | boolean {
  switch (parameter.type) {
    case 'bool':
      return Boolean(parameter.default);
    case 'str':
    case 'expression':
      return String(parameter.default ?? '');
    case 'int':
      return String(parameter.default);
    case 'float':
      // Show 1.0 rather than 1, so the field reads as the float it is.
      return Number.isInteger(parameter.default)
        ? parameter.default.toFixed(1)
        : String(parameter.default);
    default:
      return JSON.stringify(parameter.default);
  }
}

function RunForm(props: {
  path: string | null;
  onSubmitted: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const { path } = props;
  const [profiles, setProfiles] = React.useState<Profile[]>([]);
  const [profile, setProfile] = React.useState('');
  const [parameters, setParameters] = React.useState<Parameter[]>([]);
  const [values, setValues] = React.useState<Record<string, string | boolean>>(
    {}
  );
  const [hasCell, setHasCell] = React.useState(true);
  const [workers, setWorkers] = React.useState('0');
  const [timeout, setTimeoutValue] = React.useState('3600');
  const [message, setMessage] = React.useState<{
    error: boolean;
    text: string;
  } | null>(null);
  const [busy, setBusy] = React.useState(false);

  React.useEffect(() => {
    api<ProfilesResponse>('profiles')
      .then(r => {
        setProfiles(r.profiles);
        setProfile(
          (r.profiles.find(p => p.default) ?? r.profiles[0])?.name ?? ''
        );
      })
      .catch(e =>
        setMessage({ error: true, text: trans.__('Profiles: %1', e.message) })
      );
  }, []);

  React.useEffect(() => {
    setParameters([]);
    setValues({});
    setMessage(null);
    if (!path) {
      return;
    }
    api<{ parameters: Parameter[]; has_parameters_cell: boolean }>(
      `parameters${query({ path })}`
    )
      .then(r => {
        setParameters(r.parameters);
        setHasCell(r.has_parameters_cell);
        setValues(
          Object.fromEntries(r.parameters.map(p => [p.name, initialValue(p)]))
        );
      })
      .catch(e => setMessage({ error: true, text: e.message }));
  }, [path]);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    if (!path) {
      return;
    }
    setMessage(null);
    try {
      const chosen: Record<string, unknown> = {};
      for (const p of parameters) {
        if (p.type !== 'expression') {
          chosen[p.name] = convert(p, values[p.name], trans);
        }
      }
      setBusy(true);
      const job = await api<Job>('jobs', 'POST', {
        path,
        parameters: chosen,
        profile: profile || undefined,
        workers: Number(workers) || 0,
        timeout_seconds: Number(timeout) || 3600
      });
      setMessage({
        error: false,
        text: trans.__('Submitted job #%1 (%2)', job.id, job.name)
      });
      props.onSubmitted();
    } catch (e: any) {
      setMessage({ error: true, text: e.message });
    } finally {
      setBusy(false);
    }
  };

  if (!path) {
    return (
      <p className="nb-hint">
        {trans.__(
          'Open a notebook (or right-click one in the file browser → Run as job) to run it as a job.'
        )}
      </p>
    );
  }
  return (
    <form
      className="nb-form"
      onSubmit={submit}
      aria-label={trans.__('Run as job')}
    >
      <div className="nb-form-title" title={path}>
        {trans.__('Run')} <b>{path}</b> {trans.__('as a job')}
      </div>
      {!hasCell && (
        <p className="nb-hint">
          {trans.__('No cell tagged “parameters”: the notebook runs as it is.')}
        </p>
      )}
      {parameters.map(p => (
        <label
          key={p.name}
          className="nb-field"
          title={p.help || p.annotation || ''}
        >
          <span>
            {p.name}{' '}
            <em>
              {p.type === 'expression'
                ? trans.__('expression (fixed)')
                : p.type}
            </em>
          </span>
          {p.type === 'bool' ? (
            <input
              type="checkbox"
              name={`param-${p.name}`}
              checked={Boolean(values[p.name])}
              onChange={e =>
                setValues({ ...values, [p.name]: e.target.checked })
              }
            />
          ) : (
            <input
              type="text"
              name={`param-${p.name}`}
              value={String(values[p.name] ?? '')}
              disabled={p.type === 'expression'}
              onChange={e => setValues({ ...values, [p.name]: e.target.value })}
            />
          )}
          {p.help && <small>{p.help}</small>}
        </label>
      ))}
      <label className="nb-field">
        <span>{trans.__('Profile')}</span>
        <select
          name="profile"
          value={profile}
          onChange={e => setProfile(e.target.value)}
        >
          {profiles.map(p => (
            <option key={p.name} value={p.name} title={p.description}>
              {p.display_name}
              {p.gpus ? trans.__(' (%1 GPU)', p.gpus) : ''}
            </option>
          ))}
        </select>
      </label>
      <div className="nb-row">
        <label className="nb-field">
          <span>{trans.__('Dask workers')}</span>
          <input
            type="number"
            name="workers"
            min={0}
            max={64}
            value={workers}
            onChange={e => setWorkers(e.target.value)}
          />
        </label>
        <label className="nb-field">
          <span>{trans.__('Timeout (s)')}</span>
          <input
            type="number"
            name="timeout"
            min={1}
            value={timeout}
            onChange={e => setTimeoutValue(e.target.value)}
          />
        </label>
      </div>
      <button
        type="submit"
        className="jp-mod-styled jp-mod-accept"
        disabled={busy}
      >
        {trans.__('Run as job')}
      </button>
      {message && (
        <p className={message.error ? 'nb-error' : 'nb-ok'}>{message.text}</p>
      )}
    </form>
  );
}

function JobRow(props: {
  job: Job;
  actions: IJobActions;
  onChange: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const { job, actions } = props;
  const { error, run } = useAsync();
  const { cells_completed, cells_total } = job.progress;
  const percent = cells_total
    ? Math.round((100 * cells_completed) / cells_total)
    : 0;
  return (
    <li className={`nb-job nb-status-${job.status}`} data-job-id={job.id}>
      <div className="nb-job-head">
        <span className="nb-job-name">
          #{job.id} {job.name}
        </span>
        <span className="nb-badge" data-status={job.status}>
          {job.status}
        </span>
      </div>
      <div
        className="nb-progress"
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
          {job.error.cell_index !== null &&
            trans.__('Cell %1: ', job.error.cell_index)}
          {job.error.ename}: {job.error.evalue}
        </div>
      )}
      <div className="nb-actions">
        {ACTIVE.includes(job.status) && (
          <button
            onClick={() =>
              run(() =>
                api(`jobs/${job.id}/cancel`, 'POST').then(props.onChange)
              )
            }
          >
            {trans.__('Cancel')}
          </button>
        )}
        {job.started_at && !ACTIVE.includes(job.status) && (
          <>
            <button onClick={() => run(() => actions.openOutput(job))}>
              {trans.__('Open output')}
            </button>
            <button onClick={() => actions.openHtml(job)}>
              {trans.__('HTML')}
            </button>
            {job.error?.cell_index !== null &&
              job.error?.cell_index !== undefined && (
                <button
                  onClick={() =>
                    run(() => actions.openOutput(job, job.error?.cell_index))
                  }
                >
                  {trans.__('Failing cell')}
                </button>
              )}
          </>
        )}
      </div>
      {error && <div className="nb-error">{error}</div>}
    </li>
  );
}

function JobsList(props: {
  actions: IJobActions;
  refresh: number;
}): JSX.Element {
  const trans = useTranslation();
  const { data, error, refresh } = usePolled(
    () => api<JobPage>('jobs?limit=50'),
    POLL_MS,
    [props.refresh]
  );
  const jobs = data?.jobs ?? [];

  return (
    <div className="nb-section">
      <div className="nb-section-title">
        {trans.__('Your jobs')}{' '}
        <button onClick={refresh} title={trans.__('Refresh')}>
          ↻
        </button>
      </div>
      {error && <p className="nb-error">{error}</p>}
      {jobs.length === 0 && !error && (
        <p className="nb-hint">{trans.__('No jobs yet.')}</p>
      )}
      <ul className="nb-jobs">
        {jobs.map(job => (
          <JobRow
            key={job.id}
            job={job}
            actions={props.actions}
            onChange={refresh}
          />
        ))}
      </ul>
    </div>
  );
}

/** The left side panel. `notebookPath` is the notebook the form runs (set by the commands). */
export class JobsPanel extends ReactWidget {
  constructor(
    private actions: IJobActions,
    private trans: TranslationBundle
  ) {
    super();
    this.id = 'notebench-jobs';
    this.addClass('nb-panel');
    this.title.caption = trans.__('Notebench jobs');
  }

  notebookPath: string | null = null;
  private submitted = 0;

  setNotebook(path: string | null): void {
    if (path !== this.notebookPath) {
      this.notebookPath = path;
      this.update();
    }
  }

  render(): JSX.Element {
    return (
      <TranslationContext.Provider value={this.trans}>
        <div className="nb-panel-body">
          <h2>{this.trans.__('Jobs')}</h2>
          <RunForm
            path={this.notebookPath}
            onSubmitted={() => {
              this.submitted += 1;
              this.update();
            }}
          />
          <JobsList actions={this.actions} refresh={this.submitted} />
        </div>
      </TranslationContext.Provider>
    );
  }
}
