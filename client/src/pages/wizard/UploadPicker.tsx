// Choosing files and folders in the browser: buttons, a drop zone, and the list to check.
import { useState } from "preact/hooks";
import { formatBytes } from "../../ui";
import {
  ACCEPTED_EXTENSIONS, fromDrop, fromFileList, groupPicks, inGroup, isAccepted, mergePicks, totalBytes,
  type PickedFile,
} from "./files";

const SHOWN_GROUPS = 50;

export function UploadPicker({ files, onChange, issue, stored }: {
  files: PickedFile[]; onChange: (files: PickedFile[]) => void; issue?: string; stored: ReadonlySet<string>;
}) {
  const storedCount = files.filter((p) => stored.has(p.key)).length;
  const [skipped, setSkipped] = useState<string[]>([]);
  const [over, setOver] = useState(false);
  const add = (picked: PickedFile[]) => {
    setSkipped(picked.filter((p) => !isAccepted(p.key)).map((p) => p.key));
    onChange(mergePicks(files, picked.filter((p) => isAccepted(p.key))));
  };
  const onInput = (e: Event) => {
    const input = e.currentTarget as HTMLInputElement;
    add(fromFileList(input.files));
    input.value = "";
  };
  const onDrop = async (e: DragEvent) => {
    e.preventDefault();
    setOver(false);
    if (e.dataTransfer) add(await fromDrop(e.dataTransfer));
  };
  return (
    <div class="wz-upload">
      <div class={over ? "wz-dropzone over" : "wz-dropzone"} data-testid="upload-dropzone"
        onDragOver={(e) => {
          e.preventDefault();
          setOver(true);
        }}
        onDragLeave={() => setOver(false)} onDrop={onDrop}>
        <p>Drop image files or folders here, or</p>
        <div class="row">
          <label class="button wz-file-button">
            <input type="file" multiple name="files" data-testid="wizard-upload-input" class="wz-hidden-input"
              accept={ACCEPTED_EXTENSIONS.join(",")} onChange={onInput} />
            Choose files
          </label>
          <label class="button wz-file-button">
            <input type="file" multiple name="folder" data-testid="wizard-upload-folder-input" class="wz-hidden-input"
              ref={(el) => {
                if (el) el.webkitdirectory = true;
              }}
              onChange={onInput} />
            Choose folder
          </label>
        </div>
        <p class="muted wz-hint">Accepted: {ACCEPTED_EXTENSIONS.join(" ")}. Folders keep their structure.</p>
      </div>
      {issue && <span class="wz-issue" role="alert">{issue}</span>}
      {skipped.length > 0 && (
        <div class="notice" data-testid="upload-skipped">
          Skipped {skipped.length} file{skipped.length === 1 ? "" : "s"} that {skipped.length === 1 ? "is" : "are"} not
          an accepted image type: {skipped.slice(0, 5).join(", ")}{skipped.length > 5 ? ", …" : ""}
        </div>
      )}
      {storedCount > 0 && (
        <div class="notice" data-testid="upload-stored">
          {storedCount} of {files.length} files are already stored in the project; the others are sent when you
          finish creating it.
        </div>
      )}
      {files.length > 0 && <PickedList files={files} onChange={onChange} />}
    </div>
  );
}

function PickedList({ files, onChange }: { files: PickedFile[]; onChange: (files: PickedFile[]) => void }) {
  const groups = groupPicks(files);
  return (
    <div class="wz-picked" data-testid="upload-selection">
      <div class="row">
        <strong data-testid="upload-count">{files.length} file{files.length === 1 ? "" : "s"}</strong>
        <span class="muted">{formatBytes(totalBytes(files))}</span>
        <span class="spacer" />
        <button type="button" data-testid="upload-clear" onClick={() => onChange([])}>Clear all</button>
      </div>
      <ul>
        {groups.slice(0, SHOWN_GROUPS).map((g) => (
          <li key={g.name}>
            <span class="wz-picked-name">{g.name}</span>
            <span class="muted">{g.folder ? `${g.count} files · ` : ""}{formatBytes(g.bytes)}</span>
            <button type="button" class="wz-icon" title={`Remove ${g.name}`} aria-label={`Remove ${g.name}`}
              onClick={() => onChange(files.filter((p) => !inGroup(p, g)))}>×</button>
          </li>
        ))}
      </ul>
      {groups.length > SHOWN_GROUPS && <p class="muted">and {groups.length - SHOWN_GROUPS} more…</p>}
    </div>
  );
}
