// Notebench for JupyterLab: the Jobs and Models side panels, "Run as job" in the notebook toolbar
// and the file browser's context menu.
import {
  ILabShell,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { IFrame, MainAreaWidget, ToolbarButton } from '@jupyterlab/apputils';
import { IDocumentManager } from '@jupyterlab/docmanager';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ITranslator, nullTranslator } from '@jupyterlab/translation';
import { LabIcon } from '@jupyterlab/ui-components';

import { api, Job, notebenchUrl } from './api';
import { cullingPlugin } from './culling';
import { TRANSLATION_DOMAIN } from './i18n';
// The panels are created in activate() and added to the sidebar at start, so their modules are
// needed at once: importing them lazily would only delay the panels.
// eslint-disable-next-line jupyter/prefer-lazy-imports -- needed by activate() (see above)
import { JobsPanel } from './jobs';
// eslint-disable-next-line jupyter/prefer-lazy-imports -- needed by activate() (see above)
import { ModelsPanel } from './models';

const jobsIcon = new LabIcon({
  name: 'notebench:jobs',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M4 4h16v3H4zm0 6.5h10v3H4zM4 17h16v3H4zm13-6.5 4 1.5-4 1.5z"/></svg>'
});
const modelsIcon = new LabIcon({
  name: 'notebench:models',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M12 2 3 7v10l9 5 9-5V7zm0 2.3 6.5 3.6L12 11.5 5.5 7.9zM5 9.6l6 3.4v6.6l-6-3.3zm8 10V13l6-3.4v6.7z"/></svg>'
});
const runIcon = new LabIcon({
  name: 'notebench:run-as-job',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24"><path class="jp-icon3" fill="#616161" d="M3 5h9v2H3zm0 4h7v2H3zm0 4h5v2H3zm8-1 10 5-10 5z"/></svg>'
});

const COMMAND_RUN_NOTEBOOK = 'notebench:run-as-job';
const COMMAND_RUN_FILE = 'notebench:run-file-as-job';
// Both commands act on the current notebook or the file browser's selection: they take no arguments.
const NO_ARGS = { args: { type: 'object', properties: {} } };

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'jupyterlab-notebench:plugin',
  description: 'Notebench Jobs and Models panels',
  autoStart: true,
  requires: [
    ILabShell,
    INotebookTracker,
    IDocumentManager,
    IFileBrowserFactory
  ],
  optional: [ITranslator],
  activate: (
    app: JupyterFrontEnd,
    shell: ILabShell,
    notebooks: INotebookTracker,
    docManager: IDocumentManager,
    browsers: IFileBrowserFactory,
    translator: ITranslator | null
  ) => {
    const trans = (translator ?? nullTranslator).load(TRANSLATION_DOMAIN);
    const openOutput = async (job: Job, cellIndex?: number | null) => {
      // The server copies the output into the user's files (job-outputs/), so it opens as a notebook.
      const response = await api<{ path: string }>(
        `jobs/${job.id}/output`,
        'POST'
      );
      const widget = docManager.openOrReveal(response.path);
      if (
        widget instanceof NotebookPanel &&
        cellIndex !== undefined &&
        cellIndex !== null
      ) {
        await widget.context.ready;
        // cellIndex counts the user's cells: the output also has papermill's injected one.
        const cells = widget.content.widgets;
        const userCells = cells.filter(
          cell =>
            !cell.model.getMetadata('tags')?.includes('injected-parameters')
        );
        const target = userCells[Math.min(cellIndex, userCells.length - 1)];
        widget.content.activeCellIndex = target
          ? cells.indexOf(target)
          : cellIndex;
        if (widget.content.activeCell) {
          await widget.content.scrollToCell(widget.content.activeCell);
        }
      }
    };
    const openHtml = (job: Job) => {
      // Sandboxed (scripts, no same origin): the HTML comes from the user's own output, which may
      // carry scripts; the server also sends a CSP sandbox header.
      const frame = new IFrame({ sandbox: ['allow-scripts', 'allow-popups'] });
      frame.url = notebenchUrl(`jobs/${job.id}/output.html`);
      const widget = new MainAreaWidget({ content: frame });
      widget.id = `notebench-job-html-${job.id}`;
      widget.title.label = trans.__('%1 #%2 (HTML)', job.name, job.id);
      widget.title.closable = true;
      shell.add(widget, 'main');
      shell.activateById(widget.id);
    };

    const jobsPanel = new JobsPanel({ openOutput, openHtml }, trans);
    jobsPanel.title.icon = jobsIcon;
    shell.add(jobsPanel, 'left', { rank: 600 });
    const modelsPanel = new ModelsPanel(trans);
    modelsPanel.title.icon = modelsIcon;
    shell.add(modelsPanel, 'left', { rank: 601 });

    // The form follows the notebook being worked on until the user chooses one (the commands
    // below): then it stays on that one.
    notebooks.currentChanged.connect((_, panel) => {
      if (panel) {
        jobsPanel.followNotebook(panel.context.path);
      }
    });

    const showForm = (path: string) => {
      jobsPanel.setNotebook(path);
      shell.activateById(jobsPanel.id);
    };

    app.commands.addCommand(COMMAND_RUN_NOTEBOOK, {
      label: trans.__('Run as job'),
      caption: trans.__('Run this notebook as a Notebench job'),
      icon: runIcon,
      describedBy: NO_ARGS,
      isEnabled: () => notebooks.currentWidget !== null,
      execute: () => {
        const panel = notebooks.currentWidget;
        if (panel) {
          showForm(panel.context.path);
        }
      }
    });
    app.commands.addCommand(COMMAND_RUN_FILE, {
      label: trans.__('Run as job'),
      caption: trans.__('Run this notebook as a Notebench job'),
      icon: runIcon,
      describedBy: NO_ARGS,
      execute: () => {
        const item = browsers.tracker.currentWidget?.selectedItems().next();
        if (item && !item.done && item.value.path.endsWith('.ipynb')) {
          showForm(item.value.path);
        }
      }
    });
    app.contextMenu.addItem({
      command: COMMAND_RUN_FILE,
      selector: '.jp-DirListing-item[data-file-type="notebook"]',
      rank: 3
    });

    app.docRegistry.addWidgetExtension('Notebook', {
      createNew: (panel: NotebookPanel) => {
        const button = new ToolbarButton({
          icon: runIcon,
          label: trans.__('Run as job'),
          tooltip: trans.__('Run this notebook as a Notebench job'),
          onClick: () => showForm(panel.context.path)
        });
        button.addClass('nb-run-as-job-button');
        panel.toolbar.insertItem(10, 'notebench-run-as-job', button);
        return button;
      }
    });
  }
};

export default [plugin, cullingPlugin];
