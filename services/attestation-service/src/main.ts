// Runs the attestation service over HTTPS. Configuration is read once, here, from the environment:
//   CLOISTER_ATTESTATION_URL     public URL (issuer), default https://127.0.0.1:<port>
//   CLOISTER_ATTESTATION_PORT    default 7443 (listens on 127.0.0.1 unless CLOISTER_LISTEN_HOST is set)
//   CLOISTER_TLS_CERT, CLOISTER_TLS_KEY   PEM files (required: the service only speaks TLS)
//   CLOISTER_POLICY_MODE         "production" (default) or "dev"; dev accepts debuggable evidence
//   CLOISTER_TEE_PROVIDER        sim (default), gramine (SGX under Gramine) or tsm (TDX / SEV-SNP via configfs-tsm)
//   CLOISTER_DATA_DIR            holds the simulation platform (sim-platform.json), default .cloister
//   CLOISTER_TRUST_SIMULATION    "1" to trust that platform's root (the dev stack), never by default
//   CLOISTER_COLLATERAL_DIR      folder of Intel collateral bundles
//   CLOISTER_PCCS_URL            Intel PCS or PCCS (API v4) base URL for collateral the folder lacks
//   CLOISTER_POLICY_SIGNERS      file with PEM certificates allowed to sign policies
//   CLOISTER_POLICIES_DIR        folder of declared policies, <attestation type>.jws each (MAA policy envelopes,
//                                signed by a policy signer outside dev mode): applied at start, or the service does
//                                not start; those types then change only there (the API answers ERR_POLICY_DECLARED)
//   CLOISTER_TOKEN_LIFETIME      seconds, default 3600
//   CLOISTER_SIGNING_KEY_FILE    the sealed token-signing key (default <data dir>/attestation-signing-key.sealed)
//   CLOISTER_CORS_ORIGINS        comma-separated browser origins allowed to call it (the portal)
//   CLOISTER_MAX_EVENT_LOOP_DELAY_MS  shed requests (503 ERR_OVERLOADED) when the event loop is this late, ms (default 200)
//   CLOISTER_PEERS               a DNS name that resolves to every replica's address (a headless Service that lists
//                                replicas before they are ready); unset: the service runs as one replica
//   CLOISTER_PEERS_TLS_NAME      the name the replicas' TLS certificates carry (they are reached by address)
//   CLOISTER_CA                  the CA of the replicas' TLS certificates
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadSimulationPlatform, pemBlocks, toPem } from "@cloister/attestation";
import { serviceTee } from "@cloister/enclave";
import { buildApp } from "./app.js";
import { readDeclaredPolicies } from "./policies.js";
import { closeOnSignals, requiredEnv } from "@cloister/service-kit";

const port = Number.parseInt(process.env.CLOISTER_ATTESTATION_PORT ?? "7443", 10);
const host = process.env.CLOISTER_LISTEN_HOST ?? "127.0.0.1";
const policyMode = process.env.CLOISTER_POLICY_MODE === "dev" ? "dev" : "production";
const dataDirectory = resolve(process.env.CLOISTER_DATA_DIR ?? ".cloister");
const serviceRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const provider = serviceTee(serviceRoot, "attestation-service", dataDirectory);
const signersFile = process.env.CLOISTER_POLICY_SIGNERS;
const peersName = process.env.CLOISTER_PEERS;
const policiesDirectory = process.env.CLOISTER_POLICIES_DIR;
const app = await buildApp({
  maxEventLoopDelayMs: Number(process.env.CLOISTER_MAX_EVENT_LOOP_DELAY_MS ?? 200),
  issuer: process.env.CLOISTER_ATTESTATION_URL ?? `https://127.0.0.1:${port}`,
  provider,
  policyMode,
  ...(process.env.CLOISTER_TRUST_SIMULATION === "1"
    ? { simulationPlatform: loadSimulationPlatform(dataDirectory) }
    : {}),
  ...(process.env.CLOISTER_COLLATERAL_DIR === undefined
    ? {}
    : { collateralDirectory: process.env.CLOISTER_COLLATERAL_DIR }),
  ...(policiesDirectory === undefined || policiesDirectory === ""
    ? {}
    : { declaredPolicies: readDeclaredPolicies(policiesDirectory) }),
  ...(signersFile === undefined
    ? {}
    : { policySigners: pemBlocks(readFileSync(signersFile, "utf8")).map((der) => toPem(der)) }),
  ...(process.env.CLOISTER_PCCS_URL === undefined
    ? {}
    : { pccs: { baseUrl: process.env.CLOISTER_PCCS_URL } }),
  signingKeyFile:
    process.env.CLOISTER_SIGNING_KEY_FILE ?? join(dataDirectory, "attestation-signing-key.sealed"),
  tokenLifetimeSeconds: Number.parseInt(process.env.CLOISTER_TOKEN_LIFETIME ?? "3600", 10),
  logger: { level: process.env.CLOISTER_LOG_LEVEL ?? "info" },
  corsOrigins: (process.env.CLOISTER_CORS_ORIGINS ?? "").split(",").filter((origin) => origin.length > 0),
  https: {
    cert: readFileSync(requiredEnv("CLOISTER_TLS_CERT")),
    key: readFileSync(requiredEnv("CLOISTER_TLS_KEY")),
  },
  ...(peersName === undefined || peersName === ""
    ? {}
    : {
        peers: {
          resolve: async () =>
            (await lookup(peersName, { all: true })).map(({ address, family }) =>
              family === 6 ? `https://[${address}]:${port}` : `https://${address}:${port}`,
            ),
          ...(process.env.CLOISTER_CA === undefined
            ? {}
            : { ca: readFileSync(process.env.CLOISTER_CA, "utf8") }),
          servername: requiredEnv("CLOISTER_PEERS_TLS_NAME"),
        },
      }),
});
closeOnSignals(app);
await app.listen({ port, host });
app.log.info(
  { policyMode, trustsSimulation: process.env.CLOISTER_TRUST_SIMULATION === "1" },
  "attestation service ready",
);
