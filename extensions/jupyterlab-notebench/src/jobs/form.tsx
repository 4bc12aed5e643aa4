// The Run-as-job form: made from the notebook's parameters cell; runs it once or on a schedule.
import * as React from 'react';

import {
  api,
  ApiError,
  Job,
  Parameter,
  Profile,
  ProfilesResponse,
  query,
  Schedule
} from '../api';
import { useTranslation } from '../i18n';
import { pythonLiteral } from './common';

/** What the user typed in the form of one notebook: kept while they look elsewhere. */
export interface IDraft {
  values: Record<string, string | boolean>;
  profile?: string;
  workers: string;
  timeout: string;
  scheduled: boolean;
  cron: string;
  timezone: string;
  /** Re-running this job: its notebook is submitted if the one at the path is gone. */
  fromJob?: number;
  /** The parameters the job ran with (their types, when its notebook is gone). */
  jobParameters?: Record<string, unknown>;
}

export function newDraft(): IDraft {
  return {
    values: {},
    workers: '0',
    timeout: '3600',
    scheduled: false,
    cron: '0 6 * * *',
    timezone: Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC'
  };
}

/** The form's draft to re-run ``job``: its parameters, profile, workers and timeout. */
export function draftOf(job: Job): IDraft {
  return {
    ...newDraft(),
    values: Object.fromEntries(
      Object.entries(job.parameters).map(([k, v]) => [
        k,
        typeof v === 'string' || typeof v === 'boolean' ? v : pythonLiteral(v)
      ])
    ),
    profile: job.profile,
    workers: String(job.workers),
    timeout: String(job.timeout_seconds),
    fromJob: job.id,
    jobParameters: job.parameters
  };
}

function initialValue(parameter: Parameter): string | boolean {
  switch (parameter.type) {
    case 'bool':
      return Boolean(parameter.default);
    case 'str':
    case 'expression':
      return String(parameter.default ?? '');
    default:
      return pythonLiteral(parameter.default, parameter.type === 'float');
  }
}

/** The parameters of a job whose notebook is gone, typed from the values it ran with. */
function parametersOf(values: Record<string, unknown>): Parameter[] {
  return Object.entries(values).map(([name, value]) => ({
    name,
    type:
      typeof value === 'boolean'
        ? 'bool'
        : typeof value === 'string'
          ? 'str'
          : 'none',
    default: value,
    annotation: null,
    help: ''
  }));
}

/** The request field an error of the executor or the server concerns, as the form names its inputs. */
function fieldOf(error: ApiError | Error): string {
  const field = error instanceof ApiError ? (error.field ?? '') : '';
  return field.replace(/^job\./, '').replace(/^timeout_seconds$/, 'timeout');
}

