// Gramine's attestation pseudo-files (gramine.readthedocs.io, "Attestation and secret provisioning"):
// write the 64-byte report data to /dev/attestation/user_report_data, read the DCAP quote from
// /dev/attestation/quote; sealing keys are under /dev/attestation/keys/.
import { hkdfSync } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { EnclaveError } from "../errors.js";
import type { Evidence, SealingPolicy, TeeProvider } from "./provider.js";
import { reportDataFor } from "./provider.js";

export interface GramineProviderOptions {
  /** Default `/dev/attestation`; tests point it at a fake tree. */
  readonly root?: string;
}

export function gramineProvider(options: GramineProviderOptions = {}): TeeProvider {
  const root = options.root ?? "/dev/attestation";
  // Writing report data and reading the quote must not interleave between two callers.
  let queue: Promise<unknown> = Promise.resolve();
  const serialized = <T>(task: () => Promise<T>): Promise<T> => {
    const next = queue.then(task, task);
    queue = next.catch(() => undefined);
    return next;
  };
  return {
    name: "gramine",
    getEvidence(runtimeData: Uint8Array): Promise<Evidence> {
      return serialized(async () => {
        try {
          const type = (await readFile(join(root, "attestation_type"), "utf8").catch(() => "dcap")).trim();
          if (type !== "dcap") {
            throw new EnclaveError(
              "ERR_PROVIDER_UNAVAILABLE",
              `Gramine attestation type is "${type}", not dcap`,
            );
          }
          await writeFile(join(root, "user_report_data"), reportDataFor(runtimeData));
          return { type: "sgx", quote: new Uint8Array(await readFile(join(root, "quote"))) };
        } catch (error) {
          if (error instanceof EnclaveError) {
            throw error;
          }
          throw new EnclaveError(
            "ERR_PROVIDER_IO",
            `Gramine attestation files under ${root} are not usable`,
            {
              cause: error,
            },
          );
        }
      });
    },
    async sealingKey(label: string, policy: SealingPolicy = "measurement"): Promise<Uint8Array> {
      let base: Buffer;
      try {
        base = await readFile(join(root, "keys", policy === "signer" ? "_sgx_mrsigner" : "_sgx_mrenclave"));
      } catch (cause) {
        throw new EnclaveError(
          "ERR_SEALING_UNAVAILABLE",
          `Gramine's ${policy === "signer" ? "MRSIGNER" : "MRENCLAVE"} sealing key is not readable`,
          {
            cause,
          },
        );
      }
      if (base.length !== 16) {
        throw new EnclaveError("ERR_SEALING_UNAVAILABLE", "Gramine's sealing key must be 16 bytes");
      }
      return new Uint8Array(hkdfSync("sha256", base, new Uint8Array(0), `cloister-seal:${label}`, 32));
    },
  };
}
