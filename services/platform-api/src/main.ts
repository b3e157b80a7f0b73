// Runs the platform API over HTTPS inside its (simulated) TEE. Configuration is read once, here:
//   CLOISTER_PLATFORM_PORT          default 7446 (on 127.0.0.1 unless CLOISTER_LISTEN_HOST is set)
//   CLOISTER_PLATFORM_URL           public URL (default https://127.0.0.1:<port>)
//   CLOISTER_TLS_CERT, CLOISTER_TLS_KEY   PEM files (required)
//   CLOISTER_CA                     PEM file of the CA for the attestation service, key broker, inference server
//   CLOISTER_TEE_PROVIDER           sim (default), gramine (SGX under Gramine) or tsm (TDX / SEV-SNP via configfs-tsm)
//   CLOISTER_DATA_DIR               simulation platform and the SQLite file (default .cloister)
//   CLOISTER_POSTGRES_URL           use PostgreSQL instead of SQLite; without a password in it, the password is
//                                   the key broker secret "postgres-credentials"
//   CLOISTER_ATTESTATION_ISSUER     the attestation service's issuer when it differs from its URL (in-cluster)
//   CLOISTER_ATTESTATION_URL, CLOISTER_KEY_BROKER_URL   (required)
//   CLOISTER_KEY_BROKER_SIGNERS, CLOISTER_KEY_BROKER_MEASUREMENTS   who the key broker must be (one is required): its
//                                   attestation is verified before any key is taken from it
//   CLOISTER_INFERENCE_URL          the inference server (the workflow is off without it)
//   CLOISTER_INFERENCE_MEASUREMENTS comma-separated allowed inference-server measurements (hex) (required with it)
//   CLOISTER_PEER_ALLOW_SIMULATION, CLOISTER_PEER_ALLOW_DEBUG   "true" for the dev stack only (inference, key broker)
//   CLOISTER_REDIS_URL              Redis for the job queue, the result cache and the sign-in limits, shared by
//                                   several replicas; its credentials are the key broker secret
//                                   "redis-credentials" ("password" or "user:password")
//   CLOISTER_TENANTS                comma-separated tenant ids whose active orders are queued again at start,
//                                   and checked every CLOISTER_RECONCILE_SECONDS (default 30) for orders with no job
//   CLOISTER_CORS_ORIGINS           comma-separated browser origins allowed to call it (the portal)
//   CLOISTER_OPERATOR_TENANT        the tenant whose admins operate the platform itself (POST /admin/system/reencrypt);
//                                   unset: no one may ask for platform-wide actions (they still run in the background)
//   CLOISTER_TRUSTED_PROXIES        comma-separated addresses or CIDRs of the ingress in front of it: X-Forwarded-For
//                                   is believed from them only, so sign-in limits count clients, not the ingress
//   CLOISTER_OIDC_ISSUER, CLOISTER_OIDC_AUDIENCE, CLOISTER_OIDC_TENANTS, CLOISTER_OIDC_ROLES (and _JWKS_URI,
//                                   _TENANT_CLAIM, _ROLE_CLAIM): sign-in through Entra ID instead of local accounts
//   CLOISTER_BOOTSTRAP_ACCOUNTS     JSON file {accounts:[{email,password,tenantId,role}]}: created at start if missing
//   CLOISTER_KEYRING_REFRESH_SECONDS  how often a tenant's data key versions are asked for again (default 300),
//                                   so a rotation made through another replica is picked up
// Keys: "platform-system" (accounts, system audit) and "tenant-<id>" per tenant, every version of each,
// released by the key broker to this TEE's token. Without attestation or keys the platform does not start: there is no unencrypted mode.
//   CLOISTER_MAX_EVENT_LOOP_DELAY_MS  shed requests (503 ERR_OVERLOADED) when the event loop is this late, ms (default 200)
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  attestAtStart,
  retryAtStart,
  connectConfidentialService,
  keyBrokerExpectationsFromEnv,
  PeerVerifier,
  releaseKey,
  releaseKeyVersion,
  logSharedOhttpKey,
  releaseSharedOhttpKey,
  serviceTee,
  type ReleasedKey,
  type ConfidentialService,
} from "@cloister/enclave";
import { AccountService, ensureAccounts } from "./auth/accounts.js";
import { createLocalSessions, createOidcSessions, oidcOptionsFromEnvironment } from "./auth/sessions.js";
import { buildApp } from "./app.js";
import { PlatformError } from "./errors.js";
import { createSystemKeyringSource, createTenantKeyrings } from "./storage/tenant-keyrings.js";
import { openPostgresStore } from "./storage/postgres-store.js";
import { openSqliteStore } from "./storage/sqlite-store.js";
import { createMemoryJobQueue, type JobQueue } from "./workflow/job-queue.js";
import { createRedisJobQueue } from "./workflow/redis-job-queue.js";
import { createRedisEventBus, type ReportEventBus } from "./workflow/event-bus.js";
import { createRedisReplayGuard, type ReplayGuard } from "./replay-guard.js";
import {
  createRedisAttemptCounters,
  memoryAttemptCounters,
  type AttemptCounterFactory,
} from "./auth/attempt-counters.js";
import { createRedisResultCache, type ResultCache } from "./workflow/result-cache.js";
import { closeOnSignals, requiredEnv } from "@cloister/service-kit";

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const port = Number.parseInt(process.env.CLOISTER_PLATFORM_PORT ?? "7446", 10);
const baseUrl = process.env.CLOISTER_PLATFORM_URL ?? `https://127.0.0.1:${port}`;
const dataDirectory = resolve(process.env.CLOISTER_DATA_DIR ?? ".cloister");
const ca = process.env.CLOISTER_CA === undefined ? undefined : readFileSync(process.env.CLOISTER_CA, "utf8");
const tls = ca === undefined ? {} : { ca };
const attestationUrl = requiredEnv("CLOISTER_ATTESTATION_URL");
const keyBrokerUrl = requiredEnv("CLOISTER_KEY_BROKER_URL");
const allowSimulation = process.env.CLOISTER_PEER_ALLOW_SIMULATION === "true";
const allowDebug = process.env.CLOISTER_PEER_ALLOW_DEBUG === "true";

