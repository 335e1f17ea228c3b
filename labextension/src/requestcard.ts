/**
 * One approval request as a card: who asked, where, how long it has waited, the whole masked cell
 * source (numbered lines, syntax highlighted, each matched rule's span marked), the matched rules
 * with their PCI DSS requirements and line, N-of-M progress, and the actions the current user may
 * take (approve/deny with a reason, or cancel their own).
 *
 * Cards are keyed by request id and updated in place, so a reason being typed survives the
 * push updates and the once-a-second clock.
 */
import {
  IApprovalRequest,
  IMatchedRule,
  ISpan,
  cancelApproval,
  decideApproval,
  errorMessage
} from './api';
import {
  baseName,
  el,
  formatDuration,
  formatTime,
  shortVersion,
  timeOf,
  uniqueId
} from './format';
import { GovernanceModel } from './model';
import {
  Highlighter,
  ISourceMark,
  fitSpan,
  highlightSegments,
  renderSource,
  sourceLines,
  spanLabel
} from './source';

export type { Highlighter } from './source';

export type CardMode = 'queue' | 'history' | 'mine';

type ActionKind =
  | 'decide'
  | 'own'
  | 'own-cancel'
  | 'endorsed'
  | 'read-only'
  | 'none';

const STATUS_LABELS: Record<string, string> = {
  pending: 'Pending',
  approved: 'Approved',
  denied: 'Denied',
  expired: 'Expired',
  cancelled: 'Cancelled'
};

export class RequestCard {
  constructor(
    request: IApprovalRequest,
    private readonly _model: GovernanceModel,
    private readonly _mode: CardMode,
    private readonly _highlight: Highlighter | null
  ) {
    this._titleId = uniqueId('jp-GovernanceRequest-title');
    this.node = el('article', {
      className: 'jp-GovernanceRequest',
      attrs: {
        'aria-labelledby': this._titleId,
        'data-request-id': request.id
      }
    });
    this._summary = el('div', { className: 'jp-GovernanceRequest-summary' });
    this._code = el('pre', {
      className: 'jp-GovernanceRequest-code',
      attrs: {
        'aria-label': 'Cell source (card numbers masked; rule matches marked)',
        tabindex: '0',
        'data-field': 'code'
      }
    });
    this._details = el('div', { className: 'jp-GovernanceRequest-details' });
    this._actions = el('div', { className: 'jp-GovernanceRequest-actions' });
    this._request = request;
    this._renderCode();
    if (_mode === 'history') {
      // Decided requests are compact: the source is one click away.
      const more = el(
        'details',
        { className: 'jp-GovernanceRequest-more' },
        el('summary', { text: 'Cell source and rules' }),
        this._code,
        this._details
      );
      this.node.append(this._summary, more, this._actions);
    } else {
      this.node.append(this._summary, this._code, this._details, this._actions);
    }
    this.update(request);
  }

  readonly node: HTMLElement;

  get request(): IApprovalRequest {
    return this._request;
  }

  /** Re-render what depends on the request's state; keeps a reason being typed. */
  update(request: IApprovalRequest): void {
    const codeChanged =
      request.code !== this._request.code ||
      JSON.stringify(request.rules) !== JSON.stringify(this._request.rules);
    this._request = request;
    if (codeChanged) {
      this._renderCode();
    }
    this.node.dataset.status = request.status;
    this._renderSummary();
    this._renderDetails();
    const kind = this._actionKind();
    if (kind !== this._kind) {
      this._kind = kind;
      this._renderActions(kind);
    }
    this.tick(Date.now());
  }

  /** Refresh the clocks: time waiting and time to expiry. */
  tick(now: number): void {
    const r = this._request;
    const created = timeOf(r.created_at);
    if (this._waiting) {
      const end = r.status === 'pending' ? now : timeOf(r.decided_at ?? null);
      this._waiting.textContent = Number.isNaN(end)
        ? '—'
        : formatDuration(end - created);
    }
    if (this._expires) {
      const expires = timeOf(r.expires_at);
      this._expires.textContent = Number.isNaN(expires)
        ? '—'
        : expires > now
          ? `in ${formatDuration(expires - now)}`
          : 'now';
      this._expires.title = formatTime(r.expires_at);
    }
  }

  private _actionKind(): ActionKind {
    const r = this._request;
    const me = this._model.me;
    if (!me || r.status !== 'pending') {
      return 'none';
    }
    if (r.requester === me.username) {
      return this._mode === 'history' ? 'own' : 'own-cancel';
    }
    if (this._mode !== 'queue') {
      return 'none';
    }
    if (!this._model.isApprover) {
      return 'read-only';
    }
    if (r.decisions.some(d => d.approver === me.username)) {
      return 'endorsed';
    }
    return 'decide';
  }

  /** The id of the list item of rule `index` (the marks in the source point to it). */
  private _ruleId(index: number): string {
    return `${this._titleId}-rule-${index}`;
  }

