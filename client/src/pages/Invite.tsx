// Opening a one-time link: an invited person chooses their name and password, someone who
// asked for a reset chooses a new password; either way they land in the app signed in.
import { useEffect, useState } from "preact/hooks";
import { post, type User } from "../api";
import { ErrorBox, Spinner, navigate, setUser } from "../ui";

interface LinkInfo {
  kind: "invite" | "reset";
  email: string;
  name: string;
  expires_at: string;
}

export function Invite({ token }: { token: string }) {
  const [info, setInfo] = useState<LinkInfo | null>(null);
  const [linkError, setLinkError] = useState<unknown>(null);
  const [name, setName] = useState("");
  const [password, setPassword] = useState("");
  const [again, setAgain] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    document.title = "Your link · Colabel";
    post<{ invite: LinkInfo }>("/api/v1/invites/check", { token }).then((r) => {
      setInfo(r.invite);
      setName(r.invite.name);
    }, setLinkError);
  }, [token]);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (password !== again) {
      setError(new Error("The two passwords differ. Type the same password twice."));
      return;
    }
    setBusy(true);
    try {
      const r = await post<{ user: User }>("/api/v1/invites/accept", { token, name: name.trim() || undefined, password });
      setUser(r.user);
      navigate("#/");
    } catch (err) {
      setError(err);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div class="login">
      <div class="card" data-testid="invite">
        <h1>Colabel</h1>
        {!info && !linkError && <Spinner />}
        {linkError != null && (
          <div data-testid="invite-error">
            <ErrorBox error={linkError} />
            <p><a href="#/login">Go to sign in</a></p>
          </div>
        )}
        {info && (
          <form onSubmit={submit}>
            <p>{info.kind === "invite"
              ? <>You were invited to label images with your team. Choose your name and a password for <strong>{info.email}</strong>.</>
              : <>Choose a new password for <strong>{info.email}</strong>. Your old password stops working.</>}</p>
            <p class="muted">This link works once, until {new Date(info.expires_at).toLocaleString()}.</p>
            <input type="email" name="email" autocomplete="username" value={info.email} readOnly hidden />
            <label>Your name<input name="name" required maxLength={200} value={name}
              onInput={(e) => setName(e.currentTarget.value)} /></label>
            <label>Password (at least 8 characters)<input name="password" type="password" autocomplete="new-password"
              required minLength={8} value={password} onInput={(e) => setPassword(e.currentTarget.value)} /></label>
            <label>Password again<input name="password-again" type="password" autocomplete="new-password" required
              minLength={8} value={again} onInput={(e) => setAgain(e.currentTarget.value)} /></label>
            <ErrorBox error={error} />
            <button type="submit" class="primary" disabled={busy}>
              {info.kind === "invite" ? "Join" : "Set password and sign in"}</button>
          </form>
        )}
      </div>
    </div>
  );
}
