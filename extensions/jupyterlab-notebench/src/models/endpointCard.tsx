// One endpoint: what it serves, how to call it (URL, curl and Python), "Try it" with an editable
// body, its charts, its scoring servers' logs and its stored request samples; then its sections
// (drift, quality, shadow, alerts, history: monitoring.tsx, shadow.tsx, alerts.tsx, history.tsx).
import { Dialog, showDialog } from '@jupyterlab/apputils';
import * as React from 'react';

import {
  api,
  Endpoint,
  EndpointLogs,
  EndpointMetrics,
  IEndpointExample,
  Invocation,
  IRequestSample,
  RegisteredModel,
  VersionMetrics
} from '../api';
import { Legend, LineChart } from '../chart';
import { useAsync, usePolled, usePolling } from '../hooks';
import { useTranslation } from '../i18n';
import {
  ENDPOINT_POLL_MS,
  MlflowLink,
  mlflowVersionUrl,
  useModelsContext
} from './context';
import { Alerts } from './alerts';
import { History } from './history';
import { Drift, Quality } from './monitoring';
import { CopyableCode } from './section';
import { Shadow } from './shadow';
import { IVersionRow, rowsValid, toVersions, WeightsEditor } from './weights';

/** The text as JSON, or the parser's complaint. */
function parseJson(text: string): { value?: unknown; error?: string } {
  try {
    return { value: JSON.parse(text) };
  } catch (e: any) {
    return { error: e.message };
  }
}

/** A stored sample's body: JSON, or the text it was (not JSON, or cut). */
function asText(value: unknown): string {
  return typeof value === 'string' ? value : JSON.stringify(value, null, 1);
}

/** The endpoint's URL and how to call it. The examples read a token the user makes at the hub's
 * token page from NOTEBENCH_TOKEN: this page never holds or shows one. */
function CallIt(props: { endpoint: Endpoint; body: string }): JSX.Element {
  const trans = useTranslation();
  const context = useModelsContext();
  const url = new URL(props.endpoint.invocation_url, window.location.origin)
    .href;
  const tokenPage = new URL(context.token_url, window.location.origin).href;
  const shellQuoted = `'${props.body.replace(/'/g, "'\\''")}'`;
  const curl = [
    `# A token: make one at ${tokenPage} (the scope custom:notebench-endpoints:invoke!user is enough)`,
    'export NOTEBENCH_TOKEN=<your token>',
    `curl -X POST '${url}' \\`,
    '  -H "Authorization: token $NOTEBENCH_TOKEN" \\',
    "  -H 'Content-Type: application/json' \\",
    `  -d ${shellQuoted}`
  ].join('\n');
  const python = [
    'import json, os',
    'import requests',
    '',
    `# A token: make one at ${tokenPage}, then set NOTEBENCH_TOKEN to it.`,
    `payload = json.loads(${JSON.stringify(props.body)})`,
    'response = requests.post(',
    `    ${JSON.stringify(url)},`,
    '    headers={"Authorization": f"token {os.environ[\'NOTEBENCH_TOKEN\']}"},',
    '    json=payload,',
    '    timeout=60,',
    ')',
    'print(response.headers.get("X-Notebench-Model-Version"), response.json())'
  ].join('\n');
  return (
    <details className="nb-call">
      <summary>{trans.__('Call it from code')}</summary>
      <div className="nb-field">
        <span>{trans.__('Invocation URL (POST)')}</span>
        <code className="nb-url">{url}</code>
      </div>
      <p className="nb-hint">
        {trans.__('Make a token at')}{' '}
        <a href={context.token_url} target="_blank" rel="noopener noreferrer">
          {tokenPage}
        </a>{' '}
        {trans.__('and put it in NOTEBENCH_TOKEN.')}
      </p>
      <CopyableCode label={trans.__('curl example')} code={curl} />
      <CopyableCode label={trans.__('Python example')} code={python} />
    </details>
  );
}

