/**
 * The right-side "Governance" panel: who you are (name and governance roles), the policy in force,
 * "Open audit log" for auditors, and tabs:
 *
 * - Queue (approvers and auditors): pending requests, oldest first, pushed live; approvers decide.
 * - History (approvers and auditors): decided, expired and cancelled requests, newest first.
 * - My requests: the user's own requests with their live state; pending ones can be cancelled.
 * - Service: what the governance service reports about itself (health).
 *
 * Each role sees only what it can use. Until `GET /me` has answered, the roles are unknown and the
 * panel shows "Loading…" instead of controls that might then be taken away; approvers and auditors
 * start on Queue, everybody else on My requests.
 */
import { Widget } from '@lumino/widgets';

import {
  GovernanceApiError,
  IApprovalRequest,
  IHealth,
  IMe,
  errorMessage,
  getHealth
} from './api';
import { el, personName, plural, shortVersion, uniqueId } from './format';
import { GovernanceModel } from './model';
import { CardMode, Highlighter, RequestCard } from './requestcard';

/** Rows shown for a healthy service, in display order. */
const HEALTH_FIELDS: ReadonlyArray<[keyof IHealth, string]> = [
  ['status', 'Status'],
  ['version', 'Version'],
  ['kernel_name', 'Kernel'],
  ['policy_path', 'Policy'],
  ['store', 'Store'],
  ['user', 'User']
];

export type TabName = 'queue' | 'history' | 'mine' | 'service';

const TAB_LABELS: Record<TabName, string> = {
  queue: 'Queue',
  history: 'History',
  mine: 'My requests',
  service: 'Service'
};

