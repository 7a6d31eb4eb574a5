// A small markdown renderer for the instructions preview. It builds elements rather than an
// HTML string, so whatever the text holds is shown as text and never parsed as markup; links
// and images are kept only for http(s), mailto and in-page addresses.
import type { ComponentChildren, JSX } from "preact";

const SAFE_URL = /^(https?:\/\/|mailto:|#|\/(?!\/))/i;

export function safeUrl(url: string): string | null {
  const u = url.trim();
  return SAFE_URL.test(u) ? u : null;
}

interface InlineRule {
  re: RegExp;
  render: (m: RegExpExecArray, key: number) => ComponentChildren;
}

const INLINE: InlineRule[] = [
  { re: /`([^`]+)`/, render: (m, k) => <code key={k}>{m[1]}</code> },
  {
    re: /!\[([^\]]*)\]\(((?:[^()\s]|\([^()\s]*\))+)\)/,
    render: (m, k) => {
      const src = safeUrl(m[2]);
      return src && /^https?:/i.test(src) ? <img key={k} src={src} alt={m[1]} /> : m[1];
    },
  },
  {
    re: /\[([^\]]+)\]\(((?:[^()\s]|\([^()\s]*\))+)\)/,
    render: (m, k) => {
      const href = safeUrl(m[2]);
      return href
        ? <a key={k} href={href} target="_blank" rel="noopener noreferrer">{inline(m[1])}</a>
        : inline(m[1]);
    },
  },
  {
    re: /<(https?:\/\/[^\s>]+)>/,
    render: (m, k) => <a key={k} href={m[1]} target="_blank" rel="noopener noreferrer">{m[1]}</a>,
  },
  { re: /(\*\*|__)(?=\S)([\s\S]*?\S)\1/, render: (m, k) => <strong key={k}>{inline(m[2])}</strong> },
  { re: /~~(?=\S)([\s\S]*?\S)~~/, render: (m, k) => <del key={k}>{inline(m[1])}</del> },
  { re: /(\*|_)(?=\S)([\s\S]*?\S)\1/, render: (m, k) => <em key={k}>{inline(m[2])}</em> },
  { re: / {2,}\n|\\\n/, render: (_m, k) => <br key={k} /> },
];

/** Inline markup: the earliest match wins, text between matches stays plain. */
function inline(text: string): ComponentChildren[] {
  const out: ComponentChildren[] = [];
  let rest = text;
  let key = 0;
  while (rest) {
    let best: { m: RegExpExecArray; rule: InlineRule } | null = null;
    for (const rule of INLINE) {
      const m = rule.re.exec(rest);
      if (m && (!best || m.index < best.m.index)) best = { m, rule };
    }
    if (!best) {
      out.push(rest);
      break;
    }
    if (best.m.index > 0) out.push(rest.slice(0, best.m.index));
    out.push(best.rule.render(best.m, key++));
    rest = rest.slice(best.m.index + best.m[0].length);
  }
  return out;
}

const HEADING = /^(#{1,6})\s+(.*?)\s*#*\s*$/;
const FENCE = /^\s*(```|~~~)/;
const RULE = /^\s*([-*_])(\s*\1){2,}\s*$/;
const QUOTE = /^\s*>\s?/;
const ITEM = /^(\s*)([-*+]|\d+[.)])\s+(.*)$/;
// A GFM table: a header row with pipes, then a delimiter row such as `| --- | :-: |`.
const TABLE_DELIMITER = /^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$/;

type Align = "left" | "center" | "right" | undefined;

/** The cells of one table row; `\|` is a pipe inside a cell. */
function cells(line: string): string[] {
  let row = line.trim();
  if (row.startsWith("|")) row = row.slice(1);
  if (row.endsWith("|") && !row.endsWith("\\|")) row = row.slice(0, -1);
  return row.split(/(?<!\\)\|/).map((c) => c.trim().replace(/\\\|/g, "|"));
}

function isTableStart(lines: string[], i: number): boolean {
  return i + 1 < lines.length && lines[i].includes("|") && TABLE_DELIMITER.test(lines[i + 1])
    && cells(lines[i]).length === cells(lines[i + 1]).length;
}

function alignOf(cell: string): Align {
  const left = cell.startsWith(":");
  const right = cell.endsWith(":");
  return left && right ? "center" : right ? "right" : left ? "left" : undefined;
}

