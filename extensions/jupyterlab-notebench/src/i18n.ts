// Translation of the panels' text: JupyterLab's translator (language packs) when the application
// has one, else the null translator, which shows the English strings as written.
import { nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import * as React from 'react';

/** The gettext domain of this extension's strings. */
export const TRANSLATION_DOMAIN = 'jupyterlab_notebench';

/** The bundle the panels' React components translate with (provided by each panel). */
export const TranslationContext = React.createContext<TranslationBundle>(
  nullTranslator.load(TRANSLATION_DOMAIN)
);

export function useTranslation(): TranslationBundle {
  return React.useContext(TranslationContext);
}