const provider = serviceTee(repositoryRoot, "platform-api", dataDirectory);
const attestationServiceClient = {
  url: attestationUrl,
  ...(process.env.CLOISTER_ATTESTATION_ISSUER === undefined
    ? {}
    : { issuer: process.env.CLOISTER_ATTESTATION_ISSUER }),
  ...tls,
};
const broker = {
  url: keyBrokerUrl,
  ...tls,
  identity: new PeerVerifier({
    attestationService: attestationServiceClient,
    expectations: keyBrokerExpectationsFromEnv(process.env),
  }),
};
// Set inside the attestation callback, read once the logger exists.
const ohttpKey = { shared: false };
const attestation = await retryAtStart("the attestation service", () =>
  attestAtStart({
    provider,
    attestationService: { url: attestationUrl, ...tls },
    runtime: { service: "platform-api" },
    // One OHTTP key for every replica, so a browser's requests may reach any of them (and survive a restart).
    sharedOhttpKey: async ({ token, releasePrivateKey }) => {
      const shared = await retryAtStart("the key broker", () =>
        releaseSharedOhttpKey(broker, "platform-ohttp", token, releasePrivateKey),
      );
      ohttpKey.shared = shared !== undefined;
      return shared;
    },
  }),
);
// Named secrets are released at start only.
const release = async (name: string): Promise<Uint8Array> =>
  retryAtStart("the key broker", () =>
    releaseKey(broker, name, attestation.token(), attestation.keys.release.privateKey),
  );
const releaseVersion = (name: string, version?: number): Promise<ReleasedKey> =>
  releaseKeyVersion(broker, name, attestation.token(), attestation.keys.release.privateKey, version);

const keyringRefreshMs = Number(process.env.CLOISTER_KEYRING_REFRESH_SECONDS ?? 300) * 1000;
// Every version the broker holds, so records sealed before a rotation open until re-encrypted. The system
// keyring follows rotations of platform-system like a tenant's (accounts, system audit trail); the job
// queue and the sign-in counters keep the versions held at start until the next restart.
const systemKeyrings = createSystemKeyringSource({
  release: releaseVersion,
  refreshAfterMs: keyringRefreshMs,
});
const systemKeyring = await retryAtStart("the key broker", () => systemKeyrings.refresh());
// What every replica derives its shared keys from (sessions, Redis names, report events, replay claims): the
// oldest system key version held, which replicas on both sides of a rotation share.
const oldestSystemKey = [...systemKeyring.generations].sort(([a], [b]) => a - b)[0]?.[1].encryption;
if (oldestSystemKey === undefined) {
  throw new Error("the key broker released no version of platform-system");
}
const tenantKeyrings = createTenantKeyrings({ release: releaseVersion, refreshAfterMs: keyringRefreshMs });

