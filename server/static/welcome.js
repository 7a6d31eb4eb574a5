// Plain DOM, text nodes only: names come from users and are never parsed as HTML.
const $ = (id) => document.getElementById(id);
const el = (tag, text, cls) => { const e = document.createElement(tag); if (text != null) e.textContent = text; if (cls) e.className = cls; return e; };
async function api(path, opts = {}) {
  const r = await fetch(path, { credentials: "same-origin", headers: { "content-type": "application/json" }, ...opts });
  const body = r.status === 204 ? null : await r.json();
  if (!r.ok) throw new Error(body?.error?.message || r.statusText);
  return body;
}
function flatten(nodes, out = []) { for (const n of nodes) { out.push(n); flatten(n.children, out); } return out; }
async function show() {
  let me;
  try { me = await api("/api/v1/me"); } catch { $("login").hidden = false; return; }
  $("who").textContent = me.user.name + " · ";
  const out = el("button", "Sign out", "ghost");
  out.onclick = async () => { await api("/api/v1/auth/logout", { method: "POST" }); location.reload(); };
  $("who").append(out);
  const { projects } = await api("/api/v1/projects");
  const rows = $("rows");
  for (const p of projects) {
    const tr = el("tr");
    tr.append(el("td", p.name), el("td", p.task_type));
    const st = el("td"); st.append(el("span", p.status, "pill " + p.status)); tr.append(st);
    tr.append(el("td", p.role));
    const labels = el("td", null, "labels");
    const { labels: tree } = await api(`/api/v1/projects/${p.id}/labels`);
    for (const l of flatten(tree)) {
      const s = el("span"); if (l.hotkey) { s.append(el("kbd", l.hotkey), " "); }
      s.append(l.path + "  "); labels.append(s);
    }
    tr.append(labels); rows.append(tr);
  }
  if (!projects.length) { const tr = el("tr"); tr.append(el("td", "No projects yet.", "muted")); rows.append(tr); }
  $("projects").hidden = false;
}
$("login").onsubmit = async (e) => {
  e.preventDefault();
  try {
    await api("/api/v1/auth/login", { method: "POST", body: JSON.stringify({ email: $("email").value, password: $("password").value }) });
    location.reload();
  } catch (err) { $("error").textContent = err.message; }
};
show();
