/**
 * A cell's source as a reviewer reads it: every line (numbered, long lines wrapped, nothing cut),
 * syntax highlighted, with the places that matched a policy rule marked.
 *
 * A rule's span (`{line, column, end_line, end_column}`) counts lines and columns from 1 as editors
 * show them; the end column is the first column after the match. Spans that are not four positive
 * integers (missing, or numbers the server masked) are "no span": no mark, no line number.
 */
import { ISpan } from './api';

/** Renders `code` into `node` with syntax highlighting (falls back to plain text). */
export type Highlighter = (code: string, node: HTMLElement) => Promise<void>;

/** A piece of highlighted code: its text and the token classes of the highlighter. */
export interface ISegment {
  text: string;
  className: string;
}

/** A place in the source to mark, for one rule. */
export interface ISourceMark {
  /** The rule id. */
  rule: string;
  /** A span already fitted into the source (see `fitSpan`). */
  span: ISpan;
  /** What a tooltip and assistive technology say about the mark. */
  title: string;
  /** The id of the element that explains the rule (the rule's list item), if any. */
  describedBy?: string;
}

function isPosition(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1;
}

/** The span when its four fields are positive integers, else null. */
export function validSpan(span: unknown): ISpan | null {
  if (!span || typeof span !== 'object') {
    return null;
  }
  const s = span as Record<string, unknown>;
  if (
    !isPosition(s.line) ||
    !isPosition(s.column) ||
    !isPosition(s.end_line) ||
    !isPosition(s.end_column)
  ) {
    return null;
  }
  return {
    line: s.line,
    column: s.column,
    end_line: s.end_line,
    end_column: s.end_column
  };
}

/** The lines of a cell as shown (a final newline does not start another line). */
export function sourceLines(code: string): string[] {
  const lines = code.split('\n');
  if (lines.length > 1 && lines[lines.length - 1] === '') {
    lines.pop();
  }
  return lines;
}

/**
 * A valid span inside `lines` (its end clamped to the source), or null when it is not a valid span
 * or starts after the last line.
 */
export function fitSpan(span: unknown, lines: string[]): ISpan | null {
  const valid = validSpan(span);
  if (!valid || valid.line > lines.length) {
    return null;
  }
  const width = (line: number): number => lines[line - 1].length + 1;
  const line = valid.line;
  const endLine = Math.min(Math.max(valid.end_line, line), lines.length);
  const column = Math.min(valid.column, width(line));
  let endColumn = Math.min(valid.end_column, width(endLine));
  if (endLine === line) {
    endColumn = Math.max(endColumn, column);
  }
  return { line, column, end_line: endLine, end_column: endColumn };
}

/** "line 3, column 5" for a fitted span. */
export function spanLabel(span: ISpan): string {
  return `line ${span.line}, column ${span.column}`;
}

/** The text a fitted span covers (what its marks show). */
export function spanText(span: ISpan, lines: string[]): string {
  const parts: string[] = [];
  for (let line = span.line; line <= span.end_line; line++) {
    const [start, end] = lineRange(span, line, lines[line - 1].length);
    parts.push(lines[line - 1].slice(start, end));
  }
  return parts.join('\n');
}

/**
 * The part [start, end) of line `line` (of length `length`) that a fitted span covers. A span that
 * covers nothing on its first line (a match that IPython's rewrite of the line placed past its
 * end) covers that whole line.
 */
function lineRange(span: ISpan, line: number, length: number): [number, number] {
  const start = line === span.line ? span.column - 1 : 0;
  const end = line === span.end_line ? span.end_column - 1 : length;
  if (end <= start && line === span.line) {
    return [0, length];
  }
  return [start, Math.max(start, end)];
}

/** The text nodes of highlighted code as segments (null when they are not exactly `code`). */
function segmentsOf(root: HTMLElement, code: string): ISegment[] | null {
  const segments: ISegment[] = [];
  const walk = (node: Node, classes: string): void => {
    if (node.nodeType === Node.TEXT_NODE) {
      const text = node.textContent ?? '';
      if (text) {
        segments.push({ text, className: classes });
      }
      return;
    }
    if (node instanceof HTMLElement) {
      const own = node === root ? '' : node.className;
      const next = [classes, own].filter(Boolean).join(' ');
      for (const child of Array.from(node.childNodes)) {
        walk(child, next);
      }
    }
  };
  walk(root, '');
  return segments.map(s => s.text).join('') === code ? segments : null;
}

