// The key broker: secure key release under Azure-Key-Vault-style policies (DESIGN.md §4).
//   PUT  /keys/{name}          (admin) create a key: a 256-bit secret, or a named secret, with a release policy
//   GET  /keys/{name}          (admin) its policy and metadata, never its value
//   POST /keys/{name}/rotate   (admin) add a version: a new 256-bit secret, or a given value
//   DELETE /keys/{name}/{version} (admin) destroy an older version once nothing is sealed under it
//   POST /keys/{name}/release  {target: <attestation token>} → {value: <JWS>} whose payload carries the
//                              newest version as a JWE to the runtime key bound in the token (x-ms-runtime.keys)
//   POST /keys/{name}/{version}/release  the same for one version (Azure Key Vault's path shape)
//   GET  /certs                the JWKS of the key that signs release answers
//   GET  /attestation          {token}: this broker's attestation token, binding that signing key, so a workload
//                              verifies the broker itself before trusting any key it hands out
import { createHash, generateKeyPairSync, randomBytes, timingSafeEqual, type KeyObject } from "node:crypto";
import type { FastifyInstance, FastifyRequest, FastifyServerOptions } from "fastify";
import { CompactEncrypt, CompactSign, decodeJwt, exportJWK, importJWK, type JWK } from "jose";
import { Counter, Gauge } from "prom-client";
import { createServiceApp, isClientError } from "@cloister/service-kit";
import { verifyAttestationToken, AttestationError } from "@cloister/attestation";
import type { TeeProvider } from "@cloister/enclave";
import { AuthorityKeySets } from "./authorities.js";
import { requireApprovals, type ApprovalConfig } from "./approvals.js";
import { BrokerError } from "./errors.js";
import { keyNamePattern, newestVersion, SealedKeyStore, type StoredKey } from "./key-store.js";
import { registerRecovery, type RecoveryConfig } from "./recovery-routes.js";
import { normalizeAuthority, parseReleasePolicy, satisfiesReleasePolicy } from "./release-policy.js";

export interface KeyBrokerConfig {
  /** The broker's own TEE: its sealing key protects keys at rest. */
  readonly provider: TeeProvider;
  /** Folder of sealed keys. */
  readonly dataDirectory: string;
  /** Bearer token of the admin API (from configuration, never logged). */
  readonly adminToken: string;
  /** CA certificates (PEM) to trust when fetching authorities' key sets (the dev stack's CA). */
  readonly authorityCa?: string | readonly string[];
  readonly now?: () => Date;
  readonly logger?: FastifyServerOptions["logger"];
  /**
   * Shed load by event-loop delay: over this many ms in two 0.5 s windows running, requests get 503
   * ERR_OVERLOADED with Retry-After. main.ts sets it from CLOISTER_MAX_EVENT_LOOP_DELAY_MS (default 200);
   * in-process tests leave it off, since their own work shares the loop.
   */
  readonly maxEventLoopDelayMs?: number;
  readonly https?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /**
   * Recovery custodians and quorum: a backup, encrypted to them, is made after every change, so the keys
   * survive the loss of this node (its sealing key is per CPU). Without it a lost node loses every key.
   */
  readonly recovery?: RecoveryConfig;
  /**
   * Policy approvers and quorum (approvals.ts): creating a key, replacing its release policy and destroying a
   * version then need their approvals besides the admin token. Without it the admin token alone suffices.
   */
  readonly approvals?: ApprovalConfig;
  /**
   * This broker's attested identity: the key that signs release answers (made in this TEE) and a token that
   * binds it, served at /attestation. Workloads refuse a broker without one (ERR_KEY_BROKER_IDENTITY), so
   * only tests of the admin API leave it out.
   */
  readonly identity?: BrokerIdentity;
}

export interface BrokerSigningKey {
  readonly privateKey: KeyObject;
  /** ES256 public key with its kid (SHA-256 of the curve point). */
  readonly publicJwk: JWK;
}

export interface BrokerIdentity {
  readonly signing: BrokerSigningKey;
  /** The current attestation token (kept fresh by attestAtStart), binding `signing.publicJwk`. */
  readonly token: () => string;
}