/** The tabs of a user who holds no role that sees everybody's requests. */
const OWN_TABS: TabName[] = ['mine', 'service'];
const ALL_TABS: TabName[] = ['queue', 'history', 'mine', 'service'];

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
    this._policy = el('p', {
      className: 'jp-GovernancePanel-policy',
      attrs: { 'data-field': 'policy' }
    });
    this._loading = el('p', {
      className: 'jp-GovernancePanel-loading',
      text: 'Loading governance status…',
      attrs: { role: 'status' }
    });
    // Only in the document for auditors (see _render): nobody else sees a button that is refused.
    this._auditButton = el('button', {
      className: 'jp-Button jp-mod-styled jp-mod-reject',
      text: 'Open audit log',
      attrs: { type: 'button', 'data-action': 'open-audit' }
    });
    this._auditButton.addEventListener('click', () => this._openAudit?.());
    this._toolbar = el('div', { className: 'jp-GovernancePanel-toolbar' });
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
    this._panels = el('div', { className: 'jp-GovernancePanel-panels' });
    for (const { panel } of Object.values(this._tabs)) {
      this._panels.append(panel);
    }
    this.node.append(
      header,
      this._identity,
      this._policy,
      this._toolbar,
      this._loading,
      this._error,
      this._tablist,
      this._panels
    );
    this._model.changed.connect(this._render, this);
    this._render();
  }

  /** The selected tab. */
  get currentTab(): TabName {
    return this._current;
  }

  /** The tabs this user can use (Service alone while the user is not known). */
  get availableTabs(): TabName[] {
    const model = this._model;
    if (!model.me) {
      return ['service'];
    }
    return model.seesAll ? ALL_TABS : OWN_TABS;
  }

  /**
   * Show a tab (and move the focus to it when asked). Before the roles are known, the choice is
   * kept and applied once they are (a tab the user cannot use falls back to their first tab).
   */
  selectTab(name: TabName, focus = false): void {
    this._chosen = true;
    if (!this._model.loaded) {
      this._current = name;
      this._focusPending = this._focusPending || focus;
      return;
    }
    this._select(name, focus);
  }

  private _select(name: TabName, focus = false): void {
    if (!this.availableTabs.includes(name)) {
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
    this._syncError();
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

  /** Approvers and auditors start on the queue, everybody else on their own requests. */
  private _defaultTab(): TabName {
    const me = this._model.me;
    if (!me) {
      return 'service';
    }
    return this._model.seesAll ? 'queue' : 'mine';
  }

  /** "Signed in as Bob [approver] [auditor]": the name once, the roles as badges. */
  private _renderIdentity(me: IMe | null): void {
    this._identity.hidden = this._policy.hidden = !me;
    if (!me) {
      this._identity.replaceChildren();
      this._policy.replaceChildren();
      return;
    }
    const name = personName(me.display_name, me.username, me.roles);
    const user = el('strong', {
      className: 'jp-GovernancePanel-user',
      text: name,
      attrs: { 'data-field': 'user', title: `Username: ${me.username}` }
    });
    const roles = el('span', {
      className: 'jp-GovernancePanel-roles',
      attrs: { 'data-field': 'roles', role: 'list', 'aria-label': 'Governance roles' }
    });
    for (const role of me.roles) {
      roles.append(
        el('span', {
          className: 'jp-GovernanceRole',
          text: role,
          attrs: { role: 'listitem', 'data-role': role }
        })
      );
    }
    if (!me.roles.length) {
      roles.append(
        el('span', {
          className: 'jp-GovernanceRole jp-mod-none',
          text: 'no governance role',
          attrs: { role: 'listitem' }
        })
      );
    }
    this._identity.replaceChildren('Signed in as ', user, ' ', roles);
    const policy = me.policy;
    const version = el('span', {
      text: shortVersion(policy.version),
      attrs: { title: policy.version }
    });
    this._policy.replaceChildren(
      `Policy ${policy.name} `,
      version,
      ` · ${policy.mode} · ${plural(policy.required_approvers, 'approval')} per request`
    );
  }

  private _render(): void {
    const model = this._model;
    const me = model.me;
    const error = model.error;
    const loaded = model.loaded;
    this.node.dataset.state = !loaded ? 'loading' : me ? 'ready' : 'unavailable';
    this._error.textContent = error ?? '';
    this._syncError();
    this._renderIdentity(me);
    // Controls that depend on the roles appear once they are known, and only for those who can use them.
    this._loading.hidden = loaded;
    this._tablist.hidden = this._panels.hidden = !loaded;
    if (model.isAuditor && this._openAudit) {
      if (!this._auditButton.isConnected) {
        this._toolbar.append(this._auditButton);
      }
    } else {
      this._auditButton.remove();
    }
    this._toolbar.hidden = !this._toolbar.childElementCount;
    const available = this.availableTabs;
    for (const name of ALL_TABS) {
      this._tabs[name].tab.hidden = !available.includes(name);
    }

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
    if (!loaded) {
      return;
    }
    if (!this._started) {
      // The first time the roles are known: the tab asked for meanwhile, or the user's first tab.
      this._started = true;
      const focus = this._focusPending;
      this._focusPending = false;
      this._select(this._chosen ? this._current : this._defaultTab(), focus);
    } else if (!this._chosen || !available.includes(this._current)) {
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

  /** The model's error, unless the Service tab on show says the same thing already. */
  private _syncError(): void {
    const error = this._model.error;
    const same =
      this._current === 'service' &&
      this._health.dataset.state === 'error' &&
      this._health.textContent === error;
    this._error.hidden = !error || same;
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
    this._syncError();
  }

  private _showHealthError(message: string, error: unknown): void {
    const node = el('p', {
      className: 'jp-GovernancePanel-error',
      attrs: { role: 'alert' },
      text: message
    });
    this._health.replaceChildren(node);
    this._health.dataset.state = 'error';
    this._syncError();
    if (error instanceof GovernanceApiError && error.status === 404) {
      // Nothing else can work: show the reason on whatever tab is open.
      this._select('service');
    }
  }

  private _model: GovernanceModel;
  private _openAudit: (() => void) | null;
  private _identity: HTMLElement;
  private _policy: HTMLElement;
  private _loading: HTMLElement;
  private _toolbar: HTMLElement;
  private _panels: HTMLElement;
  private _auditButton: HTMLButtonElement;
  private _error: HTMLElement;
  private _tablist: HTMLElement;
  private _health: HTMLElement;
  private _lists: Record<Exclude<TabName, 'service'>, RequestList>;
  private _tabs = {} as Record<TabName, { tab: HTMLButtonElement; panel: HTMLElement }>;
  private _current: TabName = 'service';
  private _chosen = false;
  private _started = false;
  private _focusPending = false;
  private _timer: number | null = null;
}