/** `code` cut into highlighted segments (one plain segment without a highlighter or on failure). */
export async function highlightSegments(
  code: string,
  highlight: Highlighter | null
): Promise<ISegment[]> {
  const plain = [{ text: code, className: '' }];
  if (!highlight) {
    return plain;
  }
  const scratch = document.createElement('div');
  try {
    await highlight(code, scratch);
  } catch {
    return plain;
  }
  return segmentsOf(scratch, code) ?? plain;
}

/** Split segments into lines (segments never hold a newline afterwards). */
function segmentLines(segments: ISegment[]): ISegment[][] {
  const lines: ISegment[][] = [[]];
  for (const segment of segments) {
    const pieces = segment.text.split('\n');
    pieces.forEach((text, index) => {
      if (index > 0) {
        lines.push([]);
      }
      if (text) {
        lines[lines.length - 1].push({ text, className: segment.className });
      }
    });
  }
  return lines;
}

/**
 * Render `code` into `node` (a `pre`): one `.jp-GovernanceRequest-line` per line (`data-line`, the
 * number shown by CSS, not part of the text), the segments' token classes, and for each mark a
 * `<mark class="jp-GovernanceRequest-span" data-rules="rule ids">` around the text it covers.
 * The text content of `node` stays exactly `code`.
 */
export function renderSource(
  node: HTMLElement,
  code: string,
  segments: ISegment[],
  marks: ISourceMark[]
): void {
  const byLine = segmentLines(segments);
  const lines = sourceLines(code);
  node.style.setProperty('--jp-governance-gutter', `${String(lines.length).length}ch`);
  const children: Node[] = [];
  lines.forEach((text, index) => {
    const number = index + 1;
    if (index > 0) {
      children.push(document.createTextNode('\n'));
    }
    const ranges: { start: number; end: number; mark: ISourceMark }[] = [];
    for (const mark of marks) {
      if (number < mark.span.line || number > mark.span.end_line) {
        continue;
      }
      const [start, end] = lineRange(mark.span, number, text.length);
      ranges.push({ start, end, mark });
    }
    children.push(renderLine(number, byLine[index] ?? [], ranges));
  });
  if (code.endsWith('\n') && code.length > 0) {
    children.push(document.createTextNode('\n'));
  }
  node.replaceChildren(...children);
}

function renderLine(
  number: number,
  segments: ISegment[],
  ranges: { start: number; end: number; mark: ISourceMark }[]
): HTMLElement {
  const line = document.createElement('span');
  line.className = 'jp-GovernanceRequest-line';
  line.dataset.line = String(number);
  if (ranges.length) {
    line.classList.add('jp-mod-flagged');
    line.dataset.rules = unique(ranges.map(r => r.mark.rule)).join(' ');
  }
  // Cut points: token boundaries and mark boundaries.
  const cuts = new Set<number>([0]);
  let offset = 0;
  for (const segment of segments) {
    offset += segment.text.length;
    cuts.add(offset);
  }
  const length = offset;
  for (const { start, end } of ranges) {
    cuts.add(Math.min(start, length));
    cuts.add(Math.min(end, length));
  }
  const points = [...cuts].sort((a, b) => a - b);
  let segmentIndex = 0;
  let segmentStart = 0;
  let group: HTMLElement | null = null;
  let groupKey = '';
  for (let i = 0; i + 1 < points.length; i++) {
    const [a, b] = [points[i], points[i + 1]];
    if (a === b) {
      continue;
    }
    while (segmentStart + segments[segmentIndex].text.length <= a) {
      segmentStart += segments[segmentIndex].text.length;
      segmentIndex++;
    }
    const segment = segments[segmentIndex];
    const text = segment.text.slice(a - segmentStart, b - segmentStart);
    const piece: Node = segment.className
      ? Object.assign(document.createElement('span'), {
          className: segment.className,
          textContent: text
        })
      : document.createTextNode(text);
    const covering = ranges.filter(r => r.start <= a && b <= r.end).map(r => r.mark);
    const key = covering.map(m => m.rule).join(' ');
    if (!covering.length) {
      group = null;
      groupKey = '';
      line.append(piece);
      continue;
    }
    if (!group || key !== groupKey) {
      group = markElement(covering);
      groupKey = key;
      line.append(group);
    }
    group.append(piece);
  }
  return line;
}

function markElement(marks: ISourceMark[]): HTMLElement {
  const node = document.createElement('mark');
  node.className = 'jp-GovernanceRequest-span';
  node.dataset.rules = unique(marks.map(m => m.rule)).join(' ');
  node.title = unique(marks.map(m => m.title)).join('\n');
  const described = unique(marks.map(m => m.describedBy ?? '').filter(Boolean));
  if (described.length) {
    node.setAttribute('aria-describedby', described.join(' '));
  }
  return node;
}

function unique(values: string[]): string[] {
  return [...new Set(values)];
}
