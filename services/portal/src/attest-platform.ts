// Attestation before PHI (DESIGN.md §1 step 3): the portal fetches the platform's evidence, has the
// attestation service verify it (the portal asks the service itself; it does not trust the platform's
// own token), checks the returned token, and only then holds the key configuration it will encrypt to.
import { verifyPeer, type PeerIdentity } from "@cloister/enclave/verify-peer";
import type { PortalConfig } from "./config.js";

export interface VerifiedPlatform {
  readonly identity: PeerIdentity;
  /** The OHTTP key configuration bound into the platform's evidence (base64url). */
  readonly keyConfig: string;
  readonly expiresAt: Date;
  readonly attestationUrl: string;
}

export class AttestationRefused extends Error {
  override readonly name = "AttestationRefused";
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

const plainReasons: Readonly<Record<string, string>> = {
  ERR_PEER_TOKEN: "The attestation token's signature, issuer or expiry did not verify.",
  ERR_PEER_TEE: "The platform does not run in an accepted kind of TEE.",
  ERR_PEER_MEASUREMENT:
    "The platform runs code this portal was not built for (its measurement is not an expected one).",
  ERR_PEER_DEBUG: "The platform runs in a debuggable TEE, which this portal does not accept.",
  ERR_PEER_SIMULATION: "The platform's TEE is simulated, which this portal does not accept.",
  ERR_PEER_KEY_BINDING: "The key the platform offers is not the one bound into its evidence.",
};

async function json(response: Response, what: string): Promise<Record<string, unknown>> {
  if (!response.ok) {
    throw new AttestationRefused("ERR_UNREACHABLE", `${what} answered HTTP ${response.status}.`);
  }
  return (await response.json()) as Record<string, unknown>;
}

export async function attestPlatform(config: PortalConfig): Promise<VerifiedPlatform> {
  let evidence: Record<string, unknown>;
  try {
    evidence = await json(await fetch(new URL("/attestation", config.platformUrl)), "The platform");
  } catch (error) {
    throw error instanceof AttestationRefused
      ? error
      : new AttestationRefused("ERR_UNREACHABLE", "The platform could not be reached.");
  }
  const { quote, runtimeData, keyConfig } = evidence;
  if (typeof quote !== "string" || typeof keyConfig !== "string" || typeof runtimeData !== "object") {
    throw new AttestationRefused("ERR_EVIDENCE", "The platform sent no evidence.");
  }
  let token: unknown;
  try {
    const attested = await fetch(
      new URL("/attest/SgxEnclave?api-version=2022-08-01", config.attestationUrl),
      {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ quote, runtimeData }),
      },
    );
    const body = (await attested.json()) as { token?: unknown; error?: { code?: string; message?: string } };
    if (!attested.ok) {
      throw new AttestationRefused(
        body.error?.code ?? "ERR_ATTESTATION",
        `The attestation service refused the platform's evidence (${body.error?.code ?? attested.status}).`,
      );
    }
    token = body.token;
  } catch (error) {
    throw error instanceof AttestationRefused
      ? error
      : new AttestationRefused("ERR_UNREACHABLE", "The attestation service could not be reached.");
  }
  if (typeof token !== "string") {
    throw new AttestationRefused("ERR_ATTESTATION", "The attestation service returned no token.");
  }
  try {
    const identity = await verifyPeer(token, {
      jwksUri: new URL("/certs", config.attestationUrl),
      issuer: config.attestationUrl,
      measurements:
        __CLOISTER_BUILT_MEASUREMENTS__.length > 0
          ? __CLOISTER_BUILT_MEASUREMENTS__
          : config.platformMeasurements,
      allowDebug: __CLOISTER_ACCEPT_SIMULATION__,
      allowSimulation: __CLOISTER_ACCEPT_SIMULATION__,
      ohttpKeyConfig: keyConfig,
    });
    const exp = identity.claims.exp;
    return {
      identity,
      keyConfig,
      expiresAt: new Date((typeof exp === "number" ? exp : 0) * 1000),
      attestationUrl: config.attestationUrl,
    };
  } catch (error) {
    const code =
      typeof error === "object" && error !== null && "code" in error ? String(error.code) : "ERR_PEER";
    throw new AttestationRefused(code, plainReasons[code] ?? "The platform's attestation did not verify.");
  }
}
