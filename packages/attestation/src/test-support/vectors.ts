// Locates ../shared/attestation-vectors (beside the repository, as laid out for developers and CI).
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import type { CollateralBundle } from "../sgx/collateral.js";

function findVectorsDirectory(): string {
  const fromEnvironment = process.env.CLOISTER_ATTESTATION_VECTORS;
  if (fromEnvironment !== undefined && fromEnvironment !== "") {
    return fromEnvironment;
  }
  let directory = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const candidate = join(directory, "..", "shared", "attestation-vectors");
    if (existsSync(join(directory, "package-lock.json")) && existsSync(candidate)) {
      return resolve(candidate);
    }
    directory = dirname(directory);
  }
  throw new Error(
    "attestation vectors not found: expected ../shared/attestation-vectors beside the repository " +
      "(or set CLOISTER_ATTESTATION_VECTORS)",
  );
}

export const vectorsDirectory = findVectorsDirectory();

export function vectorBytes(path: string): Uint8Array {
  return new Uint8Array(readFileSync(join(vectorsDirectory, path)));
}

export function vectorText(path: string): string {
  return readFileSync(join(vectorsDirectory, path), "utf8");
}

export function vectorCollateral(path: string): CollateralBundle {
  return JSON.parse(vectorText(path)) as CollateralBundle;
}

/** The Intel vectors of dcap-qvl with the times at which their README says they verify. */
export const intelVectors = {
  sgx: {
    quote: "dcap-qvl/sgx_quote",
    collateral: "dcap-qvl/sgx_quote_collateral.json",
    at: new Date("2025-07-04T10:28:44Z"),
  },
  tdx: {
    quote: "dcap-qvl/tdx_quote",
    collateral: "dcap-qvl/tdx_quote_collateral.json",
    at: new Date("2025-07-04T10:24:15Z"),
  },
  tdxOutdated: {
    quote: "dcap-qvl/tdx_quote_outdated",
    collateral: "dcap-qvl/tdx_quote_outdated_collateral.json",
    at: new Date("2026-03-05T10:50:33Z"),
  },
} as const;

export const maaVector = {
  quote: "maa-sgx-2022/sgx_quote_v3.bin",
  openEnclaveReport: "maa-sgx-2022/oe_report.bin",
  runtimeData: "maa-sgx-2022/runtime_data.bin",
  token: "maa-sgx-2022/maa_token_runtime_json.jwt",
  signingCertificate: "maa-sgx-2022/maa_signing_cert_kid_rPtB.der",
  policy: "maa-sgx-2022/default_sgx_policy_v1.0.txt",
  /** The token's iat (2022-01-28T23:44:36Z). */
  at: new Date(1643413476 * 1000),
} as const;

export const snpVector = {
  report: "sev-snp-go-sev-guest/attestation.bin",
  vcek: "sev-snp-go-sev-guest/vcek.testcer",
  milanChain: "sev-snp-go-sev-guest/ask_ark_milan.pem",
  genoaChain: "sev-snp-go-sev-guest/ask_ark_genoa.pem",
  turinChain: "sev-snp-go-sev-guest/ask_ark_turin_vcek.pem",
  at: new Date("2025-01-01T00:00:00Z"),
} as const;

export function decodeJwtPart(jwt: string, index: 0 | 1): Record<string, unknown> {
  return JSON.parse(Buffer.from(jwt.split(".")[index] ?? "", "base64url").toString("utf8")) as Record<
    string,
    unknown
  >;
}
