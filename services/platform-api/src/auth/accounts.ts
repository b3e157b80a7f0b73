// Local staff accounts, stored like records: sealed under the platform's system keys, found by a blind
// index of the email. Failed sign-ins are limited per email and per client address (successful ones do not
// count: a hospital's staff share one NAT address, sign in again after every restart, and a shift change
// must not lock them out), and an account locks for 15 minutes after 5 failures in a row. The counters are per replica by default, and shared on Redis when
// the platform has it (attempt-counters.ts); the lock is stored with the account, so it is always shared.
import { randomUUID } from "node:crypto";
import { PlatformError, type PlatformErrorCode } from "../errors.js";
import { blindIndex, blindIndexes, openRecord, sealRecord } from "../storage/record-crypto.js";
import type { TenantKeyring } from "../storage/record-crypto.js";
import type { RecordStore, StoredVersion, VersionWrite } from "../storage/record-store.js";
import { reencryptBatch, type ReencryptProgress } from "../storage/reencrypt.js";
import {
  keyringSource,
  systemTenantId,
  withKeyringRetry,
  type KeyringSource,
} from "../storage/tenant-keyrings.js";
import {
  memoryAttemptCounters,
  type AttemptCounter,
  type AttemptCounterFactory,
} from "./attempt-counters.js";
import { passwordProblem } from "./password-policy.js";
import { decoyHash, hashPassword, verifyPassword } from "./passwords.js";
import type { Principal, Role } from "./sessions.js";
import type { AuditEventWrite } from "../fhir/repository.js";

const systemTenant = systemTenantId;
const accountType = "Account";

function normalisedEmail(email: string): string {
  return email.trim().toLowerCase();
}

interface AccountRecord {
  readonly id: string;
  readonly email: string;
  readonly tenantId: string;
  readonly role: Role;
  readonly passwordHash: string;
  readonly failedAttempts: number;
  readonly lockedUntil: string | null;
  /** Set by an admin when the staff member leaves (absent in accounts stored before: active). */
  readonly disabled?: boolean;
  /** The password was set by an admin: the next sign-in must choose a new one. */
  readonly mustChangePassword?: boolean;
  /**
   * Sessions carry this number. Disabling the account, changing its role or its password raises it, which ends
   * every session issued before (absent: 0).
   */
  readonly sessionGeneration?: number;
  /** The last successful sign-in, to the hour (absent: none since this was recorded). */
  readonly lastSignInAt?: string;
}

/**
 * Stores a change of an account together with the AuditEvent that reports it, in the account's tenant's trail
 * (AuditTrail.recordAlong): `write` passes the event to the store's `writeAll` with the account, so the
 * change exists if and only if its event does.
 */
export type AuditedWrite = <T>(write: (event: AuditEventWrite) => Promise<T>) => Promise<T>;

/**
 * What a sign-in records in the account's tenant's trail, for its admins' log-in monitoring (HIPAA
 * 164.308(a)(5)(ii)(C)): each stores its event with the account's change, if any, in one transaction.
 */
export interface LoginAudit {
  /** The owner chose a new password as they signed in. */
  readonly passwordChange: (owner: Principal) => AuditedWrite;
  /**
   * A sign-in of an existing account was refused: a wrong password (`ERR_LOGIN_FAILED`, or `ERR_LOCKED` when
   * it locked the account), an attempt while locked (`ERR_LOCKED`), or a disabled account
   * (`ERR_ACCOUNT_DISABLED`).
   */
  readonly refusal: (owner: Principal, code: PlatformErrorCode) => AuditedWrite;
}

/** A successful sign-in is written to its account at most this often (the list shows it to the hour). */
const signInRecordMs = 60 * 60_000;

/** What an admin sees of a staff account of their tenant: never its password hash. */
export interface AccountSummary {
  readonly id: string;
  readonly email: string;
  readonly role: Role;
  readonly active: boolean;
  /** Locked for a while after failed sign-ins. */
  readonly locked: boolean;
  /** The password was set by an admin and has not been changed by its owner yet. */
  readonly passwordChangeRequired: boolean;
  /** The last successful sign-in, to the hour, or null: for reviews of accounts no one uses. */
  readonly lastSignInAt: string | null;
  /** Wrong passwords since the last successful sign-in or lockout (log-in monitoring). */
  readonly failedSignIns: number;
}

