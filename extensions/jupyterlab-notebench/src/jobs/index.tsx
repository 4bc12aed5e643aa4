// The Jobs panel: run a notebook as a job (form from its parameters cell), follow and manage your
// jobs and schedules.
import { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget } from '@jupyterlab/ui-components';
import * as React from 'react';

import { Job } from '../api';
import { TranslationContext } from '../i18n';
import { draftOf, IDraft, newDraft, RunForm } from './form';
import { IJobActions, JobsList } from './list';
import { SchedulesList } from './schedules';

export type { IJobActions } from './list';

/** Job outputs are copies to read, not notebooks to run: the form never turns to them by itself. */
const OUTPUT_DIR = 'job-outputs/';

/**
 * The left side panel. The form runs `notebookPath`: the notebook the user chose ("Run as job"),
 * else the one they work on. What they typed is kept per notebook (`drafts`) for the session.
 */
export class JobsPanel extends ReactWidget {
  constructor(
    private actions: Omit<IJobActions, 'rerun'>,
    private trans: TranslationBundle
  ) {
    super();
    this.id = 'notebench-jobs';
    this.addClass('nb-panel');
    this.title.caption = trans.__('Notebench jobs');
  }

  notebookPath: string | null = null;
  private chosen = false;
  private drafts = new Map<string, IDraft>();
  private submitted = 0;
  private formKey = 0;

  /** The user chose this notebook to run: the form stays on it. */
  setNotebook(path: string | null): void {
    this.chosen = path !== null;
    this.target(path);
  }

  /** The notebook the user works on changed: the form follows it, unless they chose one. */
  followNotebook(path: string): void {
    if (!this.chosen && !path.startsWith(OUTPUT_DIR)) {
      this.target(path);
    }
  }

  /** Re-run: the job's notebook in the form, with the job's parameters and settings. */
  rerun(job: Job): void {
    const path = job.notebook_path ?? `${job.name}.ipynb`;
    this.drafts.set(path, draftOf(job));
    this.formKey += 1; // a fresh form reads the new draft
    this.setNotebook(path);
    this.update();
    this.node.querySelector('form')?.scrollIntoView();
  }

  private target(path: string | null): void {
    if (path !== this.notebookPath) {
      this.notebookPath = path;
      this.update();
    }
  }

  private draft(path: string): IDraft {
    let draft = this.drafts.get(path);
    if (!draft) {
      draft = newDraft();
      this.drafts.set(path, draft);
    }
    return draft;
  }

  render(): JSX.Element {
    const path = this.notebookPath;
    return (
      <TranslationContext.Provider value={this.trans}>
        <div className="nb-panel-body">
          <h2>{this.trans.__('Jobs')}</h2>
          <RunForm
            key={`${path}#${this.formKey}`}
            path={path}
            draft={path ? this.draft(path) : newDraft()}
            onSubmitted={() => {
              this.submitted += 1;
              this.update();
            }}
          />
          <JobsList
            actions={{ ...this.actions, rerun: job => this.rerun(job) }}
            refresh={this.submitted}
          />
          <SchedulesList refresh={this.submitted} />
        </div>
      </TranslationContext.Provider>
    );
  }
}
