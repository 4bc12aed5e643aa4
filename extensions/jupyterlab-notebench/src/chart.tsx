// Small SVG charts (no chart library): a line per model version over time, and labelled bars.
import * as React from 'react';

import { VersionMetrics } from './api';
import { useTranslation } from './i18n';

export const COLORS = [
  '#1f77b4',
  '#ff7f0e',
  '#2ca02c',
  '#d62728',
  '#9467bd',
  '#8c564b'
];

export function LineChart(props: {
  title: string;
  metrics: VersionMetrics[];
  value: (point: VersionMetrics['series'][number]) => number | null;
  unit?: string;
}): JSX.Element {
  const trans = useTranslation();
  const width = 260;
  const height = 80;
  const pad = 6;
  const times = Array.from(
    new Set(props.metrics.flatMap(m => m.series.map(p => p.t)))
  ).sort();
  const values = props.metrics
    .flatMap(m => m.series.map(props.value))
    .filter((v): v is number => v !== null);
  const max = Math.max(1e-9, ...values);
  const x = (t: string) =>
    times.length === 1
      ? width / 2
      : pad + (times.indexOf(t) * (width - 2 * pad)) / (times.length - 1);
  const y = (v: number) => height - pad - (v / max) * (height - 2 * pad);
  return (
    <figure className="nb-chart">
      <figcaption>
        {props.title}{' '}
        <small>
          {trans.__(
            '(max %1%2)',
            max < 1e-6 ? 0 : Math.round(max * 10) / 10,
            props.unit ?? ''
          )}
        </small>
      </figcaption>
      <svg
        viewBox={`0 0 ${width} ${height}`}
        width="100%"
        role="img"
        aria-label={props.title}
      >
        <rect
          x={0}
          y={0}
          width={width}
          height={height}
          className="nb-chart-frame"
        />
        {props.metrics.map((m, i) => {
          const points = m.series
            .map(p => ({ t: p.t, v: props.value(p) }))
            .filter((p): p is { t: string; v: number } => p.v !== null);
          const color = COLORS[i % COLORS.length];
          return (
            <g key={`${m.model}/${m.version}`}>
              <polyline
                fill="none"
                stroke={color}
                strokeWidth={1.5}
                points={points.map(p => `${x(p.t)},${y(p.v)}`).join(' ')}
              />
              {points.map(p => (
                <circle key={p.t} cx={x(p.t)} cy={y(p.v)} r={2} fill={color}>
                  <title>
                    {m.model}/{m.version} {p.t}: {Math.round(p.v * 10) / 10}
                    {props.unit ?? ''}
                  </title>
                </circle>
              ))}
            </g>
          );
        })}
      </svg>
    </figure>
  );
}

export function Legend(props: { metrics: VersionMetrics[] }): JSX.Element {
  const trans = useTranslation();
  return (
    <table className="nb-table nb-legend">
      <thead>
        <tr>
          <th>{trans.__('version')}</th>
          <th>{trans.__('requests')}</th>
          <th>{trans.__('errors')}</th>
          <th>{trans.__('p50 ms')}</th>
          <th>{trans.__('p99 ms')}</th>
        </tr>
      </thead>
      <tbody>
        {props.metrics.map((m, i) => (
          <tr key={`${m.model}/${m.version}`}>
            <td>
              <span
                className="nb-swatch"
                style={{ background: COLORS[i % COLORS.length] }}
              />
              {m.model}/{m.version}
            </td>
            <td>{m.requests}</td>
            <td>{m.errors}</td>
            <td>{m.latency_ms.p50 ?? '–'}</td>
            <td>{m.latency_ms.p99 ?? '–'}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

export interface IBar {
  label: string; // shown as text (a feature name: the user's)
  value: number;
  marked: boolean; // over its threshold: drawn in another colour and said in words ("!" and the title)
}

/** Horizontal bars, one per label, scaled to the largest value (e.g. drift score per feature). */
export function BarChart(props: {
  title: string;
  bars: IBar[];
  markedText: string; // what a marked bar means, e.g. "drifted"
}): JSX.Element {
  const width = 260;
  const row = 16;
  const labelWidth = 80;
  const valueWidth = 56;
  const height = Math.max(1, props.bars.length) * row + 4;
  const max = Math.max(1e-9, ...props.bars.map(b => b.value));
  const span = width - labelWidth - valueWidth;
  return (
    <figure className="nb-chart nb-bar-chart">
      <figcaption>{props.title}</figcaption>
      <svg
        viewBox={`0 0 ${width} ${height}`}
        width="100%"
        role="img"
        aria-label={props.title}
      >
        <title>{props.title}</title>
        {props.bars.map((b, i) => {
          const y = 2 + i * row;
          const value = Math.round(b.value * 1000) / 1000;
          return (
            <g key={b.label} data-bar={b.label}>
              <title>
                {b.label}: {value}
                {b.marked ? ` (${props.markedText})` : ''}
              </title>
              <text x={0} y={y + row - 5} className="nb-bar-label">
                {b.label.length > 12 ? `${b.label.slice(0, 11)}…` : b.label}
              </text>
              <rect
                x={labelWidth}
                y={y + 2}
                width={Math.max(1, (b.value / max) * span)}
                height={row - 5}
                className={b.marked ? 'nb-bar nb-bar-marked' : 'nb-bar'}
              />
              <text
                x={width - valueWidth + 4}
                y={y + row - 5}
                className="nb-bar-label"
              >
                {b.marked ? `${value} !` : value}
              </text>
            </g>
          );
        })}
      </svg>
    </figure>
  );
}