/** An admin's change to a staff account; at least one field. */
export interface AccountChange {
  readonly role?: Role;
  readonly active?: boolean;
  /** Ends a lockout after failed sign-ins. */
  readonly unlock?: true;
  /** A temporary password, to be changed at the next sign-in (a forgotten password). */
  readonly temporaryPassword?: string;
}

/** Refuses a password the policy does not allow (auth/password-policy.ts) with ERR_PASSWORD_POLICY. */
export function checkPasswordPolicy(password: string, email: string, current?: string): void {
  const problem = passwordProblem(password, { email, ...(current === undefined ? {} : { current }) });
  if (problem !== undefined) {
    throw new PlatformError("ERR_PASSWORD_POLICY", problem);
  }
}

const summaryOf = (account: AccountRecord, now: number): AccountSummary => ({
  id: account.id,
  email: account.email,
  role: account.role,
  active: account.disabled !== true,
  locked: account.lockedUntil !== null && Date.parse(account.lockedUntil) > now,
  passwordChangeRequired: account.mustChangePassword === true,
  lastSignInAt: account.lastSignInAt ?? null,
  failedSignIns: account.failedAttempts,
});

/** Account management writes move this record on in the same transaction (rules such as the last admin). */
const accountsGuard = { type: "Guard", id: "accounts" };
/** Written once the accounts carry their tenant's index (accounts stored before it are indexed first). */
const tenantIndexMarker = { type: "Migration", id: "account-tenant-index" };

export interface LoginPolicy {
  readonly maxFailures: number;
  readonly lockoutMs: number;
  /** Failed attempts allowed per email within `windowMs`. */
  readonly maxAttempts: number;
  /**
   * Failed attempts allowed per client address within `windowMs` (default 5 × maxAttempts). Successful
   * sign-ins do not count: many staff sign in from one address.
   */
  readonly maxClientFailures?: number;
  readonly windowMs: number;
}

export const defaultLoginPolicy: LoginPolicy = {
  maxFailures: 5,
  lockoutMs: 15 * 60_000,
  maxAttempts: 10,
  maxClientFailures: 50,
  windowMs: 5 * 60_000,
};