  /** Every line of the source at once (plain), then again highlighted when the highlighter is done. */
  private _renderCode(): void {
    const { code, rules } = this._request;
    const lines = sourceLines(code);
    const marks: ISourceMark[] = [];
    rules.forEach((rule, index) => {
      const span = fitSpan(rule.span, lines);
      if (span) {
        marks.push({
          rule: rule.id,
          span,
          title: `Rule ${rule.id} (${spanLabel(span)})${rule.reason ? `: ${rule.reason}` : ''}`,
          describedBy: this._ruleId(index)
        });
      }
    });
    const generation = ++this._codeGeneration;
    renderSource(this._code, code, [{ text: code, className: '' }], marks);
    if (this._highlight) {
      void highlightSegments(code, this._highlight).then(segments => {
        if (generation === this._codeGeneration && segments.some(segment => segment.className)) {
          renderSource(this._code, code, segments, marks);
        }
      });
    }
  }

  private _renderSummary(): void {
    const r = this._request;
    const pending = r.status === 'pending';
    const heading = el(
      'h3',
      {
        className: 'jp-GovernanceRequest-title',
        attrs: { id: this._titleId }
      },
      `${r.requester} · ${baseName(r.notebook_path)}`
    );
    const badge = el('span', {
      className: `jp-GovernanceBadge jp-mod-${r.status}`,
      text: STATUS_LABELS[r.status] ?? r.status,
      attrs: { 'data-field': 'status' }
    });
    const header = el(
      'header',
      { className: 'jp-GovernanceRequest-header' },
      heading,
      badge
    );

    const fields = el('dl', { className: 'jp-GovernanceRequest-fields' });
    const add = (label: string, value: Node | string, field: string): void => {
      const dd = el('dd', { attrs: { 'data-field': field } }, value);
      fields.append(el('dt', { text: label }), dd);
    };
    add('Requester', r.requester, 'requester');
    const notebook = el('span', {
      text: r.notebook_path || '(no notebook)',
      attrs: { title: r.notebook_path }
    });
    add('Notebook', notebook, 'notebook');
    add('Requested', formatTime(r.created_at), 'created');
    this._waiting = el('span');
    add(pending ? 'Waiting' : 'Waited', this._waiting, 'waiting');
    if (pending) {
      this._expires = el('span');
      add('Expires', this._expires, 'expires');
    } else {
      this._expires = null;
      add('Ended', formatTime(r.decided_at), 'decided');
    }
    const version = el('span', {
      text: shortVersion(r.policy_version),
      attrs: { title: r.policy_version }
    });
    const current = this._model.me?.policy.version;
    if (current && current !== r.policy_version) {
      version.append(' (not the policy in force)');
    }
    add('Policy', version, 'policy_version');
    const progress = el('progress', {
      attrs: {
        max: String(r.required_approvals),
        value: String(r.approvals),
        'aria-label': `${r.approvals} of ${r.required_approvals} approvals`
      }
    });
    add(
      'Approvals',
      el(
        'span',
        {},
        progress,
        ` ${r.approvals} of ${r.required_approvals}`
      ),
      'approvals'
    );
    this._summary.replaceChildren(header, fields);
  }

  private _renderDetails(): void {
    const r = this._request;
    const rules = el('ul', {
      className: 'jp-GovernanceRequest-rules',
      attrs: { 'aria-label': 'Matched policy rules' }
    });
    const lines = sourceLines(r.code);
    r.rules.forEach((rule, index) => {
      rules.append(ruleItem(rule, fitSpan(rule.span, lines), this._ruleId(index)));
    });
    const parts: Node[] = [el('h4', { text: 'Why it needs approval' }), rules];
    if (r.decisions.length) {
      const decisions = el('ul', {
        className: 'jp-GovernanceRequest-decisions',
        attrs: { 'aria-label': 'Decisions' }
      });
      for (const d of r.decisions) {
        const verb = d.decision === 'approve' ? 'Approved' : 'Denied';
        decisions.append(
          el(
            'li',
            {
              className: `jp-mod-${d.decision}`,
              attrs: { 'data-approver': d.approver }
            },
            el('strong', { text: `${verb} by ${d.approver}` }),
            ` · ${formatTime(d.decided_at)}`,
            el('q', { text: d.reason })
          )
        );
      }
      parts.push(el('h4', { text: 'Decisions' }), decisions);
    }
    this._details.replaceChildren(...parts);
  }