function TryIt(props: {
  endpoint: Endpoint;
  body: string;
  setBody: (body: string) => void;
  example: IEndpointExample | null;
  onResult: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const { endpoint, body, setBody, example } = props;
  const [result, setResult] = React.useState<Invocation | null>(null);
  const { error, run } = useAsync();
  const parsed = parseJson(body);
  const serving = endpoint.status === 'ready' || endpoint.status === 'updating';
  const tryIt = () =>
    run(async () => {
      setResult(null);
      setResult(
        await api<Invocation>(`endpoints/${endpoint.name}/invoke`, 'POST', {
          payload: parsed.value
        })
      );
      props.onResult();
    });
  return (
    <div className="nb-try-it">
      <label className="nb-field">
        <span>{trans.__('Request body (JSON)')}</span>
        <textarea
          name="payload"
          rows={5}
          spellCheck={false}
          value={body}
          onChange={e => setBody(e.target.value)}
        />
      </label>
      {example?.reason && !body && (
        <p className="nb-hint">
          {trans.__('No input example: %1', example.reason)}
        </p>
      )}
      {body && parsed.error && (
        <p className="nb-error">{trans.__('Not JSON: %1', parsed.error)}</p>
      )}
      <div className="nb-actions">
        <button
          type="button"
          onClick={tryIt}
          disabled={!serving || !body.trim() || parsed.error !== undefined}
        >
          {trans.__('Try it')}
        </button>
        {example?.payload !== undefined && example?.payload !== null && (
          <button
            type="button"
            onClick={() => setBody(JSON.stringify(example.payload, null, 1))}
          >
            {trans.__('Input example')}
          </button>
        )}
      </div>
      {error && <p className="nb-error">{error}</p>}
      {result && (
        <div className="nb-try" aria-label={trans.__('Try it result')}>
          {result.predictions !== undefined ? (
            <>
              <div>
                {trans.__('Answered by')}{' '}
                <b className="nb-answered-by">
                  {result.version ?? trans.__('unknown')}
                </b>{' '}
                {trans.__('in %1 ms', result.latency_ms)}
              </div>
              <div>
                {trans.__('Prediction:')}{' '}
                <code className="nb-prediction">
                  {JSON.stringify(result.predictions)}
                </code>
              </div>
            </>
          ) : (
            <div className="nb-error">
              {result.status}: {JSON.stringify(result.error)}
            </div>
          )}
        </div>
      )}
    </div>
  );
}

/** A <details> whose content is loaded while it is open, and again every ENDPOINT_POLL_MS. */
function usePolledWhileOpen<T>(
  load: () => Promise<T>,
  open: boolean,
  stopped: React.MutableRefObject<boolean>,
  deps: React.DependencyList
): { data: T | null; error: string } {
  const { data, error } = usePolled(
    load,
    ENDPOINT_POLL_MS,
    [open, ...deps],
    () => open && !stopped.current
  );
  return { data, error };
}

function Logs(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
}): JSX.Element {
  const trans = useTranslation();
  const [open, setOpen] = React.useState(false);
  const { data, error } = usePolledWhileOpen(
    () => api<EndpointLogs>(`endpoints/${props.endpoint.name}/logs`),
    open,
    props.stopped,
    [props.endpoint.name]
  );
  return (
    <details
      className="nb-logs"
      onToggle={e => setOpen((e.target as HTMLDetailsElement).open)}
    >
      <summary>{trans.__("Scoring servers' logs")}</summary>
      {error && <p className="nb-error">{error}</p>}
      {data?.versions.map(v => {
        const label = trans.__('Log of %1/%2', v.model, v.version);
        return (
          <div key={`${v.model}/${v.version}`} data-log={v.version}>
            <div className="nb-row">
              <span>
                {v.model}/{v.version}
              </span>
              <span className="nb-badge" data-status={v.status}>
                {v.status}
              </span>
            </div>
            {/* The model's own output: shown as text, never as markup. */}
            <pre className="nb-log" tabIndex={0} aria-label={label}>
              {v.log || trans.__('(nothing yet)')}
            </pre>
          </div>
        );
      })}
    </details>
  );
}

