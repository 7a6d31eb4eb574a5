// How live documents are named (the same names the server uses, collab/names.py):
// `<project>/<item>/<labeler's user id>` for a labeler's own annotation and
// `<project>/<item>/final` for the item's final label.

export function documentName(pid: number, iid: number, annotator: number | "final"): string {
  return `${pid}/${iid}/${annotator}`;
}

export function finalDocument(pid: number, iid: number): string {
  return documentName(pid, iid, "final");
}