const postgresUrl = process.env.CLOISTER_POSTGRES_URL;
let store;
if (postgresUrl === undefined) {
  store = openSqliteStore(join(dataDirectory, "records.db"));
} else {
  const connection = new URL(postgresUrl);
  if (connection.password === "") {
    // The database password exists in plain text only here, released to this TEE's token.
    connection.password = encodeURIComponent(
      Buffer.from(await release("postgres-credentials")).toString("utf8"),
    );
  }
  store = openPostgresStore({ connectionString: connection.toString() });
}
await store.migrate();

const redisUrl = process.env.CLOISTER_REDIS_URL;
let queue: JobQueue;
let cache: ResultCache | undefined;
let attemptCounters: AttemptCounterFactory = memoryAttemptCounters;
let reportEvents: ReportEventBus | undefined;
let replayGuard: ReplayGuard | undefined;
// Set once the app (and its logger) exists; at most one warning a minute while Redis does not answer.
let warnSignInLimitsLocal = (): void => undefined;
let warnReportEventsLocal = (): void => undefined;
let warnReplayCheckLocal = (): void => undefined;
if (redisUrl === undefined) {
  queue = createMemoryJobQueue();
} else {
  const credentials = Buffer.from(await release("redis-credentials")).toString("utf8");
  const separator = credentials.indexOf(":");
  const redisAuth =
    separator < 0
      ? { password: credentials }
      : { username: credentials.slice(0, separator), password: credentials.slice(separator + 1) };
  queue = createRedisJobQueue({
    url: redisUrl,
    ...redisAuth,
    keys: new Map([...systemKeyring.generations].map(([generation, keys]) => [generation, keys.encryption])),
  });
  cache = createRedisResultCache({
    url: redisUrl,
    ...redisAuth,
  });
  // The replicas share the OHTTP key, so they share the replay check too.
  replayGuard = createRedisReplayGuard({
    url: redisUrl,
    ...redisAuth,
    key: oldestSystemKey,
    onUnavailable: () => {
      warnReplayCheckLocal();
    },
  });
  // Report events reach the clinicians' streams on every replica, whichever replica's worker wrote the report.
  reportEvents = createRedisEventBus({
    url: redisUrl,
    ...redisAuth,
    key: oldestSystemKey,
    onUnavailable: () => {
      warnReportEventsLocal();
    },
  });
  attemptCounters = createRedisAttemptCounters({
    url: redisUrl,
    ...redisAuth,
    key: oldestSystemKey,
    onUnavailable: () => {
      warnSignInLimitsLocal();
    },
  }).counters;
}

const inferenceUrl = process.env.CLOISTER_INFERENCE_URL;
let inference: Promise<ConfidentialService> | undefined;
const connectInference = async (): Promise<ConfidentialService> => {
  if (inferenceUrl === undefined) {
    throw new Error("no inference server is configured");
  }
  inference ??= connectConfidentialService({
    url: inferenceUrl,
    ...tls,
    verifier: new PeerVerifier({
      attestationService: attestationServiceClient,
      expectations: {
        measurements: requiredEnv("CLOISTER_INFERENCE_MEASUREMENTS")
          .split(",")
          .map((m) => m.trim()),
        allowSimulation,
        allowDebug,
      },
    }),
    callerToken: () => attestation.token(),
  }).catch((error: unknown) => {
    inference = undefined;
    throw error;
  });
  return inference;
};

const accounts = new AccountService(store, systemKeyrings, undefined, undefined, attemptCounters);
const oidc = oidcOptionsFromEnvironment(process.env);
const bootstrapFile = process.env.CLOISTER_BOOTSTRAP_ACCOUNTS;
if (bootstrapFile !== undefined) {
  await ensureAccounts(accounts, JSON.parse(readFileSync(bootstrapFile, "utf8")) as unknown);
}

