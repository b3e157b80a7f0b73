// For tests and benchmarks: an attestation service, an attested "platform" caller and the inference
// server, each over HTTPS on loopback in this process, with a fresh simulation platform and dev CA.
import type { Writable } from "node:stream";
import { buildApp as buildAttestationService } from "@cloister/attestation-service";
import { createSimulationPlatform, type SimulationPlatform } from "@cloister/attestation";
import {
  attestAtStart,
  connectConfidentialService,
  createDevCertificateAuthority,
  issueServerCertificate,
  PeerVerifier,
  simulationProvider,
  type Attestation,
  type AttestAtStartOptions,
  type ConfidentialService,
} from "@cloister/enclave";
import { listenOnLoopback } from "@cloister/service-kit";
import type { FastifyInstance } from "fastify";
import { buildApp, type InferenceServerConfig } from "../app.js";
import {
  loadModel,
  modelMeasurements,
  scanModelRepository,
  type LoadedModel,
  type LoadOptions,
} from "../model-repository.js";

export const platformMeasurement = "a1".repeat(32);
export const inferenceMeasurement = "b2".repeat(32);
export const defaultModelRepository = new URL("../../../../models/repository", import.meta.url).pathname;

export interface ConfidentialStack {
  readonly platform: SimulationPlatform;
  readonly caPem: string;
  readonly tls: { cert: string; key: string };
  readonly attestationUrl: string;
  readonly attestationService: FastifyInstance;
  readonly inferenceUrl: string;
  readonly inference: FastifyInstance;
  readonly inferenceAttestation: Attestation;
  /** The calling platform's own attestation (measurement `platformMeasurement`). */
  readonly caller: Attestation;
  readonly models: readonly LoadedModel[];
  /** A confidential client as the platform uses it. */
  readonly client: ConfidentialService;
  /** Attests another workload with this measurement (for callers the policy must refuse). */
  readonly attestWorkload: (mrenclave: string) => Promise<Attestation>;
  /** Stops the inference server as a crash would (its key is gone), and starts a new one on the same port. */
  readonly stopInference: () => Promise<void>;
  readonly startInference: () => Promise<void>;
  /** Another replica of the inference server (attested on its own), on its own port. */
  readonly startInferenceReplica: () => Promise<{ readonly url: string; readonly attestation: Attestation }>;
  readonly close: () => Promise<void>;
}

export interface LoadContext {
  readonly attestation: Attestation;
  readonly attestationUrl: string;
  readonly caPem: string;
  readonly tls: { cert: string; key: string };
  readonly platform: SimulationPlatform;
}

export interface StackOptions {
  readonly modelRepository?: string;
  readonly logStream?: Writable;
  /** Options for loading models (encrypted ones need a key broker), made once the services are up. */
  readonly load?: (context: LoadContext) => Promise<LoadOptions>;
  readonly server?: Partial<Pick<InferenceServerConfig, "maxInFlight" | "replayWindowMs" | "clockSkewMs">>;
  /**
   * How the inference server's replicas get their shared OHTTP key (a key broker, made once the attestation
   * service is up); without it each makes its own.
   */
  readonly sharedOhttpKey?: (
    context: Omit<LoadContext, "attestation">,
  ) => Promise<NonNullable<AttestAtStartOptions["sharedOhttpKey"]>>;
}

/** Starts the three services; on any failure, whatever already started is closed again. */
export async function startConfidentialStack(options: StackOptions = {}): Promise<ConfidentialStack> {
  const closers: (() => unknown)[] = [];
  try {
    return await buildStack(options, closers);
  } catch (error) {
    for (const close of closers.reverse()) {
      await close();
    }
    throw error;
  }
}

