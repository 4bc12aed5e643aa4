// An endpoint card's "Drift" and "Quality" sections: the executor's drift report per version over a
// window (GET endpoints/{name}/monitoring) and the quality of its labelled predictions over 1h, 1d
// and 7d side by side (GET endpoints/{name}/quality), with how to send labels. Feature and model
// names are the users': shown as text only.
import { TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

import {
  api,
  Endpoint,
  EndpointMonitoring,
  EndpointQuality,
  FeatureDrift,
  query,
  VersionMonitoring,
  VersionQuality
} from '../api';
import { BarChart } from '../chart';
import { usePolled } from '../hooks';
import { useTranslation } from '../i18n';
import { useModelsContext } from './context';
import {
  CardSection,
  CopyableCode,
  MONITORING_POLL_MS,
  useWindowedReport
} from './section';

// The executor's default c.Monitoring.windows (it answers 400 naming `window` for one it lacks).
export const MONITORING_WINDOWS = ['1h', '1d'];
// GET endpoints/{name}/quality's windows (fixed in the executor).
export const QUALITY_WINDOWS = ['1h', '1d', '7d'];

/** A figure rounded for reading (rates and scores are 0..1 or small). */
export function figure(value: number | null | undefined): string {
  if (value === null || value === undefined) {
    return '–';
  }
  return Number.isInteger(value) ? String(value) : value.toFixed(3);
}

export function percent(rate: number): string {
  return `${Math.round(rate * 1000) / 10}%`;
}

/** Shown instead of a section's content when the endpoint keeps no requests or predictions. */
function MonitoringOff(): JSX.Element {
  const trans = useTranslation();
  return (
    <p className="nb-hint">
      {trans.__(
        'Monitoring is off for this endpoint: no request or prediction is kept, so there is no drift, feedback or quality.'
      )}
    </p>
  );
}

/** "drifted", said in words (and marked), or "no". */
function DriftedFlag(props: { drifted: boolean }): JSX.Element {
  const trans = useTranslation();
  return props.drifted ? (
    <strong className="nb-drifted">⚠ {trans.__('drifted')}</strong>
  ) : (
    <span>{trans.__('no')}</span>
  );
}

function methodName(method: FeatureDrift['method']): string {
  return { psi: 'PSI', ks: 'KS', chi_square: 'χ²' }[method] ?? method;
}

function FeatureTable(props: { version: VersionMonitoring }): JSX.Element {
  const trans = useTranslation();
  const { version } = props;
  const label = trans.__(
    'Feature drift of %1/%2',
    version.model,
    version.version
  );
  return (
    <div className="nb-scroll" tabIndex={0} role="region" aria-label={label}>
      <table className="nb-table nb-drift-table" aria-label={label}>
        <thead>
          <tr>
            <th>{trans.__('feature')}</th>
            <th>{trans.__('method')}</th>
            <th>{trans.__('score')}</th>
            <th>{trans.__('p-value / PSI')}</th>
            <th>{trans.__('missing')}</th>
            <th>{trans.__('out of range')}</th>
            <th>{trans.__('drifted')}</th>
          </tr>
        </thead>
        <tbody>
          {Object.entries(version.features).map(([name, f]) => (
            <tr
              key={name}
              data-feature={name}
              data-drifted={f.drifted}
              className={f.drifted ? 'nb-row-drifted' : undefined}
            >
              <td>{name}</td>
              <td>{methodName(f.method)}</td>
              <td>{figure(f.drift_score)}</td>
              <td>{figure(f.p_value_or_psi)}</td>
              <td>{percent(f.missing_rate)}</td>
              <td>{percent(f.out_of_range_rate)}</td>
              <td>
                <DriftedFlag drifted={f.drifted} />
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function baselineSource(source: string, trans: TranslationBundle): string {
  return (
    {
      training_profile: trans.__('the training profile'),
      input_example: trans.__('the input example'),
      first_requests: trans.__('the first requests')
    }[source] ?? source
  );
}

function VersionDrift(props: { version: VersionMonitoring }): JSX.Element {
  const trans = useTranslation();
  const { version } = props;
  const name = `${version.model}/${version.version}`;
  const features = Object.entries(version.features);
  const prediction = version.prediction_drift;
  return (
    <div className="nb-monitoring-version" data-version={version.version}>
      <div className="nb-row">
        <b>{name}</b>
        <span data-requests={version.requests}>
          {trans.__(
            '%1 requests sampled (%2 rows)',
            version.requests,
            version.rows
          )}
        </span>
      </div>
      <p className="nb-baseline">
        {version.baseline
          ? trans.__(
              'Baseline: %1 (%2 rows).',
              baselineSource(version.baseline.source, trans),
              version.baseline.rows
            )
          : trans.__(
              'No baseline yet: the first requests of this version become it.'
            )}
        {version.baseline?.note && (
          <span className="nb-hint"> {version.baseline.note}</span>
        )}
      </p>
      {version.baseline && (
        <p className="nb-drifted-list">
          {version.drifted.length
            ? trans.__('Drifted: %1', version.drifted.join(', '))
            : trans.__('No feature drifted.')}
        </p>
      )}
      {features.length > 0 && (
        <>
          <BarChart
            title={trans.__('Drift score per feature of %1', name)}
            markedText={trans.__('drifted')}
            bars={features.map(([feature, f]) => ({
              label: feature,
              value: f.drift_score,
              marked: f.drifted
            }))}
          />
          <FeatureTable version={version} />
        </>
      )}
      <p className="nb-prediction-drift">
        {trans.__('Prediction drift:')}{' '}
        {prediction ? (
          <>
            {methodName(prediction.method)} {figure(prediction.drift_score)}{' '}
            <DriftedFlag drifted={prediction.drifted} />
          </>
        ) : (
          '–'
        )}
      </p>
      <p>
        {trans.__(
          'Schema violations: %1 requests unreadable, %2 rows (%3)',
          version.schema_violations.requests,
          version.schema_violations.rows,
          percent(version.schema_violations.rate)
        )}
      </p>
    </div>
  );
}

function DriftReport(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
}): JSX.Element {
  const trans = useTranslation();
  const { data, error, select } = useWindowedReport<EndpointMonitoring>(
    props.endpoint,
    'monitoring',
    MONITORING_WINDOWS,
    props.stopped
  );
  return (
    <div>
      {select}
      {error && <p className="nb-error">{error}</p>}
      {data && (
        <p className="nb-hint">
          {trans.__(
            'From the stored sample of requests (at most %1 a second, %2 kept) since %3.',
            data.sample.samples_per_second,
            data.sample.max_samples,
            new Date(data.since).toLocaleString()
          )}
        </p>
      )}
      {data &&
        data.versions.map(v => (
          <VersionDrift key={`${v.model}/${v.version}`} version={v} />
        ))}
    </div>
  );
}

export function Drift(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
}): JSX.Element {
  const trans = useTranslation();
  return (
    <CardSection section="drift" title={trans.__('Drift')}>
      {props.endpoint.monitoring ? (
        <DriftReport endpoint={props.endpoint} stopped={props.stopped} />
      ) : (
        <MonitoringOff />
      )}
    </CardSection>
  );
}

/** One version's metrics over each window, side by side. */
function VersionQualityTable(props: {
  versions: (VersionQuality | undefined)[]; // one per QUALITY_WINDOWS
  name: string;
}): JSX.Element {
  const trans = useTranslation();
  const answered = props.versions.filter((v): v is VersionQuality => !!v);
  const metrics = Array.from(
    new Set(answered.flatMap(v => Object.keys(v.quality)))
  );
  const task = answered.find(v => v.task)?.task;
  const label = trans.__('Quality of %1', props.name);
  return (
    <div
      className="nb-quality-version"
      data-version={answered[0]?.version}
      aria-label={label}
      role="group"
    >
      <div className="nb-row">
        <b>{props.name}</b>
        {task && <span className="nb-hint">{task}</span>}
      </div>
      {metrics.length === 0 ? (
        <p className="nb-hint nb-no-labels">{trans.__('No labels yet.')}</p>
      ) : (
        <div
          className="nb-scroll"
          tabIndex={0}
          role="region"
          aria-label={label}
        >
          <table className="nb-table nb-quality-table">
            <thead>
              <tr>
                <th>{trans.__('metric')}</th>
                {QUALITY_WINDOWS.map(w => (
                  <th key={w}>{trans.__('last %1', w)}</th>
                ))}
              </tr>
            </thead>
            <tbody>
              {metrics.map(metric => (
                <tr key={metric} data-metric={metric}>
                  <td>{metric}</td>
                  {props.versions.map((v, i) => (
                    <td key={QUALITY_WINDOWS[i]}>
                      {figure(v?.quality[metric])}
                    </td>
                  ))}
                </tr>
              ))}
              <tr data-metric="labelled">
                <td>{trans.__('labelled rows')}</td>
                {props.versions.map((v, i) => (
                  <td key={QUALITY_WINDOWS[i]}>{v?.labelled ?? '–'}</td>
                ))}
              </tr>
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

/** How to send true labels: the feedback URL, with a curl example reading $NOTEBENCH_TOKEN. */
function SendLabels(props: { endpoint: Endpoint }): JSX.Element {
  const trans = useTranslation();
  const context = useModelsContext();
  // The executor's API sits two levels above the invocation URL (…/endpoints/<name>/invocations).
  const invocation = new URL(
    props.endpoint.invocation_url,
    window.location.origin
  );
  const url = new URL(
    `../../api/endpoints/${encodeURIComponent(props.endpoint.name)}/feedback`,
    invocation
  ).href;
  const curl = [
    `# A token: make one at ${new URL(context.token_url, window.location.origin).href}`,
    '# request_id: the X-Notebench-Request-Id header of the invocation',
    `curl -X POST '${url}' \\`,
    '  -H "Authorization: token $NOTEBENCH_TOKEN" \\',
    "  -H 'Content-Type: application/json' \\",
    `  -d '[{"request_id": "<X-Notebench-Request-Id>", "label": 1}]'`
  ].join('\n');
  return (
    <details className="nb-send-labels">
      <summary>{trans.__('How to send labels')}</summary>
      <p className="nb-hint">
        {trans.__(
          'Each answer of the endpoint has an X-Notebench-Request-Id header. POST the true labels of those requests, as JSON or CSV (request_id,label), to:'
        )}
      </p>
      <code className="nb-url nb-feedback-url">{url}</code>
      <CopyableCode label={trans.__('Feedback curl example')} code={curl} />
    </details>
  );
}

function QualityReport(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
}): JSX.Element {
  const { endpoint } = props;
  const { data, error } = usePolled(
    () =>
      Promise.all(
        QUALITY_WINDOWS.map(w =>
          api<EndpointQuality>(
            `endpoints/${endpoint.name}/quality${query({ window: w })}`
          )
        )
      ),
    MONITORING_POLL_MS,
    [endpoint.name],
    () => !props.stopped.current
  );
  // Versions in the order of the longest window's answer (it holds every version the others do).
  const names = (data?.[data.length - 1].versions ?? []).map(
    v => `${v.model}/${v.version}`
  );
  return (
    <div>
      {error && <p className="nb-error">{error}</p>}
      {names.map(name => (
        <VersionQualityTable
          key={name}
          name={name}
          versions={(data ?? []).map(answer =>
            answer.versions.find(v => `${v.model}/${v.version}` === name)
          )}
        />
      ))}
      <SendLabels endpoint={endpoint} />
    </div>
  );
}

export function Quality(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
}): JSX.Element {
  const trans = useTranslation();
  return (
    <CardSection section="quality" title={trans.__('Quality')}>
      {props.endpoint.monitoring ? (
        <QualityReport endpoint={props.endpoint} stopped={props.stopped} />
      ) : (
        <MonitoringOff />
      )}
    </CardSection>
  );
}
