/**
 * The "Audit" view for auditors, in the main area: recent audit records with filters (user, time
 * range, event type, notebook), a record's detail (masked code and output, approval, policy
 * version, hashes), the integrity check, and export of the filtered range as JSONL or CSV.
 *
 * Every read goes through `GET /governance/api/audit`, which records an `audit.read` record first:
 * opening this view is itself in the log (PCI DSS 10.2.1.3).
 */
import { Widget } from '@lumino/widgets';

import {
  IApprovalRequest,
  IAuditFilters,
  IAuditRecord,
  IVerifyReport,
  errorMessage,
  getApproval,
  queryAudit,
  verifyAudit
} from './api';
import { baseName, download, el, formatTime, uniqueId } from './format';
import { GovernanceModel } from './model';
import { Highlighter, highlightSegments, renderSource } from './source';

/** Records per request (the API allows up to 1000). */
const PAGE = 500;
/** The most records shown at once; narrow the filters to see older ones. */
const SHOWN_MAX = 2000;
/** The most records one export fetches. */
const EXPORT_MAX = 100_000;

const EVENT_TYPES = [
  'cell.start',
  'cell.end',
  'cell.blocked',
  'cell.denied',
  'cell.awaiting_approval',
  'approval.requested',
  'approval.endorsed',
  'approval.decided',
  'approval.expired',
  'approval.cancelled',
  'approval.used',
  'audit.read',
  'kernel.buffer_corrupt'
];

export const CSV_COLUMNS = [
  'seq',
  'time',
  'user',
  'claimed_user',
  'event_type',
  'outcome',
  'notebook',
  'kernel_id',
  'cell_id',
  'approval_id',
  'policy_version',
  'code',
  'output',
  'hash',
  'prev_hash'
] as const;

