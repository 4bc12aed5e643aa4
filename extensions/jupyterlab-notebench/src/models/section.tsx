// Pieces an endpoint card's parts share: a section that loads only while it is open, and code to copy.
import { Clipboard, Notification } from '@jupyterlab/apputils';
import * as React from 'react';

import { useTranslation } from '../i18n';

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
