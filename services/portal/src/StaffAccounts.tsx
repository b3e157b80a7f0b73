// Admins: the tenant's staff accounts (`/admin/accounts`). Add a member of staff with a temporary password
// (made here, shown once, to hand over; they choose their own at the first sign-in), change a role, disable
// the account of someone who left (their sessions end at once), unlock an account locked after failed
// sign-ins, or set a temporary password when one is forgotten. Every change is in the audit trail.
import { useCallback, useEffect, useState } from "react";
import { EmailField } from "./AccountForms.js";
import { ErrorMessage } from "./ErrorMessage.js";
import { CodeSelect } from "./CodeSelect.js";
import type { PlatformClient } from "./platform-client.js";
import { useFormAction } from "./use-form-action.js";

type Role = "clerk" | "clinician" | "admin";

interface StaffAccount {
  readonly id: string;
  readonly email: string;
  readonly role: Role;
  readonly active: boolean;
  readonly locked: boolean;
  readonly passwordChangeRequired: boolean;
  readonly lastSignInAt: string | null;
  /** Wrong passwords since the last successful sign-in or lockout (absent from older platforms). */
  readonly failedSignIns?: number;
}

/** An account no one has signed in to for this long is worth a look (someone left, or never started). */
const inactiveDays = 90;

function lastSignInOf(account: StaffAccount): string {
  if (account.lastSignInAt === null) {
    return "Never";
  }
  const at = new Date(account.lastSignInAt);
  const days = Math.floor((Date.now() - at.getTime()) / 86_400_000);
  return `${at.toLocaleDateString()}${days >= inactiveDays ? ` (not used for ${days} days)` : ""}`;
}

const roleNames: Readonly<Record<Role, string>> = {
  clerk: "Clerk",
  clinician: "Clinician",
  admin: "Administrator",
};

// No 0/O, 1/l/I: read aloud or copied by hand without mistakes.
const alphabet = "abcdefghjkmnpqrstuvwxyz23456789";

/** A temporary password of 4 groups of 4 characters (about 79 bits), from the browser's CSPRNG. */
export function temporaryPassword(): string {
  const characters = Array.from(
    crypto.getRandomValues(new Uint32Array(16)),
    (value) => alphabet[value % alphabet.length] ?? "a",
  );
  return [0, 4, 8, 12].map((start) => characters.slice(start, start + 4).join("")).join("-");
}

function statusOf(account: StaffAccount): string {
  if (!account.active) {
    return "Disabled";
  }
  if (account.locked) {
    return "Locked after failed sign-ins";
  }
  const notes = [
    ...(account.passwordChangeRequired ? ["temporary password"] : []),
    // Log-in monitoring: someone may be guessing this account's password (each one is in the audit trail).
    ...((account.failedSignIns ?? 0) > 0
      ? [
          `${String(account.failedSignIns)} wrong password${account.failedSignIns === 1 ? "" : "s"} since the last sign-in`,
        ]
      : []),
  ];
  return notes.length === 0 ? "Active" : `Active (${notes.join("; ")})`;
}

function describeFailure(failure: unknown): string {
  const code = (failure as { code?: string }).code;
  if (code === "ERR_DUPLICATE") {
    return "An account with this email exists.";
  }
  if (code === "ERR_LAST_ADMIN") {
    return "This would leave no active administrator, or it is your own account: another administrator makes this change.";
  }
  return (failure as Error).message;
}