export class LoginRateLimited extends PlatformError {
  readonly retryAfterSeconds: number;
  constructor(retryAfterSeconds: number) {
    super("ERR_RATE_LIMITED");
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export interface AccountServiceOptions {
  /**
   * How long a replica trusts what it last read of an account when it checks a session (default 5 s): a
   * disabled account's sessions end on every replica within this time.
   */
  readonly sessionCheckMs?: number;
}

interface SessionState {
  readonly tenantId: string;
  readonly role: Role;
  readonly active: boolean;
  readonly generation: number;
  readonly readAt: number;
}

export class AccountService {
  private readonly sessionCheckMs: number;
  private readonly sessionStates = new Map<string, SessionState>();
  private tenantIndexed: Promise<void> | undefined;
  private readonly perEmail: AttemptCounter;
  private readonly failuresPerClient: AttemptCounter;

  private readonly store: RecordStore;
  private readonly keyrings: KeyringSource;
  private readonly policy: LoginPolicy;
  private readonly now: () => number;

  /**
   * @param keyring the platform's system keys: a fixed keyring, or a source that follows rotations of
   *   `platform-system` at the key broker (an account sealed under a version not held yet refreshes it).
   */
  constructor(
    store: RecordStore,
    keyring: TenantKeyring | KeyringSource,
    policy: LoginPolicy = defaultLoginPolicy,
    now: () => number = Date.now,
    counters: AttemptCounterFactory = memoryAttemptCounters,
    options: AccountServiceOptions = {},
  ) {
    this.sessionCheckMs = options.sessionCheckMs ?? 5000;
    this.store = store;
    this.keyrings = keyringSource(keyring);
    this.policy = policy;
    this.now = now;
    this.perEmail = counters("email", policy.maxAttempts, policy.windowMs);
    this.failuresPerClient = counters(
      "client-failures",
      policy.maxClientFailures ?? policy.maxAttempts * 5,
      policy.windowMs,
    );
  }

  /**
   * The per-email attempt counter's name: the email's blind index under the oldest generation held, which
   * replicas on both sides of a rotation share.
   */
  private async attemptName(email: string): Promise<string> {
    const keyring = await this.keyrings.keyring();
    const oldest = Math.min(...keyring.generations.keys());
    return blindIndex(
      keyring.generations.get(oldest) ?? keyring,
      accountType,
      "email",
      normalisedEmail(email),
    ).toString("hex");
  }

  private async find(email: string): Promise<{ account: AccountRecord; versionId: number } | undefined> {
    // Another replica may have sealed the account under a newer version of the system key.
    return withKeyringRetry(this.keyrings, (keyring) => this.findWith(keyring, email));
  }

  private async findWith(
    keyring: TenantKeyring,
    email: string,
  ): Promise<{ account: AccountRecord; versionId: number } | undefined> {
    const tokens = blindIndexes(keyring, accountType, "email", normalisedEmail(email));
    const [found] = await this.store.search(systemTenant, accountType, [tokens], 1);
    if (found === undefined) {
      return undefined;
    }
    const body = openRecord(
      keyring,
      { tenantId: systemTenant, type: accountType, id: found.id, versionId: found.versionId },
      found.body,
    );
    return { account: JSON.parse(body.toString("utf8")) as AccountRecord, versionId: found.versionId };
  }

  private sealedVersion(keyring: TenantKeyring, account: AccountRecord, previous: number): VersionWrite {
    const versionId = previous + 1;
    return {
      version: {
        type: accountType,
        id: account.id,
        versionId,
        lastUpdated: new Date(this.now()).toISOString(),
        deleted: false,
        body: sealRecord(
          keyring,
          { tenantId: systemTenant, type: accountType, id: account.id, versionId },
          Buffer.from(JSON.stringify(account)),
        ),
      },
      expectedVersionId: previous,
      tokens: accountSearchTokens(keyring, account),
    };
  }

  private async save(account: AccountRecord, previous: number, audited?: AuditedWrite): Promise<void> {
    const keyring = await this.keyrings.keyring();
    await this.saveAudited(audited, (events) => [
      this.sealedVersion(keyring, account, previous),
      ...events(account.id),
    ]);
    this.sessionStates.delete(account.id);
  }

  /**
   * Saves an account together with the next version of the accounts guard, read (`guardVersion`) before the
   * rules were checked: of two management writes checked at once, on any replica, the later one conflicts.
   */
  private async saveGuarded(
    account: AccountRecord,
    previous: number,
    guardVersion: number,
    audited: AuditedWrite | undefined,
  ): Promise<void> {
    const keyring = await this.keyrings.keyring();
    const guardVersionId = guardVersion + 1;
    await this.saveAudited(audited, (events) => [
      this.sealedVersion(keyring, account, previous),
      {
        version: {
          type: accountsGuard.type,
          id: accountsGuard.id,
          versionId: guardVersionId,
          lastUpdated: new Date(this.now()).toISOString(),
          deleted: false,
          body: sealRecord(
            keyring,
            { tenantId: systemTenant, ...accountsGuard, versionId: guardVersionId },
            Buffer.from("{}"),
          ),
        },
        expectedVersionId: guardVersion,
        tokens: [],
      },
      ...events(account.id),
    ]);
    this.sessionStates.delete(account.id);
  }

  /**
   * Stores `writes` in one transaction, with the AuditEvent that reports the change when `audited` is given
   * (a change made through the API; a bootstrap file's accounts and a test's are not).
   */
  private async saveAudited(
    audited: AuditedWrite | undefined,
    writes: (events: (accountId: string) => VersionWrite[]) => VersionWrite[],
  ): Promise<void> {
    if (audited === undefined) {
      await this.store.writeAll(
        systemTenant,
        writes(() => []),
      );
      return;
    }
    await audited(async (event) => {
      await this.store.writeAll(
        systemTenant,
        writes((accountId) => [event([`Account/${accountId}`])]),
      );
    });
  }

  private async guardVersion(): Promise<number> {
    return (await this.store.current(systemTenant, accountsGuard.type, accountsGuard.id))?.versionId ?? 0;
  }

  /**
   * Runs a management write from fresh reads: when it conflicts with another write (another admin, a
   * replica, a sign-in counting a failure), everything is read and checked again, a few times at most.
   */
  private async retryOnConflict<T>(write: () => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await write();
      } catch (error) {
        if (!(error instanceof PlatformError && error.code === "ERR_VERSION_CONFLICT") || attempt >= 4) {
          throw error;
        }
      }
    }
  }

