// A project's members: owners change roles, remove people and add new ones by email, with
// suggestions from the people they can already see. The last owner is never offered a way
// to leave or step down (the server refuses it too).
import { useEffect, useRef, useState } from "preact/hooks";
import { del, get, put, type Project } from "../api";
import { ErrorBox, Spinner, useLoad } from "../ui";
import { ROLE_TEXT } from "./projectWords";

interface Member {
  user: { id: number; name: string; email: string; is_active?: boolean };
  role: string;
}

interface Candidate {
  id: number;
  name: string;
  email: string;
}

const ROLES = ["labeler", "reviewer", "owner"];

function RoleSelect({ value, onChange, name }: { value: string; onChange: (role: string) => void; name?: string }) {
  return (
    <select value={value} name={name} aria-label="Role" onChange={(e) => onChange(e.currentTarget.value)}>
      {ROLES.map((r) => <option key={r} value={r}>{ROLE_TEXT[r]}</option>)}
    </select>
  );
}

/** An email field that suggests people as one types; picking one fills in their email. */
function PersonPicker({ pid, value, onChange }: { pid: number; value: string; onChange: (email: string) => void }) {
  const [options, setOptions] = useState<Candidate[]>([]);
  const [open, setOpen] = useState(false);
  const [active, setActive] = useState(0);
  const asked = useRef(0);
  useEffect(() => {
    const q = value.trim();
    if (!q) {
      setOptions([]);
      return;
    }
    const ticket = ++asked.current;
    const timer = setTimeout(() => {
      get<{ users: Candidate[] }>(`/api/v1/projects/${pid}/members/candidates?q=${encodeURIComponent(q)}`)
        .then((r) => {
          if (ticket !== asked.current) return; // an older answer arriving late
          setOptions(r.users);
          setActive(0);
        }, () => setOptions([]));
    }, 150);
    return () => clearTimeout(timer);
  }, [value, pid]);
  const shown = open && options.length > 0 && !options.some((o) => o.email === value);
  const pick = (c: Candidate) => {
    onChange(c.email);
    setOpen(false);
  };
  return (
    <div class="picker">
      <input type="email" placeholder="Name or email" required value={value} name="member-email"
        autocomplete="off" role="combobox" aria-expanded={shown} aria-controls={`people-${pid}`}
        aria-autocomplete="list"
        onInput={(e) => { onChange(e.currentTarget.value); setOpen(true); }}
        onFocus={() => setOpen(true)}
        onBlur={() => setTimeout(() => setOpen(false), 150)}
        onKeyDown={(e) => {
          if (!shown) return;
          if (e.key === "ArrowDown") { e.preventDefault(); setActive((a) => Math.min(a + 1, options.length - 1)); }
          if (e.key === "ArrowUp") { e.preventDefault(); setActive((a) => Math.max(a - 1, 0)); }
          if (e.key === "Enter") { e.preventDefault(); pick(options[active]); }
          if (e.key === "Escape") setOpen(false);
        }} />
      {shown && (
        <ul class="picker-options" role="listbox" id={`people-${pid}`} data-testid="member-suggestions">
          {options.map((c, i) => (
            <li key={c.id} role="option" aria-selected={i === active} class={i === active ? "active" : ""}
              onMouseDown={(e) => { e.preventDefault(); pick(c); }}>
              <strong>{c.name}</strong> <span class="muted">{c.email}</span>
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}

export function Members({ project, onChanged }: { project: Project; onChanged?: () => void }) {
  const owner = project.role === "owner";
  const writable = owner && !(project as any).archived;
  const [data, error, reload] = useLoad(
    () => get<{ members: Member[] }>(`/api/v1/projects/${project.id}/members`), [project.id]);
  const [email, setEmail] = useState("");
  const [role, setRole] = useState("labeler");
  const [actionError, setActionError] = useState<unknown>(null);
  const act = async (fn: () => Promise<unknown>): Promise<boolean> => {
    try {
      await fn();
      setActionError(null);
      reload();
      onChanged?.();
      return true;
    } catch (e) {
      setActionError(e);
      return false;
    }
  };
  const owners = data ? data.members.filter((m) => m.role === "owner").length : 0;
  const base = `/api/v1/projects/${project.id}/members`;
  return (
    <section>
      <h2>Members</h2>
      <ErrorBox error={error || actionError} />
      {!data && !error && <Spinner />}
      {data && (
        <table class="list" data-testid="members">
          <thead><tr><th>Name</th><th>Email</th><th>Role</th><th /></tr></thead>
          <tbody>
            {data.members.map((m) => {
              // The only owner keeps the project: no way to leave or step down is offered.
              const lastOwner = m.role === "owner" && owners <= 1;
              return (
                <tr key={m.user.id} data-testid={`member-${m.user.id}`}>
                  <td>{m.user.name}{m.user.is_active === false && <span class="badge"> deactivated</span>}</td>
                  <td>{m.user.email}</td>
                  <td>
                    {writable && !lastOwner ? (
                      <RoleSelect value={m.role} onChange={(r) => act(() => put(base, { user_id: m.user.id, role: r }))} />
                    ) : (
                      <span>{ROLE_TEXT[m.role] ?? m.role}
                        {writable && lastOwner && <span class="muted" data-testid="last-owner">
                          {" "}· the only owner: add another owner before changing this</span>}
                      </span>
                    )}
                  </td>
                  <td>{writable && !lastOwner && <button class="danger" onClick={() =>
                    act(() => del(`${base}/${m.user.id}`))}>Remove</button>}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      {writable && (
        <form class="row" style="margin-top:8px" data-testid="add-member" onSubmit={async (e) => {
          e.preventDefault();
          if (await act(() => put(base, { email: email.trim(), role }))) setEmail("");
        }}>
          <PersonPicker pid={project.id} value={email} onChange={setEmail} />
          <RoleSelect value={role} onChange={setRole} name="member-role" />
          <button type="submit">Add member</button>
        </form>
      )}
      {writable && <p class="muted">Suggestions come from the people in your other projects. Anyone else
        with an account can be added by typing their whole email address.</p>}
    </section>
  );
}