function RequestSamples(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
  refresh: number;
  onUse: (body: string) => void;
}): JSX.Element {
  const trans = useTranslation();
  const [open, setOpen] = React.useState(false);
  const { data, error } = usePolledWhileOpen(
    () =>
      api<{ requests: IRequestSample[] }>(
        `endpoints/${props.endpoint.name}/requests`
      ),
    open,
    props.stopped,
    [props.endpoint.name, props.refresh]
  );
  return (
    <details
      className="nb-samples"
      onToggle={e => setOpen((e.target as HTMLDetailsElement).open)}
    >
      <summary>{trans.__('Recent requests (stored sample)')}</summary>
      {error && <p className="nb-error">{error}</p>}
      {data && !data.requests.length && (
        <p className="nb-hint">{trans.__('No requests sampled yet.')}</p>
      )}
      {data?.requests.map((r, i) => {
        return (
          <div className="nb-sample" key={`${r.time}-${i}`}>
            <div className="nb-row">
              <span>{new Date(r.time).toLocaleTimeString()}</span>
              <span>
                {r.model}/{r.version}
              </span>
              <span
                className="nb-badge"
                data-status={r.status < 400 ? 'ready' : 'failed'}
              >
                {r.status}
              </span>
              <span>{trans.__('%1 ms', Math.round(r.latency_ms))}</span>
              {typeof r.inputs !== 'string' && (
                <button
                  type="button"
                  aria-label={trans.__(
                    'Use the request of %1 in Try it',
                    r.time
                  )}
                  onClick={() => props.onUse(asText(r.inputs))}
                >
                  {trans.__('Use')}
                </button>
              )}
            </div>
            <details>
              <summary>{trans.__('input and output')}</summary>
              <pre tabIndex={0} aria-label={trans.__('Input')}>
                {asText(r.inputs)}
              </pre>
              <pre tabIndex={0} aria-label={trans.__('Output')}>
                {asText(r.outputs)}
              </pre>
            </details>
          </div>
        );
      })}
    </details>
  );
}