  /**
   * One batch of re-encryption of the platform's own records (accounts, the system audit trail) after
   * `platform-system` rotated at the key broker; main.ts runs it in the background on every replica.
   */
  async reencryptSystemRecords(limit: number): Promise<ReencryptProgress> {
    const keyring = await this.keyrings.keyring();
    return reencryptBatch(this.store, { tenantId: systemTenant, keyring }, limit, (version, plaintext) =>
      version.type === accountType
        ? accountSearchTokens(keyring, JSON.parse(plaintext.toString("utf8")) as AccountRecord)
        : [],
    );
  }

  /**
   * Creates a staff account. With `mustChangePassword` (an admin chose the password), its owner chooses a new
   * one at the first sign-in. With `audited`, the account is stored with the AuditEvent that reports it.
   */
  async create(
    input: {
      email: string;
      password: string;
      tenantId: string;
      role: Role;
      mustChangePassword?: boolean;
    },
    audited?: AuditedWrite,
  ): Promise<string> {
    if (!/^[^@\s]+@[^@\s]+$/.test(input.email) || input.email.length > 320) {
      throw new PlatformError("ERR_BAD_REQUEST", "an account needs an email address");
    }
    checkPasswordPolicy(input.password, input.email);
    const account: AccountRecord = {
      id: randomUUID(),
      email: normalisedEmail(input.email),
      tenantId: input.tenantId,
      role: input.role,
      passwordHash: await hashPassword(input.password),
      failedAttempts: 0,
      lockedUntil: null,
      ...(input.mustChangePassword === true ? { mustChangePassword: true } : {}),
    };
    await this.retryOnConflict(async () => {
      const guard = await this.guardVersion();
      if ((await this.find(input.email)) !== undefined) {
        throw new PlatformError("ERR_DUPLICATE", "an account with this email exists");
      }
      await this.saveGuarded(account, 0, guard, audited);
    });
    return account.id;
  }

  /** Every staff account of a tenant, by email. */
  async list(tenantId: string): Promise<AccountSummary[]> {
    await this.indexTenants();
    const now = this.now();
    const accounts = await withKeyringRetry(this.keyrings, (keyring) => this.accountsOf(keyring, tenantId));
    return accounts
      .map(({ account }) => summaryOf(account, now))
      .sort((a, b) => a.email.localeCompare(b.email));
  }

  private async accountsOf(
    keyring: TenantKeyring,
    tenantId: string,
  ): Promise<{ account: AccountRecord; versionId: number }[]> {
    const tokens = blindIndexes(keyring, accountType, "tenant", tenantId);
    const found: { account: AccountRecord; versionId: number }[] = [];
    for (const version of await this.accountVersions([tokens])) {
      const account = this.opened(keyring, version.id, version.versionId, version.body);
      // The index is a filter, never trusted alone: the sealed record names its tenant.
      if (account.tenantId === tenantId) {
        found.push({ account, versionId: version.versionId });
      }
    }
    return found;
  }

  /** The current versions of the accounts carrying these tokens (every account: none), page by page. */
  private async accountVersions(tokenGroups: readonly (readonly Uint8Array[])[]): Promise<StoredVersion[]> {
    const versions: StoredVersion[] = [];
    for (let offset = 0; ; offset += 500) {
      const page = await this.store.search(systemTenant, accountType, tokenGroups, 500, "oldest", offset);
      versions.push(...page);
      if (page.length < 500) {
        return versions;
      }
    }
  }

  private opened(keyring: TenantKeyring, id: string, versionId: number, body: Uint8Array): AccountRecord {
    const plaintext = openRecord(keyring, { tenantId: systemTenant, type: accountType, id, versionId }, body);
    return JSON.parse(plaintext.toString("utf8")) as AccountRecord;
  }

