// A job's detail (opened under its row): what it ran with, how it went, its MLflow run, its log.
import * as React from 'react';

import { api, Job, JobRun, LogChunk } from '../api';
import { usePolling } from '../hooks';
import { useTranslation } from '../i18n';
import {
  ACTIVE,
  duration,
  localTime,
  mlflowUrl,
  pythonLiteral,
  statusText
} from './common';

const LOG_POLL_MS = 1000;

/**
 * The job's log, polled from where the last answer ended (the server answers `{text, offset}`),
 * every second while the job runs; once it ended, until nothing more comes.
 */
function JobLog(props: { job: Job }): JSX.Element {
  const trans = useTranslation();
  const { job } = props;
  const [text, setText] = React.useState('');
  const [error, setError] = React.useState('');
  const offset = React.useRef(0);
  const done = React.useRef(false);
  const pre = React.useRef<HTMLPreElement>(null);
  const active = ACTIVE.includes(job.status);

  usePolling(
    async isCurrent => {
      if (done.current) {
        return;
      }
      try {
        // Read everything there is now (the server answers at most 1 MiB at a time).
        for (;;) {
          const chunk = await api<LogChunk>(
            `jobs/${job.id}/log?offset=${offset.current}`
          );
          if (!isCurrent()) {
            return;
          }
          setError('');
          if (chunk.offset === offset.current) {
            break;
          }
          offset.current = chunk.offset;
          setText(t => t + chunk.text);
        }
        done.current = !active;
      } catch (e: any) {
        if (isCurrent()) {
          setError(e.message);
        }
      }
    },
    LOG_POLL_MS,
    [job.id, active]
  );

  React.useEffect(() => {
    // Follow the end of the log, as a terminal does.
    if (pre.current) {
      pre.current.scrollTop = pre.current.scrollHeight;
    }
  }, [text]);

  return (
    <div className="nb-log-box">
      <pre
        ref={pre}
        className="nb-log"
        role="log"
        tabIndex={0}
        aria-label={trans.__('Log of job #%1', job.id)}
      >
        {text ||
          (active
            ? trans.__('(waiting for output…)')
            : trans.__('(empty log)'))}
      </pre>
      {error && <div className="nb-error">{error}</div>}
    </div>
  );
}

