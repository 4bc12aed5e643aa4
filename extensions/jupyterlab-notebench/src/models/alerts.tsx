// An endpoint card's "Alerts" section: its alert rules, its webhook and its recent firings with their
// delivery (GET endpoints/{name}/alerts); the owner or an admin edits the rules and the webhook
// (PUT endpoints/{name}/alerts, which replaces both), a refused value shown at its field. Feature
// and version names, the webhook and delivery errors are the users' or the network's: text only.
import * as React from 'react';

import {
  AlertFiring,
  AlertRule,
  api,
  ApiError,
  Endpoint,
  EndpointAlerts
} from '../api';
import { usePolled } from '../hooks';
import { useTranslation } from '../i18n';
import { ENDPOINT_POLL_MS, useModelsContext } from './context';
import { figure, MONITORING_WINDOWS } from './monitoring';
import { CardSection } from './section';

const KINDS: AlertRule['kind'][] = [
  'error_rate',
  'p99_latency_ms',
  'drift',
  'quality'
];
const METRICS = ['accuracy', 'f1', 'mae', 'rmse'];

// A rule as the form holds it: numbers as typed (the executor checks them and names the field).
interface IRuleRow {
  kind: string;
  threshold: string;
  window: string;
  metric: string;
  min_requests: string;
}

function toRow(rule: AlertRule): IRuleRow {
  return {
    kind: rule.kind,
    threshold: String(rule.threshold),
    window: rule.window ?? MONITORING_WINDOWS[0],
    metric: rule.metric ?? '',
    min_requests: String(rule.min_requests)
  };
}

/** A typed number as a number; anything else as typed, for the executor to refuse at its field. */
function asNumber(text: string): number | string {
  return text.trim() !== '' && Number.isFinite(Number(text))
    ? Number(text)
    : text;
}

function toRule(row: IRuleRow): Record<string, unknown> {
  return {
    kind: row.kind,
    threshold: asNumber(row.threshold),
    window: row.window,
    min_requests: asNumber(row.min_requests),
    ...(row.kind === 'quality' ? { metric: row.metric } : {})
  };
}

function detailText(detail: AlertFiring['detail']): string {
  return Object.entries(detail)
    .map(([key, value]) => `${key} ${String(value)}`)
    .join(', ');
}

function FieldError(props: { errors: Record<string, string>; field: string }) {
  const message = props.errors[props.field];
  return message ? (
    <span className="nb-error" data-error-for={props.field}>
      {message}
    </span>
  ) : null;
}