  /**
   * Accounts stored before accounts were listed by tenant get their tenant's index once (any replica may do
   * it; doing it twice is harmless), then a marker says it is done.
   */
  private async indexTenants(): Promise<void> {
    this.tenantIndexed ??= (async () => {
      if (
        (await this.store.current(systemTenant, tenantIndexMarker.type, tenantIndexMarker.id)) !== undefined
      ) {
        return;
      }
      await withKeyringRetry(this.keyrings, async (keyring) => {
        for (const version of await this.accountVersions([])) {
          const account = this.opened(keyring, version.id, version.versionId, version.body);
          await this.store.reseal(systemTenant, version, version.body, accountSearchTokens(keyring, account));
        }
        try {
          await this.store.write(
            systemTenant,
            {
              ...tenantIndexMarker,
              versionId: 1,
              lastUpdated: new Date(this.now()).toISOString(),
              deleted: false,
              body: sealRecord(
                keyring,
                { tenantId: systemTenant, ...tenantIndexMarker, versionId: 1 },
                Buffer.from("{}"),
              ),
            },
            0,
            [],
          );
        } catch (error) {
          // Another replica wrote it first.
          if (!(error instanceof PlatformError && error.code === "ERR_VERSION_CONFLICT")) {
            throw error;
          }
        }
      });
    })().catch((error: unknown) => {
      this.tenantIndexed = undefined;
      throw error;
    });
    return this.tenantIndexed;
  }

  /**
   * An admin's change to a staff account of their own tenant (`actor` is the admin's account id). Disabling,
   * a new role and a temporary password end the account's sessions. The tenant always keeps an active admin,
   * and an admin changes other accounts, not their own role or status. With `audited`, the change is stored
   * with the AuditEvent that reports it.
   */
  async update(
    tenantId: string,
    id: string,
    change: AccountChange,
    actor: string,
    audited?: AuditedWrite,
  ): Promise<AccountSummary> {
    if (
      change.role === undefined &&
      change.active === undefined &&
      change.unlock === undefined &&
      change.temporaryPassword === undefined
    ) {
      throw new PlatformError("ERR_BAD_REQUEST", "change role, active, unlock or temporaryPassword");
    }
    // Accounts stored before the tenant index are found (and counted as admins) only once indexed.
    await this.indexTenants();
    // Hashed once, whatever retries follow.
    let temporaryHash: string | undefined;
    return this.retryOnConflict(async () => {
      const guard = await this.guardVersion();
      const keyring = await this.keyrings.keyring();
      const accounts = await this.accountsOf(keyring, tenantId);
      const found = accounts.find(({ account }) => account.id === id);
      if (found === undefined) {
        throw new PlatformError("ERR_NOT_FOUND", "no such account in your tenant");
      }
      const { account, versionId } = found;
      if (change.temporaryPassword !== undefined) {
        checkPasswordPolicy(change.temporaryPassword, account.email);
        temporaryHash ??= await hashPassword(change.temporaryPassword);
      }
      const role = change.role ?? account.role;
      const active = change.active ?? account.disabled !== true;
      if (id === actor && (role !== account.role || !active)) {
        throw new PlatformError(
          "ERR_LAST_ADMIN",
          "an admin does not disable their own account or change its role: another admin does",
        );
      }
      const otherActiveAdmins = accounts.filter(
        (other) =>
          other.account.id !== id && other.account.role === "admin" && other.account.disabled !== true,
      ).length;
      if (
        account.role === "admin" &&
        account.disabled !== true &&
        (role !== "admin" || !active) &&
        otherActiveAdmins === 0
      ) {
        throw new PlatformError("ERR_LAST_ADMIN");
      }
      const endsSessions =
        role !== account.role || (!active && account.disabled !== true) || temporaryHash !== undefined;
      const next: AccountRecord = {
        ...account,
        role,
        disabled: !active,
        ...(change.unlock === true || temporaryHash !== undefined
          ? { failedAttempts: 0, lockedUntil: null }
          : {}),
        ...(temporaryHash === undefined ? {} : { passwordHash: temporaryHash, mustChangePassword: true }),
        sessionGeneration: (account.sessionGeneration ?? 0) + (endsSessions ? 1 : 0),
      };
      await this.saveGuarded(next, versionId, guard, audited);
      return summaryOf(next, this.now());
    });
  }

  /**
   * Refuses a local session whose account was disabled, changed role or tenant, or changed its password (or
   * had it reset) after the session began. What it reads of an account is trusted for `sessionCheckMs`.
   */
  async checkSession(principal: Principal): Promise<void> {
    const now = this.now();
    let state = this.sessionStates.get(principal.subject);
    if (state === undefined || now - state.readAt >= this.sessionCheckMs) {
      state = await this.readSessionState(principal.subject, now);
      if (this.sessionStates.size > 10_000) {
        this.sessionStates.clear();
      }
      this.sessionStates.set(principal.subject, state);
    }
    if (
      !state.active ||
      state.tenantId !== principal.tenantId ||
      state.role !== principal.role ||
      state.generation !== (principal.sessionGeneration ?? 0)
    ) {
      throw new PlatformError(
        "ERR_SESSION_ENDED",
        "the session was ended: the account was disabled or changed, or its password changed",
      );
    }
  }

