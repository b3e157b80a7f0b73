// The dev stack's TLS: a local certificate authority and server certificates for loopback. One place for
// TLS material, so RA-TLS certificates (DESIGN.md §7) can be added here later.
import { generateKeyPairSync, randomBytes, type KeyObject } from "node:crypto";
import {
  basicConstraintsExtension,
  buildCertificate,
  keyUsageExtension,
  subjectAltNameExtension,
  toPem,
} from "@cloister/attestation";

export interface DevCertificateAuthority {
  readonly certificatePem: string;
  readonly privateKey: KeyObject;
  readonly name: string;
}

export interface ServerCertificate {
  /** PEM certificate chain: the server certificate, then the CA. */
  readonly cert: string;
  /** PEM PKCS#8 private key. */
  readonly key: string;
}

const day = 24 * 3600 * 1000;

export function createDevCertificateAuthority(
  name = "Cloister Dev CA",
  now = new Date(),
): DevCertificateAuthority {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const subject = { commonName: name, organization: "Cloister" };
  const certificatePem = toPem(
    buildCertificate({
      serial: randomBytes(16),
      issuer: subject,
      subject,
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 825 * day),
      publicKey: privateKey,
      signingKey: privateKey,
      extensions: [basicConstraintsExtension(true, 0), keyUsageExtension([5, 6])],
    }),
  );
  return { certificatePem, privateKey, name };
}

/** A server certificate for the given IPs and DNS names, issued by `ca` (valid 90 days). */
export function issueServerCertificate(
  ca: DevCertificateAuthority,
  hosts: { ips?: readonly string[]; dnsNames?: readonly string[] },
  now = new Date(),
): ServerCertificate {
  const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  const caName = { commonName: ca.name, organization: "Cloister" };
  const cert = toPem(
    buildCertificate({
      serial: randomBytes(16),
      issuer: caName,
      subject: { commonName: hosts.dnsNames?.[0] ?? hosts.ips?.[0] ?? "localhost" },
      notBefore: new Date(now.getTime() - 60_000),
      notAfter: new Date(now.getTime() + 90 * day),
      publicKey: privateKey,
      signingKey: ca.privateKey,
      extensions: [basicConstraintsExtension(false), keyUsageExtension([0]), subjectAltNameExtension(hosts)],
    }),
  );
  return {
    cert: cert + ca.certificatePem,
    key: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
  };
}
