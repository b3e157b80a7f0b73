// Local staff accounts, stored like records: sealed under the platform's system keys, found by a blind
// index of the email. Failed sign-ins are limited per email and per client address (successful ones do not
// count: a hospital's staff share one NAT address, sign in again after every restart, and a shift change
// must not lock them out), and an account locks for 15 minutes after 5 failures in a row. The counters are per replica by default, and shared on Redis when
// the platform has it (attempt-counters.ts); the lock is stored with the account, so it is always shared.
import { randomUUID } from "node:crypto";
import { PlatformError } from "../errors.js";
import { blindIndex, blindIndexes, openRecord, sealRecord } from "../storage/record-crypto.js";
import type { TenantKeyring } from "../storage/record-crypto.js";
import type { RecordStore } from "../storage/record-store.js";
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
import { decoyHash, hashPassword, verifyPassword } from "./passwords.js";
import type { Principal, Role } from "./sessions.js";

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
}

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

export class AccountService {
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
  ) {
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

  private async save(account: AccountRecord, previous: number): Promise<void> {
    const keyring = await this.keyrings.keyring();
    const versionId = previous + 1;
    await this.store.write(
      systemTenant,
      {
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
      previous,
      accountSearchTokens(keyring, account),
    );
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

  async create(input: { email: string; password: string; tenantId: string; role: Role }): Promise<string> {
    if (!/^[^@\s]+@[^@\s]+$/.test(input.email) || input.password.length < 12) {
      throw new PlatformError(
        "ERR_BAD_REQUEST",
        "an account needs an email and a password of at least 12 characters",
      );
    }
    if ((await this.find(input.email)) !== undefined) {
      throw new PlatformError("ERR_DUPLICATE", "an account with this email exists");
    }
    const account: AccountRecord = {
      id: randomUUID(),
      email: normalisedEmail(input.email),
      tenantId: input.tenantId,
      role: input.role,
      passwordHash: await hashPassword(input.password),
      failedAttempts: 0,
      lockedUntil: null,
    };
    await this.save(account, 0);
    return account.id;
  }

  /**
   * An account of `tenantId` by id (an AuditEvent's agent), for an admin's access report: its email and role,
   * nothing else. Another tenant's account, or none, is undefined.
   */
  async describe(
    tenantId: string,
    id: string,
  ): Promise<{ id: string; email: string; role: Role } | undefined> {
    if (!/^[0-9a-f-]{36}$/.test(id)) {
      return undefined;
    }
    const stored = await this.store.current(systemTenant, accountType, id);
    if (stored === undefined || stored.deleted) {
      return undefined;
    }
    const account = await withKeyringRetry(this.keyrings, async (keyring) => {
      const body = openRecord(
        keyring,
        { tenantId: systemTenant, type: accountType, id, versionId: stored.versionId },
        stored.body,
      );
      return JSON.parse(body.toString("utf8")) as AccountRecord;
    });
    return account.tenantId === tenantId ? { id, email: account.email, role: account.role } : undefined;
  }

  /** Checks a password; the caller turns the principal into a session. */
  async login(email: string, password: string, client: string): Promise<Principal> {
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
      const principal = await this.verify(email, password, now);
      await release();
      return principal;
    } catch (error) {
      if (!(error instanceof PlatformError && ["ERR_LOGIN_FAILED", "ERR_LOCKED"].includes(error.code))) {
        await release();
      }
      throw error;
    }
  }

  private async verify(email: string, password: string, now: number): Promise<Principal> {
    const found = await this.find(email);
    if (found === undefined) {
      await verifyPassword(password, decoyHash);
      throw new PlatformError("ERR_LOGIN_FAILED");
    }
    const { account, versionId } = found;
    if (account.lockedUntil !== null && Date.parse(account.lockedUntil) > now) {
      throw new PlatformError("ERR_LOCKED");
    }
    if (!(await verifyPassword(password, account.passwordHash))) {
      const failedAttempts = account.failedAttempts + 1;
      const locked = failedAttempts >= this.policy.maxFailures;
      await this.save(
        {
          ...account,
          failedAttempts: locked ? 0 : failedAttempts,
          lockedUntil: locked ? new Date(now + this.policy.lockoutMs).toISOString() : account.lockedUntil,
        },
        versionId,
      );
      throw new PlatformError(locked ? "ERR_LOCKED" : "ERR_LOGIN_FAILED");
    }
    if (account.failedAttempts !== 0 || account.lockedUntil !== null) {
      await this.save({ ...account, failedAttempts: 0, lockedUntil: null }, versionId);
    }
    return { subject: account.id, tenantId: account.tenantId, role: account.role };
  }
}

/** An account's email index under every system key generation held (see FhirRepository's tokens). */
function accountSearchTokens(keyring: TenantKeyring, account: AccountRecord): Buffer[] {
  return blindIndexes(keyring, accountType, "email", account.email);
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
