// Offline collateral: bundles on disk (the DESIGN.md §4 JSON format), found by FMSPC and TEE type, plus the
// simulation platform's own collateral when the service trusts that platform.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { CollateralBundle, SimulationPlatform } from "@cloister/attestation";
import { ServiceError } from "./errors.js";
import type { PccsClient } from "./pccs-client.js";

const nextUpdates = new WeakMap<CollateralBundle, number>();

/** The TCB info's nextUpdate (ms), read once per bundle object. */
function nextUpdateOf(bundle: CollateralBundle): number {
  let nextUpdate = nextUpdates.get(bundle);
  if (nextUpdate === undefined) {
    nextUpdate = Date.parse((JSON.parse(bundle.tcb_info) as { nextUpdate?: string }).nextUpdate ?? "");
    nextUpdates.set(bundle, Number.isNaN(nextUpdate) ? 0 : nextUpdate);
  }
  return nextUpdates.get(bundle) ?? 0;
}

interface StoredBundle {
  readonly fmspc: string;
  readonly tee: "SGX" | "TDX";
  readonly bundle: CollateralBundle;
}

export class CollateralStore {
  private readonly bundles: StoredBundle[] = [];
  /** nextUpdate (ms) of the collateral last served per TEE and FMSPC: monitoring warns before it lapses. */
  private readonly served = new Map<string, number>();
  private readonly simulation: SimulationPlatform | undefined;
  private readonly pccs: PccsClient | undefined;

  constructor(options: { directory?: string; simulationPlatform?: SimulationPlatform; pccs?: PccsClient }) {
    this.simulation = options.simulationPlatform;
    this.pccs = options.pccs;
    if (options.directory !== undefined) {
      for (const name of readdirSync(options.directory)
        .filter((file) => file.endsWith(".json"))
        .sort()) {
        this.add(JSON.parse(readFileSync(join(options.directory, name), "utf8")) as CollateralBundle);
      }
    }
  }

  add(bundle: CollateralBundle): void {
    const tcbInfo = JSON.parse(bundle.tcb_info) as { fmspc?: unknown; id?: unknown };
    if (typeof tcbInfo.fmspc !== "string") {
      throw new Error("collateral bundle without an FMSPC");
    }
    this.bundles.push({
      fmspc: tcbInfo.fmspc.toLowerCase(),
      tee: tcbInfo.id === "TDX" ? "TDX" : "SGX",
      bundle,
    });
  }

  /**
   * The collateral for a platform: the simulation platform's own; else the newest stored bundle for its FMSPC
   * and TEE type while it is current; else the PCCS's (when configured). Stale offline collateral is returned
   * when nothing fresher can be had, so verification fails with ERR_COLLATERAL_EXPIRED, saying why.
   */
  async resolve(
    fmspc: string,
    tee: "sgx" | "tdx",
    pckCa: "processor" | "platform",
    now: Date,
  ): Promise<CollateralBundle> {
    const bundle = await this.resolveBundle(fmspc, tee, pckCa, now);
    this.served.set(`${tee}/${fmspc}`, nextUpdateOf(bundle));
    return bundle;
  }

  /** The earliest nextUpdate (ms) among the collateral served so far, or undefined before the first. */
  earliestNextUpdate(): number | undefined {
    return this.served.size === 0 ? undefined : Math.min(...this.served.values());
  }

  private async resolveBundle(
    fmspc: string,
    tee: "sgx" | "tdx",
    pckCa: "processor" | "platform",
    now: Date,
  ): Promise<CollateralBundle> {
    const offline = this.find(fmspc, tee, now);
    if (offline !== undefined && (this.pccs === undefined || nextUpdateOf(offline) >= now.getTime())) {
      return offline;
    }
    if (this.pccs !== undefined) {
      try {
        return await this.pccs.collateral(tee, fmspc, pckCa, now);
      } catch (error) {
        if (offline !== undefined) {
          return offline;
        }
        throw new ServiceError(
          "ERR_COLLATERAL_UNAVAILABLE",
          `no ${tee.toUpperCase()} collateral for FMSPC ${fmspc}: ${error instanceof Error ? error.message : "PCCS failed"}`,
        );
      }
    }
    throw new ServiceError(
      "ERR_COLLATERAL_UNAVAILABLE",
      `no ${tee.toUpperCase()} collateral for FMSPC ${fmspc}`,
    );
  }

  private find(fmspc: string, tee: "sgx" | "tdx", now: Date): CollateralBundle | undefined {
    if (
      this.simulation !== undefined &&
      fmspc.toLowerCase() === this.simulation.fmspc.toLowerCase() &&
      tee === "sgx"
    ) {
      return this.simulation.collateral({ now });
    }
    const matches = this.bundles.filter(
      (stored) => stored.fmspc === fmspc.toLowerCase() && stored.tee === tee.toUpperCase(),
    );
    return matches[matches.length - 1]?.bundle;
  }
}
