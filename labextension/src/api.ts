/**
 * Client of the governance REST API (`/governance/api/`), through JupyterLab's
 * authenticated server connection so the user's token and XSRF cookie are sent.
 *
 * The shapes below mirror `docs/openapi.json`; the server masks every card number before
 * anything reaches this code (cell source, outputs, audit records).
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

export type Role = 'analyst' | 'approver' | 'auditor';

/** `GET /governance/api/me`: who the service thinks you are. */
export interface IMe {
  username: string;
  display_name: string;
  groups: string[];
  roles: Role[];
  policy: {
    name: string;
    version: string;
    mode: string;
    required_approvers: number;
  };
}

export interface ISpan {
  line: number;
  column: number;
  end_line: number;
  end_column: number;
}

/** One policy rule that matched the cell. */
export interface IMatchedRule {
  id: string;
  action?: string;
  reason?: string;
  pci?: string[];
  span?: ISpan | null;
}

export interface IDecision {
  approver: string;
  decision: 'approve' | 'deny';
  reason: string;
  decided_at: string | null;
}

export type ApprovalStatus =
  | 'pending'
  | 'approved'
  | 'denied'
  | 'expired'
  | 'cancelled';

/** An approval request as `GET /governance/api/approvals/{id}` answers it. */
export interface IApprovalRequest {
  id: string;
  created_at: string;
  requester: string;
  kernel_id: string;
  notebook_path: string;
  cell_id: string;
  cell_hash: string;
  /** The cell source, masked by the kernel and again by the server. */
  code: string;
  policy_version: string;
  rules: IMatchedRule[];
  status: ApprovalStatus;
  required_approvals: number;
  approvals: number;
  expires_at: string | null;
  decided_at: string | null;
  valid_until: string | null;
  single_use?: boolean;
  uses?: number;
  decisions: IDecision[];
}

/** One audit record (`GET /governance/api/audit`). */
export interface IAuditRecord {
  seq: number;
  time: string;
  user: string;
  claimed_user: string | null;
  event_type: string;
  outcome: string;
  origin: {
    client_addr?: string;
    server?: string;
    kernel_id?: string;
    session_id?: string;
    notebook?: string;
    [key: string]: unknown;
  };
  resource: { cell_id?: string; tables?: string[]; [key: string]: unknown };
  data: {
    code?: string;
    output?: string;
    approval_id?: string | null;
    policy_version?: string;
    details?: Record<string, unknown>;
    [key: string]: unknown;
  };
  prev_hash: string;
  hash: string;
}

/** Filters of `GET /governance/api/audit` (empty strings are left out). */
export interface IAuditFilters {
  user?: string;
  event_type?: string;
  kernel_id?: string;
  notebook?: string;
  /** ISO 8601, inclusive. */
  since?: string;
  /** ISO 8601, exclusive. */
  until?: string;
}

/** `GET /governance/api/audit/verify`. */
export interface IVerifyReport {
  ok: boolean;
  total: number;
  valid: number;
  head_seq?: number;
  last_checkpoint: { seq: number; signed_at: string } | null;
  checkpoints?: number;
  problems: { seq: number; kind: string; detail: string }[];
  more_problems?: number;
  warnings?: string[];
  summary: string;
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

function serverMessage(data: unknown): string | null {
  if (data && typeof data === 'object' && 'message' in data) {
    const message = (data as { message: unknown }).message;
    return typeof message === 'string' && message ? message : null;
  }
  return null;
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
  if (response.status === 404 && !endpoint.startsWith('approvals/')) {
    throw new GovernanceApiError(
      'The governance server extension is not running on this Jupyter server. ' +
        'Install the governed-kernel package in the server environment, run ' +
        '`jupyter server extension enable governed_server`, then restart the server.',
      404
    );
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text.length > 0 ? JSON.parse(text) : null;
  } catch {
    if (response.status === 401 || response.status === 403) {
      data = null;
    } else {
      throw new GovernanceApiError(
        `The governance API answered HTTP ${response.status} with a body that is not JSON.`,
        response.status
      );
    }
  }
  if (response.status === 401 || response.status === 403) {
    const detail = serverMessage(data);
    throw new GovernanceApiError(
      detail
        ? `Refused: ${detail}.`
        : `The governance API refused this user (HTTP ${response.status}). Log in again or ask an administrator for access.`,
      response.status
    );
  }
  if (!response.ok) {
    const message = serverMessage(data) ?? `HTTP ${response.status}`;
    throw new GovernanceApiError(
      `The governance API reported an error: ${message}`,
      response.status
    );
  }
  return data as T;
}

/** Query string from a record of optional values (empty values are left out). */
export function query(
  params: Record<string, string | number | undefined | null>
): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null || value === '') {
      continue;
    }
    parts.push(
      `${encodeURIComponent(key)}=${encodeURIComponent(String(value))}`
    );
  }
  return parts.length ? `?${parts.join('&')}` : '';
}

export function getHealth(): Promise<IHealth> {
  return requestAPI<IHealth>('health');
}

export function getMe(): Promise<IMe> {
  return requestAPI<IMe>('me');
}

export async function listApprovals(params: {
  status?: ApprovalStatus;
  mine?: boolean;
  limit?: number;
}): Promise<IApprovalRequest[]> {
  const reply = await requestAPI<{ requests: IApprovalRequest[] }>(
    'approvals' +
      query({
        status: params.status,
        mine: params.mine ? '1' : undefined,
        limit: params.limit
      })
  );
  return reply.requests;
}

export function getApproval(id: string): Promise<IApprovalRequest> {
  return requestAPI<IApprovalRequest>(`approvals/${encodeURIComponent(id)}`);
}

export function decideApproval(
  id: string,
  decision: 'approve' | 'deny',
  reason: string
): Promise<IApprovalRequest> {
  return requestAPI<IApprovalRequest>(
    `approvals/${encodeURIComponent(id)}/decision`,
    { method: 'POST', body: JSON.stringify({ decision, reason }) }
  );
}

export function cancelApproval(id: string): Promise<IApprovalRequest> {
  return requestAPI<IApprovalRequest>(
    `approvals/${encodeURIComponent(id)}/cancel`,
    { method: 'POST', body: JSON.stringify({}) }
  );
}

export async function queryAudit(
  filters: IAuditFilters,
  limit: number,
  afterSeq?: number
): Promise<IAuditRecord[]> {
  const reply = await requestAPI<{ records: IAuditRecord[] }>(
    'audit' + query({ ...filters, limit, after_seq: afterSeq })
  );
  return reply.records;
}

export function verifyAudit(): Promise<IVerifyReport> {
  return requestAPI<IVerifyReport>('audit/verify');
}

/** A message for any error thrown by the functions above. */
export function errorMessage(error: unknown): string {
  return error instanceof GovernanceApiError
    ? error.message
    : `Unexpected error: ${String(error)}`;
}
