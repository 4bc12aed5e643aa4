// The Models panel: runs that logged models, registered models and aliases, endpoints.
import { TranslationBundle } from '@jupyterlab/translation';
import { ReactWidget } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging'; // a type only: @lumino/widgets brings it
import * as React from 'react';

import { api, IModelsContext, ModelRun, RegisteredModel } from '../api';
import { useAsync } from '../hooks';
import { TranslationContext, useTranslation } from '../i18n';
import { ModelsContext } from './context';
import { Endpoints } from './endpoints';
import { RegisteredModels } from './registered';
import { RunsTable } from './runs';

function ModelsView(props: { shown: number }): JSX.Element {
  const trans = useTranslation();
  const [context, setContext] = React.useState<IModelsContext | null>(null);
  const [runs, setRuns] = React.useState<ModelRun[]>([]);
  const [models, setModels] = React.useState<RegisteredModel[]>([]);
  const [loading, setLoading] = React.useState(false);
  const { error, run } = useAsync();
  const load = () =>
    run(async () => {
      setLoading(true);
      try {
        const [c, r, m] = await Promise.all([
          context ?? api<IModelsContext>('models/context'),
          api<{ runs: ModelRun[] }>('models/runs'),
          api<{ registered_models: RegisteredModel[] }>('models/registered')
        ]);
        setContext(c);
        setRuns(r.runs);
        setModels(m.registered_models);
      } finally {
        setLoading(false);
      }
    });
  // Loaded again each time the panel is opened: runs and models are made elsewhere (a notebook,
  // a job, MLflow's UI) and nothing tells the panel.
  React.useEffect(() => {
    load();
  }, [props.shown]);
  return (
    <div className="nb-panel-body">
      <h2>
        {trans.__('Models')}{' '}
        <button
          type="button"
          onClick={load}
          aria-label={trans.__('Refresh')}
          title={trans.__('Refresh')}
          disabled={loading}
        >
          ↻
        </button>
      </h2>
      {error && <p className="nb-error">{error}</p>}
      {context && (
        <ModelsContext.Provider value={context}>
          <div className="nb-section" data-section="runs">
            <div className="nb-section-title">
              {trans.__('Runs with models')}
            </div>
            <RunsTable runs={runs} models={models} onRegistered={load} />
          </div>
          <div className="nb-section" data-section="registered">
            <div className="nb-section-title">
              {trans.__('Registered models')}
            </div>
            <RegisteredModels models={models} onChange={load} />
          </div>
          <div className="nb-section" data-section="endpoints">
            <div className="nb-section-title">{trans.__('Endpoints')}</div>
            <Endpoints models={models} />
          </div>
        </ModelsContext.Provider>
      )}
    </div>
  );
}

export class ModelsPanel extends ReactWidget {
  constructor(private trans: TranslationBundle) {
    super();
    this.id = 'notebench-models';
    this.addClass('nb-panel');
    this.title.caption = trans.__('Notebench models');
  }

  private shown = 0;

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.shown += 1;
    this.update();
  }

  render(): JSX.Element {
    return (
      <TranslationContext.Provider value={this.trans}>
        <ModelsView shown={this.shown} />
      </TranslationContext.Provider>
    );
  }
}
