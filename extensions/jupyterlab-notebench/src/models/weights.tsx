// Versions and their weights (percent of the traffic), as the deploy and edit forms take them. A
// row marked "shadow" gets a copy of a percent of the requests instead of a weight: it never
// answers, and only the live rows' weights make the 100.
import * as React from 'react';

import { RegisteredModel } from '../api';
import { useTranslation } from '../i18n';

export interface IVersionRow {
  model: string;
  version: string;
  weight: string;
  shadow?: boolean;
  traffic?: string; // a shadow's percent of the requests copied to it
}

/** The live rows' weights, added up (they must make 100). */
function liveTotal(rows: IVersionRow[]): number {
  return rows
    .filter(r => !r.shadow)
    .reduce((sum, r) => sum + (Number(r.weight) || 0), 0);
}

function percentValid(text: string | undefined): boolean {
  const n = Number(text);
  return Number.isInteger(n) && n >= 1 && n <= 100;
}

export function WeightsEditor(props: {
  rows: IVersionRow[];
  setRows: (rows: IVersionRow[]) => void;
  models: RegisteredModel[];
}): JSX.Element {
  const trans = useTranslation();
  const { rows, setRows } = props;
  // Deploy only from models this user may change (or from what the endpoint serves already).
  const models = props.models.filter(
    m => m.can_edit || rows.some(r => r.model === m.name)
  );
  const update = (i: number, change: Partial<IVersionRow>) =>
    setRows(rows.map((r, j) => (i === j ? { ...r, ...change } : r)));
  const total = liveTotal(rows);
  return (
    <div className="nb-weights">
      {rows.map((r, i) => {
        const model = models.find(m => m.name === r.model);
        return (
          <div className="nb-row" key={i} data-row={i}>
            <select
              name={`model-${i}`}
              aria-label={trans.__('Model of version %1', i + 1)}
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
              aria-label={trans.__('Version %1', i + 1)}
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
            {r.shadow ? (
              <input
                name={`traffic-${i}`}
                type="number"
                min={1}
                max={100}
                value={r.traffic ?? '100'}
                onChange={e => update(i, { traffic: e.target.value })}
                aria-label={trans.__(
                  'Percent of the requests copied to shadow version %1',
                  i + 1
                )}
              />
            ) : (
              <input
                name={`weight-${i}`}
                type="number"
                min={0}
                max={100}
                value={r.weight}
                onChange={e => update(i, { weight: e.target.value })}
                aria-label={trans.__('Weight of version %1 (percent)', i + 1)}
              />
            )}
            <span aria-hidden="true">%</span>
            <label
              className="nb-shadow-toggle"
              title={trans.__(
                'A shadow gets a copy of the requests after the live answer; it never answers'
              )}
            >
              <input
                type="checkbox"
                name={`shadow-${i}`}
                checked={!!r.shadow}
                onChange={e =>
                  update(i, {
                    shadow: e.target.checked,
                    traffic: r.traffic ?? '100'
                  })
                }
              />
              {trans.__('shadow')}
            </label>
            {rows.length > 1 && (
              <button
                type="button"
                aria-label={trans.__('Remove version %1', i + 1)}
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

export function toVersions(rows: IVersionRow[]) {
  return rows.map(r =>
    r.shadow
      ? {
          model: r.model,
          version: r.version,
          weight: 0,
          shadow: true,
          traffic_percent: Number(r.traffic ?? '100')
        }
      : { model: r.model, version: r.version, weight: Number(r.weight) || 0 }
  );
}

export function rowsValid(rows: IVersionRow[]): boolean {
  return (
    rows.every(r => r.model && r.version) &&
    rows.some(r => !r.shadow) &&
    liveTotal(rows) === 100 &&
    rows.every(r => !r.shadow || percentValid(r.traffic ?? '100'))
  );
}
