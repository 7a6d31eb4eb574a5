import { useState } from "preact/hooks";
import { ApiError, post } from "../api";
import { ErrorBox, setUser } from "../ui";

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
      setUser(r.user);
      onDone();
    } catch (err) {
      setError(signInError(err));
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

/** What to tell someone whose sign-in failed: the server's words for a wrong password, and
 * something to act on when it is the server, not the password, that failed. */
function signInError(err: unknown): unknown {
  if (!(err instanceof ApiError)) return err;
  if (err.code === "invalid_credentials" || err.status === 401) {
    return new Error("Wrong email or password. Check both and try again.");
  }
  if (err.status === 429) return err;
  if (err.status >= 500) {
    return new Error(`Signing in failed on the server (${err.status}), not because of your password. ` +
      "Try again in a moment; if it keeps failing, tell your administrator.");
  }
  return err;
}