async function buildStack(options: StackOptions, closers: (() => unknown)[]): Promise<ConfidentialStack> {
  const platform = createSimulationPlatform();
  const authority = createDevCertificateAuthority("Cloister Inference Test CA");
  const tls = issueServerCertificate(authority, { ips: ["127.0.0.1"], dnsNames: ["localhost"] });
  const caPem = authority.certificatePem;
  const identity = (mrenclave: string, productId: number): Parameters<typeof simulationProvider>[1] => ({
    mrenclave,
    mrsigner: "51".repeat(32),
    productId,
    svn: 1,
  });
  const { app: attestationService, url: attestationUrl } = await listenOnLoopback((issuer) =>
    buildAttestationService({
      issuer,
      provider: simulationProvider(platform, identity("5e".repeat(32), 1)),
      policyMode: "dev",
      simulationPlatform: platform,
      https: tls,
    }),
  );
  closers.push(() => attestationService.close());
  const attestWorkload = async (mrenclave: string): Promise<Attestation> => {
    const attestation = await attestAtStart({
      provider: simulationProvider(platform, identity(mrenclave, 4)),
      attestationService: { url: attestationUrl, ca: caPem },
    });
    closers.push(() => {
      attestation.stop();
    });
    return attestation;
  };
  const caller = await attestWorkload(platformMeasurement);

  const entries = scanModelRepository(options.modelRepository ?? defaultModelRepository);
  const sharedOhttpKey = await options.sharedOhttpKey?.({ attestationUrl, caPem, tls, platform });
  const attestInference = (): Promise<Attestation> =>
    attestAtStart({
      provider: simulationProvider(platform, identity(inferenceMeasurement, 3)),
      attestationService: { url: attestationUrl, ca: caPem },
      runtime: { models: modelMeasurements(entries) },
      ...(sharedOhttpKey === undefined ? {} : { sharedOhttpKey }),
    });
  const inferenceAttestation = await attestInference();
  closers.push(() => {
    inferenceAttestation.stop();
  });
  const loadOptions =
    (await options.load?.({ attestation: inferenceAttestation, attestationUrl, caPem, tls, platform })) ?? {};
  const models = await Promise.all(entries.map((entry) => loadModel(entry, loadOptions)));
  const callers = new PeerVerifier({
    attestationService: { url: attestationUrl, ca: caPem },
    expectations: { measurements: [platformMeasurement], allowSimulation: true, allowDebug: true },
  });
  const serve = async (
    attestation: Attestation,
    port?: number,
  ): Promise<{ app: FastifyInstance; url: string }> => {
    const build = async (): Promise<FastifyInstance> =>
      buildApp({
        attestation,
        models,
        callers,
        https: tls,
        ...(options.logStream === undefined ? {} : { logger: { level: "info", stream: options.logStream } }),
        ...options.server,
      });
    if (port === undefined) {
      return listenOnLoopback(build);
    }
    const app = await build();
    await app.listen({ port, host: "127.0.0.1" });
    return { app, url: `https://127.0.0.1:${port}` };
  };
  let { app: inference, url: inferenceUrl } = await serve(inferenceAttestation);
  let running = true;
  closers.push(async () => {
    if (running) {
      await inference.close();
    }
  });
  const stopInference = async (): Promise<void> => {
    running = false;
    await inference.close();
  };
  const startInference = async (): Promise<void> => {
    // A restarted server attests again, on the same port, with a new OHTTP key (or the shared one).
    const fresh = await attestInference();
    closers.push(() => {
      fresh.stop();
    });
    ({ app: inference, url: inferenceUrl } = await serve(fresh, Number(new URL(inferenceUrl).port)));
    running = true;
  };
  const client = await connectConfidentialService({
    url: inferenceUrl,
    ca: caPem,
    verifier: new PeerVerifier({
      attestationService: { url: attestationUrl, ca: caPem },
      expectations: { measurements: [inferenceMeasurement], allowSimulation: true, allowDebug: true },
    }),
    callerToken: () => caller.token(),
  });
  closers.push(() => {
    client.close();
  });
  return {
    platform,
    caPem,
    tls,
    attestationUrl,
    attestationService,
    inferenceUrl,
    get inference() {
      return inference;
    },
    inferenceAttestation,
    stopInference,
    startInference,
    startInferenceReplica: async () => {
      const attestation = await attestInference();
      closers.push(() => {
        attestation.stop();
      });
      const replica = await serve(attestation);
      closers.push(() => replica.app.close());
      return { url: replica.url, attestation };
    },
    caller,
    models,
    client,
    attestWorkload,
    close: async () => {
      for (const close of closers.reverse()) {
        await close();
      }
    },
  };
}
