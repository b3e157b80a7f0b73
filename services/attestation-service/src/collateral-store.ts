// Offline collateral: bundles on disk (the DESIGN.md §4 JSON format), found by FMSPC and TEE type, plus the
// simulation platform's own collateral when the service trusts that platform.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { CollateralBundle, SimulationPlatform } from "@cloister/attestation";

interface StoredBundle {
  readonly fmspc: string;
  readonly tee: "SGX" | "TDX";
  readonly bundle: CollateralBundle;
}

export class CollateralStore {
  private readonly bundles: StoredBundle[] = [];
  private readonly simulation: SimulationPlatform | undefined;

  constructor(options: { directory?: string; simulationPlatform?: SimulationPlatform }) {
    this.simulation = options.simulationPlatform;
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

  /** The collateral for a platform: the newest stored bundle for its FMSPC and TEE type. */
  find(fmspc: string, tee: "sgx" | "tdx", now: Date): CollateralBundle | undefined {
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