  private async readSessionState(id: string, now: number): Promise<SessionState> {
    const account = await this.accountById(id);
    if (account === undefined) {
      return { tenantId: "", role: "clerk", active: false, generation: -1, readAt: now };
    }
    return {
      tenantId: account.tenantId,
      role: account.role,
      active: account.disabled !== true,
      generation: account.sessionGeneration ?? 0,
      readAt: now,
    };
  }

  /**
   * An account of `tenantId` by id (an AuditEvent's agent), for an admin's access report: its email and role,
   * nothing else. Another tenant's account, or none, is undefined.
   */
  async describe(
    tenantId: string,
    id: string,
  ): Promise<{ id: string; email: string; role: Role } | undefined> {
    const account = await this.accountById(id);
    return account?.tenantId === tenantId ? { id, email: account.email, role: account.role } : undefined;
  }

  /** What an admin sees of one account of `tenantId`, or undefined. */
  async summary(tenantId: string, id: string): Promise<AccountSummary | undefined> {
    const account = await this.accountById(id);
    return account?.tenantId === tenantId ? summaryOf(account, this.now()) : undefined;
  }

  /** An account by id (an account id, not an email), or undefined. */
  private async accountById(id: string): Promise<AccountRecord | undefined> {
    if (!/^[0-9a-f-]{36}$/.test(id)) {
      return undefined;
    }
    const stored = await this.store.current(systemTenant, accountType, id);
    if (stored === undefined || stored.deleted) {
      return undefined;
    }
    return withKeyringRetry(this.keyrings, async (keyring) =>
      this.opened(keyring, id, stored.versionId, stored.body),
    );
  }

  /**
   * Checks a password; the caller turns the principal into a session. With `newPassword`, the password is
   * changed as the owner signs in (required after an admin set it), and the account's other sessions end.
   * With `audit`, the password change and every refusal of an existing account are recorded in its tenant's
   * trail (an unknown email names no tenant: the caller records that in the system trail).
   */
  async login(
    email: string,
    password: string,
    client: string,
    newPassword?: string,
    audit?: LoginAudit,
  ): Promise<Principal> {
    const now = this.now();
    // Every attempt takes a failure slot of its address and of its email before the password is checked,
    // so attempts sent at once cannot all pass while earlier ones are still being checked; the slots are
    // given back unless the attempt fails.
    const clientSlot = await this.failuresPerClient.hit(client, now);
    if (clientSlot.wait !== undefined) {
      throw new LoginRateLimited(clientSlot.wait);
    }
    const emailSlot = await this.perEmail.hit(await this.attemptName(email), now);
    if (emailSlot.wait !== undefined) {
      await clientSlot.release();
      throw new LoginRateLimited(emailSlot.wait);
    }
    const release = async (): Promise<void> => {
      await Promise.all([clientSlot.release(), emailSlot.release()]);
    };
    try {
      const principal = await this.verify(email, password, now, newPassword, audit);
      await release();
      return principal;
    } catch (error) {
      // Only a wrong password (or a locked account's attempt) counts as a failure.
      if (!(error instanceof PlatformError && ["ERR_LOGIN_FAILED", "ERR_LOCKED"].includes(error.code))) {
        await release();
      }
      throw error;
    }
  }

