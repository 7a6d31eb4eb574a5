// The label tree being edited: immutable operations, the server's naming rules, and the
// nested body the API takes. Display order is pre-order; hotkeys go to leaves, then groups.
import { assignHotkeys } from "../labeling/hotkeys";

export interface LabelDraft {
  key: string;
  name: string;
  children: LabelDraft[];
  /** The hotkey the owner chose (a character of HOTKEYS); none: one is given automatically. */
  hotkey?: string;
}

export interface LabelBody {
  name: string;
  children: LabelBody[];
  hotkey?: string;
}

export const MAX_DEPTH = 6;
export const MAX_LABELS = 2000;
export const MAX_NAME = 100;

const MARKUP = /<\s*[A-Za-z!/?]/;
// Unicode categories Cc and Cf, which the server refuses in names.
const CONTROL = /[\p{Cc}\p{Cf}]/u;

let counter = 0;
export function newLabel(name = ""): LabelDraft {
  counter += 1;
  return { key: `l${counter}`, name, children: [] };
}

/** Sibling uniqueness ignores case and width, like the server. */
export function nameKey(name: string): string {
  return name.trim().normalize("NFKC").toLowerCase();
}

export interface FlatLabel {
  node: LabelDraft;
  depth: number;
  path: string;
  hotkey: string | null;
}

export function flatten(tree: LabelDraft[]): FlatLabel[] {
  const out: FlatLabel[] = [];
  const walk = (nodes: LabelDraft[], depth: number, prefix: string) => {
    for (const node of nodes) {
      const path = prefix ? `${prefix}/${node.name.trim()}` : node.name.trim();
      out.push({ node, depth, path, hotkey: null });
      walk(node.children, depth + 1, path);
    }
  };
  walk(tree, 1, "");
  assignHotkeys(out, (f) => f.node.children.length > 0, (f) => f.node.hotkey)
    .forEach((k, i) => (out[i].hotkey = k));
  return out;
}

export function countLabels(tree: LabelDraft[]): number {
  return tree.reduce((n, node) => n + 1 + countLabels(node.children), 0);
}

/** Index path from the roots to `key` ([2, 0] = first child of the third root), or null. */
export function locate(tree: LabelDraft[], key: string): number[] | null {
  for (let i = 0; i < tree.length; i++) {
    if (tree[i].key === key) return [i];
    const below = locate(tree[i].children, key);
    if (below) return [i, ...below];
  }
  return null;
}

/** Replace the sibling list that holds index path `at` (its last index addresses the list). */
function withSiblings(tree: LabelDraft[], at: number[], edit: (siblings: LabelDraft[]) => LabelDraft[]):
  LabelDraft[] {
  if (at.length === 1) return edit(tree);
  const [head, ...rest] = at;
  return tree.map((n, i) => (i === head ? { ...n, children: withSiblings(n.children, rest, edit) } : n));
}

function withNode(tree: LabelDraft[], key: string, edit: (node: LabelDraft) => LabelDraft): LabelDraft[] {
  return tree.map((n) => (n.key === key ? edit(n) : { ...n, children: withNode(n.children, key, edit) }));
}

export function rename(tree: LabelDraft[], key: string, name: string): LabelDraft[] {
  return withNode(tree, key, (n) => ({ ...n, name }));
}

export function addChild(tree: LabelDraft[], parentKey: string, child: LabelDraft): LabelDraft[] {
  return withNode(tree, parentKey, (n) => ({ ...n, children: [...n.children, child] }));
}

export function addSiblingAfter(tree: LabelDraft[], key: string, sibling: LabelDraft): LabelDraft[] {
  const at = locate(tree, key);
  if (!at) return tree;
  const index = at[at.length - 1];
  return withSiblings(tree, at, (s) => [...s.slice(0, index + 1), sibling, ...s.slice(index + 1)]);
}

export interface Removed {
  node: LabelDraft;
  at: number[];
}

export function remove(tree: LabelDraft[], key: string): [LabelDraft[], Removed | null] {
  const at = locate(tree, key);
  if (!at) return [tree, null];
  const index = at[at.length - 1];
  const node = nodeAt(tree, at);
  return [withSiblings(tree, at, (s) => s.filter((_, i) => i !== index)), { node, at }];
}

function nodeAt(tree: LabelDraft[], at: number[]): LabelDraft {
  let node = tree[at[0]];
  for (const i of at.slice(1)) node = node.children[i];
  return node;
}

/** Put a removed node back where it was (or at the end of its list if that shrank). */
export function restore(tree: LabelDraft[], removed: Removed): LabelDraft[] {
  const index = removed.at[removed.at.length - 1];
  return withSiblings(tree, removed.at, (s) => [...s.slice(0, index), removed.node, ...s.slice(index)]);
}

