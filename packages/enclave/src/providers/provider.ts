import { createHash } from "node:crypto";

/** Evidence as a TEE produces it. */
export type Evidence =
  | { readonly type: "sgx" | "tdx"; readonly quote: Uint8Array }
  | {
      readonly type: "sevsnp";
      readonly report: Uint8Array;
      /** The VCEK from the host's certificate table, when the platform supplies it (configfs-tsm auxblob). */
      readonly vcek?: Uint8Array;
    };

/** A trusted execution environment, as the workload inside it sees it. */
export interface TeeProvider {
  readonly name: "sim" | "gramine" | "tsm";
  /** Evidence whose report data is SHA-256(runtimeData) followed by 32 zero bytes (DESIGN.md §4). */
  getEvidence(runtimeData: Uint8Array): Promise<Evidence>;
  /**
   * A 256-bit key on this platform, bound to this code's measurement ("measurement", the default: MRENCLAVE
   * sealing) or to its signer ("signer": MRSIGNER sealing, so data sealed by one release opens in the next
   * release signed by the same key).
   */
  sealingKey(label: string, policy?: SealingPolicy): Promise<Uint8Array>;
}

/** The 64 bytes of report data that bind `runtimeData`. */
export type SealingPolicy = "measurement" | "signer";

export function reportDataFor(runtimeData: Uint8Array): Uint8Array {
  const reportData = new Uint8Array(64);
  reportData.set(createHash("sha256").update(runtimeData).digest());
  return reportData;
}