  private async verify(
    email: string,
    password: string,
    now: number,
    newPassword: string | undefined,
    audit: LoginAudit | undefined,
  ): Promise<Principal> {
    const found = await this.find(email);
    if (found === undefined) {
      await verifyPassword(password, decoyHash);
      throw new PlatformError("ERR_LOGIN_FAILED");
    }
    const { account, versionId } = found;
    /** Records a refusal in the account's tenant's trail (with no change of the account), then throws it. */
    const refuse = async (code: PlatformErrorCode): Promise<never> => {
      const refusal = audit?.refusal(principalOf(account), code);
      if (refusal !== undefined) {
        await this.saveAudited(refusal, (events) => events(account.id));
      }
      throw new PlatformError(code);
    };
    if (account.lockedUntil !== null && Date.parse(account.lockedUntil) > now) {
      return refuse("ERR_LOCKED");
    }
    if (!(await verifyPassword(password, account.passwordHash))) {
      const failedAttempts = account.failedAttempts + 1;
      const locked = failedAttempts >= this.policy.maxFailures;
      const code = locked ? "ERR_LOCKED" : "ERR_LOGIN_FAILED";
      await this.save(
        {
          ...account,
          failedAttempts: locked ? 0 : failedAttempts,
          lockedUntil: locked ? new Date(now + this.policy.lockoutMs).toISOString() : account.lockedUntil,
        },
        versionId,
        audit?.refusal(principalOf(account), code),
      );
      throw new PlatformError(code);
    }
    // Past the password check: the owner may learn the account's state.
    if (account.disabled === true) {
      return refuse("ERR_ACCOUNT_DISABLED");
    }
    if (newPassword !== undefined) {
      checkPasswordPolicy(newPassword, account.email, password);
      const generation = (account.sessionGeneration ?? 0) + 1;
      await this.save(
        {
          ...account,
          mustChangePassword: false,
          passwordHash: await hashPassword(newPassword),
          failedAttempts: 0,
          lockedUntil: null,
          sessionGeneration: generation,
          lastSignInAt: new Date(now).toISOString(),
        },
        versionId,
        audit?.passwordChange(principalOf(account)),
      );
      return { ...principalOf(account), sessionGeneration: generation };
    }
    if (account.mustChangePassword === true) {
      throw new PlatformError("ERR_PASSWORD_CHANGE_REQUIRED");
    }
    const signedIn = { ...account, lastSignInAt: new Date(now).toISOString() };
    if (account.failedAttempts !== 0 || account.lockedUntil !== null) {
      await this.save({ ...signedIn, failedAttempts: 0, lockedUntil: null }, versionId);
    } else if (!(now - Date.parse(account.lastSignInAt ?? "") < signInRecordMs)) {
      // Not recorded within the hour yet.
      try {
        await this.save(signedIn, versionId);
      } catch (error) {
        // Another sign-in or an admin's change wrote the account meanwhile: the sign-in stands, unrecorded.
        if (!(error instanceof PlatformError && error.code === "ERR_VERSION_CONFLICT")) {
          throw error;
        }
      }
    }
    return principalOf(account);
  }
}

function principalOf(account: AccountRecord): Principal {
  return {
    subject: account.id,
    tenantId: account.tenantId,
    role: account.role,
    sessionGeneration: account.sessionGeneration ?? 0,
  };
}

/**
 * An account's email and tenant indexes under every system key generation held (see FhirRepository's
 * tokens).
 */
function accountSearchTokens(keyring: TenantKeyring, account: AccountRecord): Buffer[] {
  return [
    ...blindIndexes(keyring, accountType, "email", account.email),
    ...blindIndexes(keyring, accountType, "tenant", account.tenantId),
  ];
}

/**
 * Creates the accounts a bootstrap file lists (`{accounts:[{email,password,tenantId,role}]}`) that do not
 * exist yet; existing accounts, and their passwords, are left as they are. Returns how many were created.
 */
export async function ensureAccounts(service: AccountService, bootstrap: unknown): Promise<number> {
  const list = (bootstrap as { accounts?: unknown } | null)?.accounts;
  if (!Array.isArray(list)) {
    throw new PlatformError("ERR_BAD_REQUEST", "the bootstrap file has no accounts list");
  }
  let created = 0;
  for (const entry of list as Record<string, unknown>[]) {
    const { email, password, tenantId, role } = entry;
    if (
      typeof email !== "string" ||
      typeof password !== "string" ||
      typeof tenantId !== "string" ||
      !(role === "clerk" || role === "clinician" || role === "admin")
    ) {
      throw new PlatformError(
        "ERR_BAD_REQUEST",
        "a bootstrap account needs email, password, tenantId and role",
      );
    }
    try {
      await service.create({ email, password, tenantId, role });
      created++;
    } catch (error) {
      if (!(error instanceof PlatformError && error.code === "ERR_DUPLICATE")) {
        throw error;
      }
    }
  }
  return created;
}
