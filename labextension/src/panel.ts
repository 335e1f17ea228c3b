/**
 * The right-side "Governance" panel, in tabs:
 *
 * - Queue (approvers and auditors): pending requests, oldest first, pushed live; approvers decide.
 * - History (approvers and auditors): decided, expired and cancelled requests, newest first.
 * - My requests: the user's own requests with their live state; pending ones can be cancelled.
 * - Service: what the governance service reports about itself (health).
 */
import { Widget } from '@lumino/widgets';

import {
  GovernanceApiError,
  IApprovalRequest,
  IHealth,
  errorMessage,
  getHealth
} from './api';
import { el, shortVersion, uniqueId } from './format';
import { GovernanceModel } from './model';
import { CardMode, Highlighter, RequestCard } from './requestcard';

/** Rows shown for a healthy service, in display order. */
const HEALTH_FIELDS: ReadonlyArray<[keyof IHealth, string]> = [
  ['status', 'Status'],
  ['version', 'Version'],
  ['kernel_name', 'Kernel'],
  ['policy_path', 'Policy'],
  ['store', 'Store'],
  ['user_display_name', 'Signed in as']
];

export type TabName = 'queue' | 'history' | 'mine' | 'service';

const TAB_LABELS: Record<TabName, string> = {
  queue: 'Queue',
  history: 'History',
  mine: 'My requests',
  service: 'Service'
};

const EMPTY_TEXT: Record<Exclude<TabName, 'service'>, string> = {
  queue: 'No request is waiting for approval.',
  history: 'No decided request yet.',
  mine: 'You have no approval requests.'
};

/** A list of request cards, keyed by request id and updated in place. */
class RequestList {
  constructor(
    private readonly _model: GovernanceModel,
    private readonly _mode: CardMode,
    private readonly _highlight: Highlighter | null,
    label: string
  ) {
    this.node = el('div', {
      className: 'jp-GovernanceList',
      attrs: { role: 'list', 'aria-label': label }
    });
    this._empty = el('p', {
      className: 'jp-GovernanceList-empty',
      text: EMPTY_TEXT[_mode]
    });
  }

  readonly node: HTMLElement;

  render(requests: IApprovalRequest[]): void {
    const seen = new Set<string>();
    const nodes: HTMLElement[] = [];
    for (const request of requests) {
      seen.add(request.id);
      let card = this._cards.get(request.id);
      if (card) {
        card.update(request);
      } else {
        card = new RequestCard(request, this._model, this._mode, this._highlight);
        card.node.setAttribute('role', 'listitem');
        this._cards.set(request.id, card);
      }
      nodes.push(card.node);
    }
    for (const [id, card] of this._cards) {
      if (!seen.has(id)) {
        card.node.remove();
        this._cards.delete(id);
      }
    }
    if (!nodes.length) {
      this.node.replaceChildren(this._empty);
      return;
    }
    this._empty.remove();
    // Re-order without detaching nodes that are already in place (keeps focus and typing).
    let previous: ChildNode | null = null;
    for (const node of nodes) {
      const expected: ChildNode | null = previous
        ? previous.nextSibling
        : this.node.firstChild;
      if (expected !== node) {
        this.node.insertBefore(node, expected);
      }
      previous = node;
    }
  }

  tick(now: number): void {
    for (const card of this._cards.values()) {
      card.tick(now);
    }
  }

  private _cards = new Map<string, RequestCard>();
  private _empty: HTMLElement;
}

