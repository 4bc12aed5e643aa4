// An endpoint card's "Shadow" section: its live versions and its shadow versions side by side over a
// window, measured on the same requests (GET endpoints/{name}/shadow): requests, errors, latency,
// and per shadow how often it agrees with the live answer, how many requests were compared or
// dropped, and its quality from label feedback. Model names are the users': shown as text only.
import * as React from 'react';

import { Endpoint, EndpointShadow, ShadowComparison, ShadowSide } from '../api';
import { useTranslation } from '../i18n';
import { figure, percent, QUALITY_WINDOWS } from './monitoring';
import { CardSection, useWindowedReport } from './section';

// The executor's fixed windows of the comparison (as quality's).
const SHADOW_WINDOWS = QUALITY_WINDOWS;

function ms(value: number | null): string {
  return value === null ? '–' : `${Math.round(value * 10) / 10} ms`;
}

function qualityText(shadow: ShadowComparison, noLabels: string): string {
  const metrics = Object.entries(shadow.quality);
  return metrics.length
    ? metrics.map(([metric, value]) => `${metric} ${figure(value)}`).join(', ')
    : noLabels;
}

function SideRow(props: {
  side: ShadowSide;
  role: string;
  shadow?: ShadowComparison;
}): JSX.Element {
  const trans = useTranslation();
  const { side, shadow } = props;
  return (
    <tr
      data-side={shadow ? 'shadow' : 'live'}
      data-version={side.version}
      data-model={side.model}
    >
      <td>
        {side.model}/{side.version}
      </td>
      <td>{props.role}</td>
      <td className="nb-requests">{side.requests}</td>
      <td className="nb-errors">{side.errors}</td>
      <td>{ms(side.latency_ms.p50)}</td>
      <td>{ms(side.latency_ms.p99)}</td>
      <td className="nb-agreement">
        {shadow && shadow.agreement_rate !== null
          ? percent(shadow.agreement_rate)
          : '–'}
      </td>
      <td className="nb-compared">{shadow ? shadow.compared : '–'}</td>
      <td className="nb-dropped">{shadow ? shadow.dropped : '–'}</td>
      <td className="nb-shadow-quality">
        {shadow ? qualityText(shadow, trans.__('no labels yet')) : '–'}
      </td>
    </tr>
  );
}

function ShadowReport(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
}): JSX.Element {
  const trans = useTranslation();
  const { endpoint } = props;
  const { data, error, select } = useWindowedReport<EndpointShadow>(
    endpoint,
    'shadow',
    SHADOW_WINDOWS,
    props.stopped
  );
  const serving = endpoint.versions.some(v => v.shadow);
  if (data && !serving && !data.shadows.length) {
    return (
      <p className="nb-hint nb-no-shadow">
        <b>{trans.__('No shadow version.')}</b>{' '}
        {trans.__(
          'Edit versions and mark one "shadow" to try it on a copy of the requests, beside the live versions, without it ever answering.'
        )}
      </p>
    );
  }
  const label = trans.__('Shadow and live versions of %1', endpoint.name);
  return (
    <div>
      {select}
      {error && <p className="nb-error">{error}</p>}
      {!endpoint.monitoring && (
        <p className="nb-hint">
          {trans.__(
            'Monitoring is off for this endpoint: no prediction is kept, so its shadows get no copies.'
          )}
        </p>
      )}
      {data && (
        <>
          <p className="nb-hint">
            {trans.__(
              'Since %1, on the same requests: the live versions over the requests copied to a shadow, each shadow over its copies.',
              new Date(data.since).toLocaleString()
            )}
          </p>
          <div
            className="nb-scroll"
            tabIndex={0}
            role="region"
            aria-label={label}
          >
            <table className="nb-table nb-shadow-table" aria-label={label}>
              <thead>
                <tr>
                  <th>{trans.__('version')}</th>
                  <th>{trans.__('role')}</th>
                  <th>{trans.__('requests')}</th>
                  <th>{trans.__('errors')}</th>
                  <th>{trans.__('p50')}</th>
                  <th>{trans.__('p99')}</th>
                  <th>{trans.__('agreement')}</th>
                  <th>{trans.__('compared')}</th>
                  <th>{trans.__('dropped')}</th>
                  <th>{trans.__('quality')}</th>
                </tr>
              </thead>
              <tbody>
                {data.live.map(v => (
                  <SideRow
                    key={`live ${v.model}/${v.version}`}
                    side={v}
                    role={trans.__('live')}
                  />
                ))}
                {data.shadows.map(v => (
                  <SideRow
                    key={`shadow ${v.model}/${v.version}`}
                    side={v}
                    shadow={v}
                    role={
                      v.traffic_percent === null
                        ? trans.__('no longer a shadow')
                        : trans.__(
                            'shadow, %1 % of requests',
                            v.traffic_percent
                          )
                    }
                  />
                ))}
              </tbody>
            </table>
          </div>
        </>
      )}
    </div>
  );
}

export function Shadow(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
}): JSX.Element {
  const trans = useTranslation();
  return (
    <CardSection section="shadow" title={trans.__('Shadow')}>
      <ShadowReport endpoint={props.endpoint} stopped={props.stopped} />
    </CardSection>
  );
}
