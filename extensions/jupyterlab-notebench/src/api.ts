// Calls to the server extension (/notebench/ in the user's own server). The browser never talks
// to the executor or MLflow directly and never holds a token: the server extension does that.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

export function notebenchUrl(path: string): string {
  const settings = ServerConnection.makeSettings();
  return URLExt.join(settings.baseUrl, 'notebench', path);
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
    throw new Error(
      data?.message || `${response.status} ${response.statusText}`
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

// --- shapes of the server extension's answers (see jupyterlab_notebench/handlers.py) ---

export interface Profile {
  name: string;
  display_name: string;
  description: string;
  gpus: number;
  default: boolean;
}

export interface Parameter {
  name: string;
  type:
    'bool' | 'int' | 'float' | 'str' | 'list' | 'dict' | 'none' | 'expression';
  default: any;
  annotation: string | null;
  help: string;
}

export interface Job {
  id: number;
  name: string;
  status:
    'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'timed_out';
  created_at: string;
  started_at: string | null;
  finished_at: string | null;
  profile: string;
  workers: number;
  parameters: Record<string, unknown>;
  progress: { cells_completed: number; cells_total: number };
  error: { ename: string; evalue: string; cell_index: number | null } | null;
  mlflow_run_id: string | null;
}

export interface ModelRun {
  model_id: string;
  name: string;
  run_id: string;
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
}

export interface EndpointVersion {
  model: string;
  version: string;
  alias: string | null;
  weight: number;
  status: 'starting' | 'ready' | 'failed';
  reason: string | null;
}

export interface Endpoint {
  name: string;
  owner: string;
  status: 'starting' | 'ready' | 'updating' | 'failed';
  reason: string | null;
  invocation_url: string;
  versions: EndpointVersion[];
}

export interface VersionMetrics {
  model: string;
  version: string;
  requests: number;
  errors: number;
  latency_ms: { p50: number | null; p99: number | null };
  series: { t: string; requests: number; p50_ms: number | null }[];
}

export interface Invocation {
  payload: unknown;
  status: number;
  latency_ms: number;
  version: string | null;
  predictions?: unknown;
  error?: unknown;
}
