// The Models panel: runs that logged models, registered models and aliases, endpoints.
import { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import {
  api,
  Endpoint,
  EndpointList,
  EndpointMetrics,
  Invocation,
  ModelRun,
  query,
  RegisteredModel,
  VersionMetrics
} from './api';
import { Legend, LineChart } from './chart';
import { useAsync, usePolled, usePolling } from './hooks';
import { TranslationContext, useTranslation } from './i18n';

const ENDPOINT_POLL_MS = 3000;
const ALIASES = ['champion', 'challenger'];

function formatMetric(value: number | undefined): string {
  return value === undefined
    ? '–'
    : Number.isInteger(value)
      ? String(value)
      : value.toFixed(4);
}

// --- runs ------------------------------------------------------------------------------------

function RegisterForm(props: {
  run: ModelRun;
  onDone: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const guess = props.run.experiment.split('/').pop() || props.run.name;
  const [name, setName] = React.useState(guess);
  const [description, setDescription] = React.useState('');
  const { error, run } = useAsync();
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    run(async () => {
      await api('models/versions', 'POST', {
        model_id: props.run.model_id,
        name,
        description
      });
      props.onDone();
    });
  };
  return (
    <form
      className="nb-inline-form"
      onSubmit={submit}
      aria-label={trans.__('Register version')}
    >
      <input
        name="model-name"
        placeholder={trans.__('registered model name')}
        value={name}
        onChange={e => setName(e.target.value)}
      />
      <input
        name="description"
        placeholder={trans.__('description')}
        value={description}
        onChange={e => setDescription(e.target.value)}
      />
      <button type="submit" className="jp-mod-styled jp-mod-accept">
        {trans.__('Register')}
      </button>
      {error && <span className="nb-error">{error}</span>}
    </form>
  );
}

function RunsTable(props: {
  runs: ModelRun[];
  onRegistered: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const metricKeys = Array.from(
    new Set(props.runs.flatMap(r => Object.keys(r.metrics)))
  ).sort();
  const [sort, setSort] = React.useState<{ key: string; descending: boolean }>({
    key: 'created',
    descending: true
  });
  const [registering, setRegistering] = React.useState<string | null>(null);
  const valueOf = (run: ModelRun, key: string): number | string =>
    key === 'created'
      ? run.created_at
      : key === 'run'
        ? run.run_name
        : (run.metrics[key] ?? -Infinity);
  const rows = [...props.runs].sort((a, b) => {
    const [va, vb] = [valueOf(a, sort.key), valueOf(b, sort.key)];
    const order = va < vb ? -1 : va > vb ? 1 : 0;
    return sort.descending ? -order : order;
  });
  const header = (key: string, label: string) => (
    <th
      className="nb-sortable"
      onClick={() =>
        setSort({ key, descending: sort.key === key ? !sort.descending : true })
      }
      aria-sort={
        sort.key === key
          ? sort.descending
            ? 'descending'
            : 'ascending'
          : 'none'
      }
    >
      {label}
      {sort.key === key ? (sort.descending ? ' ▾' : ' ▴') : ''}
    </th>
  );
  if (!props.runs.length) {
    return (
      <p className="nb-hint">
        {trans.__(
          'No runs with logged models yet: log one with mlflow.<flavor>.log_model.'
        )}
      </p>
    );
  }
  return (
    <table className="nb-table nb-runs">
      <thead>
        <tr>
          {header('run', trans.__('run'))}
          {metricKeys.map(k => header(k, k))}
          {header('created', trans.__('created'))}
          <th />
        </tr>
      </thead>
      <tbody>
        {rows.map(r => (
          <React.Fragment key={r.model_id}>
            <tr data-model-id={r.model_id}>
              <td
                title={trans.__(
                  '%1 · model %2 (%3)%4',
                  r.experiment,
                  r.name,
                  r.model_id,
                  r.notebook ? ` · ${r.notebook}` : ''
                )}
              >
                {r.experiment}
                <br />
                <small>
                  {r.run_name}
                  {r.job_id ? trans.__(' · job #%1', r.job_id) : ''}
                </small>
                <br />
                <small className="nb-params">
                  {Object.entries(r.params)
                    .map(([k, v]) => `${k}=${v}`)
                    .join(', ')}
                </small>
              </td>
              {metricKeys.map(k => (
                <td key={k}>{formatMetric(r.metrics[k])}</td>
              ))}
              <td>{new Date(r.created_at).toLocaleTimeString()}</td>
              <td>
                <button
                  onClick={() =>
                    setRegistering(
                      registering === r.model_id ? null : r.model_id
                    )
                  }
                >
                  {trans.__('Register…')}
                </button>
              </td>
            </tr>
            {registering === r.model_id && (
              <tr>
                <td colSpan={metricKeys.length + 3}>
                  <RegisterForm
                    run={r}
                    onDone={() => {
                      setRegistering(null);
                      props.onRegistered();
                    }}
                  />
                </td>
              </tr>
            )}
          </React.Fragment>
        ))}
      </tbody>
    </table>
  );
}

// --- registered models -----------------------------------------------------------------------

function AliasForm(props: {
  model: RegisteredModel;
  onDone: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const [alias, setAlias] = React.useState('champion');
  const [version, setVersion] = React.useState(
    props.model.versions[0]?.version ?? ''
  );
  const { error, run } = useAsync();
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    run(async () => {
      await api('models/aliases', 'POST', {
        name: props.model.name,
        alias,
        version
      });
      props.onDone();
    });
  };
  return (
    <form
      className="nb-inline-form"
      onSubmit={submit}
      aria-label={trans.__('Set alias of %1', props.model.name)}
    >
      <input
        name="alias"
        list="nb-aliases"
        value={alias}
        onChange={e => setAlias(e.target.value)}
      />
      <datalist id="nb-aliases">
        {ALIASES.map(a => (
          <option key={a} value={a} />
        ))}
      </datalist>
      →
      <select
        name="version"
        value={version}
        onChange={e => setVersion(e.target.value)}
      >
        {props.model.versions.map(v => (
          <option key={v.version} value={v.version}>
            {trans.__('v%1', v.version)}
          </option>
        ))}
      </select>
      <button type="submit">{trans.__('Set alias')}</button>
      {error && <span className="nb-error">{error}</span>}
    </form>
  );
}

function RegisteredModels(props: {
  models: RegisteredModel[];
  onChange: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const { error, run } = useAsync();
  if (!props.models.length) {
    return (
      <p className="nb-hint">
        {trans.__("No registered models yet: register a run's model above.")}
      </p>
    );
  }
  return (
    <div>
      {error && <p className="nb-error">{error}</p>}
      {props.models.map(m => (
        <div className="nb-model" key={m.name} data-model={m.name}>
          <div className="nb-model-name">
            {m.name}
            {m.owner ? <small> · {m.owner}</small> : null}
          </div>
          <table className="nb-table">
            <tbody>
              {m.versions.map(v => (
                <tr key={v.version} data-version={v.version}>
                  <td>{trans.__('v%1', v.version)}</td>
                  <td>
                    {v.aliases.map(a => (
                      <span className="nb-chip" key={a}>
                        @{a}
                        <button
                          title={trans.__('Remove alias %1', a)}
                          onClick={() =>
                            run(() =>
                              api(
                                `models/aliases${query({ name: m.name, alias: a })}`,
                                'DELETE'
                              ).then(props.onChange)
                            )
                          }
                        >
                          ×
                        </button>
                      </span>
                    ))}
                  </td>
                  <td>
                    <small>
                      {v.tags['notebench.job_id']
                        ? trans.__('job #%1', v.tags['notebench.job_id'])
                        : ''}{' '}
                      {v.description}
                    </small>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          <AliasForm model={m} onDone={props.onChange} />
        </div>
      ))}
    </div>
  );
}

// --- endpoints -------------------------------------------------------------------------------

interface IVersionRow {
  model: string;
  version: string;
  weight: string;
}

function WeightsEditor(props: {
  rows: IVersionRow[];
  setRows: (rows: IVersionRow[]) => void;
  models: RegisteredModel[];
}): JSX.Element {
  const trans = useTranslation();
  const { rows, setRows, models } = props;
  const update = (i: number, change: Partial<IVersionRow>) =>
    setRows(rows.map((r, j) => (i === j ? { ...r, ...change } : r)));
  const total = rows.reduce((sum, r) => sum + (Number(r.weight) || 0), 0);
  return (
    <div className="nb-weights">
      {rows.map((r, i) => {
        const model = models.find(m => m.name === r.model);
        return (
          <div className="nb-row" key={i} data-row={i}>
            <select
              name={`model-${i}`}
              value={r.model}
              onChange={e => update(i, { model: e.target.value, version: '' })}
            >
              <option value="">{trans.__('model…')}</option>
              {models.map(m => (
                <option key={m.name} value={m.name}>
                  {m.name}
                </option>
              ))}
            </select>
            <select
              name={`version-${i}`}
              value={r.version}
              onChange={e => update(i, { version: e.target.value })}
            >
              <option value="">{trans.__('version…')}</option>
              {model?.versions.map(v => (
                <option key={v.version} value={v.version}>
                  {trans.__('v%1', v.version)}
                  {v.aliases.length ? ` (@${v.aliases.join(', @')})` : ''}
                </option>
              ))}
              {Object.keys(model?.aliases ?? {}).map(a => (
                <option key={a} value={a}>
                  @{a}
                </option>
              ))}
            </select>
            <input
              name={`weight-${i}`}
              type="number"
              min={0}
              max={100}
              value={r.weight}
              onChange={e => update(i, { weight: e.target.value })}
              aria-label={trans.__('weight')}
            />
            %
            {rows.length > 1 && (
              <button
                type="button"
                title={trans.__('Remove')}
                onClick={() => setRows(rows.filter((_, j) => j !== i))}
              >
                ×
              </button>
            )}
          </div>
        );
      })}
      <div className="nb-row">
        <button
          type="button"
          onClick={() =>
            setRows([
              ...rows,
              { model: rows[0]?.model ?? '', version: '', weight: '0' }
            ])
          }
        >
          {trans.__('+ version')}
        </button>
        <span
          className={total === 100 ? 'nb-ok' : 'nb-error'}
          data-total={total}
        >
          {trans.__('total %1%', total)}
        </span>
      </div>
    </div>
  );
}

function toVersions(rows: IVersionRow[]) {
  return rows.map(r => ({
    model: r.model,
    version: r.version,
    weight: Number(r.weight) || 0
  }));
}

function rowsValid(rows: IVersionRow[]): boolean {
  return (
    rows.every(r => r.model && r.version) &&
    rows.reduce((s, r) => s + (Number(r.weight) || 0), 0) === 100
  );
}

function DeployForm(props: {
  models: RegisteredModel[];
  onDeployed: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const [name, setName] = React.useState('');
  const [rows, setRows] = React.useState<IVersionRow[]>([
    { model: '', version: '', weight: '100' }
  ]);
  const { error, run } = useAsync();
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    run(async () => {
      await api('endpoints', 'POST', { name, versions: toVersions(rows) });
      setName('');
      props.onDeployed();
    });
  };
  return (
    <form className="nb-form" onSubmit={submit} aria-label={trans.__('Deploy')}>
      <label className="nb-field">
        <span>{trans.__('Endpoint name')}</span>
        <input
          name="endpoint-name"
          placeholder={trans.__('e.g. iris')}
          value={name}
          pattern="[a-z0-9][a-z0-9-]{0,62}"
          onChange={e => setName(e.target.value)}
        />
      </label>
      <WeightsEditor rows={rows} setRows={setRows} models={props.models} />
      <button
        type="submit"
        className="jp-mod-styled jp-mod-accept"
        disabled={!name || !rowsValid(rows)}
      >
        {trans.__('Deploy')}
      </button>
      {error && <p className="nb-error">{error}</p>}
    </form>
  );
}

function EndpointCard(props: {
  endpoint: Endpoint;
  models: RegisteredModel[];
  onChange: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const { endpoint } = props;
  const [editing, setEditing] = React.useState<IVersionRow[] | null>(null);
  const [result, setResult] = React.useState<Invocation | null>(null);
  const [metrics, setMetrics] = React.useState<VersionMetrics[]>([]);
  const { error, run } = useAsync();

  usePolling(
    async isCurrent => {
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
    [endpoint.name, result]
  );

  const tryIt = () =>
    run(async () => {
      setResult(null);
      setResult(
        await api<Invocation>(`endpoints/${endpoint.name}/invoke`, 'POST', {})
      );
    });
  return (
    <div className="nb-endpoint" data-endpoint={endpoint.name}>
      <div className="nb-job-head">
        <span className="nb-model-name">{endpoint.name}</span>
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
                {v.model}/{v.version}
                {v.alias ? ` (@${v.alias})` : ''}
              </td>
              <td>{v.weight}%</td>
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
          onClick={tryIt}
          disabled={
            endpoint.status !== 'ready' && endpoint.status !== 'updating'
          }
        >
          {trans.__('Try it')}
        </button>
        <button
          onClick={() =>
            setEditing(
              editing
                ? null
                : endpoint.versions.map(v => ({
                    model: v.model,
                    version: v.version,
                    weight: String(v.weight)
                  }))
            )
          }
        >
          {editing ? trans.__('Cancel edit') : trans.__('Edit versions')}
        </button>
        <button
          onClick={() =>
            run(() =>
              api(`endpoints/${endpoint.name}`, 'DELETE').then(props.onChange)
            )
          }
        >
          {trans.__('Delete')}
        </button>
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
          <details>
            <summary>{trans.__("Input (the model's input example)")}</summary>
            <pre>{JSON.stringify(result.payload, null, 1)}</pre>
          </details>
        </div>
      )}
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
          <Legend metrics={metrics} />
        </div>
      )}
    </div>
  );
}

function Endpoints(props: {
  models: RegisteredModel[];
  refresh: number;
}): JSX.Element {
  const trans = useTranslation();
  const { data, error, refresh } = usePolled(
    () => api<EndpointList>('endpoints'),
    ENDPOINT_POLL_MS,
    [props.refresh]
  );
  const endpoints = data?.endpoints;
  return (
    <div>
      <DeployForm models={props.models} onDeployed={refresh} />
      {error && <p className="nb-error">{trans.__('Endpoints: %1', error)}</p>}
      {endpoints?.map(e => (
        <EndpointCard
          key={e.name}
          endpoint={e}
          models={props.models}
          onChange={refresh}
        />
      ))}
    </div>
  );
}

// --- the panel -------------------------------------------------------------------------------

function ModelsView(): JSX.Element {
  const trans = useTranslation();
  const [runs, setRuns] = React.useState<ModelRun[]>([]);
  const [models, setModels] = React.useState<RegisteredModel[]>([]);
  const [loading, setLoading] = React.useState(false);
  const { error, run } = useAsync();
  const load = () =>
    run(async () => {
      setLoading(true);
      try {
        const [r, m] = await Promise.all([
          api<{ runs: ModelRun[] }>('models/runs'),
          api<{ registered_models: RegisteredModel[] }>('models/registered')
        ]);
        setRuns(r.runs);
        setModels(m.registered_models);
      } finally {
        setLoading(false);
      }
    });
  React.useEffect(() => {
    load();
  }, []);
  return (
    <div className="nb-panel-body">
      <h2>
        {trans.__('Models')}{' '}
        <button onClick={load} title={trans.__('Refresh')} disabled={loading}>
          ↻
        </button>
      </h2>
      {error && <p className="nb-error">{error}</p>}
      <div className="nb-section" data-section="runs">
        <div className="nb-section-title">{trans.__('Runs with models')}</div>
        <RunsTable runs={runs} onRegistered={load} />
      </div>
      <div className="nb-section" data-section="registered">
        <div className="nb-section-title">{trans.__('Registered models')}</div>
        <RegisteredModels models={models} onChange={load} />
      </div>
      <div className="nb-section" data-section="endpoints">
        <div className="nb-section-title">{trans.__('Endpoints')}</div>
        <Endpoints models={models} refresh={0} />
      </div>
    </div>
  );
}

export class ModelsPanel extends ReactWidget {
  constructor(private trans: TranslationBundle) {
    super();
    this.id = 'notebench-models';
    this.addClass('nb-panel');
    this.title.caption = trans.__('Notebench models');
  }

  render(): JSX.Element {
    return (
      <TranslationContext.Provider value={this.trans}>
        <ModelsView />
      </TranslationContext.Provider>
    );
  }
}