function RulesEditor(props: {
  endpoint: Endpoint;
  alerts: EndpointAlerts;
  onSaved: () => void;
  onCancel: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const [rows, setRows] = React.useState<IRuleRow[]>(
    props.alerts.rules.map(toRow)
  );
  const [webhook, setWebhook] = React.useState(props.alerts.webhook ?? '');
  // A refused save's message at the field it names (rules.N.threshold, webhook, …); '' otherwise.
  const [errors, setErrors] = React.useState<Record<string, string>>({});
  const [saving, setSaving] = React.useState(false);
  const update = (i: number, change: Partial<IRuleRow>) =>
    setRows(rows.map((r, j) => (i === j ? { ...r, ...change } : r)));
  const save = async () => {
    setErrors({});
    setSaving(true);
    try {
      await api(`endpoints/${props.endpoint.name}/alerts`, 'PUT', {
        webhook: webhook.trim() || null,
        rules: rows.map(toRule)
      });
      props.onSaved();
    } catch (e: any) {
      const field = e instanceof ApiError && e.field ? e.field : '';
      setErrors({ [field]: e.message });
    } finally {
      setSaving(false);
    }
  };
  return (
    <form
      className="nb-form nb-alerts-editor"
      aria-label={trans.__('Alert rules of %1', props.endpoint.name)}
      onSubmit={e => {
        e.preventDefault();
        void save();
      }}
    >
      {rows.map((r, i) => (
        <fieldset className="nb-alert-rule" key={i} data-rule={i}>
          <legend>{trans.__('Rule %1', i + 1)}</legend>
          <label className="nb-field">
            <span>{trans.__('Kind')}</span>
            <select
              name={`rule-kind-${i}`}
              value={r.kind}
              onChange={e => update(i, { kind: e.target.value })}
            >
              {KINDS.map(k => (
                <option key={k} value={k}>
                  {k}
                </option>
              ))}
            </select>
            <FieldError errors={errors} field={`rules.${i}.kind`} />
          </label>
          <label className="nb-field">
            <span>{trans.__('Threshold')}</span>
            <input
              name={`rule-threshold-${i}`}
              inputMode="decimal"
              value={r.threshold}
              onChange={e => update(i, { threshold: e.target.value })}
            />
            <FieldError errors={errors} field={`rules.${i}.threshold`} />
          </label>
          <label className="nb-field">
            <span>{trans.__('Window')}</span>
            <select
              name={`rule-window-${i}`}
              value={r.window}
              onChange={e => update(i, { window: e.target.value })}
            >
              {MONITORING_WINDOWS.map(w => (
                <option key={w} value={w}>
                  {w}
                </option>
              ))}
            </select>
            <FieldError errors={errors} field={`rules.${i}.window`} />
          </label>
          {r.kind === 'quality' && (
            <label className="nb-field">
              <span>{trans.__('Metric')}</span>
              <select
                name={`rule-metric-${i}`}
                value={r.metric}
                onChange={e => update(i, { metric: e.target.value })}
              >
                <option value="">{trans.__('metric…')}</option>
                {METRICS.map(m => (
                  <option key={m} value={m}>
                    {m}
                  </option>
                ))}
              </select>
              <FieldError errors={errors} field={`rules.${i}.metric`} />
            </label>
          )}
          <label className="nb-field">
            <span>{trans.__('Fewest requests')}</span>
            <input
              name={`rule-min-requests-${i}`}
              inputMode="numeric"
              value={r.min_requests}
              onChange={e => update(i, { min_requests: e.target.value })}
            />
            <FieldError errors={errors} field={`rules.${i}.min_requests`} />
          </label>
          <button
            type="button"
            aria-label={trans.__('Remove rule %1', i + 1)}
            onClick={() => setRows(rows.filter((_, j) => j !== i))}
          >
            {trans.__('Remove')}
          </button>
        </fieldset>
      ))}
      <button
        type="button"
        onClick={() =>
          setRows([
            ...rows,
            {
              kind: 'error_rate',
              threshold: '',
              window: MONITORING_WINDOWS[0],
              metric: '',
              min_requests: '1'
            }
          ])
        }
      >
        {trans.__('+ rule')}
      </button>
      <label className="nb-field">
        <span>
          {trans.__('Webhook (http(s) URL; empty: firings are only recorded)')}
        </span>
        <input
          name="alerts-webhook"
          // Text, not type="url": the executor judges the URL and says what is wrong at this field.
          inputMode="url"
          value={webhook}
          onChange={e => setWebhook(e.target.value)}
        />
        <FieldError errors={errors} field="webhook" />
      </label>
      {Object.entries(errors)
        .filter(
          ([field]) =>
            !/^rules\.\d+\.(kind|threshold|window|metric|min_requests)$/.test(
              field
            ) && field !== 'webhook'
        )
        .map(([field, message]) => (
          <p className="nb-error" key={field}>
            {field ? `${field}: ${message}` : message}
          </p>
        ))}
      <div className="nb-actions">
        <button type="submit" disabled={saving}>
          {trans.__('Save')}
        </button>
        <button type="button" onClick={props.onCancel}>
          {trans.__('Cancel')}
        </button>
      </div>
    </form>
  );
}

function RulesTable(props: { rules: AlertRule[]; name: string }): JSX.Element {
  const trans = useTranslation();
  const label = trans.__('Alert rules of %1', props.name);
  return (
    <div className="nb-scroll" tabIndex={0} role="region" aria-label={label}>
      <table className="nb-table nb-alert-rules">
        <thead>
          <tr>
            <th>{trans.__('kind')}</th>
            <th>{trans.__('threshold')}</th>
            <th>{trans.__('window')}</th>
            <th>{trans.__('metric')}</th>
            <th>{trans.__('fewest requests')}</th>
          </tr>
        </thead>
        <tbody>
          {props.rules.map((r, i) => (
            <tr key={i} data-rule={i}>
              <td>{r.kind}</td>
              <td>{figure(r.threshold)}</td>
              <td>{r.window ?? ''}</td>
              <td>{r.metric ?? ''}</td>
              <td>{r.min_requests}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function FiringsTable(props: {
  firings: AlertFiring[];
  name: string;
}): JSX.Element {
  const trans = useTranslation();
  const label = trans.__('Recent alerts of %1', props.name);
  return (
    <div className="nb-scroll" tabIndex={0} role="region" aria-label={label}>
      <table className="nb-table nb-firings">
        <thead>
          <tr>
            <th>{trans.__('fired')}</th>
            <th>{trans.__('kind')}</th>
            <th>{trans.__('value')}</th>
            <th>{trans.__('detail')}</th>
            <th>{trans.__('breach')}</th>
            <th>{trans.__('delivery')}</th>
          </tr>
        </thead>
        <tbody>
          {props.firings.map(f => (
            <tr key={f.id} data-firing={f.id} data-kind={f.rule.kind}>
              <td>{new Date(f.fired_at).toLocaleString()}</td>
              <td className="nb-firing-kind">{f.rule.kind}</td>
              <td className="nb-firing-value">{figure(f.value)}</td>
              <td className="nb-firing-detail">{detailText(f.detail)}</td>
              <td className="nb-firing-breach">
                {f.cleared_at
                  ? trans.__(
                      'cleared %1',
                      new Date(f.cleared_at).toLocaleString()
                    )
                  : trans.__('ongoing')}
              </td>
              <td className="nb-firing-delivery">
                {f.state === null
                  ? trans.__('no webhook')
                  : trans.__('%1 (%2 attempts)', f.state, f.attempts)}
                {f.last_error && (
                  <span className="nb-error"> {f.last_error}</span>
                )}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function AlertsReport(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
}): JSX.Element {
  const trans = useTranslation();
  const context = useModelsContext();
  const { endpoint } = props;
  const [editing, setEditing] = React.useState(false);
  const { data, error, refresh } = usePolled(
    () => api<EndpointAlerts>(`endpoints/${endpoint.name}/alerts`),
    ENDPOINT_POLL_MS,
    [endpoint.name],
    () => !props.stopped.current
  );
  // Others' endpoints are not shown at all (the executor answers 404); the check keeps editing,
  // and the webhook (it may hold a secret), to those the executor lets change the rules.
  const mayChange = context.admin || endpoint.owner === context.user;
  return (
    <div>
      {error && <p className="nb-error">{error}</p>}
      {!mayChange && (
        <small className="nb-hint nb-read-only">{trans.__('read only')}</small>
      )}
      {data && !editing && (
        <>
          {data.rules.length ? (
            <RulesTable rules={data.rules} name={endpoint.name} />
          ) : (
            <p className="nb-hint nb-no-rules">{trans.__('No alert rules.')}</p>
          )}
          {mayChange && (
            <p className="nb-webhook">
              {trans.__('Webhook:')}{' '}
              {data.webhook ? (
                <code>{data.webhook}</code>
              ) : (
                trans.__('none (firings are only recorded)')
              )}
            </p>
          )}
          {data.updated_at && (
            <p className="nb-hint">
              {trans.__(
                'Set by %1 on %2.',
                data.updated_by ?? '?',
                new Date(data.updated_at).toLocaleString()
              )}
            </p>
          )}
          {mayChange && (
            <button type="button" onClick={() => setEditing(true)}>
              {trans.__('Edit rules')}
            </button>
          )}
        </>
      )}
      {data && editing && (
        <RulesEditor
          endpoint={endpoint}
          alerts={data}
          onSaved={() => {
            setEditing(false);
            refresh();
          }}
          onCancel={() => setEditing(false)}
        />
      )}
      {data && (
        <>
          <p className="nb-subtitle">
            <b>{trans.__('Recent alerts')}</b>
          </p>
          {data.firings.length ? (
            <FiringsTable firings={data.firings} name={endpoint.name} />
          ) : (
            <p className="nb-hint nb-no-firings">
              {trans.__('No alert has fired.')}
            </p>
          )}
        </>
      )}
    </div>
  );
}

export function Alerts(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
}): JSX.Element {
  const trans = useTranslation();
  return (
    <CardSection section="alerts" title={trans.__('Alerts')}>
      <AlertsReport endpoint={props.endpoint} stopped={props.stopped} />
    </CardSection>
  );
}