export function StaffAccounts(props: {
  readonly client: PlatformClient;
  /** The signed-in admin's email: their own row offers no role change or disabling. */
  readonly selfEmail: string;
}): React.JSX.Element {
  const { client } = props;
  const [accounts, setAccounts] = useState<readonly StaffAccount[]>();
  const [email, setEmail] = useState("");
  const [role, setRole] = useState<Role>("clerk");
  const [roleChoices, setRoleChoices] = useState<Readonly<Record<string, Role>>>({});
  /** A temporary password just set, shown once. */
  const [handOver, setHandOver] = useState<{ readonly email: string; readonly password: string }>();
  const { busy, error, submitting } = useFormAction(describeFailure);
  const rowAction = useFormAction(describeFailure);

  const load = useCallback(async () => {
    const answer = (await client.json("GET", "/admin/accounts")) as { accounts: StaffAccount[] };
    setAccounts(answer.accounts);
  }, [client]);
  const [loadError, setLoadError] = useState<string>();
  const reload = useCallback(() => {
    load().then(
      () => {
        setLoadError(undefined);
      },
      (failure: unknown) => {
        setLoadError(`The staff accounts could not be listed: ${(failure as Error).message}`);
      },
    );
  }, [load]);
  useEffect(reload, [reload]);

  const add = submitting(async () => {
    const password = temporaryPassword();
    await client.json("POST", "/admin/accounts", { email, role, temporaryPassword: password });
    setHandOver({ email: email.trim().toLowerCase(), password });
    setEmail("");
    await load();
  });
  const change = (account: StaffAccount, body: Record<string, unknown>, password?: string) =>
    rowAction.submitting(async () => {
      setHandOver(undefined);
      await client.json("PATCH", `/admin/accounts/${encodeURIComponent(account.id)}`, body);
      if (password !== undefined) {
        setHandOver({ email: account.email, password });
      }
      await load();
    });

  return (
    <section className="panel" aria-labelledby="staff-title">
      <h2 id="staff-title">Staff accounts</h2>
      <ErrorMessage message={loadError} />
      {/* Read again on request: sign-ins, lockouts and wrong passwords happen while the list is open. */}
      <div className="actions">
        <button type="button" className="secondary" onClick={reload}>
          Refresh the list
        </button>
      </div>
      {handOver === undefined ? null : (
        <p role="status" className="notice" data-testid="temporary-password">
          Temporary password for {handOver.email}: <code>{handOver.password}</code>. Give it to them in person
          or by phone; it is shown only now, and they choose their own when they first sign in.
        </p>
      )}
      {accounts === undefined ? null : (
        <table className="access staff" data-testid="staff-accounts">
          <caption className="muted">Everyone who signs in to this hospital&apos;s records</caption>
          <thead>
            <tr>
              <th scope="col">Email</th>
              <th scope="col">Role</th>
              <th scope="col">Status</th>
              <th scope="col">Last sign-in</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {accounts.map((account) => {
              const self = account.email === props.selfEmail.trim().toLowerCase();
              const chosen = roleChoices[account.id] ?? account.role;
              return (
                <tr key={account.id} data-testid="staff-row">
                  <th scope="row">{account.email}</th>
                  <td>
                    {self ? (
                      roleNames[account.role]
                    ) : (
                      <form
                        className="inline"
                        onSubmit={(event) => void change(account, { role: chosen })(event)}
                      >
                        <CodeSelect
                          names={roleNames}
                          label={`Role of ${account.email}`}
                          value={chosen}
                          onChange={(value) => {
                            setRoleChoices({ ...roleChoices, [account.id]: value });
                          }}
                        />
                        {chosen === account.role ? null : (
                          <button type="submit" disabled={rowAction.busy}>
                            Change role
                          </button>
                        )}
                      </form>
                    )}
                  </td>
                  <td>{statusOf(account)}</td>
                  <td>{lastSignInOf(account)}</td>
                  <td>
                    <div className="row-actions">
                      {self ? (
                        <span className="muted">You</span>
                      ) : (
                        <button
                          type="button"
                          className="secondary"
                          disabled={rowAction.busy}
                          aria-label={`${account.active ? "Disable" : "Enable"} ${account.email}`}
                          onClick={(event) => void change(account, { active: !account.active })(event)}
                        >
                          {account.active ? "Disable" : "Enable"}
                        </button>
                      )}
                      {account.locked ? (
                        <button
                          type="button"
                          className="secondary"
                          disabled={rowAction.busy}
                          aria-label={`Unlock ${account.email}`}
                          onClick={(event) => void change(account, { unlock: true })(event)}
                        >
                          Unlock
                        </button>
                      ) : null}
                      {self ? null : (
                        <button
                          type="button"
                          className="secondary"
                          disabled={rowAction.busy}
                          aria-label={`Reset password of ${account.email}`}
                          onClick={(event) => {
                            const password = temporaryPassword();
                            void change(account, { temporaryPassword: password }, password)(event);
                          }}
                        >
                          Reset password
                        </button>
                      )}
                    </div>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <ErrorMessage message={rowAction.error} />
      <h3>Add a member of staff</h3>
      <form onSubmit={(event) => void add(event)} className="grid">
        <EmailField value={email} onChange={setEmail} autoComplete="off" />
        <label>
          Role
          <CodeSelect names={roleNames} value={role} onChange={setRole} />
        </label>
        <div className="actions">
          <button type="submit" disabled={busy}>
            Add staff member
          </button>
        </div>
        <ErrorMessage message={error} />
      </form>
    </section>
  );
}
