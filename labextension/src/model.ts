/**
 * The state shared by the panel, the status bar item and the audit view: who the user is, the
 * approval requests they may see, and the push channel that keeps them current.
 *
 * Requests arrive three ways: a full load at start, the server's `jupyter_events` pushed over
 * JupyterLab's event websocket (`approval/v1`: a request id and its new status, then one GET of that
 * request), and a slow poll as a fallback when the websocket is down.
 */
import { Event } from '@jupyterlab/services';
import { PromiseDelegate } from '@lumino/coreutils';
import { ISignal, Signal } from '@lumino/signaling';

import {
  IApprovalRequest,
  IMe,
  errorMessage,
  getApproval,
  getMe,
  listApprovals
} from './api';

export const APPROVAL_SCHEMA =
  'https://events.governed-kernel.org/governance/approval/v1';
export const CELL_SCHEMA =
  'https://events.governed-kernel.org/governance/cell/v1';
export const INTEGRITY_SCHEMA =
  'https://events.governed-kernel.org/governance/integrity/v1';

/** Fallback poll when no event arrives (the websocket can drop silently). */
const POLL_MS = 15_000;
/** How many requests one load fetches (the API's maximum). */
const LOAD_LIMIT = 1000;

/** The data of an `approval/v1` event. */
export interface IApprovalEvent {
  action: string;
  request_id: string;
  status: string;
  requester: string;
  actor?: string;
  notebook_path?: string;
  approvals?: number;
  required_approvals?: number;
}

export class GovernanceModel {
  constructor(events: Event.IManager | null) {
    this._events = events;
    if (events) {
      events.stream.connect(this._onEvent, this);
    }
  }

  /** Fires after any change to `me`, `requests` or `error`. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** Fires for every `approval/v1` event, after the request was reloaded. */
  get approvalEvent(): ISignal<this, IApprovalEvent> {
    return this._approvalEvent;
  }

  /** Fires for `cell/v1` events (the audit view refreshes on them). */
  get cellEvent(): ISignal<this, Record<string, unknown>> {
    return this._cellEvent;
  }

  /** Fires when the server reports a failed integrity check. */
  get integrityAlert(): ISignal<this, Record<string, unknown>> {
    return this._integrityAlert;
  }

  get me(): IMe | null {
    return this._me;
  }

  /**
   * Whether the first load has finished (with `me` or with an error). Until then the roles are not
   * known, and the UI shows no control that depends on them.
   */
  get loaded(): boolean {
    return this._loaded;
  }

  /** Resolves when the first load has finished (see `loaded`). */
  get ready(): Promise<void> {
    return this._ready.promise;
  }

  get error(): string | null {
    return this._error;
  }

  get isApprover(): boolean {
    return !!this._me?.roles.includes('approver');
  }

  get isAuditor(): boolean {
    return !!this._me?.roles.includes('auditor');
  }

  /** Approvers and auditors see every request; others only their own. */
  get seesAll(): boolean {
    return this.isApprover || this.isAuditor;
  }

  /** Pending requests of everybody the user may see, oldest first. */
  get pending(): IApprovalRequest[] {
    return this._sorted(r => r.status === 'pending', 1);
  }

  /** Requests that were decided or ended, newest first. */
  get history(): IApprovalRequest[] {
    return this._sorted(r => r.status !== 'pending', -1).sort((a, b) =>
      (b.decided_at ?? b.created_at).localeCompare(a.decided_at ?? a.created_at)
    );
  }

  /** The user's own requests: pending first (oldest first), then the rest newest first. */
  get mine(): IApprovalRequest[] {
    const username = this._me?.username;
    const own = [...this._requests.values()].filter(
      r => r.requester === username
    );
    const pending = own
      .filter(r => r.status === 'pending')
      .sort((a, b) => a.created_at.localeCompare(b.created_at));
    const rest = own
      .filter(r => r.status !== 'pending')
      .sort((a, b) => b.created_at.localeCompare(a.created_at));
    return [...pending, ...rest];
  }

  get minePending(): number {
    return this.mine.filter(r => r.status === 'pending').length;
  }

  /** Load the user and every visible request; starts the fallback poll once. */
  async refresh(): Promise<void> {
    try {
      this._me = await getMe();
      const requests = await listApprovals({
        mine: !this.seesAll,
        limit: LOAD_LIMIT
      });
      if (this.seesAll) {
        // Oldest first with a limit: make sure every pending request is there even on a busy store.
        const pending = await listApprovals({
          status: 'pending',
          limit: LOAD_LIMIT
        });
        requests.push(...pending);
      }
      const fresh = new Map<string, IApprovalRequest>();
      for (const request of requests) {
        fresh.set(request.id, request);
      }
      // Keep requests learnt from events that fell beyond the load limit.
      for (const [id, request] of this._requests) {
        if (!fresh.has(id)) {
          fresh.set(id, request);
        }
      }
      this._requests = fresh;
      this._error = null;
    } catch (error) {
      this._error = errorMessage(error);
    }
    this._loaded = true;
    this._ready.resolve();
    this._changed.emit();
    this._startPolling();
  }

  /** Put a request the UI just changed (decision, cancel) into the model. */
  upsert(request: IApprovalRequest): void {
    this._requests.set(request.id, request);
    this._changed.emit();
  }

  dispose(): void {
    if (this._poll !== null) {
      window.clearInterval(this._poll);
      this._poll = null;
    }
    this._events?.stream.disconnect(this._onEvent, this);
    Signal.clearData(this);
  }

  private _sorted(
    keep: (request: IApprovalRequest) => boolean,
    direction: 1 | -1
  ): IApprovalRequest[] {
    return [...this._requests.values()]
      .filter(keep)
      .sort((a, b) => direction * a.created_at.localeCompare(b.created_at));
  }

  private _startPolling(): void {
    if (this._poll === null) {
      this._poll = window.setInterval(() => {
        if (Date.now() - this._lastEvent > POLL_MS) {
          void this.refresh();
        }
      }, POLL_MS);
    }
  }

  private _onEvent(_: Event.IManager, emission: Event.Emission): void {
    const schema = emission.schema_id;
    if (schema === APPROVAL_SCHEMA) {
      this._lastEvent = Date.now();
      void this._onApprovalEvent(emission as unknown as IApprovalEvent);
    } else if (schema === CELL_SCHEMA) {
      this._cellEvent.emit({ ...emission });
    } else if (schema === INTEGRITY_SCHEMA) {
      this._integrityAlert.emit({ ...emission });
    }
  }

  private async _onApprovalEvent(event: IApprovalEvent): Promise<void> {
    const me = this._me;
    if (!me || !event.request_id) {
      return;
    }
    // Events reach every client; only fetch requests this user may read.
    if (!this.seesAll && event.requester !== me.username) {
      return;
    }
    try {
      this.upsert(await getApproval(event.request_id));
    } catch (error) {
      this._error = errorMessage(error);
      this._changed.emit();
    }
    this._approvalEvent.emit(event);
  }

  private _events: Event.IManager | null;
  private _me: IMe | null = null;
  private _loaded = false;
  private _ready = new PromiseDelegate<void>();
  private _error: string | null = null;
  private _requests = new Map<string, IApprovalRequest>();
  private _poll: number | null = null;
  private _lastEvent = 0;
  private _changed = new Signal<this, void>(this);
  private _approvalEvent = new Signal<this, IApprovalEvent>(this);
  private _cellEvent = new Signal<this, Record<string, unknown>>(this);
  private _integrityAlert = new Signal<this, Record<string, unknown>>(this);
}
