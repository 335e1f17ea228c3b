/**
 * Client of the governance REST API (`/governance/api/`), through JupyterLab's
 * authenticated server connection so the user's token and XSRF cookie are sent.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** The JSON answered by `GET /governance/api/health`. */
export interface IHealth {
  status: string;
  version: string;
  kernel_name: string;
  policy_path: string;
  policy_exists: boolean;
  store: string;
  user: string;
  user_display_name: string;
}

/** An error with a message written for the person looking at the panel. */
export class GovernanceApiError extends Error {
  constructor(
    message: string,
    readonly status: number | null
  ) {
    super(message);
    this.name = 'GovernanceApiError';
  }
}

/** Call an endpoint under `/governance/api/` and parse its JSON answer. */
export async function requestAPI<T>(
  endpoint: string,
  init: RequestInit = {},
  settings: ServerConnection.ISettings = ServerConnection.makeSettings()
): Promise<T> {
  const url = URLExt.join(settings.baseUrl, 'governance', 'api', endpoint);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new GovernanceApiError(
      `The Jupyter server could not be reached (${String(error)}).`,
      null
    );
  }
  if (response.status === 404) {
    throw new GovernanceApiError(
      'The governance server extension is not running on this Jupyter server. ' +
        'Install the governed-kernel package in the server environment, run ' +
        '`jupyter server extension enable governed_server`, then restart the server.',
      404
    );
  }
  if (response.status === 401 || response.status === 403) {
    throw new GovernanceApiError(
      `The governance API refused this user (HTTP ${response.status}). Log in again or ask an administrator for access.`,
      response.status
    );
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text.length > 0 ? JSON.parse(text) : null;
  } catch {
    throw new GovernanceApiError(
      `The governance API answered HTTP ${response.status} with a body that is not JSON.`,
      response.status
    );
  }
  if (!response.ok) {
    const message =
      data && typeof data === 'object' && 'message' in data
        ? String((data as { message: unknown }).message)
        : `HTTP ${response.status}`;
    throw new GovernanceApiError(
      `The governance API reported an error: ${message}`,
      response.status
    );
  }
  return data as T;
}