/** A new P-256 key to sign release answers with: made inside the broker's TEE, never stored. */
export async function createBrokerSigningKey(): Promise<BrokerSigningKey> {
  const signing = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const publicJwk: JWK = { ...(await exportJWK(signing.publicKey)), alg: "ES256", use: "sig" };
  publicJwk.kid = createHash("sha256")
    .update(JSON.stringify([publicJwk.crv, publicJwk.x, publicJwk.y]))
    .digest("base64url");
  return { privateKey: signing.privateKey, publicJwk };
}

/** Version numbers in paths: 1 to 2^31-1, digits only. */
function keyVersionNumber(text: string): number {
  const version = /^[1-9][0-9]{0,9}$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isInteger(version) || version > 2 ** 31 - 1) {
    throw new BrokerError("ERR_BAD_REQUEST", "a key version is a positive integer");
  }
  return version;
}

/** What the admin API shows of a key: never a value. */
function keyMetadata(key: StoredKey): Record<string, unknown> {
  return {
    name: key.name,
    kind: key.kind,
    policy: key.policy,
    createdAt: key.createdAt,
    version: newestVersion(key).version,
    versions: key.versions.map(({ version, createdAt }) => ({ version, createdAt })),
  };
}

function keyName(name: string): string {
  if (!keyNamePattern.test(name)) {
    throw new BrokerError("ERR_BAD_REQUEST", "key names are 1–127 letters, digits and dashes");
  }
  return name;
}

/** The first runtime key the secret can be encrypted to: RSA (RSA-OAEP-256) or EC (ECDH-ES). */
async function runtimeKey(
  claims: Record<string, unknown>,
): Promise<{ key: KeyObject | Uint8Array | CryptoKey; alg: string; kid?: string }> {
  const runtime = claims["x-ms-runtime"] as { keys?: unknown } | undefined;
  const keys: unknown[] = Array.isArray(runtime?.keys) ? runtime.keys : [];
  for (const entry of keys) {
    if (typeof entry !== "object" || entry === null) {
      continue;
    }
    const jwk = entry as JWK;
    const alg = jwk.kty === "RSA" ? "RSA-OAEP-256" : jwk.kty === "EC" ? "ECDH-ES" : undefined;
    if (alg === undefined || (jwk.use !== undefined && jwk.use !== "enc")) {
      continue;
    }
    try {
      // Only the public members: a runtime key is never imported with a private part.
      const publicJwk: JWK =
        jwk.kty === "RSA"
          ? { kty: "RSA", n: jwk.n, e: jwk.e }
          : { kty: "EC", crv: jwk.crv, x: jwk.x, y: jwk.y };
      return {
        key: await importJWK(publicJwk, alg),
        alg,
        ...(jwk.kid === undefined ? {} : { kid: jwk.kid }),
      };
    } catch {
      // not a usable key; try the next one
    }
  }
  throw new BrokerError(
    "ERR_NO_RUNTIME_KEY",
    "the token binds no RSA or EC encryption key in x-ms-runtime.keys",
  );
}

