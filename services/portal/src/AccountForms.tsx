// Account forms' parts: an email field, the fields for a new password (entered twice), and the signed-in
// user's "Change password".
// A password is changed by signing in with it (`POST /auth/login` with `newPassword`), which ends the account's
// other sessions, so the portal carries on with the session that answer gives.
import { useState } from "react";
import { ErrorMessage } from "./ErrorMessage.js";
import type { PlatformClient } from "./platform-client.js";
import { sessionFromToken, type Session } from "./session.js";
import { useFormAction } from "./use-form-action.js";

export const minimumPasswordLength = 12;

/** What the platform's refusal of a sign-in or a password change means for the person at the keyboard. */
export function describeSignInFailure(failure: unknown): string {
  const { status, code } = failure as { status?: number; code?: string };
  if (code === "ERR_ACCOUNT_DISABLED") {
    return "This account is disabled. Ask your administrator.";
  }
  if (code === "ERR_PASSWORD_POLICY") {
    // The platform says which rule: its length, the email, the current one, or too easy to guess (and why).
    const reason = (failure as Error).message;
    return `Choose another password: ${reason.charAt(0).toLowerCase()}${reason.slice(1)}.`;
  }
  return status === 401
    ? "The email or password is not right."
    : status === 429
      ? "Too many attempts. Wait a few minutes, then try again."
      : status === 423
        ? "This account is locked for a while after too many failed attempts."
        : (failure as Error).message;
}

/** An email address field. */
export function EmailField(props: {
  readonly value: string;
  readonly onChange: (value: string) => void;
  /** "username" where someone signs in; "off" where an admin types someone else's. */
  readonly autoComplete: "username" | "off";
}): React.JSX.Element {
  return (
    <label>
      Email
      <input
        type="email"
        value={props.value}
        onChange={(event) => {
          props.onChange(event.target.value);
        }}
        required
        maxLength={320}
        autoComplete={props.autoComplete}
      />
    </label>
  );
}

/** The password someone has now (to sign in, or to confirm a change). */
export function CurrentPasswordField(props: {
  readonly label: string;
  readonly value: string;
  readonly onChange: (value: string) => void;
}): React.JSX.Element {
  return (
    <label>
      {props.label}
      <input
        type="password"
        value={props.value}
        onChange={(event) => {
          props.onChange(event.target.value);
        }}
        required
        autoComplete="current-password"
      />
    </label>
  );
}

/** A new password, typed twice. `value` is the new password once both agree, or undefined. */
export function NewPasswordFields(props: {
  readonly onChange: (value: string | undefined) => void;
}): React.JSX.Element {
  const [first, setFirst] = useState("");
  const [second, setSecond] = useState("");
  const update = (nextFirst: string, nextSecond: string): void => {
    setFirst(nextFirst);
    setSecond(nextSecond);
    props.onChange(nextFirst.length > 0 && nextFirst === nextSecond ? nextFirst : undefined);
  };
  const mismatch = second.length > 0 && first !== second;
  return (
    <>
      <label>
        New password
        <input
          type="password"
          value={first}
          minLength={minimumPasswordLength}
          maxLength={1024}
          onChange={(event) => {
            update(event.target.value, second);
          }}
          required
          autoComplete="new-password"
          aria-describedby="new-password-hint"
        />
      </label>
      <label>
        Repeat the new password
        <input
          type="password"
          value={second}
          onChange={(event) => {
            update(first, event.target.value);
          }}
          required
          autoComplete="new-password"
          aria-invalid={mismatch}
        />
      </label>
      <p id="new-password-hint" className="muted">
        At least {minimumPasswordLength} characters, not a common password or a pattern: a few unrelated words
        you will remember make a good one.
        {mismatch ? " The two do not match yet." : ""}
      </p>
    </>
  );
}

/** The signed-in user changes their own password; their other sessions end. */
export function ChangePassword(props: {
  readonly client: PlatformClient;
  readonly session: Session;
  readonly onChanged: (session: Session) => void;
  readonly onClose: () => void;
}): React.JSX.Element {
  const [current, setCurrent] = useState("");
  const [chosen, setChosen] = useState<string>();
  const { busy, error, submitting } = useFormAction(describeSignInFailure);
  const submit = submitting(async () => {
    if (chosen === undefined) {
      throw new Error("Type the same new password twice.");
    }
    const { accessToken } = (await props.client.json("POST", "/auth/login", {
      email: props.session.email,
      password: current,
      newPassword: chosen,
    })) as { accessToken: string };
    props.onChanged(sessionFromToken(accessToken, props.session.email));
  });
  return (
    <section className="panel" aria-labelledby="change-password-title">
      <h2 id="change-password-title">Change your password</h2>
      <form onSubmit={(event) => void submit(event)} className="grid">
        <CurrentPasswordField label="Current password" value={current} onChange={setCurrent} />
        <NewPasswordFields onChange={setChosen} />
        <div className="actions">
          <button type="submit" disabled={busy}>
            Change password
          </button>
          <button type="button" className="secondary" onClick={props.onClose}>
            Cancel
          </button>
        </div>
        <ErrorMessage message={error} />
      </form>
    </section>
  );
}
