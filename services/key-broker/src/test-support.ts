// For the key broker's tests: a scratch folder, a simulation platform, a dev CA with a loopback certificate,
// and the broker's log lines captured (to check that no key value reaches them).
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { createSimulationPlatform, type SimulationPlatform } from "@cloister/attestation";
import {
  attestAtStart,
  createDevCertificateAuthority,
  issueServerCertificate,
  PeerVerifier,
  type DevCertificateAuthority,
  simulationProvider,
  type Attestation,
  type KeyBrokerClient,
  type TeeProvider,
} from "@cloister/enclave";
import { listenOnLoopback } from "@cloister/service-kit";
import type { FastifyInstance } from "fastify";
import { createBrokerSigningKey, type BrokerIdentity } from "./app.js";

export interface BrokerTestBed {
  readonly scratch: string;
  readonly platform: SimulationPlatform;
  readonly ca: DevCertificateAuthority;
  readonly tls: { readonly cert: string; readonly key: string };
  /** Where the broker's logger writes. */
  readonly logStream: Writable;
  /** Everything logged so far. */
  readonly logged: () => string;
}

export function brokerTestBed(name: string): BrokerTestBed {
  const ca = createDevCertificateAuthority(`${name} Test CA`);
  let logged = "";
  return {
    scratch: mkdtempSync(join(tmpdir(), `cloister-${name.toLowerCase()}-`)),
    platform: createSimulationPlatform(),
    ca,
    tls: issueServerCertificate(ca, { ips: ["127.0.0.1"] }),
    logStream: new Writable({
      write(chunk: Buffer, _encoding, done) {
        logged += chunk.toString();
        done();
      },
    }),
    logged: () => logged,
  };
}

/**
 * A broker's attested identity, as main.ts makes it: a signing key made here, bound into evidence from
 * `provider` and exchanged for a token at the attestation service. `stop` ends the token's refreshing.
 */
export async function attestBroker(
  provider: TeeProvider,
  attestationService: { readonly url: string; readonly ca: string },
): Promise<{ identity: BrokerIdentity; stop: () => void }> {
  const signing = await createBrokerSigningKey();
  const attestation = await attestAtStart({
    provider,
    attestationService,
    runtime: { service: "key-broker" },
    boundKeys: [signing.publicJwk],
  });
  return { identity: { signing, token: attestation.token }, stop: attestation.stop };
}

/** A workload's client of the broker at `url`, which must prove `measurement` (simulated evidence allowed). */
export function verifiedBrokerClient(
  url: string,
  measurement: string,
  attestationService: { readonly url: string; readonly ca: string },
): KeyBrokerClient {
  return {
    url,
    ca: attestationService.ca,
    identity: new PeerVerifier({
      attestationService,
      // The tests' TEEs are the simulation (simulated enclaves are debuggable); production leaves these off.
      expectations: { measurements: [measurement], allowSimulation: true, allowDebug: true },
    }),
  };
}

/** The attestation service's `buildApp`, passed in by the tests (this file is built with the broker). */
export type AttestationServiceBuilder = (config: {
  issuer: string;
  provider: TeeProvider;
  policyMode: "dev";
  simulationPlatform: SimulationPlatform;
  https: { cert: string; key: string };
}) => Promise<FastifyInstance>;

/**
 * A dev-mode attestation service over HTTPS on loopback for the test bed, and a workload (measurement
 * `workloadMeasurement`, SGX product id 4) attested by it.
 */
export async function startAttestedWorkload(
  bed: BrokerTestBed,
  buildAttestationService: AttestationServiceBuilder,
  workloadMeasurement: string,
): Promise<{ url: string; workload: Attestation; close: () => Promise<void> }> {
  const { app: service, url } = await listenOnLoopback((issuer) =>
    buildAttestationService({
      issuer,
      provider: simulationProvider(bed.platform, {
        mrenclave: "5e".repeat(32),
        mrsigner: "51".repeat(32),
        productId: 1,
        svn: 1,
      }),
      policyMode: "dev",
      simulationPlatform: bed.platform,
      https: bed.tls,
    }),
  );
  const workload = await attestAtStart({
    provider: simulationProvider(bed.platform, {
      mrenclave: workloadMeasurement,
      mrsigner: "88".repeat(32),
      productId: 4,
      svn: 1,
    }),
    attestationService: { url, ca: bed.ca.certificatePem },
  });
  return {
    url,
    workload,
    close: async () => {
      workload.stop();
      await service.close();
    },
  };
}
