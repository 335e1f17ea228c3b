/**
 * JupyterLab plugins of the governed kernel:
 *
 * - `:plugin` — the shared governance model (user, requests, pushed events) and the right-side
 *   Governance panel (approvals queue, history, my requests, service health);
 * - `:status` — the status bar item (governed kernel, policy, my pending requests);
 * - `:audit` — the Audit log view for auditors in the main area.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  MainAreaWidget,
  Notification,
  WidgetTracker
} from '@jupyterlab/apputils';
import {
  IEditorLanguageRegistry,
  jupyterHighlightStyle
} from '@jupyterlab/codemirror';
import { INotebookTracker } from '@jupyterlab/notebook';
import { IStatusBar } from '@jupyterlab/statusbar';
import { Token } from '@lumino/coreutils';
import { StyleModule } from 'style-mod';

import { AuditView } from './audit';
import { governanceIcon } from './icon';
import { GovernanceModel, IApprovalEvent } from './model';
import { GovernancePanel, TabName } from './panel';
import { Highlighter } from './source';
import { GovernanceStatus } from './statusbar';

export { governanceIcon };

export namespace CommandIDs {
  export const openPanel = 'governance:open-panel';
  export const openQueue = 'governance:open-approvals';
  export const openMine = 'governance:open-my-requests';
  export const openAudit = 'governance:open-audit';
}

/** What the other plugins use from the core plugin. */
export interface IGovernance {
  readonly model: GovernanceModel;
  readonly panel: GovernancePanel;
  /** Syntax highlighting of Python/IPython cell source, when the editor registry is available. */
  readonly highlight: Highlighter | null;
  /** Show the panel on a tab. */
  show(tab?: TabName): void;
}

export const IGovernance = new Token<IGovernance>(
  '@governed-kernel/labextension:IGovernance',
  'The governance model and side panel of the governed kernel.'
);

function makeHighlighter(registry: IEditorLanguageRegistry | null): Highlighter | null {
  if (!registry) {
    return null;
  }
  // The highlight classes need their style sheet even when no editor has been opened yet.
  const module = jupyterHighlightStyle.module;
  if (module) {
    StyleModule.mount(document, module);
  }
  return async (code: string, node: HTMLElement) => {
    const language =
      registry.findBest('ipython') ?? registry.findBest('python') ?? null;
    node.replaceChildren();
    await registry.highlight(code, language, node);
  };
}

const corePlugin: JupyterFrontEndPlugin<IGovernance> = {
  id: '@governed-kernel/labextension:plugin',
  description: 'Governance side panel for the governed kernel: approvals, my requests, service.',
  autoStart: true,
  provides: IGovernance,
  optional: [ICommandPalette, ILayoutRestorer, IEditorLanguageRegistry],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null,
    languages: IEditorLanguageRegistry | null
  ): IGovernance => {
    const model = new GovernanceModel(app.serviceManager.events ?? null);
    const highlight = makeHighlighter(languages);
    const panel = new GovernancePanel({
      model,
      highlight,
      openAudit: () => void app.commands.execute(CommandIDs.openAudit)
    });
    panel.title.icon = governanceIcon;
    app.shell.add(panel, 'right', { rank: 900 });
    if (restorer) {
      restorer.add(panel, panel.id);
    }
    void model.refresh();

    const show = (tab?: TabName): void => {
      app.shell.activateById(panel.id);
      if (tab) {
        panel.selectTab(tab, true);
      }
    };

    // Approvers hear about new requests when the panel is closed (open, it shows them itself).
    model.approvalEvent.connect((_, event: IApprovalEvent) => {
      const me = model.me;
      if (
        event.action === 'requested' &&
        model.isApprover &&
        !panel.isVisible &&
        me &&
        event.requester !== me.username
      ) {
        Notification.info(
          `${event.requester} asks for approval of a cell in ${event.notebook_path || 'a notebook'}.`,
          {
            autoClose: 6000,
            actions: [
              {
                label: 'Review',
                callback: () => show('queue')
              }
            ]
          }
        );
      }
    });
    model.integrityAlert.connect((_, data) => {
      Notification.error(
        `Audit log integrity check failed: ${String(data.summary ?? 'see the audit view')}`,
        { autoClose: false }
      );
    });

    app.commands.addCommand(CommandIDs.openPanel, {
      label: 'Show Governance Panel',
      caption: 'Open the governance side panel',
      execute: () => {
        show();
        void panel.refresh();
      }
    });
    // The queue is for approvers and auditors: others neither see nor can run the command.
    const seesQueue = (): boolean => model.seesAll;
    app.commands.addCommand(CommandIDs.openQueue, {
      label: 'Show Approval Queue',
      caption: 'Open the pending approval requests (approvers and auditors)',
      isEnabled: seesQueue,
      isVisible: seesQueue,
      execute: () => {
        if (seesQueue()) {
          show('queue');
        }
      }
    });
    app.commands.addCommand(CommandIDs.openMine, {
      label: 'Show My Approval Requests',
      caption: 'Open my approval requests and their state',
      execute: () => show('mine')
    });
    if (palette) {
      for (const command of [
        CommandIDs.openPanel,
        CommandIDs.openQueue,
        CommandIDs.openMine
      ]) {
        palette.addItem({ command, category: 'Governance' });
      }
    }
    // Menus and the palette ask again once the roles are known (or change).
    model.changed.connect(() => {
      app.commands.notifyCommandChanged(CommandIDs.openQueue);
    });
    return { model, panel, highlight, show };
  }
};

