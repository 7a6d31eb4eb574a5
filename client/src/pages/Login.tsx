import { useState } from "preact/hooks";
import { post } from "../api";
import { ErrorBox, session } from "../ui";

export function Login({ onDone }: { onDone: () => void }) {
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const r = await post("/api/v1/auth/login", { email, password });
      session.user = r.user;
      onDone();
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="login">
      <form onSubmit={submit} class="card">
        <h1>Colabel</h1>
        <p class="muted">Label images together, live.</p>
        <label>Email<input name="email" type="email" autocomplete="username" required value={email}
          onInput={(e) => setEmail(e.currentTarget.value)} /></label>
        <label>Password<input name="password" type="password" autocomplete="current-password" required
          value={password} onInput={(e) => setPassword(e.currentTarget.value)} /></label>
        <ErrorBox error={error} />
        <button type="submit" class="primary" disabled={busy}>Sign in</button>
      </form>
    </div>
  );
}
