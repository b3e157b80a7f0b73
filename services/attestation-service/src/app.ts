// The attestation service: Microsoft Azure Attestation's REST API over @cloister/attestation.
import type { FastifyInstance, FastifyServerOptions } from "fastify";
import { existsSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { Counter, Gauge } from "prom-client";
import { createServiceApp, isClientError } from "@cloister/service-kit";
import {
  createVerificationCache,
  issueAttestationToken,
  parseCertificate,
  policyHash,
  type SimulationPlatform,
} from "@cloister/attestation";
import type { TeeProvider } from "@cloister/enclave";
import { attest, parseAttestRequest, verifyIntelEvidence } from "./attest.js";
import { CollateralStore } from "./collateral-store.js";
import { PccsClient, type PccsClientOptions } from "./pccs-client.js";
import { ServiceError } from "./errors.js";
import { attestationTypes, PolicyStore, type AttestationType, type PolicyMode } from "./policies.js";
import {
  PeerSync,
  serviceIdentity,
  verifyPeerSigningKey,
  type PeerKey,
  type PeersConfig,
  type PolicyVersion,
} from "./peers.js";
import {
  createSigningKey,
  evidenceExtensionOid,
  jwkFor,
  type SigningKey,
  openSigningKey,
  sealSigningKey,
  signingKeyNotAfter,
} from "./signing-key.js";

export interface AttestationServiceConfig {
  /** The service's public URL: the tokens' `iss`, and `jku` = issuer + "/certs". */
  readonly issuer: string;
  /** The service's own TEE: its evidence goes into the signing certificate. */
  readonly provider: TeeProvider;
  /** "production" denies debuggable evidence; "dev" accepts it and unsigned policy envelopes. */
  readonly policyMode: PolicyMode;
  /** PEM certificates whose keys may sign policy envelopes. */
  readonly policySigners?: readonly string[];
  /**
   * Policies set by configuration (main.ts: CLOISTER_POLICIES_DIR): an MAA policy envelope per attestation
   * type, applied at start exactly as `PUT /policies/{type}` would (signed by a policy signer outside dev
   * mode), or the service does not start. Those types are then managed there only: the API refuses to change
   * them (ERR_POLICY_DECLARED) and replicas do not pass them on, so a restart of every replica keeps them.
   */
  readonly declaredPolicies?: Readonly<Partial<Record<AttestationType, string>>>;
  /** Trust this simulation platform's root (the dev stack) besides Intel's. */
  readonly simulationPlatform?: SimulationPlatform;
  /** Folder of collateral bundles (JSON, DESIGN.md §4). */
  readonly collateralDirectory?: string;
  /** An Intel PCS or PCCS (API v4) for collateral the folder lacks or has only expired. */
  readonly pccs?: PccsClientOptions;
  /** AMD ASK+ARK chains (PEM) for SEV-SNP reports whose VcekCertChain holds only the VCEK. */
  readonly amdChains?: readonly string[];
  /**
   * Where the signing key is kept, sealed to this TEE's signer, so a restart keeps signing with the same key
   * and tokens issued before it stay verifiable. Without it a new key is made at every start.
   */
  readonly signingKeyFile?: string;
  /** Token lifetime in seconds (default 3600). */
  readonly tokenLifetimeSeconds?: number;
  /** The clock (tests freeze it). */
  readonly now?: () => Date;
  readonly logger?: FastifyServerOptions["logger"];
  /** Browser origins allowed to call this service (the portal's). */
  readonly corsOrigins?: readonly string[];
  /**
   * Shed load by event-loop delay: over this many ms in two 0.5 s windows running, requests get 503
   * ERR_OVERLOADED with Retry-After. main.ts sets it from CLOISTER_MAX_EVENT_LOOP_DELAY_MS (default 200);
   * in-process tests leave it off, since their own work shares the loop.
   */
  readonly maxEventLoopDelayMs?: number;
  /** TLS certificate and key (PEM); main.ts always sets them. */
  readonly https?: { readonly cert: string | Buffer; readonly key: string | Buffer };
  /**
   * The other replicas (peers.ts): each serves every replica's signing key and the newest policies. Without
   * it, the service runs as one replica.
   */
  readonly peers?: PeersConfig;
}

export interface AttestationServiceExtras {
  /** Signs new tokens with a new key; old public keys stay in /certs until their tokens have expired. */
  readonly rotateSigningKey: () => Promise<void>;
  /** Reads the other replicas now, without waiting for the next round (no-op as one replica). */
  readonly syncPeers: () => Promise<void>;
}

declare module "fastify" {
  interface FastifyInstance {
    attestationService: AttestationServiceExtras;
  }
}

function isAttestationType(value: string): value is AttestationType {
  return (attestationTypes as readonly string[]).includes(value);
}

/** Builds the app (tests call `inject`); `main.ts` listens. */
export async function buildApp(config: AttestationServiceConfig): Promise<FastifyInstance> {
  const now = config.now ?? ((): Date => new Date());
  const lifetime = config.tokenLifetimeSeconds ?? 3600;
  const issuer = config.issuer.replace(/\/$/, "");
  const policies = new PolicyStore(config.policyMode, config.policySigners ?? []);
  const declared = new Set<AttestationType>();
  for (const [type, envelope] of Object.entries(config.declaredPolicies ?? {})) {
    if (!isAttestationType(type)) {
      throw new ServiceError(
        "ERR_NOT_FOUND",
        `no attestation type ${JSON.stringify(type)} to declare a policy for`,
      );
    }
    try {
      await policies.set(type, envelope.trim());
    } catch (error) {
      throw new Error(
        `the declared ${type} policy is refused (${error instanceof ServiceError ? `${error.code}: ${error.message}` : "unreadable"})`,
        { cause: error },
      );
    }
    declared.add(type);
  }
  /** Refuses API changes to a type whose policy is declared in configuration. */
  const mayChangePolicy = (type: AttestationType): void => {
    if (declared.has(type)) {
      throw new ServiceError(
        "ERR_POLICY_DECLARED",
        `the ${type} policy is set by configuration (CLOISTER_POLICIES_DIR): change it there`,
      );
    }
  };
  const collateral = new CollateralStore({
    ...(config.collateralDirectory === undefined ? {} : { directory: config.collateralDirectory }),
    ...(config.simulationPlatform === undefined ? {} : { simulationPlatform: config.simulationPlatform }),
    ...(config.pccs === undefined ? {} : { pccs: new PccsClient(config.pccs) }),
  });
  const ownEvidence = async (runtimeData: Uint8Array): Promise<Uint8Array> => {
    const evidence = await config.provider.getEvidence(runtimeData);
    return evidence.type === "sevsnp" ? evidence.report : evidence.quote;
  };
  const keyFile = config.signingKeyFile;
  const sealingKey =
    keyFile === undefined ? undefined : await config.provider.sealingKey("attestation-signing-key", "signer");
  const persist = (key: SigningKey): void => {
    if (keyFile === undefined || sealingKey === undefined) {
      return;
    }
    const temporary = `${keyFile}.${randomBytes(6).toString("hex")}.tmp`;
    writeFileSync(temporary, sealSigningKey(key, sealingKey), { mode: 0o600 });
    renameSync(temporary, keyFile);
  };
  let kept: SigningKey | undefined;
  if (keyFile !== undefined && sealingKey !== undefined && existsSync(keyFile)) {
    try {
      const opened = openSigningKey(readFileSync(keyFile), sealingKey);
      // A key whose certificate has less than 30 days left is replaced.
      if (signingKeyNotAfter(opened).getTime() - now().getTime() > 30 * 24 * 3600 * 1000) {
        kept = opened;
      }
    } catch {
      // Sealed by another signer or damaged: a new key is made below (a rotation).
    }
  }
  // A kept key gets its certificate issued again, so the evidence in it is this start's (after an upgrade,
  // the new code's), while its kid, and so every token it signed, stays the same.
  // The file keeps the key's first certificate, whose expiry (a year after the key was made) bounds the
  // key's life: with less than 30 days left a new key is made at start.
  let signingKey: SigningKey = await createSigningKey(ownEvidence, now(), kept?.privateKey);
  if (kept === undefined) {
    persist(signingKey);
  }
  const retiredKeys: SigningKey[] = [];
  const verificationCache = createVerificationCache();

  const { app, registry } = createServiceApp({
    logger: config.logger,
    bodyLimit: 1024 * 1024,
    ...(config.maxEventLoopDelayMs === undefined
      ? {}
      : {
          loadShedding: {
            maxEventLoopDelayMs: config.maxEventLoopDelayMs,
            overloaded: () => new ServiceError("ERR_OVERLOADED", "the service is overloaded; retry later"),
          },
        }),
    ...(config.https === undefined ? {} : { https: config.https }),
    ...(config.corsOrigins === undefined ? {} : { corsOrigins: config.corsOrigins }),
  });
  new Gauge({
    name: "attestation_collateral_next_update_timestamp_seconds",
    help: "The earliest nextUpdate of the TCB collateral served (Unix seconds); renew before it passes",
    registers: [registry],
    collect() {
      const earliest = collateral.earliestNextUpdate();
      if (earliest !== undefined) {
        this.set(earliest / 1000);
      }
    },
  });
  const results = new Counter({
    name: "attestation_results_total",
    help: "Attestation requests by attestation type and outcome code",
    labelNames: ["type", "outcome"],
    registers: [registry],
  });
  // The policy in force per attestation type, and when it was set: replicas keep the newest.
  const policyVersions = new Map<AttestationType, PolicyVersion>();
  const ownKeys = async (): Promise<PeerKey[]> => {
    const current = now().getTime();
    const live = retiredKeys.filter((key) => (key.retiredAt?.getTime() ?? 0) + lifetime * 1000 > current);
    return Promise.all([
      jwkFor(signingKey).then((jwk) => ({ jwk, expiresAt: current + lifetime * 1000 })),
      ...live.map(async (key) => ({
        jwk: await jwkFor(key),
        expiresAt: (key.retiredAt?.getTime() ?? 0) + lifetime * 1000,
      })),
    ]);
  };
  const peers = config.peers === undefined ? undefined : await peerSync(config.peers);

  async function peerSync(peersConfig: PeersConfig): Promise<PeerSync> {
    const evidenceContext = (): Parameters<typeof verifyIntelEvidence>[1] => ({
      now: now(),
      collateral,
      simulationPlatform: config.simulationPlatform,
      verificationCache,
    });
    // This replica's own evidence, verified as a peer's will be: what every peer's evidence must match.
    const ownQuote = parseCertificate(Buffer.from(signingKey.certificateBase64, "base64")).extensions.get(
      evidenceExtensionOid,
    )?.value;
    let identity: ReturnType<typeof serviceIdentity>;
    try {
      if (ownQuote === undefined) {
        throw new ServiceError("ERR_EVIDENCE_INVALID", "no evidence in the signing key's certificate");
      }
      identity = serviceIdentity(await verifyIntelEvidence(ownQuote, evidenceContext()));
    } catch (error) {
      throw new Error(
        `replicas need this replica's own SGX or TDX evidence to verify here (${error instanceof ServiceError ? error.code : "unreadable"})`,
        { cause: error },
      );
    }
    const refused = new Counter({
      name: "attestation_peer_refused_total",
      help: "Signing keys and policies of other replicas refused, by kind",
      labelNames: ["kind"],
      registers: [registry],
    });
    const sync: PeerSync = new PeerSync({
      config: peersConfig,
      ownKeys,
      verifyKey: (jwk) =>
        verifyPeerSigningKey(jwk, identity, (quote) => verifyIntelEvidence(quote, evidenceContext()), now()),
      policies: {
        versions: () => policyVersions,
        // A declared policy is this replica's configuration, the same on every replica: never replaced by a peer.
        manages: (type) => !declared.has(type),
        apply: async (type, version) => {
          if (version.envelope === null) {
            policies.reset(type);
          } else {
            await policies.set(type, version.envelope);
          }
          policyVersions.set(type, version);
        },
      },
      lifetimeMs: lifetime * 1000,
      now,
      log: app.log,
      onRefused: (kind) => {
        refused.inc({ kind });
      },
    });
    new Gauge({
      name: "attestation_peer_signing_keys",
      help: "Other replicas' signing keys this replica serves at /certs",
      registers: [registry],
      collect() {
        this.set(sync.keys().length);
      },
    });
    app.addHook("onReady", async () => {
      sync.start();
    });
    app.addHook("onClose", async () => {
      await sync.stop();
    });
    return sync;
  }

  app.decorate("attestationService", {
    rotateSigningKey: async () => {
      signingKey.retiredAt = now();
      retiredKeys.push(signingKey);
      signingKey = await createSigningKey(ownEvidence, now());
      persist(signingKey);
    },
    syncPeers: async () => {
      await peers?.pullOnce();
    },
  });

  app.setErrorHandler(async (error, request, reply) => {
    let failure: ServiceError;
    if (error instanceof ServiceError) {
      failure = error;
    } else if (isClientError(error)) {
      // Fastify's own messages may quote the body: answer with a fixed one.
      failure = new ServiceError("ERR_BAD_REQUEST", "the request body is not acceptable JSON");
    } else {
      request.log.error({ errorName: error instanceof Error ? error.name : "unknown" }, "unexpected failure");
      failure = new ServiceError("ERR_INTERNAL", "the request could not be handled");
    }
    return reply
      .status(failure.status)
      .header("x-ms-error-code", failure.code)
      .send({ error: { code: failure.code, message: failure.message } });
  });
  app.setNotFoundHandler(async (_request, reply) =>
    reply
      .status(404)
      .header("x-ms-error-code", "ERR_NOT_FOUND")
      .send({ error: { code: "ERR_NOT_FOUND", message: "no such route" } }),
  );

  app.post<{ Params: { type: string } }>("/attest/:type", async (request) => {
    const { type } = request.params;
    if (!isAttestationType(type)) {
      throw new ServiceError(
        "ERR_NOT_FOUND",
        `unknown attestation type ${JSON.stringify(type.slice(0, 40))}`,
      );
    }
    try {
      const token = await attest(type, parseAttestRequest(type, request.body), {
        now: now(),
        issuer,
        signingKey,
        tokenLifetimeSeconds: lifetime,
        policy: policies.get(type),
        collateral,
        simulationPlatform: config.simulationPlatform,
        amdChains: config.amdChains ?? [],
        verificationCache,
      });
      results.inc({ type, outcome: "OK" });
      return { token };
    } catch (error) {
      const outcome = error instanceof ServiceError ? (error.attestationCode ?? error.code) : "ERR_INTERNAL";
      results.inc({ type, outcome });
      throw error;
    }
  });

  app.get("/certs", async () => ({
    keys: [...(await ownKeys()).map((key) => key.jwk), ...(peers?.keys() ?? [])],
  }));

  if (peers !== undefined) {
    // What replicas exchange: public keys with their evidence, and policy envelopes (signed in production).
    app.get("/peers/state", async () => peers.state());
  }

  app.get("/.well-known/openid-configuration", async () => ({
    response_types_supported: ["token", "none"],
    id_token_signing_alg_values_supported: ["RS256"],
    revocation_endpoint: `${issuer}/revoke`,
    issuer,
    jwks_uri: `${issuer}/certs`,
    claims_supported: [
      "cnf",
      "nonce",
      "x-ms-ver",
      "x-ms-attestation-type",
      "x-ms-policy-hash",
      "x-ms-sgx-is-debuggable",
      "x-ms-sgx-mrenclave",
      "x-ms-sgx-mrsigner",
      "x-ms-sgx-svn",
      "x-ms-sgx-product-id",
      "x-ms-sgx-report-data",
      "x-ms-sgx-ehd",
      "x-ms-sgx-collateral",
      "x-ms-runtime",
      "x-ms-inittime",
      "is-debuggable",
      "sgx-mrsigner",
      "sgx-mrenclave",
      "product-id",
      "svn",
      "tee",
    ],
  }));

  /** MAA answers policy reads as a token whose `x-ms-policy` is the base64url policy text. */
  const policyToken = async (type: AttestationType): Promise<{ token: string }> => {
    const policy = policies.get(type);
    return {
      token: await issueAttestationToken(
        {
          "x-ms-policy": Buffer.from(policy.text).toString("base64url"),
          "x-ms-policy-hash": policyHash(policy.text),
        },
        {
          privateKey: signingKey.privateKey,
          kid: signingKey.kid,
          issuer,
          jku: `${issuer}/certs`,
          lifetimeSeconds: lifetime,
        },
        { now: now() },
      ),
    };
  };

  app.get<{ Params: { type: string } }>("/policies/:type", async (request) => {
    const type = request.params.type.replace(/:reset$/, "");
    if (!isAttestationType(type)) {
      throw new ServiceError("ERR_NOT_FOUND", "unknown attestation type");
    }
    return policyToken(type);
  });

  app.put<{ Params: { type: string } }>("/policies/:type", async (request) => {
    const { type } = request.params;
    if (!isAttestationType(type)) {
      throw new ServiceError("ERR_NOT_FOUND", "unknown attestation type");
    }
    const body = request.body;
    const envelope = typeof body === "string" ? body : (body as { policy?: unknown } | null)?.policy;
    if (typeof envelope !== "string") {
      throw new ServiceError("ERR_BAD_REQUEST", "the body must be the policy JWS (or {policy: JWS})");
    }
    mayChangePolicy(type);
    await policies.set(type, envelope.trim());
    policyVersions.set(type, { envelope: envelope.trim(), setAt: now().getTime() });
    request.log.info({ attestationType: type }, "attestation policy replaced");
    return policyToken(type);
  });

  app.post<{ Params: { type: string } }>("/policies/:type", async (request) => {
    const match = /^(.+):reset$/.exec(request.params.type);
    if (match === null || !isAttestationType(match[1] ?? "")) {
      throw new ServiceError("ERR_NOT_FOUND", "use POST /policies/{attestationType}:reset");
    }
    const type = match[1] as AttestationType;
    mayChangePolicy(type);
    policies.reset(type);
    policyVersions.set(type, { envelope: null, setAt: now().getTime() });
    request.log.info({ attestationType: type }, "attestation policy reset");
    return policyToken(type);
  });

  app.addContentTypeParser("text/plain", { parseAs: "string" }, (_request, body, done) => {
    done(null, body);
  });

  // With replicas, ready (and so handed requests) only once every replica that answers serves this one's
  // key: a token it signs then verifies against the key set from any of them.
  app.get("/readyz", async (_request, reply) => {
    if (peers !== undefined && !peers.ready) {
      return reply.status(503).send({ status: "waiting for the other replicas", signingKey: signingKey.kid });
    }
    return { status: "ready", signingKey: signingKey.kid };
  });
  return app;
}

export { serviceErrors, ServiceError, type ServiceErrorCode } from "./errors.js";
export { defaultPolicy, type AttestationType, type PolicyMode } from "./policies.js";
export { kidFor, evidenceExtensionOid } from "./signing-key.js";