export async function buildApp(config: KeyBrokerConfig): Promise<FastifyInstance> {
  const now = config.now ?? ((): Date => new Date());
  // Set once the recovery routes exist; the store calls it after every write.
  let backupChanged = (): void => undefined;
  const store = new SealedKeyStore(
    config.dataDirectory,
    // Signer-bound (MRSIGNER) sealing: an upgraded broker signed by the same key still opens its keys.
    await config.provider.sealingKey("key-broker-store", "signer"),
    () => {
      backupChanged();
    },
  );
  const authorities = new AuthorityKeySets(config.authorityCa);
  const signing = config.identity?.signing ?? (await createBrokerSigningKey());
  const signingJwk = signing.publicJwk;
  const adminDigest = createHash("sha256").update(config.adminToken).digest();

  const { app, registry } = createServiceApp({
    logger: config.logger,
    bodyLimit: 256 * 1024,
    ...(config.maxEventLoopDelayMs === undefined
      ? {}
      : {
          loadShedding: {
            maxEventLoopDelayMs: config.maxEventLoopDelayMs,
            overloaded: () => new BrokerError("ERR_OVERLOADED", "the key broker is overloaded; retry later"),
          },
        }),
    ...(config.https === undefined ? {} : { https: config.https }),
  });
  const releases = new Counter({
    name: "key_release_results_total",
    help: "Key release requests by outcome code",
    labelNames: ["outcome"],
    registers: [registry],
  });

  app.setErrorHandler(async (error, request, reply) => {
    let failure: BrokerError;
    if (error instanceof BrokerError) {
      failure = error;
    } else if (isClientError(error)) {
      failure = new BrokerError("ERR_BAD_REQUEST", "the request body is not acceptable JSON");
    } else {
      request.log.error({ errorName: error instanceof Error ? error.name : "unknown" }, "unexpected failure");
      failure = new BrokerError("ERR_INTERNAL", "the request could not be handled");
    }
    return reply.status(failure.status).send({ error: { code: failure.code, message: failure.message } });
  });
  app.setNotFoundHandler(async (_request, reply) =>
    reply.status(404).send({ error: { code: "ERR_NOT_FOUND", message: "no such route" } }),
  );

  const requireAdmin = async (request: FastifyRequest): Promise<void> => {
    const header = request.headers.authorization ?? "";
    const presented = createHash("sha256")
      .update(header.startsWith("Bearer ") ? header.slice(7) : "")
      .digest();
    if (!timingSafeEqual(presented, adminDigest)) {
      request.log.warn({ audit: "admin.denied", route: request.routeOptions.url }, "admin request refused");
      throw new BrokerError("ERR_UNAUTHORIZED", "the admin API needs the configured bearer token");
    }
  };

  // 1 while the store holds changes no recovery backup holds (the last write failed); 0 once backed up.
  const backupBehind =
    config.recovery === undefined
      ? undefined
      : new Gauge({
          name: "key_broker_recovery_backup_behind",
          help: "1 while the key store has changes that no recovery backup holds (a backup write failed)",
          registers: [registry],
        });
  const recovery = registerRecovery(app, {
    store: () => store,
    provider: config.provider,
    recovery: config.recovery,
    requireAdmin,
    now,
    onBackup: (written) => {
      backupBehind?.set(written ? 0 : 1);
    },
  });
  backupChanged = recovery.backupChanged;
  // A backup of the store as it is at start (the custodians may have changed with this release), before the
  // broker serves.
  backupChanged();
  await recovery.backupsWritten();

  /** A generated 256-bit secret, or the admin's base64 value (at most 8 KiB) for a named secret. */
  const newKeyValue = (given: unknown): Uint8Array => {
    if (given !== undefined && (typeof given !== "string" || given.length === 0 || given.length > 8192)) {
      throw new BrokerError("ERR_BAD_REQUEST", "value, when given, is a base64 string of at most 8 KiB");
    }
    return given === undefined
      ? new Uint8Array(randomBytes(32))
      : new Uint8Array(Buffer.from(given, "base64"));
  };

  app.put<{ Params: { name: string }; Body: { policy?: unknown; value?: unknown } }>(
    "/keys/:name",
    { preHandler: requireAdmin },
    async (request, reply) => {
      const name = keyName(request.params.name);
      if (store.get(name) !== undefined) {
        throw new BrokerError("ERR_CONFLICT", `key ${name} exists already`);
      }
      const policy = parseReleasePolicy(request.body.policy);
      const approvedBy = await requireApprovals(
        config.approvals,
        request,
        { action: "create", key: name, policy: request.body.policy },
        now(),
      );
      const given = request.body.value;
      const createdAt = now().toISOString();
      store.put({
        name,
        kind: given === undefined ? "secret" : "named-secret",
        versions: [{ version: 1, value: newKeyValue(given), createdAt }],
        policy,
        createdAt,
      });
      request.log.info(
        {
          audit: "key.created",
          key: name,
          kind: given === undefined ? "secret" : "named-secret",
          approvedBy,
        },
        "key created",
      );
      return reply.status(201).send({ name, kind: given === undefined ? "secret" : "named-secret", policy });
    },
  );

  // Replaces a key's release policy, keeping its value: how an operator moves a key to a new release of the
  // code (its new measurement) without re-encrypting the data under it.
  app.put<{ Params: { name: string }; Body: { policy?: unknown } }>(
    "/keys/:name/policy",
    { preHandler: requireAdmin },
    async (request) => {
      const name = keyName(request.params.name);
      const key = store.get(name);
      if (key === undefined) {
        throw new BrokerError("ERR_NOT_FOUND", "no key of that name");
      }
      const policy = parseReleasePolicy(request.body.policy);
      const approvedBy = await requireApprovals(
        config.approvals,
        request,
        { action: "set-policy", key: name, policy: request.body.policy },
        now(),
      );
      store.put({ ...key, policy });
      request.log.info({ audit: "key.policy-replaced", key: name, approvedBy }, "release policy replaced");
      return keyMetadata({ ...key, policy });
    },
  );

  // Rotation: a new version becomes the one released by default. Older versions stay releasable (by
  // number) until the admin destroys them, so data sealed under them can be re-encrypted without downtime.
  app.post<{ Params: { name: string }; Body: { value?: unknown } | undefined }>(
    "/keys/:name/rotate",
    { preHandler: requireAdmin },
    async (request, reply) => {
      const name = keyName(request.params.name);
      const key = store.get(name);
      if (key === undefined) {
        throw new BrokerError("ERR_NOT_FOUND", "no key of that name");
      }
      const given = request.body?.value;
      if ((key.kind === "secret") !== (given === undefined)) {
        throw new BrokerError(
          "ERR_BAD_REQUEST",
          key.kind === "secret"
            ? "a generated secret rotates to a new generated value; send no value"
            : "a named secret rotates to a value the admin gives",
        );
      }
      const version = Math.max(key.lastVersion ?? 0, newestVersion(key).version) + 1;
      const rotated: StoredKey = {
        ...key,
        lastVersion: version,
        versions: [...key.versions, { version, value: newKeyValue(given), createdAt: now().toISOString() }],
      };
      store.put(rotated);
      request.log.info({ audit: "key.rotated", key: name, version }, "key rotated");
      return reply.status(201).send(keyMetadata(rotated));
    },
  );

  app.delete<{ Params: { name: string; version: string } }>(
    "/keys/:name/:version",
    { preHandler: requireAdmin },
    async (request) => {
      const name = keyName(request.params.name);
      const version = keyVersionNumber(request.params.version);
      const key = store.get(name);
      if (key === undefined || !key.versions.some((entry) => entry.version === version)) {
        throw new BrokerError("ERR_NOT_FOUND", "no key version of that name and number");
      }
      if (newestVersion(key).version === version) {
        throw new BrokerError("ERR_CONFLICT", "the newest version cannot be destroyed; rotate first");
      }
      const approvedBy = await requireApprovals(
        config.approvals,
        request,
        { action: "destroy-version", key: name, version },
        now(),
      );
      const remaining: StoredKey = {
        ...key,
        lastVersion: Math.max(key.lastVersion ?? 0, newestVersion(key).version),
        versions: key.versions.filter((entry) => entry.version !== version),
      };
      store.put(remaining);
      request.log.info(
        { audit: "key.version-destroyed", key: name, version, approvedBy },
        "key version destroyed",
      );
      return keyMetadata(remaining);
    },
  );

  app.get<{ Params: { name: string } }>("/keys/:name", { preHandler: requireAdmin }, async (request) => {
    const key = store.get(keyName(request.params.name));
    if (key === undefined) {
      throw new BrokerError("ERR_NOT_FOUND", "no key of that name");
    }
    return keyMetadata(key);
  });

  const releaseHandler = async (
    request: FastifyRequest<{ Params: { name: string; version?: string }; Body: { target?: unknown } }>,
  ): Promise<{ value: string }> => {
    try {
      const key = store.get(keyName(request.params.name));
      if (key === undefined) {
        throw new BrokerError("ERR_NOT_FOUND", "no key of that name");
      }
      const wanted =
        request.params.version === undefined ? undefined : keyVersionNumber(request.params.version);
      const keyVersion =
        wanted === undefined ? newestVersion(key) : key.versions.find((entry) => entry.version === wanted);
      if (keyVersion === undefined) {
        throw new BrokerError("ERR_NOT_FOUND", "no key version of that number");
      }
      const target = (request.body as { target?: unknown } | null)?.target;
      if (typeof target !== "string") {
        throw new BrokerError("ERR_BAD_REQUEST", "the body must be {target: <attestation token>}");
      }
      let issuer: unknown;
      try {
        issuer = decodeJwt(target).iss;
      } catch {
        throw new BrokerError("ERR_TOKEN_INVALID", "the target is not a JWT");
      }
      const authority = typeof issuer === "string" ? normalizeAuthority(issuer) : "";
      if (!key.policy.anyOf.some((entry) => entry.authority === authority)) {
        throw new BrokerError(
          "ERR_AUTHORITY_UNKNOWN",
          "the token's issuer is not an authority of this key's policy",
        );
      }
      let claims: Record<string, unknown>;
      try {
        claims = await verifyAttestationToken(target, {
          jwks: await authorities.forToken(authority, target),
          issuer: authority,
          now: now(),
        });
      } catch (error) {
        if (error instanceof BrokerError) {
          throw error;
        }
        throw new BrokerError(
          "ERR_TOKEN_INVALID",
          `the attestation token is not valid (${error instanceof AttestationError ? error.code : "unknown"})`,
        );
      }
      if (!satisfiesReleasePolicy(key.policy, authority, claims)) {
        throw new BrokerError(
          "ERR_POLICY_DENIED",
          "the token's claims do not satisfy the key's release policy",
        );
      }
      const recipient = await runtimeKey(claims);
      const jwe = await new CompactEncrypt(keyVersion.value)
        .setProtectedHeader({
          alg: recipient.alg,
          enc: "A256GCM",
          ...(recipient.kid === undefined ? {} : { kid: recipient.kid }),
        })
        .encrypt(recipient.key);
      const issuedAt = Math.floor(now().getTime() / 1000);
      const payload = {
        iat: issuedAt,
        response: {
          key: {
            kid: key.name,
            version: keyVersion.version,
            // Every version still held, so a workload can open what older versions sealed.
            versions: key.versions.map((entry) => entry.version),
            kty: key.kind === "secret" ? "oct" : "secret",
            key_hsm: jwe,
          },
        },
      };
      const value = await new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
        .setProtectedHeader({ alg: "ES256", kid: signingJwk.kid ?? "", typ: "JWT" })
        .sign(signing.privateKey);
      releases.inc({ outcome: "OK" });
      request.log.info(
        {
          audit: "key.released",
          key: key.name,
          version: keyVersion.version,
          authority,
          measurement:
            claims["x-ms-sgx-mrenclave"] ?? claims.tdx_mrtd ?? claims["x-ms-sevsnpvm-launchmeasurement"],
        },
        "key released",
      );
      return { value };
    } catch (error) {
      const outcome = error instanceof BrokerError ? error.code : "ERR_INTERNAL";
      releases.inc({ outcome });
      request.log.info(
        { audit: "key.release.refused", key: request.params.name.slice(0, 127), outcome },
        "key release refused",
      );
      throw error;
    }
  };
  app.post("/keys/:name/release", releaseHandler);
  app.post("/keys/:name/:version/release", releaseHandler);

  app.get("/certs", async () => ({ keys: [signingJwk] }));
  app.get("/attestation", async () => {
    if (config.identity === undefined) {
      throw new BrokerError("ERR_NOT_ATTESTED", "this key broker runs without an attestation token");
    }
    return { token: config.identity.token() };
  });
  app.get("/readyz", async () => ({ status: "ready", keys: store.list().length }));
  return app;
}

export { brokerErrors, BrokerError, type BrokerErrorCode } from "./errors.js";
export { parseReleasePolicy, satisfiesReleasePolicy, type ReleasePolicy } from "./release-policy.js";
export type { RecoveryConfig } from "./recovery-routes.js";
