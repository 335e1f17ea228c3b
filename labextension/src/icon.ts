/** The shield icon of the governed kernel (side panel tab, status bar, audit view). */
import { LabIcon } from '@jupyterlab/ui-components';

const shieldSvg =
  '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">' +
  '<path class="jp-icon3" fill="#616161" d="M12 1 3 5v6c0 5.6 3.8 10.7 9 12 5.2-1.3 9-6.4 9-12V5l-9-4zm0 6a3 3 0 0 1 3 3v1h1v6H8v-6h1v-1a3 3 0 0 1 3-3zm0 1.6A1.4 1.4 0 0 0 10.6 10v1h2.8v-1A1.4 1.4 0 0 0 12 8.6z"/>' +
  '</svg>';

export const governanceIcon = new LabIcon({
  name: 'governed-kernel:shield',
  svgstr: shieldSvg
});