/** A table from its header, delimiter and body rows (rows are padded or cut to the header). */
function table(rows: string[], key: number): JSX.Element {
  const head = cells(rows[0]);
  const aligns = cells(rows[1]).map(alignOf);
  const body = rows.slice(2).map((r) => {
    const c = cells(r);
    return head.map((_, i) => c[i] ?? "");
  });
  const style = (i: number) => (aligns[i] ? { textAlign: aligns[i] } : undefined);
  return (
    <table key={key}>
      <thead><tr>{head.map((c, i) => <th key={i} style={style(i)}>{inline(c)}</th>)}</tr></thead>
      {body.length > 0 && (
        <tbody>{body.map((r, j) => <tr key={j}>{r.map((c, i) => <td key={i} style={style(i)}>{inline(c)}</td>)}</tr>)}</tbody>
      )}
    </table>
  );
}

interface ListItem {
  indent: number;
  ordered: boolean;
  text: string;
}

/** Nested lists from consecutive item lines; deeper indentation opens a sub-list. */
function list(items: ListItem[], key: number): JSX.Element {
  const base = items[0].indent;
  const children: JSX.Element[] = [];
  let i = 0;
  while (i < items.length) {
    const item = items[i];
    let j = i + 1;
    while (j < items.length && items[j].indent > base) j++;
    const nested = items.slice(i + 1, j);
    children.push(<li key={i}>{inline(item.text)}{nested.length > 0 && list(nested, 0)}</li>);
    i = j;
  }
  return items[0].ordered ? <ol key={key}>{children}</ol> : <ul key={key}>{children}</ul>;
}

function blocks(lines: string[]): JSX.Element[] {
  const out: JSX.Element[] = [];
  let i = 0;
  const isBreak = (line: string, at: number) =>
    !line.trim() || HEADING.test(line) || FENCE.test(line) || RULE.test(line) || QUOTE.test(line) || ITEM.test(line)
    || isTableStart(lines, at);
  while (i < lines.length) {
    const line = lines[i];
    const key = out.length;
    if (!line.trim()) {
      i++;
    } else if (FENCE.test(line)) {
      const fence = line.trim().slice(0, 3);
      const body: string[] = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence); i++) body.push(lines[i]);
      i++;
      out.push(<pre key={key}><code>{body.join("\n")}</code></pre>);
    } else if (HEADING.test(line)) {
      const m = HEADING.exec(line)!;
      const Tag = `h${m[1].length}` as "h1";
      out.push(<Tag key={key}>{inline(m[2])}</Tag>);
      i++;
    } else if (isTableStart(lines, i)) {
      const rows = [lines[i], lines[i + 1]];
      for (i += 2; i < lines.length && lines[i].trim() && lines[i].includes("|"); i++) rows.push(lines[i]);
      out.push(table(rows, key));
    } else if (RULE.test(line)) {
      out.push(<hr key={key} />);
      i++;
    } else if (QUOTE.test(line)) {
      const body: string[] = [];
      for (; i < lines.length && QUOTE.test(lines[i]); i++) body.push(lines[i].replace(QUOTE, ""));
      out.push(<blockquote key={key}>{blocks(body)}</blockquote>);
    } else if (ITEM.test(line)) {
      const items: ListItem[] = [];
      for (; i < lines.length; i++) {
        const m = ITEM.exec(lines[i]);
        if (m) {
          items.push({ indent: m[1].replace(/\t/g, "    ").length, ordered: /\d/.test(m[2]), text: m[3] });
        } else if (lines[i].trim() && /^\s+/.test(lines[i]) && items.length) {
          items[items.length - 1].text += " " + lines[i].trim();
        } else {
          break;
        }
      }
      out.push(list(items, key));
    } else {
      const body: string[] = [];
      for (; i < lines.length && (body.length === 0 || !isBreak(lines[i], i)); i++) body.push(lines[i]);
      out.push(<p key={key}>{inline(body.join("\n"))}</p>);
    }
  }
  return out;
}

export function Markdown({ text, class: className }: { text: string; class?: string }) {
  return <div class={className}>{blocks(text.replace(/\r\n?/g, "\n").split("\n"))}</div>;
}
