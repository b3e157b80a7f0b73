// Runs the key broker over HTTPS. Configuration is read once, here, from the environment:
//   CLOISTER_KEY_BROKER_PORT      default 7444 (on 127.0.0.1 unless CLOISTER_LISTEN_HOST is set)
//   CLOISTER_TLS_CERT, CLOISTER_TLS_KEY   PEM files (required)
//   CLOISTER_KEY_BROKER_ADMIN_TOKEN_FILE  file holding the admin bearer token (required)
//   CLOISTER_TEE_PROVIDER         sim (default), gramine (SGX under Gramine) or tsm (TDX / SEV-SNP via configfs-tsm)
//   CLOISTER_DATA_DIR             holds the simulation platform and keys/ (default .cloister)
//   CLOISTER_AUTHORITY_CA         PEM file of the CA to trust for authorities' key sets and the attestation service
//   CLOISTER_ATTESTATION_URL      the attestation service this broker attests with at start (required): its token
//                                 binds the key that signs release answers, and workloads verify it (GET /attestation)
//   CLOISTER_MAX_EVENT_LOOP_DELAY_MS  shed requests (503 ERR_OVERLOADED) when the event loop is this late, ms (default 200)
//   CLOISTER_RECOVERY_CUSTODIANS_FILE  JWK Set of the recovery custodians' public keys (measured under Gramine)
//   CLOISTER_RECOVERY_QUORUM       shares needed to restore (default 2)
//   CLOISTER_RECOVERY_BACKUP_FILE  where each backup is written (default CLOISTER_DATA_DIR/key-broker-backup.json)
//   CLOISTER_POLICY_APPROVERS_FILE JWK Set of the policy approvers' public keys (measured under Gramine): creating
//                                  a key, replacing a release policy and destroying a version then need approvals
//   CLOISTER_POLICY_APPROVAL_QUORUM approvals needed per change (default 2)
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { attestAtStart, retryAtStart, serviceTee } from "@cloister/enclave";
import { buildApp, createBrokerSigningKey } from "./app.js";
import { approvalConfigFromEnv } from "./approvals.js";
import { recoveryConfigFromEnv } from "./recovery-routes.js";
import { closeOnSignals, requiredEnv } from "@cloister/service-kit";

const port = Number.parseInt(process.env.CLOISTER_KEY_BROKER_PORT ?? "7444", 10);
const dataDirectory = resolve(process.env.CLOISTER_DATA_DIR ?? ".cloister");
const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const provider = serviceTee(repositoryRoot, "key-broker", dataDirectory);
const authorityCa = process.env.CLOISTER_AUTHORITY_CA;
const recovery = recoveryConfigFromEnv(
  process.env,
  (path) => readFileSync(path, "utf8"),
  join(dataDirectory, "key-broker-backup.json"),
);
const approvals = approvalConfigFromEnv(process.env, (path) => readFileSync(path, "utf8"));
// The key that signs release answers is made here, in the TEE, and bound into this broker's evidence.
const signing = await createBrokerSigningKey();
const attestation = await retryAtStart("the attestation service", () =>
  attestAtStart({
    provider,
    attestationService: {
      url: requiredEnv("CLOISTER_ATTESTATION_URL"),
      ...(authorityCa === undefined ? {} : { ca: readFileSync(authorityCa, "utf8") }),
    },
    runtime: { service: "key-broker" },
    boundKeys: [signing.publicJwk],
  }),
);
const app = await buildApp({
  identity: { signing, token: attestation.token },
  maxEventLoopDelayMs: Number(process.env.CLOISTER_MAX_EVENT_LOOP_DELAY_MS ?? 200),
  provider,
  dataDirectory: join(dataDirectory, "keys"),
  adminToken: readFileSync(requiredEnv("CLOISTER_KEY_BROKER_ADMIN_TOKEN_FILE"), "utf8").trim(),
  ...(authorityCa === undefined ? {} : { authorityCa: readFileSync(authorityCa, "utf8") }),
  ...(recovery === undefined ? {} : { recovery }),
  ...(approvals === undefined ? {} : { approvals }),
  logger: { level: process.env.CLOISTER_LOG_LEVEL ?? "info" },
  https: {
    cert: readFileSync(requiredEnv("CLOISTER_TLS_CERT")),
    key: readFileSync(requiredEnv("CLOISTER_TLS_KEY")),
  },
});
if (recovery === undefined) {
  app.log.warn(
    "no recovery custodians (CLOISTER_RECOVERY_CUSTODIANS_FILE): the keys are sealed to this node's CPU, and a lost node loses every key",
  );
}
if (approvals === undefined) {
  app.log.warn(
    "no policy approvers (CLOISTER_POLICY_APPROVERS_FILE): the admin token alone may change release policies and destroy key versions",
  );
} else {
  app.log.info(
    { approvers: approvals.approvers.length, quorum: approvals.quorum },
    "release policy changes and version destruction need approvals",
  );
}
closeOnSignals(app);
await app.listen({ port, host: process.env.CLOISTER_LISTEN_HOST ?? "127.0.0.1" });
