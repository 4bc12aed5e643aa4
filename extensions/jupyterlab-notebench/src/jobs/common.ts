// What the Jobs panel's parts share: Python literals as papermill users write them, confirmations,
// times and durations, and where MLflow's UI is.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import { PageConfig } from '@jupyterlab/coreutils';
import { TranslationBundle } from '@jupyterlab/translation';

import { Job } from '../api';

export const ACTIVE = ['queued', 'running'];
export const POLL_MS = 2000;

/** A JSON value written as a Python literal (None, True, {'a': 1}), as the form shows it. */
export function pythonLiteral(value: unknown, float = false): string {
  if (value === null || value === undefined) {
    return 'None';
  }
  if (typeof value === 'boolean') {
    return value ? 'True' : 'False';
  }
  if (typeof value === 'number') {
    // Show 1.0 rather than 1 for a float, so the field reads as the float it is.
    return float && Number.isInteger(value) ? value.toFixed(1) : String(value);
  }
  if (typeof value === 'string') {
    return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n')}'`;
  }
  if (Array.isArray(value)) {
    return `[${value.map(v => pythonLiteral(v)).join(', ')}]`;
  }
  const entries = Object.entries(value as Record<string, unknown>);
  return `{${entries.map(([k, v]) => `${pythonLiteral(k)}: ${pythonLiteral(v)}`).join(', ')}}`;
}

/** Ask before something that cannot be undone; true if the user agreed. */
export async function confirm(
  trans: TranslationBundle,
  title: string,
  body: string,
  action: string
): Promise<boolean> {
  const result = await showDialog({
    title,
    body,
    buttons: [
      Dialog.cancelButton({ label: trans.__('Keep it') }),
      Dialog.warnButton({ label: action })
    ]
  });
  return result.button.accept;
}

export function localTime(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : '';
}

/** How long the job ran (so far, while it runs): "1 h 2 min", "3 min 4 s", "5 s". */
export function duration(job: Job): string {
  if (!job.started_at) {
    return '';
  }
  const end = job.finished_at ? Date.parse(job.finished_at) : Date.now();
  const seconds = Math.max(
    0,
    Math.round((end - Date.parse(job.started_at)) / 1000)
  );
  const h = Math.floor(seconds / 3600);
  const m = Math.floor((seconds % 3600) / 60);
  const s = seconds % 60;
  if (h) {
    return `${h} h ${m} min`;
  }
  return m ? `${m} min ${s} s` : `${s} s`;
}

/** The signed-in user (JupyterHub's page config), to tell their jobs from others' (admins). */
export function currentUser(): string {
  return PageConfig.getOption('hubUser');
}

/** MLflow's UI in this Notebench (beside the hub), or null outside one. */
export function mlflowUrl(hash: string): string | null {
  const hubPrefix = PageConfig.getOption('hubPrefix');
  if (!hubPrefix) {
    return null;
  }
  return `${hubPrefix.replace(/hub\/?$/, '')}services/mlflow/#${hash}`;
}

/** A status as people read it: "timed out", not "timed_out". */
export function statusText(trans: TranslationBundle, status: string): string {
  const names: Record<string, string> = {
    queued: trans.__('queued'),
    running: trans.__('running'),
    succeeded: trans.__('succeeded'),
    failed: trans.__('failed'),
    cancelled: trans.__('cancelled'),
    timed_out: trans.__('timed out')
  };
  return names[status] ?? status;
}