const statusPlugin: JupyterFrontEndPlugin<void> = {
  id: '@governed-kernel/labextension:status',
  description: 'Status bar item: governed kernel, policy and my pending approval requests.',
  autoStart: true,
  requires: [IGovernance],
  optional: [IStatusBar, INotebookTracker],
  activate: (
    _app: JupyterFrontEnd,
    governance: IGovernance,
    statusBar: IStatusBar | null,
    tracker: INotebookTracker | null
  ) => {
    if (!statusBar) {
      return;
    }
    const item = new GovernanceStatus({
      model: governance.model,
      tracker,
      onActivate: () => governance.show('mine')
    });
    statusBar.registerStatusItem('@governed-kernel/labextension:status', {
      item,
      align: 'left',
      rank: 4,
      isActive: () => true
    });
  }
};

const auditPlugin: JupyterFrontEndPlugin<void> = {
  id: '@governed-kernel/labextension:audit',
  description: 'Audit log view for auditors: records, filters, verify and export.',
  autoStart: true,
  requires: [IGovernance],
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    governance: IGovernance,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const tracker = new WidgetTracker<MainAreaWidget<AuditView>>({
      namespace: 'governed-kernel-audit'
    });
    let current: MainAreaWidget<AuditView> | null = null;
    const model = governance.model;
    // Reading the log is for auditors: the command is hidden and disabled for everybody else (the
    // API refuses them anyway), and a restored layout does not reopen it for them.
    const isAuditor = (): boolean => model.isAuditor;
    model.changed.connect(() => {
      app.commands.notifyCommandChanged(CommandIDs.openAudit);
      // Roles can change (a new policy): the view closes for somebody who is no auditor any more.
      if (model.me && !model.isAuditor && current && !current.isDisposed) {
        current.dispose();
      }
    });
    app.commands.addCommand(CommandIDs.openAudit, {
      label: 'Open Audit Log',
      caption: 'Audit records, integrity check and export (auditors)',
      icon: governanceIcon,
      isEnabled: isAuditor,
      isVisible: isAuditor,
      execute: async () => {
        // At start (a restored layout) the roles may not be known yet.
        await model.ready;
        if (!model.isAuditor) {
          if (current && !current.isDisposed) {
            current.dispose();
          }
          return;
        }
        if (!current || current.isDisposed) {
          const content = new AuditView({
            model: governance.model,
            highlight: governance.highlight
          });
          current = new MainAreaWidget({ content });
          current.id = 'governed-kernel-audit';
          current.title.label = 'Audit log';
          current.title.icon = governanceIcon;
          current.title.closable = true;
          void tracker.add(current);
        }
        if (!current.isAttached) {
          app.shell.add(current, 'main');
        } else {
          void current.content.load();
        }
        app.shell.activateById(current.id);
      }
    });
    if (palette) {
      palette.addItem({ command: CommandIDs.openAudit, category: 'Governance' });
    }
    if (restorer) {
      void restorer.restore(tracker, {
        command: CommandIDs.openAudit,
        name: () => 'audit'
      });
    }
  }
};

export default [corePlugin, statusPlugin, auditPlugin];