function MlflowRun(props: { job: Job }): JSX.Element | null {
  const trans = useTranslation();
  const { job } = props;
  const [run, setRun] = React.useState<JobRun | null>(null);
  const [error, setError] = React.useState('');
  const active = ACTIVE.includes(job.status);

  usePolling(
    async isCurrent => {
      if (!job.mlflow_run_id) {
        return;
      }
      try {
        const answer = await api<JobRun>(`jobs/${job.id}/run`);
        if (isCurrent()) {
          setRun(answer);
          setError('');
        }
      } catch (e: any) {
        if (isCurrent()) {
          setError(e.message);
        }
      }
    },
    // Metrics come in while it runs; after the end one read is enough (the dependency changes).
    active ? 5000 : 24 * 3600 * 1000,
    [job.id, job.mlflow_run_id, active]
  );

  if (!job.mlflow_run_id) {
    return null;
  }
  const metrics = Object.entries(run?.metrics ?? {}).sort(([a], [b]) =>
    a.localeCompare(b)
  );
  const runLink =
    run && mlflowUrl(`/experiments/${run.experiment_id}/runs/${run.run_id}`);
  const experimentLink = run && mlflowUrl(`/experiments/${run.experiment_id}`);
  return (
    <div className="nb-detail-block">
      <div className="nb-detail-heading">{trans.__('MLflow run')}</div>
      {error && <div className="nb-error">{error}</div>}
      {run && (
        <>
          <div className="nb-links">
            {runLink && (
              <a href={runLink} target="_blank" rel="noopener noreferrer">
                {trans.__('Open the run in MLflow')}
              </a>
            )}
            {experimentLink && (
              <a
                href={experimentLink}
                target="_blank"
                rel="noopener noreferrer"
              >
                {trans.__('Open the experiment')}
              </a>
            )}
          </div>
          {metrics.length ? (
            <table className="nb-kv">
              <caption className="nb-visually-hidden">
                {trans.__('Metrics')}
              </caption>
              <tbody>
                {metrics.map(([key, value]) => (
                  <tr key={key}>
                    <th scope="row">{key}</th>
                    <td>
                      {Number.isInteger(value) ? value : value.toPrecision(6)}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          ) : (
            <p className="nb-hint">{trans.__('No metrics logged.')}</p>
          )}
        </>
      )}
    </div>
  );
}

export function JobDetail(props: { job: Job; id: string }): JSX.Element {
  const trans = useTranslation();
  const { job } = props;
  const [showLog, setShowLog] = React.useState(ACTIVE.includes(job.status));
  const parameters = Object.entries(job.parameters);
  // What the store keeps of the job's statuses: when it was queued, started, and ended.
  const history: [string, string, string][] = [
    ['queued', trans.__('queued'), localTime(job.created_at)]
  ];
  if (job.started_at) {
    history.push(['running', trans.__('started'), localTime(job.started_at)]);
  }
  if (job.finished_at) {
    history.push([
      job.status,
      statusText(trans, job.status),
      localTime(job.finished_at)
    ]);
  }
  const facts: [string, React.ReactNode][] = [
    [trans.__('Notebook'), job.notebook_path ?? '—'],
    [trans.__('Owner'), job.owner],
    [trans.__('Profile'), job.profile],
    [
      trans.__('Dask workers'),
      job.workers
        ? `${job.workers} (${job.worker_profile ?? job.profile})`
        : trans.__('none')
    ],
    [trans.__('Kernel'), job.kernel],
    [trans.__('Timeout'), trans.__('%1 s', job.timeout_seconds)],
    [trans.__('Duration'), duration(job) || '—'],
    [
      trans.__('Progress'),
      trans.__(
        '%1 of %2 cells',
        job.progress.cells_completed,
        job.progress.cells_total
      )
    ]
  ];
  if (job.schedule_id !== null) {
    facts.push([trans.__('Schedule'), `#${job.schedule_id}`]);
  }
  return (
    <div
      className="nb-job-detail"
      id={props.id}
      role="region"
      aria-label={trans.__('Job #%1', job.id)}
    >
      <table className="nb-kv">
        <caption className="nb-visually-hidden">
          {trans.__('Job #%1', job.id)}
        </caption>
        <tbody>
          {facts.map(([key, value]) => (
            <tr key={key}>
              <th scope="row">{key}</th>
              <td>{value}</td>
            </tr>
          ))}
        </tbody>
      </table>
      <div className="nb-detail-block">
        <div className="nb-detail-heading">{trans.__('Status history')}</div>
        <ol className="nb-history">
          {history.map(([status, label, time]) => (
            <li key={status}>
              <span className="nb-badge" data-status={status}>
                {label}
              </span>{' '}
              {time}
            </li>
          ))}
        </ol>
      </div>
      <div className="nb-detail-block">
        <div className="nb-detail-heading">{trans.__('Parameters')}</div>
        {parameters.length ? (
          <table className="nb-kv nb-parameters">
            <caption className="nb-visually-hidden">
              {trans.__('Parameters')}
            </caption>
            <tbody>
              {parameters.map(([key, value]) => (
                <tr key={key}>
                  <th scope="row">{key}</th>
                  <td>
                    <code>{pythonLiteral(value)}</code>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p className="nb-hint">
            {trans.__('The notebook ran with its defaults.')}
          </p>
        )}
      </div>
      <MlflowRun job={job} />
      <div className="nb-detail-block">
        <button aria-expanded={showLog} onClick={() => setShowLog(!showLog)}>
          {showLog ? trans.__('Hide log') : trans.__('Show log')}
        </button>
        {showLog && <JobLog job={job} />}
      </div>
    </div>
  );
}
