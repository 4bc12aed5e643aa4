// Notices about idle culling: before the hub's idle culler stops this server (with a button to
// keep it), and when idle kernels have been stopped. The state comes from the server extension
// (jupyterlab_notebench/culling.py); reading it does not count as activity.
import {
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { Dialog, Notification, showDialog } from '@jupyterlab/apputils';
import {
  ITranslator,
  nullTranslator,
  TranslationBundle
} from '@jupyterlab/translation';

import { api } from './api';
import { TRANSLATION_DOMAIN } from './i18n';

interface IServerCulling {
  timeout_seconds: number;
  every_seconds: number;
  notice_seconds: number;
  idle_seconds: number;
  cull_in_seconds: number;
}

interface ICulledKernel {
  id: string;
  name: string;
  path: string | null;
  culled_at: string;
  idle_seconds: number;
}

interface ICullingState {
  server: IServerCulling | null;
  kernels: { timeout_seconds: number };
  culled_kernels: ICulledKernel[];
}

// Kernels already told about, across reloads of the page.
const NOTIFIED_KERNELS_KEY = 'notebench:culled-kernels-notified';

export function duration(trans: TranslationBundle, seconds: number): string {
  if (seconds < 120) {
    return trans._n('%1 second', '%1 seconds', Math.round(seconds));
  }
  const minutes = Math.round(seconds / 60);
  if (minutes < 180) {
    return trans._n('%1 minute', '%1 minutes', minutes);
  }
  return trans._n('%1 hour', '%1 hours', Math.round(minutes / 60));
}

function clockTime(epochMs: number): string {
  return new Date(epochMs).toLocaleTimeString([], {
    hour: '2-digit',
    minute: '2-digit'
  });
}

class CullingNotices {
  constructor(private trans: TranslationBundle) {}

  private noticeId: string | null = null;
  private timer: number | undefined;
  private checking = false;

  start(): void {
    void this.check();
  }

  private schedule(seconds: number): void {
    window.clearTimeout(this.timer);
    this.timer = window.setTimeout(() => void this.check(), seconds * 1000);
  }

  private async check(): Promise<void> {
    // One at a time: two checks in flight would each show the notice (a timer's, and one after
    // "Why?" or "Keep"); the one in flight shows what applies and schedules the next.
    if (this.checking) {
      return;
    }
    this.checking = true;
    try {
      await this.checkNow();
    } finally {
      this.checking = false;
    }
  }

  private async checkNow(): Promise<void> {
    let state: ICullingState;
    try {
      state = await api<ICullingState>('culling');
    } catch {
      this.schedule(60); // the server is restarting or gone: JupyterLab itself says so
      return;
    }
    this.showCulledKernels(state);
    const server = state.server;
    if (server === null) {
      if (state.kernels.timeout_seconds > 0) {
        this.schedule(60);
      }
      return;
    }
    if (
      server.notice_seconds > 0 &&
      server.cull_in_seconds <= server.notice_seconds
    ) {
      this.showServerNotice(server);
    } else {
      this.dismissServerNotice();
    }
    // Often enough to show the notice in time, never more than once a minute.
    this.schedule(Math.min(60, Math.max(2, server.notice_seconds / 4)));
  }

  private showServerNotice(server: IServerCulling): void {
    // Shown once and never updated: its wording names clock times, which stay true while it is
    // open (activity closes it). Updating a toast in place can open a second copy of it.
    if (this.noticeId !== null) {
      return;
    }
    const trans = this.trans;
    const now = Date.now();
    const message = trans.__(
      'No activity since %1: your server will be stopped at about %2. An open tab alone is not activity.',
      clockTime(now - server.idle_seconds * 1000),
      clockTime(
        now + (server.cull_in_seconds + server.every_seconds / 2) * 1000
      )
    );
    this.noticeId = Notification.warning(message, {
      autoClose: false,
      actions: [
        {
          label: trans.__('Keep my server running'),
          caption: trans.__('Counts as activity: the idle time starts again'),
          displayType: 'accent',
          callback: () => void this.keep()
        },
        {
          label: trans.__('Why?'),
          caption: trans.__('What counts as activity'),
          displayType: 'link',
          callback: () => void this.explain(server)
        }
      ]
    });
  }

  private dismissServerNotice(): void {
    if (this.noticeId !== null) {
      Notification.dismiss(this.noticeId);
      this.noticeId = null;
    }
  }

  // Called from the notice's buttons: JupyterLab closes the toast and dismisses the notification
  // on the click, so only forget it here rather than dismiss it a second time.
  private async keep(): Promise<void> {
    this.noticeId = null;
    try {
      await api('culling', 'POST');
    } catch (error) {
      Notification.error(
        this.trans.__('Could not keep the server running: %1', String(error))
      );
    }
    void this.check();
  }

  private async explain(server: IServerCulling): Promise<void> {
    const trans = this.trans;
    this.noticeId = null; // closed by the click (see keep): a new one comes when it applies
    await showDialog({
      title: trans.__('Why your server will be stopped'),
      body: trans.__(
        'Servers without activity for %1 are stopped, to free their CPUs, memory and GPUs for others (checked every %2). Activity is running code, output from a running kernel, the terminal, and saving, creating or changing files. An open JupyterLab tab that nobody uses is not activity. Your files are kept when the server stops; unsaved changes and the variables of your kernels are not. Save your work, or choose "Keep my server running".',
        duration(trans, server.timeout_seconds),
        duration(trans, server.every_seconds)
      ),
      buttons: [Dialog.okButton({ label: trans.__('OK') })]
    });
    void this.check();
  }

  private showCulledKernels(state: ICullingState): void {
    let notified: string[] = [];
    try {
      notified = JSON.parse(
        window.localStorage.getItem(NOTIFIED_KERNELS_KEY) ?? '[]'
      );
    } catch {
      notified = [];
    }
    const fresh = state.culled_kernels.filter(k => !notified.includes(k.id));
    for (const kernel of fresh) {
      const what = kernel.path ?? kernel.name;
      Notification.info(
        this.trans.__(
          'The kernel of %1 was stopped after %2 without activity. Its variables are gone: run the notebook again.',
          what,
          duration(this.trans, kernel.idle_seconds)
        ),
        { autoClose: false }
      );
    }
    if (fresh.length) {
      const ids = [...notified, ...fresh.map(k => k.id)].slice(-50);
      window.localStorage.setItem(NOTIFIED_KERNELS_KEY, JSON.stringify(ids));
    }
  }
}

export const cullingPlugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterlab-notebench:culling',
  description:
    'Notices before an idle server is stopped, and when idle kernels are',
  autoStart: true,
  optional: [ITranslator],
  activate: (_app: JupyterFrontEnd, translator: ITranslator | null) => {
    const trans = (translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
    new CullingNotices(trans).start();
  }
};
