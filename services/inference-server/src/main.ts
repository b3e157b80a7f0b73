// Runs the inference server over HTTPS. Configuration is read once, here, from the environment:
//   CLOISTER_INFERENCE_PORT         default 7445 (on 127.0.0.1 unless CLOISTER_LISTEN_HOST is set)
//   CLOISTER_TLS_CERT, CLOISTER_TLS_KEY   PEM files (required)
//   CLOISTER_TEE_PROVIDER           sim (default), gramine (SGX under Gramine) or tsm (TDX / SEV-SNP via configfs-tsm)
//   CLOISTER_DATA_DIR               holds the simulation platform (default .cloister)
//   CLOISTER_MODEL_REPOSITORY       <model>/<version>/… folders (default models/repository)
//   CLOISTER_ATTESTATION_URL        the attestation service (required); CLOISTER_ATTESTATION_ISSUER if it differs
//   CLOISTER_CA                     PEM file of the CA for the attestation service and key broker (dev CA)
//   CLOISTER_KEY_BROKER_URL         releases "inference-ohttp", the OHTTP key every replica shares (without it, or
//                                   without that key, each replica makes its own: run one replica then),
//                                   and the keys of encrypted models
//   CLOISTER_KEY_BROKER_SIGNERS, CLOISTER_KEY_BROKER_MEASUREMENTS   who the key broker must be (one is required with
//                                   CLOISTER_KEY_BROKER_URL): its attestation is verified before any key is taken
//   CLOISTER_PEER_ALLOW_SIMULATION, CLOISTER_PEER_ALLOW_DEBUG   "true" for the dev stack only (the key broker)
//   CLOISTER_CALLER_MEASUREMENTS    comma-separated allowed caller measurements (hex), or "any" (required)
//   CLOISTER_CALLER_ALLOW_SIMULATION, CLOISTER_CALLER_ALLOW_DEBUG   "true" for the dev stack only
//   CLOISTER_MAX_EVENT_LOOP_DELAY_MS  shed requests (503 ERR_OVERLOADED) when the event loop is this late, ms (default 500)
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  attestAtStart,
  keyBrokerExpectationsFromEnv,
  PeerVerifier,
  releaseKey,
  logSharedOhttpKey,
  releaseSharedOhttpKey,
  retryAtStart,
  serviceTee,
} from "@cloister/enclave";
import { buildApp } from "./app.js";
import { loadModel, modelMeasurements, scanModelRepository } from "./model-repository.js";
import { closeOnSignals, requiredEnv } from "@cloister/service-kit";

const repositoryRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
const port = Number.parseInt(process.env.CLOISTER_INFERENCE_PORT ?? "7445", 10);
const dataDirectory = resolve(process.env.CLOISTER_DATA_DIR ?? ".cloister");
const ca = process.env.CLOISTER_CA === undefined ? undefined : readFileSync(process.env.CLOISTER_CA, "utf8");
const attestationUrl = requiredEnv("CLOISTER_ATTESTATION_URL");
const callerMeasurements = requiredEnv("CLOISTER_CALLER_MEASUREMENTS");

const provider = serviceTee(repositoryRoot, "inference-server", dataDirectory);

// Hash every model first, so exactly these bytes are bound into the evidence.
const entries = scanModelRepository(
  resolve(process.env.CLOISTER_MODEL_REPOSITORY ?? resolve(repositoryRoot, "models/repository")),
);
const keyBrokerUrl = process.env.CLOISTER_KEY_BROKER_URL;
const attestationServiceClient = {
  url: attestationUrl,
  ...(process.env.CLOISTER_ATTESTATION_ISSUER === undefined
    ? {}
    : { issuer: process.env.CLOISTER_ATTESTATION_ISSUER }),
  ...(ca === undefined ? {} : { ca }),
};
const broker =
  keyBrokerUrl === undefined
    ? undefined
    : {
        url: keyBrokerUrl,
        ...(ca === undefined ? {} : { ca }),
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
    attestationService: { url: attestationUrl, ...(ca === undefined ? {} : { ca }) },
    runtime: { models: modelMeasurements(entries) },
    ...(broker === undefined
      ? {}
      : {
          // One OHTTP key for every replica, so the platform's requests may reach any of them.
          sharedOhttpKey: async ({ token, releasePrivateKey }) => {
            const shared = await retryAtStart("the key broker", () =>
              releaseSharedOhttpKey(broker, "inference-ohttp", token, releasePrivateKey),
            );
            ohttpKey.shared = shared !== undefined;
            return shared;
          },
        }),
  }),
);
const models = await Promise.all(
  entries.map((entry) =>
    loadModel(entry, {
      ...(broker === undefined
        ? {}
        : {
            releaseModelKey: async (keyName: string) =>
              retryAtStart("the key broker", () =>
                releaseKey(broker, keyName, attestation.token(), attestation.keys.release.privateKey),
              ),
          }),
    }),
  ),
);
const callers = new PeerVerifier({
  attestationService: attestationServiceClient,
  expectations: {
    measurements: callerMeasurements === "any" ? "any" : callerMeasurements.split(",").map((m) => m.trim()),
    allowSimulation: process.env.CLOISTER_CALLER_ALLOW_SIMULATION === "true",
    allowDebug: process.env.CLOISTER_CALLER_ALLOW_DEBUG === "true",
  },
});
const app = await buildApp({
  maxEventLoopDelayMs: Number(process.env.CLOISTER_MAX_EVENT_LOOP_DELAY_MS ?? 500),
  attestation,
  models,
  callers,
  logger: { level: process.env.CLOISTER_LOG_LEVEL ?? "info" },
  https: {
    cert: readFileSync(requiredEnv("CLOISTER_TLS_CERT")),
    key: readFileSync(requiredEnv("CLOISTER_TLS_KEY")),
  },
});
logSharedOhttpKey(app.log, "inference-ohttp", ohttpKey.shared, attestation.keys);
app.addHook("onClose", async () => {
  attestation.stop();
});
closeOnSignals(app);
await app.listen({ port, host: process.env.CLOISTER_LISTEN_HOST ?? "127.0.0.1" });
