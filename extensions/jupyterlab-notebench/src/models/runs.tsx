// Runs that logged models: their metrics and params, sortable, each registrable as a model version.
import * as React from 'react';

import { api, ModelRun, RegisteredModel } from '../api';
import { useAsync } from '../hooks';
import { useTranslation } from '../i18n';
import {
  formatMetric,
  MlflowLink,
  mlflowRunUrl,
  useModelsContext
} from './context';

function RegisterForm(props: {
  run: ModelRun;
  models: RegisteredModel[];
  onDone: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const guess = props.run.experiment.split('/').pop() || props.run.name;
  const [name, setName] = React.useState(guess);
  const [description, setDescription] = React.useState('');
  const { error, run } = useAsync();
  // A new name makes a new model (this user's); an existing one must be one they may change.
  const existing = props.models.find(m => m.name === name.trim());
  const refused = existing !== undefined && !existing.can_edit;
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
  const listId = React.useId();
  return (
    <form
      className="nb-inline-form"
      onSubmit={submit}
      aria-label={trans.__('Register version')}
    >
      <input
        name="model-name"
        aria-label={trans.__('Registered model name')}
        placeholder={trans.__('registered model name')}
        list={listId}
        value={name}
        onChange={e => setName(e.target.value)}
      />
      <datalist id={listId}>
        {props.models
          .filter(m => m.can_edit)
          .map(m => (
            <option key={m.name} value={m.name} />
          ))}
      </datalist>
      <input
        name="description"
        aria-label={trans.__('Description')}
        placeholder={trans.__('description')}
        value={description}
        onChange={e => setDescription(e.target.value)}
      />
      <button
        type="submit"
        className="jp-mod-styled jp-mod-accept"
        disabled={!name.trim() || refused}
      >
        {trans.__('Register')}
      </button>
      {refused && (
        <span className="nb-hint">
          {trans.__(
            '%1 belongs to %2: choose another name.',
            existing.name,
            existing.owner ?? trans.__('someone else')
          )}
        </span>
      )}
      {error && <span className="nb-error">{error}</span>}
    </form>
  );
}

export function RunsTable(props: {
  runs: ModelRun[];
  models: RegisteredModel[];
  onRegistered: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const context = useModelsContext();
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
  // The header's button sorts (reachable by keyboard); the th says the order to screen readers.
  const header = (key: string, label: string) => (
    <th
      key={key}
      aria-sort={
        sort.key === key
          ? sort.descending
            ? 'descending'
            : 'ascending'
          : 'none'
      }
    >
      <button
        type="button"
        className="nb-sort"
        onClick={() =>
          setSort({
            key,
            descending: sort.key === key ? !sort.descending : true
          })
        }
      >
        {label}
        {sort.key === key ? (sort.descending ? ' ▾' : ' ▴') : ''}
      </button>
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
    // Metric columns scroll sideways in a narrow panel; the run column, with its buttons, stays.
    <div
      className="nb-scroll"
      tabIndex={0}
      role="region"
      aria-label={trans.__('Runs with models')}
    >
      <table className="nb-table nb-runs">
        <thead>
          <tr>
            {header('run', trans.__('run'))}
            {metricKeys.map(k => header(k, k))}
            {header('created', trans.__('created'))}
          </tr>
        </thead>
        <tbody>
          {rows.map(r => (
            <React.Fragment key={r.model_id}>
              <tr data-model-id={r.model_id}>
                <td
                  className="nb-run-cell"
                  title={trans.__(
                    '%1 · model %2 (%3)%4',
                    r.experiment,
                    r.name,
                    r.model_id,
                    r.notebook ? ` · ${r.notebook}` : ''
                  )}
                >
                  <div className="nb-run-name">{r.experiment}</div>
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
                  <div className="nb-actions">
                    <button
                      type="button"
                      aria-expanded={registering === r.model_id}
                      onClick={() =>
                        setRegistering(
                          registering === r.model_id ? null : r.model_id
                        )
                      }
                    >
                      {trans.__('Register…')}
                    </button>
                    {r.run_id && (
                      <MlflowLink
                        href={mlflowRunUrl(context, r.experiment_id, r.run_id)}
                        label={trans.__('Run %1 in MLflow', r.run_name)}
                      >
                        {trans.__('MLflow')}
                      </MlflowLink>
                    )}
                  </div>
                </td>
                {metricKeys.map(k => (
                  <td key={k}>{formatMetric(r.metrics[k])}</td>
                ))}
                <td>{new Date(r.created_at).toLocaleTimeString()}</td>
              </tr>
              {registering === r.model_id && (
                <tr>
                  <td colSpan={metricKeys.length + 2}>
                    <RegisterForm
                      run={r}
                      models={props.models}
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
    </div>
  );
}