export function RunForm(props: {
  path: string | null;
  draft: IDraft;
  onSubmitted: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const { path, draft } = props;
  const [profiles, setProfiles] = React.useState<Profile[]>([]);
  const [parameters, setParameters] = React.useState<Parameter[]>([]);
  const [missing, setMissing] = React.useState(false);
  const [hasCell, setHasCell] = React.useState(true);
  // The draft object is the panel's: edits go into it, so they outlive this form.
  const [, setEdits] = React.useState(0);
  const edit = (change: Partial<IDraft>) => {
    Object.assign(draft, change);
    setEdits(n => n + 1);
  };
  const [message, setMessage] = React.useState<{
    error: boolean;
    text: string;
  } | null>(null);
  const [errors, setErrors] = React.useState<Record<string, string>>({});
  const [busy, setBusy] = React.useState(false);

  React.useEffect(() => {
    api<ProfilesResponse>('profiles')
      .then(r => {
        setProfiles(r.profiles);
        if (!draft.profile) {
          edit({
            profile: (r.profiles.find(p => p.default) ?? r.profiles[0])?.name
          });
        }
      })
      .catch(e =>
        setMessage({ error: true, text: trans.__('Profiles: %1', e.message) })
      );
  }, []);

  React.useEffect(() => {
    if (!path) {
      return;
    }
    api<{ parameters: Parameter[]; has_parameters_cell: boolean }>(
      `parameters${query({ path })}`
    )
      .then(r => {
        setParameters(r.parameters);
        setHasCell(r.has_parameters_cell);
        const values = Object.fromEntries(
          r.parameters.map(p => [p.name, initialValue(p)])
        );
        edit({ values: { ...values, ...draft.values }, fromJob: undefined });
      })
      .catch((e: ApiError) => {
        if (e.status === 404 && draft.fromJob !== undefined) {
          setMissing(true); // re-run the job's own notebook
          setParameters(parametersOf(draft.jobParameters ?? {}));
        } else {
          setMessage({ error: true, text: e.message });
        }
      });
  }, [path]);

  const submit = async (event: React.FormEvent) => {
    event.preventDefault();
    if (!path) {
      return;
    }
    setMessage(null);
    setErrors({});
    // Text and booleans as they are; everything else is a Python literal, read by the server.
    const typed: Record<string, unknown> = {};
    const literals: Record<string, string> = {};
    for (const p of parameters) {
      const value = draft.values[p.name];
      if (p.type === 'expression') {
        continue;
      } else if (p.type === 'bool' || p.type === 'str') {
        typed[p.name] =
          p.type === 'bool' ? Boolean(value) : String(value ?? '');
      } else {
        literals[p.name] = String(value ?? '');
      }
    }
    const body = {
      ...(missing ? { from_job: draft.fromJob } : { path }),
      parameters: typed,
      literals,
      profile: draft.profile || undefined,
      workers: Number(draft.workers),
      timeout_seconds: Number(draft.timeout),
      ...(draft.scheduled ? { cron: draft.cron, timezone: draft.timezone } : {})
    };
    setBusy(true);
    try {
      if (draft.scheduled) {
        const schedule = await api<Schedule>('schedules', 'POST', body);
        setMessage({
          error: false,
          text: trans.__(
            'Created schedule #%1 (%2)',
            schedule.id,
            schedule.name
          )
        });
      } else {
        const job = await api<Job>('jobs', 'POST', body);
        setMessage({
          error: false,
          text: trans.__('Submitted job #%1 (%2)', job.id, job.name)
        });
      }
      props.onSubmitted();
    } catch (e: any) {
      const field = fieldOf(e);
      const known = [
        ...parameters.map(p => `parameters.${p.name}`),
        'profile',
        'workers',
        'worker_profile',
        'timeout',
        'cron',
        'timezone'
      ];
      if (known.includes(field)) {
        setErrors({
          [field === 'worker_profile' ? 'workers' : field]: e.message
        });
      } else {
        setMessage({ error: true, text: e.message });
      }
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

  /** An input's error, shown under it and tied to it for screen readers. */
  const errorOf = (field: string) => ({
    props: {
      'aria-invalid': field in errors ? true : undefined,
      'aria-describedby': field in errors ? `nb-error-${field}` : undefined
    },
    node: field in errors && (
      <span className="nb-field-error" id={`nb-error-${field}`} role="alert">
        {errors[field]}
      </span>
    )
  });

  const fields = parameters.map(p => {
    const error = errorOf(`parameters.${p.name}`);
    const value = draft.values[p.name];
    return (
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
              : p.type === 'none'
                ? trans.__('Python literal')
                : p.type}
          </em>
        </span>
        {p.type === 'bool' ? (
          <input
            type="checkbox"
            name={`param-${p.name}`}
            checked={Boolean(value)}
            onChange={e =>
              edit({ values: { ...draft.values, [p.name]: e.target.checked } })
            }
          />
        ) : (
          <input
            type="text"
            name={`param-${p.name}`}
            value={String(value ?? '')}
            disabled={p.type === 'expression'}
            spellCheck={false}
            {...error.props}
            onChange={e =>
              edit({ values: { ...draft.values, [p.name]: e.target.value } })
            }
          />
        )}
        {error.node}
        {p.help && <small>{p.help}</small>}
      </label>
    );
  });

  const profileError = errorOf('profile');
  const workersError = errorOf('workers');
  const timeoutError = errorOf('timeout');
  const cronError = errorOf('cron');
  const timezoneError = errorOf('timezone');
  return (
    <form
      className="nb-form"
      onSubmit={submit}
      aria-label={trans.__('Run as job')}
    >
      <div className="nb-form-title" title={path}>
        {trans.__('Run')} <b>{path}</b> {trans.__('as a job')}
      </div>
      {missing && (
        <p className="nb-hint">
          {trans.__(
            '%1 no longer exists: this runs the notebook of job #%2 again.',
            path,
            draft.fromJob
          )}
        </p>
      )}
      {!hasCell && (
        <p className="nb-hint">
          {trans.__('No cell tagged “parameters”: the notebook runs as it is.')}
        </p>
      )}
      {fields}
      <label className="nb-field">
        <span>{trans.__('Profile')}</span>
        <select
          name="profile"
          value={draft.profile ?? ''}
          {...profileError.props}
          onChange={e => edit({ profile: e.target.value })}
        >
          {profiles.map(p => (
            <option key={p.name} value={p.name} title={p.description}>
              {p.display_name}
              {p.gpus ? trans.__(' (%1 GPU)', p.gpus) : ''}
            </option>
          ))}
        </select>
        {profileError.node}
      </label>
      <div className="nb-row">
        <label className="nb-field">
          <span>{trans.__('Dask workers')}</span>
          <input
            type="number"
            name="workers"
            min={0}
            max={64}
            value={draft.workers}
            {...workersError.props}
            onChange={e => edit({ workers: e.target.value })}
          />
          {workersError.node}
        </label>
        <label className="nb-field">
          <span>{trans.__('Timeout (s)')}</span>
          <input
            type="number"
            name="timeout"
            min={1}
            value={draft.timeout}
            {...timeoutError.props}
            onChange={e => edit({ timeout: e.target.value })}
          />
          {timeoutError.node}
        </label>
      </div>
      <label className="nb-check">
        <input
          type="checkbox"
          name="scheduled"
          checked={draft.scheduled}
          onChange={e => edit({ scheduled: e.target.checked })}
        />
        {trans.__('Repeat on a schedule')}
      </label>
      {draft.scheduled && (
        <div className="nb-row">
          <label className="nb-field">
            <span>{trans.__('Cron (min hour day month weekday)')}</span>
            <input
              type="text"
              name="cron"
              value={draft.cron}
              spellCheck={false}
              {...cronError.props}
              onChange={e => edit({ cron: e.target.value })}
            />
            {cronError.node}
          </label>
          <label className="nb-field">
            <span>{trans.__('Time zone')}</span>
            <input
              type="text"
              name="timezone"
              value={draft.timezone}
              spellCheck={false}
              {...timezoneError.props}
              onChange={e => edit({ timezone: e.target.value })}
            />
            {timezoneError.node}
          </label>
        </div>
      )}
      <button
        type="submit"
        className="jp-mod-styled jp-mod-accept"
        disabled={busy}
      >
        {draft.scheduled ? trans.__('Create schedule') : trans.__('Run as job')}
      </button>
      {message && (
        <p className={message.error ? 'nb-error' : 'nb-ok'} role="status">
          {message.text}
        </p>
      )}
    </form>
  );
}
