// Instance admins manage accounts: invite by one-time link, create with a password,
// deactivate and reactivate, issue a new link to reset a password, and see who works on
// which project in which role.
import { useState } from "preact/hooks";
import { get, patch, post } from "../api";
import { ErrorBox, Page, Spinner, session, useLoad } from "../ui";
import { ROLE_TEXT } from "./projectWords";
import "./manage.css";

interface AdminUser {
  id: number;
  name: string;
  email: string;
  is_admin: boolean;
  is_active: boolean;
  state: "active" | "invited" | "deactivated";
  projects: { id: number; name: string; role: string; archived: boolean }[];
  open_link: { kind: string; expires_at: string; expired: boolean } | null;
}

interface Link {
  url: string;
  kind: "invite" | "reset";
  expires_at: string;
}

const VALIDITY = [[24, "1 day"], [24 * 7, "7 days"], [24 * 30, "30 days"]] as const;

/** A link shown once, with a button to copy it. */
function LinkBox({ who, link }: { who: string; link: Link }) {
  const [copied, setCopied] = useState(false);
  const copy = async (input: HTMLInputElement | null) => {
    try {
      await navigator.clipboard.writeText(link.url);
    } catch {
      // No clipboard API outside secure contexts (plain http): select it for Ctrl+C.
      input?.select();
      document.execCommand?.("copy");
    }
    setCopied(true);
  };
  let input: HTMLInputElement | null = null;
  return (
    <div class="notice" data-testid="issued-link">
      <p style="margin-top:0">{link.kind === "invite" ? "Invitation" : "Password reset"} link for <strong>{who}</strong>.
        Send it to them yourself: it works once, until {new Date(link.expires_at).toLocaleString()}, and is not
        shown again. Older links for this person stop working.</p>
      <div class="linkbox">
        <input readOnly value={link.url} ref={(el) => { input = el; }} data-testid="link-url"
          onFocus={(e) => e.currentTarget.select()} aria-label="One-time link" />
        <button type="button" onClick={() => copy(input)}>{copied ? "Copied" : "Copy link"}</button>
      </div>
    </div>
  );
}

function StateBadge({ user }: { user: AdminUser }) {
  if (user.state === "deactivated") return <span class="badge deactivated">Deactivated</span>;
  if (user.state === "invited") {
    const link = user.open_link;
    const note = !link ? "no open link" : link.expired ? "link expired" : `link until ${new Date(link.expires_at).toLocaleDateString()}`;
    return <span class="badge invited" title={note}>Invited · {note}</span>;
  }
  return <span class="badge running">Active</span>;
}

function InviteForm({ onIssued }: { onIssued: (who: string, link: Link) => void }) {
  const [email, setEmail] = useState("");
  const [name, setName] = useState("");
  const [admin, setAdmin] = useState(false);
  const [hours, setHours] = useState(24 * 7);
  const [error, setError] = useState<unknown>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const r = await post<{ invite: Link }>("/api/v1/invites",
        { email: email.trim(), name: name.trim(), is_admin: admin, expires_in_hours: hours });
      setError(null);
      onIssued(email.trim(), r.invite);
      setEmail("");
      setName("");
      setAdmin(false);
    } catch (err) {
      setError(err);
    }
  };
  return (
    <form class="card" onSubmit={submit} data-testid="invite-form">
      <h3 style="margin-top:0">Invite someone</h3>
      <p class="muted">They get an account and a one-time link to choose their own password.</p>
      <label>Email<input type="email" name="invite-email" required value={email}
        onInput={(e) => setEmail(e.currentTarget.value)} /></label>
      <label>Name (they can change it)<input name="invite-name" maxLength={200} value={name}
        onInput={(e) => setName(e.currentTarget.value)} /></label>
      <label>Link valid for<select name="invite-hours" value={hours} onChange={(e) => setHours(Number(e.currentTarget.value))}>
        {VALIDITY.map(([h, text]) => <option key={h} value={h}>{text}</option>)}
      </select></label>
      <label class="inline"><input type="checkbox" checked={admin} onChange={(e) => setAdmin(e.currentTarget.checked)} />
        Instance admin (manages users and every project)</label>
      <ErrorBox error={error} />
      <button type="submit" class="primary">Create invitation link</button>
    </form>
  );
}

