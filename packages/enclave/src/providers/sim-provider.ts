import type { SimulationPlatform } from "@cloister/attestation";
import type { Evidence, SealingPolicy, TeeProvider } from "./provider.js";
import { reportDataFor } from "./provider.js";

export interface SimulatedIdentity {
  /** Hex SHA-256 of the code (see measureCode). */
  readonly mrenclave: string;
  /** Hex SHA-256 of the signer's public key (see measureSigner). */
  readonly mrsigner: string;
  readonly productId: number;
  readonly svn: number;
}

/**
 * The default provider: quotes from the simulation platform, with DEBUG set, which only an attestation
 * service configured with the simulation root accepts.
 */
export function simulationProvider(platform: SimulationPlatform, identity: SimulatedIdentity): TeeProvider {
  return {
    name: "sim",
    getEvidence(runtimeData: Uint8Array): Promise<Evidence> {
      return Promise.resolve({
        type: "sgx",
        quote: platform.quote({ ...identity, reportData: reportDataFor(runtimeData) }),
      });
    },
    sealingKey(label: string, policy: SealingPolicy = "measurement"): Promise<Uint8Array> {
      return Promise.resolve(
        policy === "signer"
          ? platform.sealingKey(identity.mrsigner, `signer:${label}`)
          : platform.sealingKey(identity.mrenclave, label),
      );
    },
  };
}
