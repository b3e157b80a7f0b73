// Attestation policies per attestation type, in the MAA policy language. PUT takes MAA's JWS envelope
// `{AttestationPolicy: base64url(text)}`, signed by a configured policy-management certificate; unsigned
// (`alg: none`) envelopes only in dev mode.
import { X509Certificate } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { AttestationError, parsePolicy, type Policy } from "@cloister/attestation";
import { compactVerify, decodeProtectedHeader, importX509 } from "jose";
import { ServiceError } from "./errors.js";

export const attestationTypes = ["SgxEnclave", "OpenEnclave", "TdxVm", "SevSnpVm"] as const;
export type AttestationType = (typeof attestationTypes)[number];

/** Production: debuggable (and so simulated) evidence is denied. */
const productionPolicies: Record<AttestationType, string> = {
  SgxEnclave: `version=1.0;
authorizationrules{
  [type=="x-ms-sgx-is-debuggable", value==false] => permit();
};
issuancerules{
  c:[type=="x-ms-sgx-is-debuggable"] => issue(type="is-debuggable", value=c.value);
  c:[type=="x-ms-sgx-mrsigner"] => issue(type="sgx-mrsigner", value=c.value);
  c:[type=="x-ms-sgx-mrenclave"] => issue(type="sgx-mrenclave", value=c.value);
  c:[type=="x-ms-sgx-product-id"] => issue(type="product-id", value=c.value);
  c:[type=="x-ms-sgx-svn"] => issue(type="svn", value=c.value);
  c:[type=="x-ms-attestation-type"] => issue(type="tee", value=c.value);
};`,
  OpenEnclave: "",
  TdxVm: `version=1.0;
authorizationrules{
  [type=="tdx_td_attributes_debug", value==false] => permit();
};
issuancerules{};`,
  SevSnpVm: `version=1.0;
authorizationrules{
  [type=="x-ms-sevsnpvm-is-debuggable", value==false] => permit();
};
issuancerules{};`,
};
productionPolicies.OpenEnclave = productionPolicies.SgxEnclave;

/** Dev: debuggable and simulated evidence is accepted. Chosen only by explicit configuration. */
const devPolicies: Record<AttestationType, string> = {
  SgxEnclave: productionPolicies.SgxEnclave.replace(
    '[type=="x-ms-sgx-is-debuggable", value==false] => permit();',
    "=> permit();",
  ),
  OpenEnclave: "",
  TdxVm: "version=1.0;\nauthorizationrules{ => permit(); };\nissuancerules{};",
  SevSnpVm: "version=1.0;\nauthorizationrules{ => permit(); };\nissuancerules{};",
};
devPolicies.OpenEnclave = devPolicies.SgxEnclave;

export type PolicyMode = "production" | "dev";

export function defaultPolicy(type: AttestationType, mode: PolicyMode): string {
  return (mode === "dev" ? devPolicies : productionPolicies)[type];
}

export class PolicyStore {
  private readonly policies = new Map<AttestationType, Policy>();
  private readonly mode: PolicyMode;
  private readonly signerCertificates: readonly string[];

  constructor(mode: PolicyMode, signerCertificates: readonly string[]) {
    this.mode = mode;
    this.signerCertificates = signerCertificates;
    for (const type of attestationTypes) {
      this.reset(type);
    }
  }

  get(type: AttestationType): Policy {
    const policy = this.policies.get(type);
    if (policy === undefined) {
      throw new ServiceError("ERR_NOT_FOUND", `no policy for ${type}`);
    }
    return policy;
  }

  reset(type: AttestationType): Policy {
    const policy = parsePolicy(defaultPolicy(type, this.mode));
    this.policies.set(type, policy);
    return policy;
  }

  /** Applies MAA's policy envelope: a JWS whose payload is `{AttestationPolicy: base64url(policy text)}`. */
  async set(type: AttestationType, envelope: string): Promise<Policy> {
    let payload: Uint8Array;
    let header: ReturnType<typeof decodeProtectedHeader>;
    try {
      header = decodeProtectedHeader(envelope);
    } catch {
      throw new ServiceError("ERR_BAD_REQUEST", "the policy must be a JWS envelope");
    }
    if (header.alg === "none") {
      if (this.mode !== "dev") {
        throw new ServiceError("ERR_FORBIDDEN", "unsigned policies are accepted only in dev mode");
      }
      const [, body = ""] = envelope.split(".");
      payload = new Uint8Array(Buffer.from(body, "base64url"));
    } else {
      payload = await this.verifySigned(envelope);
    }
    let text: string;
    try {
      const parsed = JSON.parse(new TextDecoder().decode(payload)) as { AttestationPolicy?: unknown };
      if (typeof parsed.AttestationPolicy !== "string") {
        throw new Error("no AttestationPolicy");
      }
      text = Buffer.from(parsed.AttestationPolicy, "base64url").toString("utf8");
    } catch {
      throw new ServiceError(
        "ERR_BAD_REQUEST",
        "the envelope's payload must be {AttestationPolicy: base64url(text)}",
      );
    }
    try {
      const policy = parsePolicy(text);
      this.policies.set(type, policy);
      return policy;
    } catch (error) {
      throw new ServiceError(
        "ERR_POLICY_INVALID",
        error instanceof AttestationError ? error.message : "policy does not parse",
      );
    }
  }

  private async verifySigned(envelope: string): Promise<Uint8Array> {
    if (this.signerCertificates.length === 0) {
      throw new ServiceError("ERR_UNAUTHORIZED", "no policy-management certificate is configured");
    }
    for (const pem of this.signerCertificates) {
      try {
        const algorithm = new X509Certificate(pem).publicKey.asymmetricKeyType === "ec" ? "ES256" : "RS256";
        const key = await importX509(pem, algorithm);
        return (await compactVerify(envelope, key, { algorithms: ["RS256", "ES256", "PS256"] })).payload;
      } catch {
        // try the next configured certificate
      }
    }
    throw new ServiceError(
      "ERR_FORBIDDEN",
      "the policy is not signed by a configured policy-management certificate",
    );
  }
}

/**
 * The policies declared in a folder (CLOISTER_POLICIES_DIR): one MAA policy envelope per file named
 * `<attestation type>.jws` (`SgxEnclave.jws`, `TdxVm.jws`, …). Entries starting with "." are skipped (a
 * Kubernetes ConfigMap mount's `..data`); any other name is refused, so a misspelt type is not silently
 * ignored. The envelopes are checked when applied (buildApp).
 */
export function readDeclaredPolicies(directory: string): Partial<Record<AttestationType, string>> {
  const declared: Partial<Record<AttestationType, string>> = {};
  for (const name of readdirSync(directory).sort()) {
    if (name.startsWith(".")) {
      continue;
    }
    const type = attestationTypes.find((known) => name === `${known}.jws`);
    if (type === undefined) {
      throw new ServiceError(
        "ERR_BAD_REQUEST",
        `${name} in the declared policies: files are named <${attestationTypes.join("|")}>.jws`,
      );
    }
    declared[type] = readFileSync(join(directory, name), "utf8").trim();
  }
  return declared;
}