const app = await buildApp({
  maxEventLoopDelayMs: Number(process.env.CLOISTER_MAX_EVENT_LOOP_DELAY_MS ?? 200),
  baseUrl,
  store,
  systemKeyring: systemKeyrings,
  ...(reportEvents === undefined ? {} : { reportEvents }),
  ...(replayGuard === undefined ? {} : { replayGuard }),
  ...(process.env.CLOISTER_OPERATOR_TENANT === undefined || process.env.CLOISTER_OPERATOR_TENANT === ""
    ? {}
    : { operatorTenant: process.env.CLOISTER_OPERATOR_TENANT }),
  tenantKeyring: tenantKeyrings.keyring,
  refreshTenantKeyring: tenantKeyrings.refresh,
  accounts,
  // Every replica signs and verifies local sessions with the same key, so a session outlives a restart too.
  sessions: await createLocalSessions({ issuer: baseUrl, signingSecret: oldestSystemKey }),
  // An external OpenID Connect provider (Entra ID) replaces local accounts when it is configured.
  ...(oidc === undefined ? {} : { sessionVerifier: createOidcSessions(oidc) }),
  attestation,
  ...(inferenceUrl === undefined
    ? {}
    : { workflow: { queue, inference: connectInference, ...(cache === undefined ? {} : { cache }) } }),
  logger: { level: process.env.CLOISTER_LOG_LEVEL ?? "info" },
  corsOrigins: (process.env.CLOISTER_CORS_ORIGINS ?? "").split(",").filter((origin) => origin.length > 0),
  trustedProxies: (process.env.CLOISTER_TRUSTED_PROXIES ?? "")
    .split(",")
    .map((proxy) => proxy.trim())
    .filter((proxy) => proxy.length > 0),
  https: {
    cert: readFileSync(requiredEnv("CLOISTER_TLS_CERT")),
    key: readFileSync(requiredEnv("CLOISTER_TLS_KEY")),
  },
});
/** At most one warning a minute per kind while Redis does not answer. */
const warnAtMostEveryMinute = (message: string): (() => void) => {
  let last = 0;
  return () => {
    if (Date.now() - last >= 60_000) {
      last = Date.now();
      app.log.warn(message);
    }
  };
};
logSharedOhttpKey(app.log, "platform-ohttp", ohttpKey.shared, attestation.keys);
warnSignInLimitsLocal = warnAtMostEveryMinute(
  "Redis did not answer: sign-in attempts are counted in this replica only until it does",
);
warnReplayCheckLocal = warnAtMostEveryMinute(
  "Redis did not answer: OHTTP replays are checked by this replica only until it does",
);
warnReportEventsLocal = warnAtMostEveryMinute(
  "Redis did not answer: report events reach this replica's event streams only until it does",
);
const tenants = (process.env.CLOISTER_TENANTS ?? "").split(",").filter((tenant) => tenant.length > 0);
// The reconciler: active orders whose job was never queued (the queue was away) are queued within a minute.
// Its first round comes after the start-up requeue below.
const reconcileEvery = Number(process.env.CLOISTER_RECONCILE_SECONDS ?? 30) * 1000;
// The count of AI results awaiting review (and the oldest's age), for its gauges and alert.
const countReviewBacklog = (): void => {
  app.countReviewBacklog(tenants).catch((error: unknown) => {
    app.log.warn(
      { errorName: error instanceof Error ? error.name : "unknown" },
      "counting results awaiting review failed",
    );
  });
};
const reconciler = setInterval(() => {
  countReviewBacklog();
  app
    .reconcileDiagnosisJobs(tenants)
    .then((queued) => {
      if (queued > 0) {
        app.log.warn({ queued }, "reconciler queued orders that had no job");
      }
    })
    .catch((error: unknown) => {
      app.log.warn({ errorName: error instanceof Error ? error.name : "unknown" }, "reconciler failed");
    });
}, reconcileEvery);
reconciler.unref();
countReviewBacklog();
// After platform-system rotated at the key broker, every replica moves the platform's own records to the
// new version in the background, at start and at each keyring refresh; several replicas may run at once.
const reencryptSystemRecords = (): void => {
  app
    .reencryptSystemRecords()
    .then(({ resealed, remaining }) => {
      if (resealed > 0 || remaining > 0) {
        app.log.info(
          { audit: "system.reencrypted", resealed, remaining },
          "system records re-encrypted under the newest platform-system version",
        );
      }
    })
    .catch((error: unknown) => {
      app.log.warn(
        { code: error instanceof PlatformError ? error.code : "ERR_INTERNAL" },
        "re-encrypting system records failed; trying again at the next keyring refresh",
      );
    });
};
const systemReencryption = setInterval(reencryptSystemRecords, keyringRefreshMs);
systemReencryption.unref();
app.addHook("onClose", async () => {
  clearInterval(reconciler);
  clearInterval(systemReencryption);
  await reportEvents?.close();
  await replayGuard?.close();
  attestation.stop();
  await store.close();
});
closeOnSignals(app);
await app.listen({ port, host: process.env.CLOISTER_LISTEN_HOST ?? "127.0.0.1" });
app.log.info({ requeued: await app.recoverDiagnosisJobs(tenants) }, "platform ready");
reencryptSystemRecords();