/** Move a node by `delta` places among its siblings; unchanged at either end. */
export function shift(tree: LabelDraft[], key: string, delta: number): LabelDraft[] {
  const at = locate(tree, key);
  if (!at) return tree;
  const index = at[at.length - 1];
  return withSiblings(tree, at, (s) => {
    const to = index + delta;
    if (to < 0 || to >= s.length) return s;
    const copy = s.slice();
    [copy[index], copy[to]] = [copy[to], copy[index]];
    return copy;
  });
}

export function sameParent(tree: LabelDraft[], a: string, b: string): boolean {
  const pa = locate(tree, a);
  const pb = locate(tree, b);
  return !!pa && !!pb && pa.length === pb.length && pa.slice(0, -1).every((v, i) => v === pb[i]);
}

/** Move `key` before or after its sibling `target`. */
export function moveBeside(tree: LabelDraft[], key: string, target: string, after: boolean): LabelDraft[] {
  if (key === target || !sameParent(tree, key, target)) return tree;
  const at = locate(tree, key)!;
  return withSiblings(tree, at, (s) => {
    const moving = s.find((n) => n.key === key)!;
    const rest = s.filter((n) => n.key !== key);
    const t = rest.findIndex((n) => n.key === target);
    const index = after ? t + 1 : t;
    return [...rest.slice(0, index), moving, ...rest.slice(index)];
  });
}

/** Why a name cannot be used, or null; mirrors the server's checks. */
export function nameProblem(name: string): string | null {
  const trimmed = name.trim();
  if (!trimmed) return "Enter a name";
  if (trimmed.length > MAX_NAME) return `At most ${MAX_NAME} characters`;
  if (trimmed.includes("/")) return "Names cannot contain '/', which separates levels";
  if (CONTROL.test(trimmed)) return "Names cannot contain control characters";
  if (MARKUP.test(trimmed)) return "Names are plain text; HTML tags are not allowed";
  return null;
}

/** Label key -> problem, for every node that breaks a rule. */
export function treeIssues(tree: LabelDraft[]): Record<string, string> {
  const issues: Record<string, string> = {};
  const walk = (nodes: LabelDraft[], depth: number) => {
    const seen = new Map<string, string>();
    for (const node of nodes) {
      const problem = nameProblem(node.name);
      if (problem) {
        issues[node.key] = problem;
      } else if (depth > MAX_DEPTH) {
        issues[node.key] = `Labels can be at most ${MAX_DEPTH} levels deep`;
      } else {
        const k = nameKey(node.name);
        const first = seen.get(k);
        if (first !== undefined) issues[node.key] = `"${first}" already exists at this level`;
        else seen.set(k, node.name.trim());
      }
      walk(node.children, depth + 1);
    }
  };
  walk(tree, 1);
  return issues;
}

export function toBody(tree: LabelDraft[]): LabelBody[] {
  return tree.map((n) => ({ name: n.name.trim(), ...(n.hotkey ? { hotkey: n.hotkey } : {}), children: toBody(n.children) }));
}

/** Give a label its own hotkey ("" gives it back to the automatic ones). */
export function setHotkey(tree: LabelDraft[], key: string, hotkey: string): LabelDraft[] {
  return withNode(tree, key, (n) => ({ ...n, hotkey: hotkey || undefined }));
}

/** The node a server error location such as ["labels", 0, "children", 2, "name"] points at. */
export function keyAtLoc(tree: LabelDraft[], loc: unknown[]): string | null {
  let nodes = tree;
  let found: LabelDraft | null = null;
  for (let i = 1; i < loc.length; i++) {
    const part = loc[i];
    if (typeof part === "number") {
      found = nodes[part] ?? null;
      if (!found) return null;
    } else if (part === "children" && found) {
      nodes = found.children;
    } else {
      break;
    }
  }
  return found?.key ?? null;
}

export interface RefusedLine {
  line: string;
  why: string;
}

function pathProblem(parts: string[]): string | null {
  if (parts.some((p) => !p)) return "empty level in the path";
  if (parts.length > MAX_DEPTH) return `${parts.length} levels; labels can be at most ${MAX_DEPTH} levels deep`;
  return parts.map(nameProblem).find((p) => p) ?? null;
}

/**
 * Add labels written one per line as paths ("Animal/Cat"); missing parents are created and
 * existing ones reused. Returns the new tree and the lines that could not be added.
 */
export function addPaths(tree: LabelDraft[], text: string): [LabelDraft[], RefusedLine[]] {
  let next = tree;
  const refused: RefusedLine[] = [];
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line) continue;
    const parts = line.split("/").map((p) => p.trim());
    const why = pathProblem(parts);
    if (why) refused.push({ line, why });
    else next = ensurePath(next, parts);
  }
  return [next, refused];
}

function ensurePath(nodes: LabelDraft[], parts: string[]): LabelDraft[] {
  if (parts.length === 0) return nodes;
  const [head, ...rest] = parts;
  const index = nodes.findIndex((n) => nameKey(n.name) === nameKey(head));
  if (index < 0) return [...nodes, { ...newLabel(head), children: ensurePath([], rest) }];
  return nodes.map((n, i) => (i === index ? { ...n, children: ensurePath(n.children, rest) } : n));
}
