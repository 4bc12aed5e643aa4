// Registered models with their versions and aliases; only those the user may change offer changes.
import * as React from 'react';

import { api, query, RegisteredModel } from '../api';
import { useAsync } from '../hooks';
import { useTranslation } from '../i18n';
import { MlflowLink, mlflowVersionUrl, useModelsContext } from './context';

const ALIASES = ['champion', 'challenger'];

function AliasForm(props: {
  model: RegisteredModel;
  onDone: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const latest = props.model.versions[0]?.version ?? '';
  // Empty after each use: the next alias is a new choice, not `champion` moved again.
  const [alias, setAlias] = React.useState('');
  const [version, setVersion] = React.useState(latest);
  const { error, run } = useAsync();
  const submit = (e: React.FormEvent) => {
    e.preventDefault();
    run(async () => {
      await api('models/aliases', 'POST', {
        name: props.model.name,
        alias: alias.trim(),
        version
      });
      setAlias('');
      setVersion(latest);
      props.onDone();
    });
  };
  const listId = React.useId();
  return (
    <form
      className="nb-inline-form"
      onSubmit={submit}
      aria-label={trans.__('Set alias of %1', props.model.name)}
    >
      <input
        name="alias"
        list={listId}
        aria-label={trans.__('Alias')}
        placeholder={trans.__('alias, e.g. champion')}
        value={alias}
        onChange={e => setAlias(e.target.value)}
      />
      <datalist id={listId}>
        {ALIASES.map(a => (
          <option key={a} value={a} />
        ))}
      </datalist>
      <span aria-hidden="true">→</span>
      <select
        name="version"
        aria-label={trans.__('Version')}
        value={version}
        onChange={e => setVersion(e.target.value)}
      >
        {props.model.versions.map(v => (
          <option key={v.version} value={v.version}>
            {trans.__('v%1', v.version)}
          </option>
        ))}
      </select>
      <button type="submit" disabled={!alias.trim() || !version}>
        {trans.__('Set alias')}
      </button>
      {error && <span className="nb-error">{error}</span>}
    </form>
  );
}

export function RegisteredModels(props: {
  models: RegisteredModel[];
  onChange: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const context = useModelsContext();
  const { error, run } = useAsync();
  if (!props.models.length) {
    return (
      <p className="nb-hint">
        {trans.__("No registered models yet: register a run's model above.")}
      </p>
    );
  }
  return (
    <div>
      {error && <p className="nb-error">{error}</p>}
      {props.models.map(m => (
        <div
          className="nb-model"
          key={m.name}
          data-model={m.name}
          data-can-edit={m.can_edit}
        >
          <div className="nb-model-name">
            {m.name}
            {m.owner ? <small> · {m.owner}</small> : null}
            {!m.can_edit && (
              <small className="nb-hint nb-read-only">
                {' '}
                · {trans.__('read only')}
              </small>
            )}
          </div>
          <table className="nb-table">
            <tbody>
              {m.versions.map(v => (
                <tr key={v.version} data-version={v.version}>
                  <td>
                    <MlflowLink
                      href={mlflowVersionUrl(context, m.name, v.version)}
                      label={trans.__(
                        '%1 version %2 in MLflow',
                        m.name,
                        v.version
                      )}
                    >
                      {trans.__('v%1', v.version)}
                    </MlflowLink>
                  </td>
                  <td>
                    {v.aliases.map(a => (
                      <span className="nb-chip" key={a}>
                        @{a}
                        {m.can_edit && (
                          <button
                            type="button"
                            aria-label={trans.__('Remove alias %1', a)}
                            title={trans.__('Remove alias %1', a)}
                            onClick={() =>
                              run(() =>
                                api(
                                  `models/aliases${query({ name: m.name, alias: a })}`,
                                  'DELETE'
                                ).then(props.onChange)
                              )
                            }
                          >
                            ×
                          </button>
                        )}
                      </span>
                    ))}
                  </td>
                  <td>
                    <small>
                      {v.tags['notebench.job_id']
                        ? trans.__('job #%1', v.tags['notebench.job_id'])
                        : ''}{' '}
                      {v.description}
                    </small>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {m.can_edit && <AliasForm model={m} onDone={props.onChange} />}
        </div>
      ))}
    </div>
  );
}
