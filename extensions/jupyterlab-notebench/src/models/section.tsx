// Pieces an endpoint card's parts share: a section that loads only while it is open, a report
// over a window the user picks, and code to copy.
import { Clipboard, Notification } from '@jupyterlab/apputils';
import * as React from 'react';

import { api, Endpoint, query } from '../api';
import { usePolled } from '../hooks';
import { useTranslation } from '../i18n';

// Drift, shadow and quality reports are computed from the store on each request: asked less often than the status.
export const MONITORING_POLL_MS = 10000;

/** A <details> whose children exist only while it is open: what they poll stops when it closes. */
export function CardSection(props: {
  section: string;
  title: string;
  children: React.ReactNode;
}): JSX.Element {
  const [open, setOpen] = React.useState(false);
  return (
    <details
      className="nb-card-section"
      data-section={props.section}
      onToggle={e => setOpen((e.target as HTMLDetailsElement).open)}
    >
      <summary>{props.title}</summary>
      {open && props.children}
    </details>
  );
}

/** A <pre> with a button that copies its text. */
export function CopyableCode(props: {
  label: string;
  code: string;
}): JSX.Element {
  const trans = useTranslation();
  return (
    <div className="nb-code">
      <div className="nb-row">
        <span>{props.label}</span>
        <button
          type="button"
          aria-label={trans.__('Copy %1', props.label)}
          onClick={() => {
            Clipboard.copyToSystem(props.code);
            Notification.info(trans.__('%1 copied', props.label), {
              autoClose: 2000
            });
          }}
        >
          {trans.__('Copy')}
        </button>
      </div>
      <pre tabIndex={0} aria-label={props.label}>
        {props.code}
      </pre>
    </div>
  );
}

/** GET endpoints/{name}/<report>?window=…, polled while the section is open, and a select of the
 * window: `data` is for the window shown (never the previous one's while the next one loads). */
export function useWindowedReport<T extends { window: string }>(
  endpoint: Endpoint,
  report: 'monitoring' | 'shadow',
  windows: string[],
  stopped: React.MutableRefObject<boolean>
): { data: T | undefined; error: string | undefined; select: JSX.Element } {
  const trans = useTranslation();
  const [span, setSpan] = React.useState(windows[0]);
  const { data, error } = usePolled(
    () =>
      api<T>(`endpoints/${endpoint.name}/${report}${query({ window: span })}`),
    MONITORING_POLL_MS,
    [endpoint.name, span],
    () => !stopped.current
  );
  const select = (
    <label className="nb-field nb-row">
      <span>{trans.__('Window')}</span>
      <select
        name={report === 'monitoring' ? 'drift-window' : 'shadow-window'}
        value={span}
        onChange={e => setSpan(e.target.value)}
      >
        {windows.map(w => (
          <option key={w} value={w}>
            {trans.__('last %1', w)}
          </option>
        ))}
      </select>
    </label>
  );
  return { data: data?.window === span ? data : undefined, error, select };
}
