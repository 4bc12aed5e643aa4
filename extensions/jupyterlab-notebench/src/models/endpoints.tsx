// Deploying model versions behind an endpoint, with the traffic split by weight; the endpoints.
import * as React from 'react';

import { api, EndpointList, RegisteredModel } from '../api';
import { useAsync, usePolled } from '../hooks';
import { useTranslation } from '../i18n';
import { ENDPOINT_POLL_MS, useModelsContext } from './context';
import { EndpointCard } from './endpointCard';
import { IVersionRow, rowsValid, toVersions, WeightsEditor } from './weights';

function DeployForm(props: {
  models: RegisteredModel[];
  onDeployed: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const context = useModelsContext();
  const [name, setName] = React.useState('');
  const [rows, setRows] = React.useState<IVersionRow[]>([
    { model: '', version: '', weight: '100' }
  ]);
  const { error, run } = useAsync();
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    run(async () => {
      await api('endpoints', 'POST', { name, versions: toVersions(rows) });
      setName('');
      setRows([{ model: '', version: '', weight: '100' }]);
      props.onDeployed();
    });
  };
  return (
    <form className="nb-form" onSubmit={submit} aria-label={trans.__('Deploy')}>
      <label className="nb-field">
        <span>{trans.__('Endpoint name')}</span>
        <input
          name="endpoint-name"
          placeholder={trans.__('e.g. iris')}
          value={name}
          // The executor's own rule, as its server gives it (hub/platform/names.py).
          pattern={context.endpoint_name_pattern || undefined}
          title={trans.__(
            'Lower-case letters, digits and -, starting with a letter or digit; at most 63'
          )}
          onChange={e => setName(e.target.value)}
        />
      </label>
      <WeightsEditor rows={rows} setRows={setRows} models={props.models} />
      <button
        type="submit"
        className="jp-mod-styled jp-mod-accept"
        disabled={!name || !rowsValid(rows)}
      >
        {trans.__('Deploy')}
      </button>
      {error && <p className="nb-error">{error}</p>}
    </form>
  );
}

export function Endpoints(props: { models: RegisteredModel[] }): JSX.Element {
  const trans = useTranslation();
  const { data, error, refresh } = usePolled(
    () => api<EndpointList>('endpoints'),
    ENDPOINT_POLL_MS,
    []
  );
  const endpoints = data?.endpoints;
  return (
    <div>
      <DeployForm models={props.models} onDeployed={refresh} />
      {error && <p className="nb-error">{trans.__('Endpoints: %1', error)}</p>}
      {endpoints?.map(e => (
        <EndpointCard
          key={e.name}
          endpoint={e}
          models={props.models}
          onChange={refresh}
        />
      ))}
    </div>
  );
}
