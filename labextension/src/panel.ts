/**
 * The right-side "Governance" panel: what the governance service reports about itself.
 */
import { Widget } from '@lumino/widgets';

import { GovernanceApiError, IHealth, requestAPI } from './api';

/** Rows shown for a healthy service, in display order. */
const HEALTH_FIELDS: ReadonlyArray<[keyof IHealth, string]> = [
  ['status', 'Status'],
  ['version', 'Version'],
  ['kernel_name', 'Kernel'],
  ['policy_path', 'Policy'],
  ['store', 'Store'],
  ['user_display_name', 'Signed in as']
];

export class GovernancePanel extends Widget {
  constructor() {
    super();
    this.id = 'governed-kernel-governance-panel';
    this.addClass('jp-GovernancePanel');
    this.title.caption = 'Governance';

    const header = document.createElement('div');
    header.className = 'jp-GovernancePanel-header';
    const heading = document.createElement('h2');
    heading.textContent = 'Governance';
    const refresh = document.createElement('button');
    refresh.className = 'jp-Button jp-mod-styled jp-mod-reject';
    refresh.textContent = 'Refresh';
    refresh.setAttribute('aria-label', 'Refresh governance status');
    refresh.addEventListener('click', () => void this.refresh());
    header.append(heading, refresh);

    this._body = document.createElement('div');
    this._body.className = 'jp-GovernancePanel-body';
    this._body.setAttribute('aria-live', 'polite');
    this._body.dataset.state = 'loading';
    this._body.textContent = 'Loading governance status…';

    this.node.append(header, this._body);
  }

  /** Fetch the health endpoint and show the answer or a clear error. */
  async refresh(): Promise<void> {
    this._body.dataset.state = 'loading';
    try {
      const health = await requestAPI<IHealth>('health');
      this._showHealth(health);
    } catch (error) {
      const message =
        error instanceof GovernanceApiError
          ? error.message
          : `Unexpected error: ${String(error)}`;
      this._showError(message);
    }
  }

  protected onAfterAttach(): void {
    void this.refresh();
  }

  private _showHealth(health: IHealth): void {
    const table = document.createElement('dl');
    table.className = 'jp-GovernancePanel-health';
    for (const [key, label] of HEALTH_FIELDS) {
      const term = document.createElement('dt');
      term.textContent = label;
      const value = document.createElement('dd');
      value.dataset.field = key;
      value.textContent = String(health[key] ?? '');
      table.append(term, value);
    }
    if (!health.policy_exists) {
      const warning = document.createElement('p');
      warning.className = 'jp-GovernancePanel-error';
      warning.textContent =
        'The policy file does not exist: governed cells will refuse to run until it is fixed.';
      table.append(warning);
    }
    this._body.replaceChildren(table);
    this._body.dataset.state = 'ok';
  }

  private _showError(message: string): void {
    const error = document.createElement('p');
    error.className = 'jp-GovernancePanel-error';
    error.setAttribute('role', 'alert');
    error.textContent = message;
    this._body.replaceChildren(error);
    this._body.dataset.state = 'error';
  }

  private _body: HTMLDivElement;
}
