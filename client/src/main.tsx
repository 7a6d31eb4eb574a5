// Entry point: load the session, then route on the URL hash.
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { get, post } from "./api";
import { Spinner, navigate, setUser, useUser } from "./ui";
import { Login } from "./pages/Login";
import { Projects } from "./pages/Projects";
import { ProjectHome } from "./pages/ProjectHome";
import { Wizard } from "./pages/Wizard";
import { Label } from "./pages/Label";
import { Review } from "./pages/Review";
import { Monitor } from "./pages/Monitor";
import { Export } from "./pages/Export";
import { AdminUsers } from "./pages/AdminUsers";
import { Invite } from "./pages/Invite";
import { Data } from "./pages/Data";
import { releasesSettled } from "./pages/labeling/leases";
import "./styles.css";

function useHash(): string {
  const [hash, setHash] = useState(location.hash || "#/");
  useEffect(() => {
    const on = () => setHash(location.hash || "#/");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function App() {
  const hash = useHash();
  const user = useUser();
  const [ready, setReady] = useState(false);
  useEffect(() => {
    get("/api/v1/me").then((r) => setUser(r.user), () => setUser(null))
      .finally(() => setReady(true));
  }, []);
  if (!ready) return <Spinner />;
  const path = hash.replace(/^#/, "").split("?")[0];
  if (path === "/logout") return <SignOut />;
  const invite = path.match(/^\/invite\/([\w-]+)$/);
  if (invite) return <Invite token={invite[1]} />;
  if (!user || path === "/login") return <Login onDone={() => navigate("#/")} />;
  const m = path.match(/^\/p\/(\d+)(?:\/(\w+))?(?:\/(\d+))?$/);
  if (m) {
    const pid = Number(m[1]);
    switch (m[2]) {
      case undefined: return <ProjectHome key={pid} pid={pid} />;
      case "label": return <Label key={pid} pid={pid} />;
      case "review": return <Review key={pid} pid={pid} />;
      case "monitor": return <Monitor key={pid} pid={pid} />;
      case "export": return <Export key={pid} pid={pid} />;
      case "data": return <Data key={pid} pid={pid} iid={m[3] ? Number(m[3]) : null} />;
    }
  }
  if (path === "/new") return <Wizard />;
  if (path === "/admin/users") return <AdminUsers />;
  return <Projects />;
}

/** Signing out, after the leases the label page gave back on its way out are released (the
 * release needs the session). */
function SignOut() {
  useEffect(() => {
    releasesSettled().then(() => post("/api/v1/auth/logout")).finally(() => {
      setUser(null);
      navigate("#/login");
    });
  }, []);
  return <Spinner />;
}

render(<App />, document.getElementById("app")!);
