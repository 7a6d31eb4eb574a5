// Files chosen in the browser: where they come from (inputs, folder inputs, drag and drop),
// which the server accepts, and sending them in batches with overall progress.
import { upload } from "../../api";

export interface PickedFile {
  /** The path the file gets in the project's storage ("folder/sub/a.png"). */
  key: string;
  file: File;
}

export const ACCEPTED_EXTENSIONS = [".jpg", ".jpeg", ".png", ".jpe", ".jfif", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"];

// Small requests keep progress smooth and a failed batch cheap to resend; the server's own
// per-request limit is far higher.
const BATCH_BYTES = 32 * 1024 * 1024;
const BATCH_FILES = 200;

export function isAccepted(name: string): boolean {
  const dot = name.lastIndexOf(".");
  return dot > 0 && ACCEPTED_EXTENSIONS.includes(name.slice(dot).toLowerCase());
}

function cleanKey(path: string): string {
  return path.split(/[\\/]+/).filter((p) => p && p !== "." && p !== "..").join("/");
}

export function fromFileList(list: FileList | null): PickedFile[] {
  return Array.from(list ?? []).map((file) => ({ key: cleanKey(file.webkitRelativePath || file.name), file }));
}

function readEntries(reader: FileSystemDirectoryReader): Promise<FileSystemEntry[]> {
  return new Promise((resolve, reject) => reader.readEntries(resolve, reject));
}

function entryFile(entry: FileSystemFileEntry): Promise<File> {
  return new Promise((resolve, reject) => entry.file(resolve, reject));
}

async function walkEntry(entry: FileSystemEntry, out: PickedFile[]): Promise<void> {
  if (entry.isFile) {
    out.push({ key: cleanKey(entry.fullPath), file: await entryFile(entry as FileSystemFileEntry) });
    return;
  }
  if (entry.isDirectory) {
    const reader = (entry as FileSystemDirectoryEntry).createReader();
    // readEntries returns a directory in chunks; an empty chunk means the end.
    for (let chunk = await readEntries(reader); chunk.length; chunk = await readEntries(reader)) {
      for (const child of chunk) await walkEntry(child, out);
    }
  }
}

/** Files and whole folders dropped onto the page. */
export async function fromDrop(data: DataTransfer): Promise<PickedFile[]> {
  const entries = Array.from(data.items)
    .map((item) => (item.kind === "file" ? item.webkitGetAsEntry() : null))
    .filter((e): e is FileSystemEntry => e !== null);
  if (entries.length === 0) return fromFileList(data.files);
  const out: PickedFile[] = [];
  for (const entry of entries) await walkEntry(entry, out);
  return out;
}

/** Add picks to a selection; a later file with the same path replaces the earlier one. */
export function mergePicks(current: PickedFile[], added: PickedFile[]): PickedFile[] {
  const byKey = new Map(current.map((p) => [p.key, p]));
  for (const p of added) byKey.set(p.key, p);
  return Array.from(byKey.values());
}

export function totalBytes(files: PickedFile[]): number {
  return files.reduce((n, p) => n + p.file.size, 0);
}

export interface FileGroup {
  /** The top folder ("cats/") or, for a loose file, its own name. */
  name: string;
  folder: boolean;
  count: number;
  bytes: number;
}

export function groupPicks(files: PickedFile[]): FileGroup[] {
  const groups = new Map<string, FileGroup>();
  for (const p of files) {
    const slash = p.key.indexOf("/");
    const name = slash > 0 ? p.key.slice(0, slash + 1) : p.key;
    const g = groups.get(name) ?? { name, folder: slash > 0, count: 0, bytes: 0 };
    g.count += 1;
    g.bytes += p.file.size;
    groups.set(name, g);
  }
  return Array.from(groups.values());
}

export function inGroup(p: PickedFile, group: FileGroup): boolean {
  return group.folder ? p.key.startsWith(group.name) : p.key === group.name;
}

export function batches(files: PickedFile[]): PickedFile[][] {
  const out: PickedFile[][] = [];
  let current: PickedFile[] = [];
  let bytes = 0;
  for (const p of files) {
    if (current.length && (bytes + p.file.size > BATCH_BYTES || current.length >= BATCH_FILES)) {
      out.push(current);
      current = [];
      bytes = 0;
    }
    current.push(p);
    bytes += p.file.size;
  }
  if (current.length) out.push(current);
  return out;
}

export interface UploadProgress {
  sentBytes: number;
  totalBytes: number;
  doneFiles: number;
  totalFiles: number;
}

export interface UploadReply {
  uploaded: number;
  ingest: { total_items: number; over_cap: number; cap: number; added: number };
}

/**
 * Send `files` batch by batch; `onBatch` hears of each stored batch so that a retry can skip
 * it. Files already stored under the same path are replaced: in a new project they can only
 * be this selection's own files from an earlier, interrupted attempt.
 */
export async function uploadFiles(pid: number, files: PickedFile[], onProgress: (p: UploadProgress) => void,
  onBatch: (sent: PickedFile[], reply: UploadReply) => void): Promise<void> {
  const total = totalBytes(files);
  let doneBytes = 0;
  let doneFiles = 0;
  onProgress({ sentBytes: 0, totalBytes: total, doneFiles: 0, totalFiles: files.length });
  for (const batch of batches(files)) {
    const form = new FormData();
    for (const p of batch) form.append("files", p.file, p.key);
    const batchBytes = totalBytes(batch);
    const reply = await upload<UploadReply>(`/api/v1/projects/${pid}/uploads?overwrite=true`, form,
      (loaded, size) => {
        // `size` counts the multipart framing too; scale to the files' own bytes.
        const part = size > 0 ? Math.min(1, loaded / size) * batchBytes : 0;
        onProgress({ sentBytes: doneBytes + part, totalBytes: total, doneFiles, totalFiles: files.length });
      });
    doneBytes += batchBytes;
    doneFiles += batch.length;
    onProgress({ sentBytes: doneBytes, totalBytes: total, doneFiles, totalFiles: files.length });
    onBatch(batch, reply);
  }
}