export function EndpointCard(props: {
  endpoint: Endpoint;
  models: RegisteredModel[];
  onChange: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const context = useModelsContext();
  const { endpoint } = props;
  const [editing, setEditing] = React.useState<IVersionRow[] | null>(null);
  const [metrics, setMetrics] = React.useState<VersionMetrics[]>([]);
  const [example, setExample] = React.useState<IEndpointExample | null>(null);
  const [body, setBody] = React.useState('');
  const [invocations, setInvocations] = React.useState(0);
  // Set once a Delete is asked for: nothing polls a deleted endpoint (a 404 in the console).
  const stopped = React.useRef(false);
  const { error, run } = useAsync();

  React.useEffect(() => {
    let current = true;
    api<IEndpointExample>(`endpoints/${endpoint.name}/example`)
      .then(answer => {
        if (current) {
          setExample(answer);
          setBody(b =>
            b || answer.payload === null
              ? b
              : JSON.stringify(answer.payload, null, 1)
          );
        }
      })
      .catch(e => current && setExample({ payload: null, reason: e.message }));
    return () => {
      current = false;
    };
  }, [endpoint.name]);

  usePolling(
    async isCurrent => {
      if (stopped.current) {
        return;
      }
      try {
        const m = await api<EndpointMetrics>(
          `endpoints/${endpoint.name}/metrics`
        );
        if (isCurrent()) {
          setMetrics(m.versions);
        }
      } catch {
        // Metrics are optional decoration; the endpoint's status shows real problems.
      }
    },
    ENDPOINT_POLL_MS,
    [endpoint.name, invocations]
  );

  const remove = async () => {
    const answer = await showDialog({
      title: trans.__('Delete endpoint %1?', endpoint.name),
      body: trans.__(
        'Its scoring servers stop, its URL stops answering and its stored request samples are deleted.'
      ),
      buttons: [
        Dialog.cancelButton({ label: trans.__('Cancel') }),
        Dialog.warnButton({ label: trans.__('Delete') })
      ]
    });
    if (!answer.button.accept) {
      return;
    }
    stopped.current = true;
    await run(() =>
      api(`endpoints/${endpoint.name}`, 'DELETE').then(props.onChange)
    );
  };

  const parsedBody = parseJson(body);
  const exampleBody =
    parsedBody.error === undefined && body.trim()
      ? JSON.stringify(parsedBody.value)
      : '{"dataframe_split": {"columns": ["..."], "data": [[]]}}';
  return (
    <div className="nb-endpoint" data-endpoint={endpoint.name}>
      <div className="nb-job-head">
        <span className="nb-model-name">
          {endpoint.name}
          {(context.admin || endpoint.owner !== context.user) && (
            <small className="nb-owner">
              {' '}
              · {trans.__('owner %1', endpoint.owner)}
            </small>
          )}
        </span>
        <span className="nb-badge" data-status={endpoint.status}>
          {endpoint.status}
        </span>
      </div>
      {endpoint.reason && <div className="nb-error">{endpoint.reason}</div>}
      <table className="nb-table">
        <tbody>
          {endpoint.versions.map(v => (
            <tr key={`${v.model}/${v.version}`}>
              <td>
                <MlflowLink
                  href={mlflowVersionUrl(context, v.model, v.version)}
                  label={trans.__(
                    '%1 version %2 in MLflow',
                    v.model,
                    v.version
                  )}
                >
                  {v.model}/{v.version}
                </MlflowLink>
                {v.alias ? ` (@${v.alias})` : ''}
              </td>
              {v.shadow ? (
                <td className="nb-shadow">
                  {trans.__(
                    'shadow, %1 % of requests',
                    v.traffic_percent ?? 100
                  )}
                </td>
              ) : (
                <td>{v.weight}%</td>
              )}
              <td>
                <span className="nb-badge" data-status={v.status}>
                  {v.status}
                </span>
                {v.reason && <span className="nb-error"> {v.reason}</span>}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {editing && (
        <div>
          <WeightsEditor
            rows={editing}
            setRows={setEditing}
            models={props.models}
          />
          <button
            type="button"
            disabled={!rowsValid(editing)}
            onClick={() =>
              run(async () => {
                await api(`endpoints/${endpoint.name}`, 'PATCH', {
                  versions: toVersions(editing)
                });
                setEditing(null);
                props.onChange();
              })
            }
          >
            {trans.__('Apply (rolling)')}
          </button>
        </div>
      )}
      <div className="nb-actions">
        <button
          type="button"
          aria-expanded={editing !== null}
          onClick={() =>
            setEditing(
              editing
                ? null
                : endpoint.versions.map(v => ({
                    model: v.model,
                    version: v.version,
                    weight: String(v.weight),
                    shadow: v.shadow,
                    traffic: String(v.traffic_percent ?? 100)
                  }))
            )
          }
        >
          {editing ? trans.__('Cancel edit') : trans.__('Edit versions')}
        </button>
        <button type="button" onClick={remove}>
          {trans.__('Delete…')}
        </button>
      </div>
      {error && <p className="nb-error">{error}</p>}
      <TryIt
        endpoint={endpoint}
        body={body}
        setBody={setBody}
        example={example}
        onResult={() => setInvocations(n => n + 1)}
      />
      <CallIt endpoint={endpoint} body={exampleBody} />
      {metrics.length > 0 && (
        <div className="nb-charts">
          <LineChart
            title={trans.__('Requests / min')}
            metrics={metrics}
            value={p => p.requests}
          />
          <LineChart
            title={trans.__('p50 latency')}
            unit=" ms"
            metrics={metrics}
            value={p => p.p50_ms}
          />
          <div
            className="nb-scroll"
            tabIndex={0}
            role="region"
            aria-label={trans.__('Requests per version')}
          >
            <Legend metrics={metrics} />
          </div>
        </div>
      )}
      <Logs endpoint={endpoint} stopped={stopped} />
      <RequestSamples
        endpoint={endpoint}
        stopped={stopped}
        refresh={invocations}
        onUse={setBody}
      />
      {/* The card's sections, in this order, each loaded only while open. */}
      <div className="nb-card-sections">
        <Drift endpoint={endpoint} stopped={stopped} />
        <Quality endpoint={endpoint} stopped={stopped} />
        <Shadow endpoint={endpoint} stopped={stopped} />
        <Alerts endpoint={endpoint} stopped={stopped} />
        <History
          endpoint={endpoint}
          stopped={stopped}
          onChange={props.onChange}
        />
      </div>
    </div>
  );
}
