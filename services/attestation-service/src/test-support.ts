// For tests: a policy manager (a key with its self-signed certificate, which the service is configured to
// trust) and MAA policy envelopes, signed by it or unsigned.
import { generateKeyPairSync, type KeyObject } from "node:crypto";
import { CompactSign } from "jose";
import { buildCertificate, toPem } from "@cloister/attestation";

export interface PolicyManager {
  readonly privateKey: KeyObject;
  /** PEM: what `policySigners` lists. */
  readonly certificatePem: string;
  /** The envelope's payload: `{AttestationPolicy: base64url(text)}`. */
  readonly payload: (policy: string) => Uint8Array;
  /** MAA's JWS envelope signed by this manager (ES256). */
  readonly signed: (policy: string) => Promise<string>;
  /** The same envelope with `alg: none`, as dev mode accepts. */
  readonly unsigned: (policy: string) => string;
}

export function createPolicyManager(): PolicyManager {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const name = { commonName: "Policy manager" };
  const certificatePem = toPem(
    buildCertificate({
      serial: Uint8Array.of(1),
      issuer: name,
      subject: name,
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3_600_000),
      publicKey: privateKey,
      signingKey: privateKey,
      extensions: [],
    }),
  );
  const payload = (policy: string): Uint8Array =>
    new TextEncoder().encode(
      JSON.stringify({ AttestationPolicy: Buffer.from(policy).toString("base64url") }),
    );
  return {
    privateKey,
    certificatePem,
    payload,
    signed: (policy) =>
      new CompactSign(payload(policy)).setProtectedHeader({ alg: "ES256" }).sign(privateKey),
    unsigned: (policy) =>
      `${Buffer.from('{"alg":"none"}').toString("base64url")}.${Buffer.from(payload(policy)).toString("base64url")}.`,
  };
}
