// A platform app on a fresh SQLite store, with one tenant ("hospital-a") and random keys, for tests that
// need the routes but not attestation.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import { AccountService, type LoginPolicy } from "../auth/accounts.js";
import { createLocalSessions } from "../auth/sessions.js";
import { buildApp, type PlatformConfig } from "../app.js";
import { deriveTenantKeyring, type TenantKeyring } from "../storage/record-crypto.js";
import type { KeyringSource } from "../storage/tenant-keyrings.js";
import type { RecordStore } from "../storage/record-store.js";
import { openSqliteStore } from "../storage/sqlite-store.js";

export interface TestPlatform {
  readonly app: FastifyInstance;
  readonly store: RecordStore;
  readonly accounts: AccountService;
  readonly close: () => Promise<void>;
}

export async function startTestPlatform(
  options: Partial<
    Pick<
      PlatformConfig,
      | "attestation"
      | "maxInFlight"
      | "tenantKeyring"
      | "refreshTenantKeyring"
      | "store"
      | "trustedProxies"
      | "reportEvents"
      | "replayGuard"
      | "operatorTenant"
      | "eventHeartbeatMs"
      | "sessionVerifier"
      | "https"
    >
  > & {
    readonly loginPolicy?: LoginPolicy;
    /** Shared by replicas over one store (default: a random keyring of this platform's own). */
    readonly systemKeyring?: TenantKeyring | KeyringSource;
    /** Shared by replicas so each verifies the others' sessions (default: a key of this platform's own). */
    readonly sessionSecret?: Uint8Array;
    /** How long each replica trusts what it read of an account when checking sessions (default 5 s). */
    readonly sessionCheckMs?: number;
  } = {},
): Promise<TestPlatform> {
  const scratch = mkdtempSync(join(tmpdir(), "cloister-platform-test-"));
  const store = options.store ?? openSqliteStore(join(scratch, "records.db"));
  await store.migrate();
  const tenantKeyring = deriveTenantKeyring(randomBytes(32), "hospital-a");
  const {
    loginPolicy,
    systemKeyring = deriveTenantKeyring(randomBytes(32), "_system"),
    sessionSecret,
    sessionCheckMs,
    ...config
  } = options;
  const accounts = new AccountService(
    store,
    systemKeyring,
    loginPolicy,
    undefined,
    undefined,
    sessionCheckMs === undefined ? {} : { sessionCheckMs },
  );
  const app = await buildApp({
    baseUrl: "https://platform.test",
    store,
    accounts,
    systemKeyring,
    sessions: await createLocalSessions({
      issuer: "https://platform.test",
      ...(sessionSecret === undefined ? {} : { signingSecret: sessionSecret }),
    }),
    tenantKeyring: async () => tenantKeyring,
    ...config,
  });
  return {
    app,
    store,
    accounts,
    close: async () => {
      await app.close();
      await store.close();
      rmSync(scratch, { recursive: true, force: true });
    },
  };
}