export class GovernancePanel extends Widget {
  constructor(options: {
    model: GovernanceModel;
    highlight: Highlighter | null;
    openAudit: (() => void) | null;
  }) {
    super();
    this._model = options.model;
    this._openAudit = options.openAudit;
    this.id = 'governed-kernel-governance-panel';
    this.addClass('jp-GovernancePanel');
    this.title.caption = 'Governance: approvals';

    const heading = el('h2', { text: 'Governance' });
    const refresh = el('button', {
      className: 'jp-Button jp-mod-styled jp-mod-reject',
      text: 'Refresh',
      attrs: { type: 'button', 'aria-label': 'Refresh governance status' }
    });
    refresh.addEventListener('click', () => void this.refresh());
    const header = el(
      'div',
      { className: 'jp-GovernancePanel-header' },
      heading,
      refresh
    );
    this._identity = el('p', {
      className: 'jp-GovernancePanel-identity',
      attrs: { 'data-field': 'identity' }
    });
    this._auditButton = el('button', {
      className: 'jp-Button jp-mod-styled jp-mod-reject',
      text: 'Open audit log',
      attrs: { type: 'button', 'data-action': 'open-audit' }
    });
    this._auditButton.addEventListener('click', () => this._openAudit?.());
    this._auditButton.hidden = true;
    this._error = el('p', {
      className: 'jp-GovernancePanel-error',
      attrs: { role: 'status', 'data-field': 'error' }
    });
    this._error.hidden = true;

    this._tablist = el('div', {
      className: 'jp-GovernancePanel-tabs',
      attrs: { role: 'tablist', 'aria-label': 'Governance views' }
    });
    this._tablist.addEventListener('keydown', event => this._onTabKey(event));

    this._lists = {
      queue: new RequestList(this._model, 'queue', options.highlight, 'Pending approval requests'),
      history: new RequestList(this._model, 'history', options.highlight, 'Decided approval requests'),
      mine: new RequestList(this._model, 'mine', options.highlight, 'My approval requests')
    };
    this._health = el('div', {
      className: 'jp-GovernancePanel-body',
      attrs: { 'aria-live': 'polite', 'data-state': 'loading' },
      text: 'Loading governance status…'
    });
    for (const name of Object.keys(TAB_LABELS) as TabName[]) {
      const tabId = uniqueId('jp-GovernancePanel-tab');
      const panelId = uniqueId('jp-GovernancePanel-tabpanel');
      const tab = el('button', {
        className: 'jp-GovernancePanel-tab',
        attrs: {
          type: 'button',
          role: 'tab',
          id: tabId,
          'aria-controls': panelId,
          'aria-selected': 'false',
          tabindex: '-1',
          'data-tab': name
        }
      });
      tab.addEventListener('click', () => this.selectTab(name, true));
      const content =
        name === 'service' ? this._health : this._lists[name].node;
      const tabpanel = el(
        'div',
        {
          className: 'jp-GovernancePanel-tabpanel',
          attrs: {
            role: 'tabpanel',
            id: panelId,
            'aria-labelledby': tabId,
            'data-tabpanel': name
          }
        },
        content
      );
      tabpanel.hidden = true;
      this._tabs[name] = { tab, panel: tabpanel };
      this._tablist.append(tab);
    }
    const panels = el('div', { className: 'jp-GovernancePanel-panels' });
    for (const { panel } of Object.values(this._tabs)) {
      panels.append(panel);
    }
    this.node.append(
      header,
      this._identity,
      this._auditButton,
      this._error,
      this._tablist,
      panels
    );
    this._model.changed.connect(this._render, this);
    this._render();
  }

  /** The selected tab. */
  get currentTab(): TabName {
    return this._current;
  }

  /** Show a tab (and move the focus to it when asked). */
  selectTab(name: TabName, focus = false): void {
    this._chosen = true;
    this._select(name, focus);
  }

  private _select(name: TabName, focus = false): void {
    if (this._tabs[name]?.tab.hidden) {
      name = this._defaultTab();
    }
    const previous = this._current;
    this._current = name;
    for (const [key, { tab, panel }] of Object.entries(this._tabs)) {
      const selected = key === name;
      tab.setAttribute('aria-selected', String(selected));
      tab.tabIndex = selected ? 0 : -1;
      tab.classList.toggle('jp-mod-current', selected);
      panel.hidden = !selected;
    }
    if (focus) {
      this._tabs[name]?.tab.focus();
    }
    if (name === 'service' && previous !== 'service') {
      void this._refreshHealth();
    }
  }

  /** Reload the user, the requests and the service health. */
  async refresh(): Promise<void> {
    await Promise.all([this._model.refresh(), this._refreshHealth()]);
  }

  protected onAfterAttach(): void {
    void this.refresh();
    this._timer = window.setInterval(() => {
      if (this.isVisible) {
        const now = Date.now();
        for (const list of Object.values(this._lists)) {
          list.tick(now);
        }
      }
    }, 1000);
  }

  protected onBeforeDetach(): void {
    if (this._timer !== null) {
      window.clearInterval(this._timer);
      this._timer = null;
    }
  }

  dispose(): void {
    this._model.changed.disconnect(this._render, this);
    super.dispose();
  }