  private _renderActions(kind: ActionKind): void {
    const r = this._request;
    this._actions.replaceChildren();
    switch (kind) {
      case 'decide':
        this._actions.append(this._decisionForm());
        break;
      case 'own-cancel':
      case 'own': {
        // Nobody approves their own request; only an approver needs to be told it is not theirs to decide.
        const note = el('p', {
          className: 'jp-GovernanceRequest-note',
          text: this._model.isApprover
            ? 'Your own request: another approver decides it.'
            : 'Your request: an approver decides it.'
        });
        this._actions.append(note);
        if (kind === 'own-cancel') {
          const cancel = el('button', {
            className: 'jp-Button jp-mod-styled jp-mod-warn',
            text: 'Cancel request',
            attrs: {
              type: 'button',
              'aria-label': `Cancel request ${r.id}`,
              'data-action': 'cancel'
            }
          });
          const message = this._message();
          cancel.addEventListener('click', () => {
            cancel.disabled = true;
            cancelApproval(r.id)
              .then(view => this._model.upsert(view))
              .catch(error => {
                cancel.disabled = false;
                message.textContent = errorMessage(error);
              });
          });
          this._actions.append(cancel, message);
        }
        break;
      }
      case 'endorsed':
        this._actions.append(
          el('p', {
            className: 'jp-GovernanceRequest-note',
            text: `You approved; waiting for ${r.required_approvals - r.approvals} more approver(s).`
          })
        );
        break;
      case 'read-only':
        this._actions.append(
          el('p', {
            className: 'jp-GovernanceRequest-note',
            text: 'Read only: you are not an approver in the governance policy.'
          })
        );
        break;
      case 'none':
        break;
    }
  }

  private _message(): HTMLElement {
    return el('p', {
      className: 'jp-GovernanceRequest-message',
      attrs: { role: 'alert', 'aria-live': 'assertive' }
    });
  }

  private _decisionForm(): HTMLElement {
    const r = this._request;
    const reasonId = uniqueId('jp-GovernanceRequest-reason');
    const hintId = uniqueId('jp-GovernanceRequest-hint');
    const form = el('form', {
      className: 'jp-GovernanceRequest-decide',
      attrs: { 'aria-label': `Decide on the request of ${r.requester}` }
    });
    const label = el('label', {
      text: 'Reason (required)',
      attrs: { for: reasonId }
    });
    const reason = el('textarea', {
      className: 'jp-mod-styled',
      attrs: {
        id: reasonId,
        rows: '2',
        'aria-required': 'true',
        maxlength: '2000',
        'aria-describedby': hintId,
        'data-field': 'reason',
        placeholder: 'Why is this cell fine (or not) to run?'
      }
    });
    const hint = el('p', {
      className: 'jp-GovernanceRequest-hint',
      text: 'Ctrl+Enter approves. The reason is recorded in the audit log.',
      attrs: { id: hintId }
    });
    const message = this._message();
    const approve = el('button', {
      className: 'jp-Button jp-mod-styled jp-mod-accept',
      text: 'Approve',
      attrs: {
        type: 'submit',
        'data-action': 'approve',
        'aria-label': `Approve the request of ${r.requester}`
      }
    });
    const deny = el('button', {
      className: 'jp-Button jp-mod-styled jp-mod-warn',
      text: 'Deny',
      attrs: {
        type: 'button',
        'data-action': 'deny',
        'aria-label': `Deny the request of ${r.requester}`
      }
    });
    const submit = (decision: 'approve' | 'deny'): void => {
      const text = reason.value.trim();
      if (!text) {
        message.textContent = 'A reason is required to approve or deny.';
        reason.setAttribute('aria-invalid', 'true');
        reason.focus();
        return;
      }
      reason.removeAttribute('aria-invalid');
      approve.disabled = deny.disabled = reason.disabled = true;
      message.textContent = '';
      decideApproval(r.id, decision, text)
        .then(view => this._model.upsert(view))
        .catch(error => {
          approve.disabled = deny.disabled = reason.disabled = false;
          message.textContent = errorMessage(error);
        });
    };
    form.addEventListener('submit', event => {
      event.preventDefault();
      submit('approve');
    });
    deny.addEventListener('click', () => submit('deny'));
    reason.addEventListener('keydown', event => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        submit('approve');
      }
    });
    const buttons = el(
      'div',
      { className: 'jp-GovernanceRequest-buttons' },
      approve,
      deny
    );
    form.append(label, reason, hint, buttons, message);
    return form;
  }

  private _request: IApprovalRequest;
  private _kind: ActionKind | null = null;
  private readonly _titleId: string;
  private readonly _summary: HTMLElement;
  private readonly _code: HTMLElement;
  private readonly _details: HTMLElement;
  private readonly _actions: HTMLElement;
  private _waiting: HTMLElement | null = null;
  private _expires: HTMLElement | null = null;
  private _codeGeneration = 0;
}

function ruleItem(rule: IMatchedRule, span: ISpan | null, id: string): HTMLElement {
  const item = el(
    'li',
    { attrs: { 'data-rule': rule.id, id } },
    el('code', { text: rule.id })
  );
  if (rule.reason) {
    item.append(` — ${rule.reason}`);
  }
  const extras: string[] = [];
  if (rule.pci && rule.pci.length) {
    extras.push(`PCI DSS ${rule.pci.join(', ')}`);
  }
  // A span the server could not send as numbers is no span: no "line *".
  if (span) {
    extras.push(spanLabel(span));
    item.dataset.line = String(span.line);
  }
  if (extras.length) {
    item.append(
      el('span', {
        className: 'jp-GovernanceRequest-ruleMeta',
        text: ` (${extras.join('; ')})`
      })
    );
  }
  return item;
}