/** One CSV field, quoted when needed (RFC 4180); formula-leading text is neutralised. */
function csvField(value: unknown): string {
  let text = value === null || value === undefined ? '' : String(value);
  if (/^[=+\-@\t\r]/.test(text)) {
    text = `'${text}`;
  }
  return /[",\n\r]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCSV(records: IAuditRecord[]): string {
  const rows = [CSV_COLUMNS.join(',')];
  for (const r of records) {
    const values: Record<(typeof CSV_COLUMNS)[number], unknown> = {
      seq: r.seq,
      time: r.time,
      user: r.user,
      claimed_user: r.claimed_user,
      event_type: r.event_type,
      outcome: r.outcome,
      notebook: r.origin.notebook,
      kernel_id: r.origin.kernel_id,
      cell_id: r.resource.cell_id,
      approval_id: r.data.approval_id,
      policy_version: r.data.policy_version,
      code: r.data.code,
      output: r.data.output,
      hash: r.hash,
      prev_hash: r.prev_hash
    };
    rows.push(CSV_COLUMNS.map(c => csvField(values[c])).join(','));
  }
  return rows.join('\r\n') + '\r\n';
}

export function toJSONL(records: IAuditRecord[]): string {
  return records.map(r => JSON.stringify(r)).join('\n') + (records.length ? '\n' : '');
}

/** `datetime-local` value for a Date, in local time. */
function localInput(date: Date): string {
  const pad = (n: number): string => String(n).padStart(2, '0');
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}` +
    `T${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

export class AuditView extends Widget {
  constructor(options: { model: GovernanceModel; highlight: Highlighter | null }) {
    super();
    this._model = options.model;
    this._highlight = options.highlight;
    this.id = 'governed-kernel-audit-view';
    this.addClass('jp-GovernanceAudit');
    this.title.label = 'Audit log';
    this.title.caption = 'Governance audit log';

    // -- filters ---------------------------------------------------------------------------------
    this._form = el('form', {
      className: 'jp-GovernanceAudit-filters',
      attrs: { role: 'search', 'aria-label': 'Filter audit records' }
    });
    const typesId = uniqueId('jp-GovernanceAudit-types');
    const types = el('datalist', { attrs: { id: typesId } });
    for (const type of EVENT_TYPES) {
      types.append(el('option', { attrs: { value: type } }));
    }
    this._user = this._field('User', 'user', 'text', { placeholder: 'any user' });
    this._eventType = this._field('Event type', 'event_type', 'text', {
      placeholder: 'any event',
      list: typesId
    });
    this._notebook = this._field('Notebook', 'notebook', 'text', {
      placeholder: 'path, e.g. demo.ipynb'
    });
    this._since = this._field('From', 'since', 'datetime-local', {});
    this._until = this._field('To', 'until', 'datetime-local', {});
    this._since.value = localInput(new Date(Date.now() - 24 * 3600 * 1000));
    const apply = el('button', {
      className: 'jp-Button jp-mod-styled jp-mod-accept',
      text: 'Apply filters',
      attrs: { type: 'submit', 'data-action': 'apply' }
    });
    const reset = el('button', {
      className: 'jp-Button jp-mod-styled jp-mod-reject',
      text: 'Reset',
      attrs: { type: 'button', 'data-action': 'reset' }
    });
    reset.addEventListener('click', () => {
      this._form.reset();
      this._since.value = localInput(new Date(Date.now() - 24 * 3600 * 1000));
      void this.load();
    });
    this._form.append(types, el('div', { className: 'jp-GovernanceAudit-formButtons' }, apply, reset));
    this._form.addEventListener('submit', event => {
      event.preventDefault();
      void this.load();
    });

    // -- toolbar ---------------------------------------------------------------------------------
    const verify = this._button('Verify integrity', 'verify', () => void this.verify());
    const jsonl = this._button('Export JSONL', 'export-jsonl', () => void this.export('jsonl'));
    const csv = this._button('Export CSV', 'export-csv', () => void this.export('csv'));
    this._status = el('span', {
      className: 'jp-GovernanceAudit-status',
      attrs: { role: 'status', 'aria-live': 'polite', 'data-field': 'status' }
    });
    const toolbar = el(
      'div',
      { className: 'jp-GovernanceAudit-toolbar', attrs: { role: 'toolbar', 'aria-label': 'Audit actions' } },
      verify,
      jsonl,
      csv,
      this._status
    );
    this._verifyResult = el('div', {
      className: 'jp-GovernanceAudit-verify',
      attrs: { 'aria-live': 'polite', 'data-field': 'verify' }
    });
    this._verifyResult.hidden = true;

    // -- records and detail ----------------------------------------------------------------------
    this._table = el('table', {
      className: 'jp-GovernanceAudit-table',
      attrs: { 'aria-label': 'Audit records, newest first' }
    });
    const head = el('tr');
    for (const column of ['#', 'Time', 'User', 'Event', 'Outcome', 'Notebook']) {
      head.append(el('th', { text: column, attrs: { scope: 'col' } }));
    }
    this._tbody = el('tbody');
    this._table.append(el('thead', {}, head), this._tbody);
    this._detail = el('section', {
      className: 'jp-GovernanceAudit-detail',
      attrs: { 'aria-label': 'Record detail', 'data-field': 'detail', tabindex: '-1' }
    });
    this._detail.append(el('p', { text: 'Select a record to see its detail.' }));
    const split = el(
      'div',
      { className: 'jp-GovernanceAudit-split' },
      el('div', { className: 'jp-GovernanceAudit-records' }, this._table),
      this._detail
    );
    this.node.append(
      el('h2', { text: 'Audit log' }),
      this._form,
      toolbar,
      this._verifyResult,
      split
    );
  }

  /** The filters as the API takes them. */
  get filters(): IAuditFilters {
    const iso = (value: string): string | undefined => {
      if (!value) {
        return undefined;
      }
      const date = new Date(value);
      return Number.isNaN(date.getTime()) ? undefined : date.toISOString();
    };
    return {
      user: this._user.value.trim() || undefined,
      event_type: this._eventType.value.trim() || undefined,
      notebook: this._notebook.value.trim() || undefined,
      since: iso(this._since.value),
      until: iso(this._until.value)
    };
  }

  /** Load the records of the current filters (newest first, at most SHOWN_MAX). */
  async load(): Promise<void> {
    this._status.textContent = 'Loading…';
    this.node.dataset.state = 'loading';
    try {
      const { records, truncated } = await this._fetch(SHOWN_MAX);
      this._records = records.reverse();
      this._renderRows();
      this._status.textContent =
        `${records.length} record(s)` +
        (truncated ? ` (the oldest ${SHOWN_MAX} of the range: narrow the filters)` : '');
      this.node.dataset.state = 'ok';
    } catch (error) {
      this._status.textContent = errorMessage(error);
      this.node.dataset.state = 'error';
    }
  }

  /** Verify the whole chain against the signed checkpoints and show the result. */
  async verify(): Promise<void> {
    this._verifyResult.hidden = false;
    this._verifyResult.dataset.state = 'loading';
    this._verifyResult.textContent = 'Verifying the audit chain…';
    try {
      this._showVerify(await verifyAudit());
    } catch (error) {
      this._verifyResult.dataset.state = 'error';
      this._verifyResult.replaceChildren(
        el('p', { attrs: { role: 'alert' }, text: errorMessage(error) })
      );
    }
  }

  /** Download every record of the filtered range (all pages) as JSONL or CSV. */
  async export(format: 'jsonl' | 'csv'): Promise<void> {
    this._status.textContent = 'Exporting…';
    try {
      const { records, truncated } = await this._fetch(EXPORT_MAX);
      const stamp = new Date().toISOString().replace(/[:.]/g, '-');
      if (format === 'jsonl') {
        download(`audit-${stamp}.jsonl`, toJSONL(records), 'application/x-ndjson');
      } else {
        download(`audit-${stamp}.csv`, toCSV(records), 'text/csv');
      }
      this._status.textContent =
        `Exported ${records.length} record(s) as ${format.toUpperCase()}` +
        (truncated ? ` (stopped at ${EXPORT_MAX}: narrow the range)` : '');
    } catch (error) {
      this._status.textContent = errorMessage(error);
    }
  }

  protected onAfterAttach(): void {
    void this.load();
  }

  private async _fetch(max: number): Promise<{ records: IAuditRecord[]; truncated: boolean }> {
    const filters = this.filters;
    const records: IAuditRecord[] = [];
    let after: number | undefined;
    while (records.length < max) {
      const page = await queryAudit(filters, Math.min(PAGE, max - records.length), after);
      records.push(...page);
      if (page.length < PAGE) {
        return { records, truncated: false };
      }
      after = page[page.length - 1].seq;
    }
    return { records, truncated: true };
  }

  private _field(
    label: string,
    name: string,
    type: string,
    attrs: Record<string, string>
  ): HTMLInputElement {
    const id = uniqueId(`jp-GovernanceAudit-${name}`);
    const input = el('input', {
      className: 'jp-mod-styled',
      attrs: { id, name, type, 'data-filter': name, ...attrs }
    });
    this._form.append(
      el('div', { className: 'jp-GovernanceAudit-field' }, el('label', { text: label, attrs: { for: id } }), input)
    );
    return input;
  }

  private _button(text: string, action: string, onClick: () => void): HTMLButtonElement {
    const button = el('button', {
      className: 'jp-Button jp-mod-styled jp-mod-reject',
      text,
      attrs: { type: 'button', 'data-action': action }
    });
    button.addEventListener('click', onClick);
    return button;
  }

  private _renderRows(): void {
    const rows: HTMLElement[] = [];
    for (const record of this._records) {
      const row = el('tr', {
        attrs: {
          tabindex: '0',
          'data-seq': String(record.seq),
          'data-event-type': record.event_type,
          'aria-selected': String(record.seq === this._selected)
        }
      });
      const notebook = record.origin.notebook ?? '';
      for (const [text, title] of [
        [String(record.seq), ''],
        [formatTime(record.time), record.time],
        [record.claimed_user ? `${record.user} (claims ${record.claimed_user})` : record.user, ''],
        [record.event_type, ''],
        [record.outcome, ''],
        [notebook ? baseName(notebook) : '', notebook]
      ]) {
        row.append(el('td', { text, attrs: title ? { title } : {} }));
      }
      row.classList.toggle('jp-mod-failure', record.outcome === 'failure');
      const select = (): void => this._select(record, row);
      row.addEventListener('click', select);
      row.addEventListener('keydown', event => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          select();
        } else if (event.key === 'ArrowDown') {
          event.preventDefault();
          (row.nextElementSibling as HTMLElement | null)?.focus();
        } else if (event.key === 'ArrowUp') {
          event.preventDefault();
          (row.previousElementSibling as HTMLElement | null)?.focus();
        }
      });
      rows.push(row);
    }
    if (!rows.length) {
      const empty = el('td', { text: 'No record matches these filters.', attrs: { colspan: '6' } });
      rows.push(el('tr', {}, empty));
    }
    this._tbody.replaceChildren(...rows);
  }

  private _select(record: IAuditRecord, row: HTMLElement): void {
    this._selected = record.seq;
    for (const other of Array.from(this._tbody.children)) {
      other.setAttribute('aria-selected', String(other === row));
    }
    this._renderDetail(record);
  }

  private _renderDetail(r: IAuditRecord): void {
    const fields = el('dl', { className: 'jp-GovernanceAudit-fields' });
    const add = (label: string, value: string | Node, field: string): void => {
      fields.append(el('dt', { text: label }), el('dd', { attrs: { 'data-field': field } }, value));
    };
    add('Sequence', String(r.seq), 'seq');
    add('Time', `${formatTime(r.time)} (${r.time})`, 'time');
    add('User', r.user, 'user');
    if (r.claimed_user) {
      add('Claimed user', r.claimed_user, 'claimed_user');
    }
    add('Event', r.event_type, 'event_type');
    add('Outcome', r.outcome, 'outcome');
    add('Notebook', r.origin.notebook || '—', 'notebook');
    add('Kernel', r.origin.kernel_id || '—', 'kernel_id');
    add('Cell', r.resource.cell_id || '—', 'cell_id');
    add('Client', [r.origin.client_addr, r.origin.server].filter(Boolean).join(' on ') || '—', 'client');
    add('Policy version', r.data.policy_version || '—', 'policy_version');
    const approvalBox = el('div', { className: 'jp-GovernanceAudit-approval' });
    add('Approval', r.data.approval_id || '—', 'approval_id');
    add('Hash', r.hash, 'hash');
    add('Previous hash', r.prev_hash, 'prev_hash');

    const parts: Node[] = [el('h3', { text: `Record ${r.seq}: ${r.event_type}` }), fields];
    if (r.data.code) {
      const code = el('pre', {
        className: 'jp-GovernanceRequest-code',
        attrs: { 'aria-label': 'Cell source (masked)', 'data-field': 'code', tabindex: '0' }
      });
      // Every line, numbered like the request cards (the rules' spans are on the approval).
      const source = r.data.code;
      renderSource(code, source, [{ text: source, className: '' }], []);
      if (this._highlight) {
        void highlightSegments(source, this._highlight).then(segments => {
          if (segments.some(segment => segment.className)) {
            renderSource(code, source, segments, []);
          }
        });
      }
      parts.push(el('h4', { text: 'Code (masked)' }), code);
    }
    if (r.data.output) {
      parts.push(
        el('h4', { text: 'Output (masked)' }),
        el('pre', {
          className: 'jp-GovernanceAudit-output',
          text: r.data.output,
          attrs: { 'data-field': 'output', tabindex: '0' }
        })
      );
    }
    const rest: Record<string, unknown> = { ...r.data };
    delete rest.code;
    delete rest.output;
    delete rest.approval_id;
    delete rest.policy_version;
    parts.push(
      el('h4', { text: 'Details' }),
      el('pre', { className: 'jp-GovernanceAudit-json', text: JSON.stringify(rest, null, 2) })
    );
    if (r.data.approval_id) {
      parts.push(approvalBox);
      void this._loadApproval(r.data.approval_id, approvalBox);
    }
    this._detail.replaceChildren(...parts);
  }

  private async _loadApproval(id: string, box: HTMLElement): Promise<void> {
    box.textContent = 'Loading the approval…';
    try {
      const request: IApprovalRequest = await getApproval(id);
      const items = el('ul');
      for (const d of request.decisions) {
        items.append(
          el('li', {
            text: `${d.decision === 'approve' ? 'Approved' : 'Denied'} by ${d.approver} at ${formatTime(
              d.decided_at
            )}: ${d.reason}`
          })
        );
      }
      box.replaceChildren(
        el('h4', { text: `Approval ${request.id} (${request.status})` }),
        el('p', {
          text:
            `Requested by ${request.requester} at ${formatTime(request.created_at)}; rules: ` +
            (request.rules.map(rule => rule.id).join(', ') || '—')
        }),
        items
      );
    } catch (error) {
      box.textContent = errorMessage(error);
    }
  }

  private _showVerify(report: IVerifyReport): void {
    this._verifyResult.dataset.state = report.ok ? 'ok' : 'failed';
    const lines: Node[] = [
      el('strong', {
        text: report.ok ? 'Audit chain intact' : 'Audit chain NOT intact',
        attrs: { 'data-field': 'verify-ok' }
      }),
      el('p', { text: report.summary, attrs: { 'data-field': 'verify-summary' } })
    ];
    if (report.last_checkpoint) {
      lines.push(
        el('p', {
          text: `Last signed checkpoint: record ${report.last_checkpoint.seq} at ${formatTime(
            report.last_checkpoint.signed_at
          )}`
        })
      );
    }
    if (report.problems.length) {
      const list = el('ul', { attrs: { 'aria-label': 'Integrity problems' } });
      for (const p of report.problems) {
        list.append(el('li', { text: `record ${p.seq}: ${p.kind}: ${p.detail}` }));
      }
      lines.push(list);
    }
    for (const warning of report.warnings ?? []) {
      lines.push(el('p', { className: 'jp-GovernanceAudit-warning', text: warning }));
    }
    this._verifyResult.setAttribute('role', report.ok ? 'status' : 'alert');
    this._verifyResult.replaceChildren(...lines);
  }

  /** The model is kept for later use (role checks); auditors only reach this view. */
  get model(): GovernanceModel {
    return this._model;
  }

  private _model: GovernanceModel;
  private _highlight: Highlighter | null;
  private _form: HTMLFormElement;
  private _user: HTMLInputElement;
  private _eventType: HTMLInputElement;
  private _notebook: HTMLInputElement;
  private _since: HTMLInputElement;
  private _until: HTMLInputElement;
  private _status: HTMLElement;
  private _verifyResult: HTMLElement;
  private _table: HTMLTableElement;
  private _tbody: HTMLElement;
  private _detail: HTMLElement;
  private _records: IAuditRecord[] = [];
  private _selected: number | null = null;
}
