// Step 2: where the images come from — uploaded from this browser, a folder on the server,
// or an Azure Blob container — and whether new files are picked up on a schedule.
import { useUser } from "../../ui";
import { Check, Field, numberOf, numberValue } from "./common";
import { DataCheckPanel, type DataCheckState } from "./DataCheck";
import { UploadPicker } from "./UploadPicker";
import { AZURE_CREDENTIALS, type AzureCredential, type DataDraft, type DataSource, type Issues } from "./state";
import { MAX_REFRESH_MINUTES, MIN_REFRESH_MINUTES } from "./validate";

const SOURCES: { value: DataSource; title: string; blurb: string }[] = [
  { value: "upload", title: "Upload from this computer", blurb: "Send files and folders to the server's storage." },
  { value: "local", title: "Folder on the server", blurb: "Read images from a folder the server can see." },
  { value: "azure_blob", title: "Azure Blob container", blurb: "Read images from a storage account container." },
];

interface Props {
  value: DataDraft;
  onChange: (v: DataDraft) => void;
  issues: Issues;
}

// A folder under the server's allowed roots may hold any team's images: the server lets only
// instance admins bind one (and says so with a 403 to anyone else).
const ADMIN_ONLY_NOTE = "Only an instance admin can bind a folder on the server.";

export function DataStep({ value, onChange, issues, stored, check, checkCurrent, onCheck }: Props & {
  stored: ReadonlySet<string>; check: DataCheckState; checkCurrent: boolean; onCheck: () => void;
}) {
  const admin = useUser()?.is_admin === true;
  return (
    <div>
      <fieldset class="wz-choices wz-choices-row" data-testid="data-sources">
        <legend class="wz-label">Where are the images?</legend>
        {SOURCES.map((s) => {
          const barred = s.value === "local" && !admin;
          const classes = ["wz-choice", value.source === s.value ? "selected" : "", barred ? "barred" : ""];
          return (
            <label class={classes.filter(Boolean).join(" ")} key={s.value}>
              <input type="radio" name="data_source" value={s.value} data-testid={`data-source-${s.value}`}
                checked={value.source === s.value} disabled={barred}
                onChange={() => onChange({ ...value, source: s.value })} />
              <span>
                <strong>{s.title}</strong><span class="muted">{s.blurb}</span>
                {barred && <span class="wz-note" data-testid="data-source-local-admin-only">{ADMIN_ONLY_NOTE}</span>}
              </span>
            </label>
          );
        })}
      </fieldset>
      {value.source === "upload" && (
        <UploadPicker files={value.files} issue={issues.files} stored={stored}
          onChange={(files) => onChange({ ...value, files })} />
      )}
      {value.source === "local" && <LocalFields {...{ value, onChange, issues }} />}
      {value.source === "azure_blob" && <AzureFields {...{ value, onChange, issues }} />}
      {value.source !== "upload" && <PatternField {...{ value, onChange, issues }} />}
      {value.source !== "upload" && <RefreshFields {...{ value, onChange, issues }} />}
      {value.source !== "upload" && <DataCheckPanel state={check} current={checkCurrent} draft={value} onCheck={onCheck} />}
      <p class="muted wz-hint">
        A project holds at most 500,000 images; beyond that the first ones in listing order are loaded.
      </p>
    </div>
  );
}

function LocalFields({ value, onChange, issues }: Props) {
  return (
    <Field label="Folder path on the server" issue={issues.localPath}
      hint="An absolute path inside the folders the server's administrator allows (COLABEL_LOCAL_ROOTS).">
      <input name="local_path" data-testid="data-local-path" placeholder="/srv/images/project" value={value.localPath}
        aria-invalid={issues.localPath !== undefined} autocomplete="off"
        onInput={(e) => onChange({ ...value, localPath: e.currentTarget.value })} />
    </Field>
  );
}

function AzureFields({ value, onChange, issues }: Props) {
  const set = (patch: Partial<DataDraft>) => onChange({ ...value, ...patch });
  return (
    <div>
      <Field label="Storage account URL" issue={issues.azureUrl}>
        <input name="azure_account_url" data-testid="data-azure-url" placeholder="https://account.blob.core.windows.net"
          value={value.azureUrl} aria-invalid={issues.azureUrl !== undefined} autocomplete="off"
          onInput={(e) => set({ azureUrl: e.currentTarget.value })} />
      </Field>
      <div class="grid2">
        <Field label="Container" issue={issues.azureContainer}>
          <input name="azure_container" data-testid="data-azure-container" value={value.azureContainer}
            aria-invalid={issues.azureContainer !== undefined} autocomplete="off"
            onInput={(e) => set({ azureContainer: e.currentTarget.value })} />
        </Field>
        <Field label="Folder prefix (optional)" hint="Only blobs under this prefix are read.">
          <input name="azure_prefix" data-testid="data-azure-prefix" placeholder="images/2024" value={value.azurePrefix}
            autocomplete="off" onInput={(e) => set({ azurePrefix: e.currentTarget.value })} />
        </Field>
      </div>
      <div class="grid2">
        <Field label="Credential type">
          <select name="azure_credential_kind" data-testid="data-azure-credential-kind" value={value.azureCredentialKind}
            onChange={(e) => set({ azureCredentialKind: e.currentTarget.value as AzureCredential })}>
            {AZURE_CREDENTIALS.map((c) => <option value={c.value} key={c.value}>{c.title}</option>)}
          </select>
        </Field>
        <Field label="Credential" issue={issues.azureCredential} hint="Kept on the server and never shown again.">
          <input type="password" name="azure_credential" data-testid="data-azure-credential" autocomplete="off"
            value={value.azureCredential} aria-invalid={issues.azureCredential !== undefined}
            onInput={(e) => set({ azureCredential: e.currentTarget.value })} />
        </Field>
      </div>
    </div>
  );
}

function PatternField({ value, onChange, issues }: Props) {
  return (
    <Field label="Files to include" issue={issues.pattern}
      hint={<>
        <code>**/*.*</code> takes everything, <code>dir/**</code> everything below <code>dir</code>;
        {" "}<code>*</code> matches within one folder level. Only image files are loaded.
      </>}>
      <input name="pattern" data-testid="data-pattern" value={value.pattern} aria-invalid={issues.pattern !== undefined}
        autocomplete="off" onInput={(e) => onChange({ ...value, pattern: e.currentTarget.value })} />
    </Field>
  );
}

function RefreshFields({ value, onChange, issues }: Props) {
  return (
    <div class="wz-refresh">
      <Check name="refresh_enabled" testid="data-refresh" checked={value.refreshEnabled}
        onChange={(on) => onChange({ ...value, refreshEnabled: on })}>
        Enable incremental refresh at regular intervals
      </Check>
      <p class="muted wz-hint">
        New files that appear in the datastore are added to the project. Add files rather than removing them:
        items whose file disappears are marked missing.
      </p>
      {value.refreshEnabled && (
        <Field label="Check for new files every (minutes)" issue={issues.refreshMinutes}>
          <input type="number" name="refresh_minutes" data-testid="data-refresh-interval" min={MIN_REFRESH_MINUTES}
            max={MAX_REFRESH_MINUTES} step={1} value={numberValue(value.refreshMinutes)} class="wz-number"
            aria-invalid={issues.refreshMinutes !== undefined}
            onInput={(e) => onChange({ ...value, refreshMinutes: numberOf(e) })} />
        </Field>
      )}
    </div>
  );
}
