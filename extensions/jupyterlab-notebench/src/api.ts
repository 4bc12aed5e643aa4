// Calls to the server extension (/notebench/ in the user's own server). The browser never talks
// to the executor or MLflow directly and never holds a token: the server extension does that.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { components } from './schema';

export function notebenchUrl(path: string): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(settings.baseUrl, 'notebench', path);
}

/** An error answer: its message, HTTP status and the request field it concerns (if any). */
export class ApiError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly field: string | null
  ) {
    super(message);
  }
}

export async function api<T = any>(
  path: string,
  method = 'GET',
  body?: unknown
): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const init: RequestInit = { method };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers = { 'Content-Type': 'application/json' };
  }
  const response = await ServerConnection.makeRequest(
    notebenchUrl(path),
    init,
    settings
  );
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { message: text };
  }
  if (!response.ok) {
    throw new ApiError(
      data?.message || `${response.status} ${response.statusText}`,
      response.status,
      typeof data?.field === 'string' ? data.field : null
    );
  }
  return data as T;
}

export function query(params: Record<string, string | undefined>): string {
  const parts = Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== '')
    .map(
      ([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v as string)}`
    );
  return parts.length ? `?${parts.join('&')}` : '';
}

// --- shapes of the answers the browser gets from /notebench/ (jupyterlab_notebench/handlers.py) ---

// Answers the server extension passes through from the executor (profiles, jobs, endpoints and
// their metrics): the types generated from the executor's OpenAPI document (src/schema.ts,
// `jlpm schema` writes it from executor/api/openapi.json; never edit it by hand).
type Schemas = components['schemas'];

export type ProfilesResponse = Schemas['ProfilesResponse'];
export type Profile = Schemas['ProfileInfo'];
export type Job = Schemas['Job'];
export type JobPage = Schemas['JobPage'];
export type Schedule = Schemas['Schedule'];
export type ScheduleList = Schemas['ScheduleList'];
export type EndpointList = Schemas['EndpointList'];
export type Endpoint = Schemas['Endpoint'];
// A version an endpoint serves (the executor's ServedVersion; its EndpointVersion is the request's).
export type EndpointVersion = Schemas['ServedVersion'];
export type EndpointMetrics = Schemas['EndpointMetrics'];
export type VersionMetrics = Schemas['VersionMetrics'];
export type EndpointLogs = Schemas['EndpointLogs'];
export type EndpointMonitoring = Schemas['EndpointMonitoring'];
export type VersionMonitoring = Schemas['VersionMonitoring'];
export type FeatureDrift = Schemas['FeatureDrift'];
export type EndpointQuality = Schemas['EndpointQuality'];
export type VersionQuality = Schemas['VersionQuality'];
export type EndpointHistoryPage = Schemas['EndpointHistoryPage'];
export type EndpointHistoryEntry = Schemas['EndpointHistoryEntry'];
export type EndpointShadow = Schemas['EndpointShadow'];
export type ShadowSide = Schemas['ShadowSide'];
export type ShadowComparison = Schemas['ShadowComparison'];
export type EndpointAlerts = Schemas['EndpointAlerts'];
export type AlertRule = Schemas['AlertRule'];
export type AlertFiring = Schemas['AlertFiring'];

// The server extension's own answers (parameters of a notebook, MLflow runs and registered models,
// an endpoint's "try it"): not in the executor's API, so written here by hand.

export interface Parameter {
  name: string;
  type:
    'bool' | 'int' | 'float' | 'str' | 'list' | 'dict' | 'none' | 'expression';
  default: any;
  annotation: string | null;
  help: string;
}

// What the Models panel needs once (GET models/context).
export interface IModelsContext {
  user: string;
  admin: boolean;
  endpoint_name_pattern: string; // the executor's rule for endpoint names (an HTML pattern)
  mlflow_url: string; // MLflow's UI, e.g. /services/mlflow/
  token_url: string; // where a user makes an API token, e.g. /hub/token
}

/** A job's log from a byte offset (/notebench/jobs/<id>/log?offset=N). */
export interface LogChunk {
  text: string;
  offset: number;
}

/** A job's MLflow run (/notebench/jobs/<id>/run). */
export interface JobRun {
  run_id: string;
  experiment_id: string;
  status: string | null;
  metrics: Record<string, number>;
  params: Record<string, string>;
}

export interface ModelRun {
  model_id: string;
  name: string;
  run_id: string;
  experiment_id: string;
  run_name: string;
  experiment: string;
  created_at: number;
  metrics: Record<string, number>;
  params: Record<string, string>;
  job_id: string | null;
  notebook: string | null;
}

export interface ModelVersion {
  name: string;
  version: string;
  description: string;
  run_id: string;
  status: string;
  creation_timestamp: number;
  tags: Record<string, string>;
  aliases: string[];
}

export interface RegisteredModel {
  name: string;
  description: string;
  owner: string | null;
  aliases: Record<string, string>;
  versions: ModelVersion[];
  can_edit: boolean; // MLflow lets this user change it (register into, aliases, deploy from)
}

// One stored request sample of an endpoint (the executor's GET endpoints/{name}/requests).
export interface IRequestSample {
  time: string;
  model: string;
  version: string;
  latency_ms: number;
  status: number;
  inputs: unknown; // the JSON body, or text where it was not JSON or was cut at 16 KiB
  outputs: unknown;
}

export interface IEndpointExample {
  payload: unknown;
  reason: string | null; // why there is no example (payload null)
}

export interface Invocation {
  payload: unknown;
  status: number;
  latency_ms: number;
  version: string | null;
  predictions?: unknown;
  error?: unknown;
}