function CreateForm({ onCreated }: { onCreated: () => void }) {
  const [email, setEmail] = useState("");
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [admin, setAdmin] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [done, setDone] = useState("");
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await post("/api/v1/users", { email: email.trim(), name: name.trim(), password, is_admin: admin });
      setError(null);
      setDone(`Created ${email.trim()}. Give them their password in person.`);
      setEmail("");
      setName("");
      setPassword("");
      onCreated();
    } catch (err) {
      setError(err);
      setDone("");
    }
  };
  return (
    <form class="card" onSubmit={submit} data-testid="create-form">
      <h3 style="margin-top:0">Create an account with a password</h3>
      <p class="muted">For when you set the password yourself; an invitation is usually better.</p>
      <label>Email<input type="email" name="create-email" required value={email}
        onInput={(e) => setEmail(e.currentTarget.value)} /></label>
      <label>Name<input name="create-name" maxLength={200} value={name} onInput={(e) => setName(e.currentTarget.value)} /></label>
      <label>Password (at least 8 characters)<input type="password" name="create-password" autocomplete="new-password"
        required minLength={8} value={password} onInput={(e) => setPassword(e.currentTarget.value)} /></label>
      <label class="inline"><input type="checkbox" checked={admin} onChange={(e) => setAdmin(e.currentTarget.checked)} />
        Instance admin</label>
      <ErrorBox error={error} />
      {done && <p class="muted">{done}</p>}
      <button type="submit">Create account</button>
    </form>
  );
}

export function AdminUsers() {
  const me = session.user;
  const [data, error, reload] = useLoad(() => get<{ users: AdminUser[] }>("/api/v1/users?limit=1000"), []);
  const [issued, setIssued] = useState<{ who: string; link: Link } | null>(null);
  const [actionError, setActionError] = useState<unknown>(null);
  if (!me?.is_admin) {
    return <Page title="Users"><p class="error">Only instance admins manage users.</p></Page>;
  }
  const act = async (fn: () => Promise<unknown>) => {
    try {
      await fn();
      setActionError(null);
      reload();
    } catch (e) {
      setActionError(e);
    }
  };
  const newLink = (u: AdminUser) => act(async () => {
    const r = await post<{ invite: Link }>(`/api/v1/users/${u.id}/invite`, {});
    setIssued({ who: u.email, link: r.invite });
  });
  return (
    <Page title="Users" wide>
      {issued && <LinkBox who={issued.who} link={issued.link} />}
      <div class="grid2">
        <InviteForm onIssued={(who, link) => { setIssued({ who, link }); reload(); }} />
        <CreateForm onCreated={reload} />
      </div>
      <h2>Everyone</h2>
      <ErrorBox error={error || actionError} />
      {!data && !error && <Spinner />}
      {data && (
        <table class="list" data-testid="users">
          <thead><tr><th>Name</th><th>Email</th><th>State</th><th>Projects and roles</th><th /></tr></thead>
          <tbody>
            {data.users.map((u) => (
              <tr key={u.id} data-testid={`user-${u.id}`} data-email={u.email} data-state={u.state}>
                <td>{u.name}{u.is_admin && <span class="muted"> · admin</span>}</td>
                <td>{u.email}</td>
                <td><StateBadge user={u} /></td>
                <td>
                  {u.projects.length === 0 ? <span class="muted">None</span> : (
                    <ul class="projects-of">
                      {u.projects.map((p) => (
                        <li key={p.id}><a href={`#/p/${p.id}`}>{p.name}</a> — {ROLE_TEXT[p.role] ?? p.role}
                          {p.archived && <span class="muted"> (archived)</span>}</li>
                      ))}
                    </ul>
                  )}
                </td>
                <td>
                  <div class="usertools">
                    {u.state !== "deactivated" && (
                      <button onClick={() => newLink(u)}>
                        {u.state === "invited" ? "New invitation link" : "Reset password"}</button>
                    )}
                    {u.id !== me.id && (u.is_active ? (
                      <button class="danger" onClick={() => act(() => patch(`/api/v1/users/${u.id}`, { is_active: false }))}>
                        Deactivate</button>
                    ) : (
                      <button onClick={() => act(() => patch(`/api/v1/users/${u.id}`, { is_active: true }))}>
                        Reactivate</button>
                    ))}
                  </div>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <p class="muted">Deactivating signs a person out everywhere at once (their sessions, API tokens and open
        pages) and keeps everything they labeled. Reactivating lets them sign in again with their password.</p>
    </Page>
  );
}
