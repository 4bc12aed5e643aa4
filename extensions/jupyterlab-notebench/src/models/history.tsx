// An endpoint card's "History" section: every deploy, update, rollback and delete, newest first and
// paged (GET endpoints/{name}/history), with "Roll back to this" on earlier entries for the owner
// or an admin (POST endpoints/{name}/rollback). Actors, reasons and names are the users': text only.
import { Dialog, showDialog } from '@jupyterlab/apputils';
import * as React from 'react';

import {
  api,
  Endpoint,
  EndpointHistoryEntry,
  EndpointHistoryPage,
  query
} from '../api';
import { useAsync, usePolled } from '../hooks';
import { useTranslation } from '../i18n';
import { ENDPOINT_POLL_MS, useModelsContext } from './context';
import { CardSection } from './section';

const HISTORY_PAGE = 10;
const MAX_REASON_CHARS = 500; // the executor's limit

// A shadow's share is of the requests copied to it, not of the answers: said so.
function versionsText(entry: EndpointHistoryEntry): string {
  return entry.versions
    .map(
      v =>
        `${v.model}/${v.version}${v.alias ? ` (@${v.alias})` : ''} ` +
        (v.shadow ? `shadow ${v.traffic_percent ?? 100}%` : `${v.weight}%`)
    )
    .join(', ');
}

/** The rollback dialog's body: what comes back, and an optional reason (kept in the history). The
 * dialog renders outside the panel (no translation context): its text comes translated. */
function RollbackBody(props: {
  text: string;
  label: string;
  onReason: (reason: string) => void;
}): JSX.Element {
  return (
    <div>
      <p>{props.text}</p>
      <label className="nb-field">
        <span>{props.label}</span>
        <input
          name="rollback-reason"
          maxLength={MAX_REASON_CHARS}
          onChange={e => props.onReason(e.target.value)}
        />
      </label>
    </div>
  );
}

function HistoryPages(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
  onChange: () => void;
}): JSX.Element {
  const trans = useTranslation();
  const context = useModelsContext();
  const { endpoint } = props;
  // The cursors of the pages shown so far: the last one's page is on screen (null: the newest).
  const [cursors, setCursors] = React.useState<(string | null)[]>([null]);
  const cursor = cursors[cursors.length - 1];
  const { data, error, refresh } = usePolled(
    () =>
      api<EndpointHistoryPage>(
        `endpoints/${endpoint.name}/history${query({
          limit: String(HISTORY_PAGE),
          cursor: cursor ?? undefined
        })}`
      ),
    ENDPOINT_POLL_MS,
    [endpoint.name, cursor],
    () => !props.stopped.current
  );
  const rollback = useAsync();
  // Others' endpoints are not shown at all (the executor answers 404); the check keeps the button
  // to those the executor lets roll back, should a read-only card ever show one.
  const mayChange = context.admin || endpoint.owner === context.user;
  const changing =
    endpoint.status === 'starting' || endpoint.status === 'updating';
  // The newest entry is the state the endpoint is in: nothing to roll back to.
  const current = cursor === null ? data?.entries[0]?.id : undefined;

  const rollBack = async (entry: EndpointHistoryEntry) => {
    let reason = '';
    const answer = await showDialog({
      title: trans.__('Roll back endpoint %1?', endpoint.name),
      body: (
        <RollbackBody
          text={trans.__(
            'Serve %1 again, as on %2? This is a rolling update, recorded in the history as a rollback.',
            versionsText(entry),
            new Date(entry.at).toLocaleString()
          )}
          label={trans.__('Reason (optional)')}
          onReason={r => (reason = r)}
        />
      ),
      buttons: [
        Dialog.cancelButton({ label: trans.__('Cancel') }),
        Dialog.warnButton({ label: trans.__('Roll back') })
      ]
    });
    if (!answer.button.accept) {
      return;
    }
    await rollback.run(async () => {
      await api(`endpoints/${endpoint.name}/rollback`, 'POST', {
        to: entry.id,
        reason: reason.trim() || null
      });
      setCursors([null]);
      refresh();
      props.onChange();
    });
  };

  return (
    <div>
      {error && <p className="nb-error">{error}</p>}
      {rollback.error && <p className="nb-error">{rollback.error}</p>}
      {!mayChange && (
        <small className="nb-hint nb-read-only">{trans.__('read only')}</small>
      )}
      {data && !data.entries.length && (
        <p className="nb-hint">{trans.__('No changes recorded.')}</p>
      )}
      {data && data.entries.length > 0 && (
        <div
          className="nb-scroll"
          tabIndex={0}
          role="region"
          aria-label={trans.__('History of %1', endpoint.name)}
        >
          <table className="nb-table nb-history">
            <thead>
              <tr>
                <th>{trans.__('time')}</th>
                <th>{trans.__('who')}</th>
                <th>{trans.__('action')}</th>
                <th>{trans.__('reason')}</th>
                <th>{trans.__('versions')}</th>
                {mayChange && <th>{trans.__('rollback')}</th>}
              </tr>
            </thead>
            <tbody>
              {data.entries.map(entry => (
                <tr key={entry.id} data-entry={entry.id}>
                  <td>{new Date(entry.at).toLocaleString()}</td>
                  <td className="nb-actor">{entry.actor}</td>
                  <td className="nb-action">
                    {entry.action}
                    {entry.action === 'rollback' &&
                      typeof entry.detail.to === 'number' &&
                      ` (${trans.__('to %1', entry.detail.to)})`}
                  </td>
                  <td className="nb-reason">{entry.reason ?? ''}</td>
                  <td className="nb-versions">{versionsText(entry)}</td>
                  {mayChange && (
                    <td>
                      {entry.id === current ? (
                        <span className="nb-hint">{trans.__('current')}</span>
                      ) : (
                        entry.action !== 'delete' && (
                          <button
                            type="button"
                            disabled={changing}
                            title={trans.__(
                              'Serve these versions and weights again'
                            )}
                            onClick={() => rollBack(entry)}
                          >
                            {trans.__('Roll back to this')}
                          </button>
                        )
                      )}
                    </td>
                  )}
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      <div className="nb-actions">
        <button
          type="button"
          disabled={cursors.length === 1}
          onClick={() => setCursors(cursors.slice(0, -1))}
        >
          {trans.__('Newer')}
        </button>
        <button
          type="button"
          disabled={!data?.next_cursor}
          onClick={() =>
            data?.next_cursor && setCursors([...cursors, data.next_cursor])
          }
        >
          {trans.__('Older')}
        </button>
      </div>
    </div>
  );
}

export function History(props: {
  endpoint: Endpoint;
  stopped: React.MutableRefObject<boolean>;
  onChange: () => void;
}): JSX.Element {
  const trans = useTranslation();
  return (
    <CardSection section="history" title={trans.__('History')}>
      <HistoryPages {...props} />
    </CardSection>
  );
}
