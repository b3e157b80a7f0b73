// Linux configfs-tsm (Documentation/ABI/testing/configfs-tsm): mkdir a report entry, write the report data
// to inblob, read outblob (a TDX quote or an SEV-SNP report) and, for SNP, auxblob (the host's certificate
// table). `generation` counts inblob writes, so a changed generation means another writer raced us.
import { randomBytes } from "node:crypto";
import { mkdir, readFile, rmdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { EnclaveError } from "../errors.js";
import type { Evidence, TeeProvider } from "./provider.js";
import { reportDataFor } from "./provider.js";

export interface TsmProviderOptions {
  /** Default `/sys/kernel/config/tsm/report`; tests point it at a fake tree. */
  readonly root?: string;
  /** The report entry's name (default: random per call). */
  readonly entryName?: string;
}

/** SNP certificate table GUID of the VCEK (AMD SEV-SNP firmware ABI, "Extended guest request"). */
const vcekGuid = "63da758d-e664-4564-adc5-f4b93be8accd";

function guidAt(bytes: Uint8Array, offset: number): string {
  const hex = (start: number, end: number, reverse: boolean): string => {
    const part = Array.from(bytes.subarray(offset + start, offset + end));
    return (reverse ? part.reverse() : part).map((byte) => byte.toString(16).padStart(2, "0")).join("");
  };
  return `${hex(0, 4, true)}-${hex(4, 6, true)}-${hex(6, 8, true)}-${hex(8, 10, false)}-${hex(10, 16, false)}`;
}

/** Finds the VCEK in an SNP certificate table: entries {GUID, offset u32, length u32}, ended by a zero GUID. */
export function vcekFromCertificateTable(table: Uint8Array): Uint8Array | undefined {
  const view = new DataView(table.buffer, table.byteOffset, table.byteLength);
  for (let offset = 0; offset + 24 <= table.length; offset += 24) {
    const guid = guidAt(table, offset);
    if (guid === "00000000-0000-0000-0000-000000000000") {
      return undefined;
    }
    const start = view.getUint32(offset + 16, true);
    const length = view.getUint32(offset + 20, true);
    if (guid === vcekGuid && start + length <= table.length) {
      return table.subarray(start, start + length);
    }
  }
  return undefined;
}

export function tsmProvider(options: TsmProviderOptions = {}): TeeProvider {
  const root = options.root ?? "/sys/kernel/config/tsm/report";
  return {
    name: "tsm",
    async getEvidence(runtimeData: Uint8Array): Promise<Evidence> {
      const entry = join(root, options.entryName ?? `cloister-${randomBytes(8).toString("hex")}`);
      try {
        await mkdir(entry, { recursive: true });
        await writeFile(join(entry, "inblob"), reportDataFor(runtimeData));
        const generation = (await readFile(join(entry, "generation"), "utf8")).trim();
        const provider = (await readFile(join(entry, "provider"), "utf8")).trim();
        const outblob = new Uint8Array(await readFile(join(entry, "outblob")));
        let auxblob: Uint8Array | undefined;
        if (provider === "sev_guest") {
          auxblob = await readFile(join(entry, "auxblob")).then(
            (buffer) => new Uint8Array(buffer),
            () => undefined,
          );
        }
        if ((await readFile(join(entry, "generation"), "utf8")).trim() !== generation) {
          throw new EnclaveError("ERR_PROVIDER_RACE", "another writer changed the configfs-tsm report entry");
        }
        if (provider === "tdx_guest") {
          return { type: "tdx", quote: outblob };
        }
        if (provider === "sev_guest") {
          const vcek = auxblob === undefined ? undefined : vcekFromCertificateTable(auxblob);
          return vcek === undefined
            ? { type: "sevsnp", report: outblob }
            : { type: "sevsnp", report: outblob, vcek };
        }
        throw new EnclaveError(
          "ERR_PROVIDER_UNAVAILABLE",
          `configfs-tsm provider "${provider}" is not supported`,
        );
      } catch (error) {
        if (error instanceof EnclaveError) {
          throw error;
        }
        throw new EnclaveError("ERR_PROVIDER_IO", `configfs-tsm under ${root} is not usable`, {
          cause: error,
        });
      } finally {
        // configfs removes the entry's files with it; elsewhere (tests) a non-empty directory stays.
        await rmdir(entry).catch(() => undefined);
      }
    },
    sealingKey(): Promise<Uint8Array> {
      // configfs-tsm offers no sealing key: confidential VMs get their keys from the key broker instead.
      return Promise.reject(
        new EnclaveError("ERR_SEALING_UNAVAILABLE", "configfs-tsm has no sealing key; use the key broker"),
      );
    },
  };
}
