/**
 * Small formatting and DOM helpers shared by the panel and the audit view.
 */

/** `1 h 05 min`, `3 min 20 s`, `12 s` for a duration in milliseconds (negative counts as 0). */
export function formatDuration(ms: number): string {
  const total = Math.max(0, Math.floor(ms / 1000));
  const days = Math.floor(total / 86400);
  const hours = Math.floor((total % 86400) / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const seconds = total % 60;
  if (days > 0) {
    return `${days} d ${hours} h`;
  }
  if (hours > 0) {
    return `${hours} h ${String(minutes).padStart(2, '0')} min`;
  }
  if (minutes > 0) {
    return `${minutes} min ${String(seconds).padStart(2, '0')} s`;
  }
  return `${seconds} s`;
}

/** Local date and time of an ISO timestamp, or an em dash. */
export function formatTime(iso: string | null | undefined): string {
  if (!iso) {
    return '—';
  }
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
}

/** Milliseconds since the epoch of an ISO timestamp (NaN when absent). */
export function timeOf(iso: string | null | undefined): number {
  return iso ? new Date(iso).getTime() : Number.NaN;
}

/** The policy version's short form (the hash prefix), as shown in the UI. */
export function shortVersion(version: string): string {
  const hash = version.includes(':') ? version.split(':').pop() ?? version : version;
  return hash.slice(0, 12);
}

/** The file name of a notebook path (the full path goes in the title attribute). */
export function baseName(path: string): string {
  if (!path) {
    return '(no notebook)';
  }
  const parts = path.split('/');
  return parts[parts.length - 1] || path;
}

let counter = 0;

/** A document-unique id for aria-labelledby / aria-controls pairs. */
export function uniqueId(prefix: string): string {
  counter += 1;
  return `${prefix}-${counter}`;
}

/** `document.createElement` with a class, text and attributes. */
export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  options: {
    className?: string;
    text?: string;
    attrs?: Record<string, string>;
  } = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (options.className) {
    node.className = options.className;
  }
  if (options.text !== undefined) {
    node.textContent = options.text;
  }
  for (const [name, value] of Object.entries(options.attrs ?? {})) {
    node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

/** Offer `content` as a file download (client side; nothing leaves the browser). */
export function download(filename: string, content: string, type: string): void {
  const blob = new Blob([content], { type });
  const url = URL.createObjectURL(blob);
  const link = el('a', { attrs: { href: url, download: filename } });
  link.style.display = 'none';
  document.body.append(link);
  link.click();
  link.remove();
  window.setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

const ROLE_WORDS: Record<string, string> = {
  analyst: 'analyst',
  analysts: 'analyst',
  approver: 'approver',
  approvers: 'approver',
  auditor: 'auditor',
  auditors: 'auditor'
};

/**
 * The name to show for a user: the display name (the username when there is none), without a
 * trailing "(role, …)" that only names roles the user holds, since the roles are shown beside it
 * ("Bob (approver)" → "Bob"). A parenthesis that says anything else stays.
 */
export function personName(
  displayName: string | null | undefined,
  username: string,
  roles: readonly string[]
): string {
  const name = (displayName ?? '').trim() || username;
  const match = /^(.*\S)\s*\(([^()]*)\)$/.exec(name);
  if (!match) {
    return name;
  }
  const words = match[2]
    .split(/[\s,;/&+]+/)
    .map(word => word.toLowerCase())
    .filter(word => word && word !== 'and');
  const named = words.map(word => ROLE_WORDS[word]);
  if (words.length && named.every(role => role && roles.includes(role))) {
    return match[1];
  }
  return name;
}

/** "1 approval" / "2 approvals". */
export function plural(count: number, singular: string, pluralForm = `${singular}s`): string {
  return `${count} ${count === 1 ? singular : pluralForm}`;
}