  private _defaultTab(): TabName {
    const me = this._model.me;
    if (!me) {
      return 'service';
    }
    return this._model.seesAll ? 'queue' : 'mine';
  }

  private _render(): void {
    const model = this._model;
    const me = model.me;
    const error = model.error;
    this._error.hidden = !error;
    this._error.textContent = error ?? '';
    if (me) {
      const roles = me.roles.length ? me.roles.join(', ') : 'no governance role';
      this._identity.textContent =
        `${me.display_name || me.username} (${roles}) · policy ${me.policy.name} ` +
        `${shortVersion(me.policy.version)} · ${me.policy.mode} · ` +
        `${me.policy.required_approvers} approver(s) needed`;
    } else {
      this._identity.textContent = '';
    }
    this._auditButton.hidden = !(model.isAuditor && this._openAudit);
    this._tabs.queue.tab.hidden = !model.seesAll;
    this._tabs.history.tab.hidden = !model.seesAll;

    const pending = model.pending;
    const counts: Record<TabName, number | null> = {
      queue: pending.length,
      history: null,
      mine: model.minePending,
      service: null
    };
    for (const [name, { tab }] of Object.entries(this._tabs) as [
      TabName,
      { tab: HTMLElement }
    ][]) {
      const count = counts[name];
      tab.textContent =
        count ? `${TAB_LABELS[name]} (${count})` : TAB_LABELS[name];
    }
    this._lists.queue.render(model.seesAll ? pending : []);
    this._lists.history.render(model.seesAll ? model.history : []);
    this._lists.mine.render(model.mine);
    if (!this._chosen || this._tabs[this._current].tab.hidden) {
      this._select(this._defaultTab());
    }
  }

  private _onTabKey(event: KeyboardEvent): void {
    const visible = (Object.keys(this._tabs) as TabName[]).filter(
      name => !this._tabs[name].tab.hidden
    );
    const index = visible.indexOf(this._current);
    let next: number | null = null;
    if (event.key === 'ArrowRight' || event.key === 'ArrowDown') {
      next = (index + 1) % visible.length;
    } else if (event.key === 'ArrowLeft' || event.key === 'ArrowUp') {
      next = (index - 1 + visible.length) % visible.length;
    } else if (event.key === 'Home') {
      next = 0;
    } else if (event.key === 'End') {
      next = visible.length - 1;
    }
    if (next !== null) {
      event.preventDefault();
      this.selectTab(visible[next], true);
    }
  }

  /** Fetch the health endpoint and show the answer or a clear error. */
  private async _refreshHealth(): Promise<void> {
    this._health.dataset.state = 'loading';
    try {
      this._showHealth(await getHealth());
    } catch (error) {
      this._showHealthError(errorMessage(error), error);
    }
  }

  private _showHealth(health: IHealth): void {
    const table = el('dl', { className: 'jp-GovernancePanel-health' });
    for (const [key, label] of HEALTH_FIELDS) {
      table.append(
        el('dt', { text: label }),
        el('dd', { text: String(health[key] ?? ''), attrs: { 'data-field': key } })
      );
    }
    if (!health.policy_exists) {
      table.append(
        el('p', {
          className: 'jp-GovernancePanel-error',
          text: 'The policy file does not exist: governed cells will refuse to run until it is fixed.'
        })
      );
    }
    this._health.replaceChildren(table);
    this._health.dataset.state = 'ok';
  }

  private _showHealthError(message: string, error: unknown): void {
    const node = el('p', {
      className: 'jp-GovernancePanel-error',
      attrs: { role: 'alert' },
      text: message
    });
    this._health.replaceChildren(node);
    this._health.dataset.state = 'error';
    if (error instanceof GovernanceApiError && error.status === 404) {
      // Nothing else can work: show the reason on whatever tab is open.
      this._select('service');
    }
  }

  private _model: GovernanceModel;
  private _openAudit: (() => void) | null;
  private _identity: HTMLElement;
  private _auditButton: HTMLButtonElement;
  private _error: HTMLElement;
  private _tablist: HTMLElement;
  private _health: HTMLElement;
  private _lists: Record<Exclude<TabName, 'service'>, RequestList>;
  private _tabs = {} as Record<TabName, { tab: HTMLButtonElement; panel: HTMLElement }>;
  private _current: TabName = 'service';
  private _chosen = false;
  private _timer: number | null = null;
}
