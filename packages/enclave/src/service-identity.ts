// Which built code makes up each Cloister service, so its simulated measurement is computed in one place:
// by the service itself at start, by `cloister up` to set release and attestation policies before the
// service runs, and by the deployment tooling to label images.
import { createHash } from "node:crypto";
import { loadSimulationPlatform, type SimulationPlatform } from "@cloister/attestation";
import { EnclaveError } from "./errors.js";
import { gramineProvider } from "./providers/gramine-provider.js";
import { tsmProvider } from "./providers/tsm-provider.js";
import { measureCode } from "./measurement.js";
import type { TeeProvider } from "./providers/provider.js";
import { simulationProvider } from "./providers/sim-provider.js";

export type CloisterService = "attestation-service" | "key-broker" | "inference-server" | "platform-api";

const sharedPackages = ["attestation", "enclave", "ohttp", "service-kit"] as const;

/** Each service's SGX product id and the packages (beyond the shared ones) that run inside it. */
export const cloisterServices: Readonly<
  Record<CloisterService, { readonly productId: number; readonly extraPackages: readonly string[] }>
> = {
  "attestation-service": { productId: 1, extraPackages: [] },
  "key-broker": { productId: 2, extraPackages: [] },
  "inference-server": { productId: 3, extraPackages: ["imaging"] },
  // The platform reads DICOM headers and checks models' intended patients (@cloister/imaging).
  "platform-api": { productId: 4, extraPackages: ["imaging"] },
};

/** The built folders, relative to the repository root, whose bytes are the service's measurement. */
export function serviceCodeFolders(service: CloisterService): string[] {
  return [
    `services/${service}/dist`,
    ...[...sharedPackages, ...cloisterServices[service].extraPackages]
      .sort()
      .map((name) => `packages/${name}/dist`),
  ];
}

/** The simulated MRENCLAVE of a service: SHA-256 over its built code (see measureCode). */
export function measureService(repositoryRoot: string, service: CloisterService): string {
  return measureCode(repositoryRoot, serviceCodeFolders(service));
}

/** The development signer's MRSIGNER: SHA-256 of its name (real enclaves: the signing key's modulus). */
export const devSigner = createHash("sha256").update("cloister-dev-signer").digest("hex");

/** The simulated TEE a service runs in: its own measurement, the dev signer, its product id, SVN 1. */
export function simulatedServiceTee(
  platform: SimulationPlatform,
  repositoryRoot: string,
  service: CloisterService,
): TeeProvider {
  return simulationProvider(platform, {
    mrenclave: measureService(repositoryRoot, service),
    mrsigner: devSigner,
    productId: cloisterServices[service].productId,
    svn: 1,
  });
}

/**
 * The TEE a service runs in, chosen by `CLOISTER_TEE_PROVIDER`: "sim" (default; the simulation platform in
 * `dataDirectory`), "gramine" (an SGX enclave under Gramine, /dev/attestation) or "tsm" (a TDX or SEV-SNP
 * confidential VM, Linux configfs-tsm).
 */
export function serviceTee(
  repositoryRoot: string,
  service: CloisterService,
  dataDirectory: string,
  environment: Readonly<Record<string, string | undefined>> = process.env,
): TeeProvider {
  const kind = environment.CLOISTER_TEE_PROVIDER ?? "sim";
  switch (kind) {
    case "sim":
      return simulatedServiceTee(loadSimulationPlatform(dataDirectory), repositoryRoot, service);
    case "gramine":
      return gramineProvider();
    case "tsm":
      return tsmProvider();
    default:
      throw new EnclaveError(
        "ERR_PROVIDER_UNAVAILABLE",
        `CLOISTER_TEE_PROVIDER must be sim, gramine or tsm, not ${JSON.stringify(kind)}`,
      );
  }
}
