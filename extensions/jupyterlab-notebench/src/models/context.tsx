// What every part of the Models panel shares: who is looking, and where MLflow's UI is.
import * as React from 'react';

import { IModelsContext } from '../api';

// How often endpoints (and an open endpoint's logs and requests) are asked again.
export const ENDPOINT_POLL_MS = 3000;

export const ModelsContext = React.createContext<IModelsContext>({
  user: '',
  admin: false,
  endpoint_name_pattern: '',
  mlflow_url: '/services/mlflow/',
  token_url: '/hub/token'
});

export function useModelsContext(): IModelsContext {
  return React.useContext(ModelsContext);
}

// MLflow's UI routes (hash routes of its single-page app).
export function mlflowRunUrl(
  context: IModelsContext,
  experimentId: string,
  runId: string
): string {
  return `${context.mlflow_url}#/experiments/${encodeURIComponent(experimentId)}/runs/${encodeURIComponent(runId)}`;
}

export function mlflowVersionUrl(
  context: IModelsContext,
  model: string,
  version: string
): string {
  return `${context.mlflow_url}#/models/${encodeURIComponent(model)}/versions/${encodeURIComponent(version)}`;
}

export function formatMetric(value: number | undefined): string {
  return value === undefined
    ? '–'
    : Number.isInteger(value)
      ? String(value)
      : value.toFixed(4);
}

/** A link that opens MLflow's UI in a new browser tab. */
export function MlflowLink(props: {
  href: string;
  label: string;
  children: React.ReactNode;
}): JSX.Element {
  return (
    <a
      className="nb-mlflow-link"
      href={props.href}
      target="_blank"
      rel="noopener noreferrer"
      aria-label={props.label}
      title={props.label}
    >
      {props.children}
    </a>
  );
}
