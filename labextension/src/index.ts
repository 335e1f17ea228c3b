/**
 * JupyterLab plugin of the governed kernel: registers the Governance side panel.
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette } from '@jupyterlab/apputils';
import { LabIcon } from '@jupyterlab/ui-components';

import { GovernancePanel } from './panel';

const shieldSvg =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">' +
  '<path class="jp-icon3" fill="#616161" d="M12 1 3 5v6c0 5.6 3.8 10.7 9 12 5.2-1.3 9-6.4 9-12V5l-9-4zm0 6a3 3 0 0 1 3 3v1h1v6H8v-6h1v-1a3 3 0 0 1 3-3zm0 1.6A1.4 1.4 0 0 0 10.6 10v1h2.8v-1A1.4 1.4 0 0 0 12 8.6z"/>' +
  '</svg>';

export const governanceIcon = new LabIcon({
  name: 'governed-kernel:shield',
  svgstr: shieldSvg
});

const OPEN_COMMAND = 'governance:open-panel';

const plugin: JupyterFrontEndPlugin<void> = {
  id: '@governed-kernel/labextension:plugin',
  description: 'Governance side panel for the governed kernel.',
  autoStart: true,
  optional: [ICommandPalette, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    restorer: ILayoutRestorer | null
  ) => {
    const panel = new GovernancePanel();
    panel.title.icon = governanceIcon;
    app.shell.add(panel, 'right', { rank: 900 });
    if (restorer) {
      restorer.add(panel, panel.id);
    }

    app.commands.addCommand(OPEN_COMMAND, {
      label: 'Show Governance Panel',
      caption: 'Open the governance side panel',
      execute: () => {
        app.shell.activateById(panel.id);
        void panel.refresh();
      }
    });
    if (palette) {
      palette.addItem({ command: OPEN_COMMAND, category: 'Governance' });
    }
  }
};

export default plugin;
