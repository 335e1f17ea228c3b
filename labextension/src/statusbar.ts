/**
 * The status bar item for analysts: is the current notebook on the governed kernel, which policy
 * (version, mode) is in force, and how many of my requests are waiting. Clicking it opens
 * "My requests" in the Governance panel.
 */
import { ISessionContext } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { Widget } from '@lumino/widgets';

import { el, shortVersion } from './format';
import { governanceIcon } from './icon';
import { GovernanceModel } from './model';

export const GOVERNED_KERNEL_NAME = 'governed-python';

export class GovernanceStatus extends Widget {
  constructor(options: {
    model: GovernanceModel;
    tracker: INotebookTracker | null;
    onActivate: () => void;
  }) {
    super();
    this._model = options.model;
    this._tracker = options.tracker;
    this.id = 'governed-kernel-status';
    this.addClass('jp-GovernanceStatus');
    this.node.setAttribute('role', 'button');
    this.node.tabIndex = 0;
    this.node.addEventListener('click', () => options.onActivate());
    this.node.addEventListener('keydown', event => {
      if (event.key === 'Enter' || event.key === ' ') {
        event.preventDefault();
        options.onActivate();
      }
    });
    this._model.changed.connect(this._update, this);
    if (this._tracker) {
      this._tracker.currentChanged.connect(this._onNotebook, this);
      this._onNotebook(this._tracker, this._tracker.currentWidget);
    }
    this._update();
  }

  dispose(): void {
    this._model.changed.disconnect(this._update, this);
    this._tracker?.currentChanged.disconnect(this._onNotebook, this);
    this._session?.kernelChanged.disconnect(this._update, this);
    super.dispose();
  }

  private _onNotebook(_: unknown, panel: NotebookPanel | null): void {
    this._session?.kernelChanged.disconnect(this._update, this);
    this._session?.statusChanged.disconnect(this._update, this);
    this._session = panel ? panel.sessionContext : null;
    this._session?.kernelChanged.connect(this._update, this);
    this._session?.statusChanged.connect(this._update, this);
    this._update();
  }

  private _update(): void {
    const me = this._model.me;
    const kernel = this._session?.session?.kernel?.name ?? null;
    const governed = kernel === GOVERNED_KERNEL_NAME;
    const pending = this._model.minePending;
    const parts: string[] = [];
    let label: string;
    if (!this._session) {
      parts.push('Governance');
      label = 'Governance';
    } else if (governed) {
      parts.push('Governed');
      label = 'This notebook runs on the governed kernel';
    } else {
      parts.push(kernel ? `Not governed (${kernel})` : 'No kernel');
      label = kernel
        ? `This notebook runs on ${kernel}, not on the governed kernel`
        : 'This notebook has no kernel';
    }
    if (me) {
      parts.push(
        `${me.policy.name} ${shortVersion(me.policy.version).slice(0, 8)} · ${me.policy.mode}`
      );
      label += `; policy ${me.policy.name} version ${me.policy.version}, mode ${me.policy.mode}`;
    }
    parts.push(`${pending} pending`);
    label += `; ${pending} of my approval requests pending. Open my requests.`;
    this.node.replaceChildren(
      governanceIcon.element({ tag: 'span', className: 'jp-GovernanceStatus-icon' }),
      el('span', { text: parts.join(' · '), attrs: { 'data-field': 'text' } })
    );
    this.node.dataset.governed = String(governed);
    this.node.dataset.pending = String(pending);
    this.node.classList.toggle('jp-mod-governed', governed);
    this.node.classList.toggle('jp-mod-pending', pending > 0);
    this.node.setAttribute('aria-label', label);
    this.node.title = label;
  }

  private _model: GovernanceModel;
  private _tracker: INotebookTracker | null;
  private _session: ISessionContext | null = null;
}
