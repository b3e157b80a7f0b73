// `cloister policy sign`: an attestation policy as MAA's signed envelope (a JWS whose payload is
// `{AttestationPolicy: base64url(text)}`), for `PUT /policies/{type}` or a file `<type>.jws` in the attestation
// service's declared policies (CLOISTER_POLICIES_DIR). The policy is parsed first, so a syntax error is found
// here and not at the service's start.
import { createPrivateKey } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { CompactSign } from "jose";
import { parsePolicy, PolicySyntaxError } from "@cloister/attestation";
import { ExitCode, parseCommandLine, requiredOption, UsageError, type CliIo } from "./cli-io.js";

export const policyUsage = `Usage: cloister policy sign --policy FILE --key FILE [--out FILE]

sign --policy FILE --key FILE   signs the attestation policy in FILE (MAA policy language) with the policy
                                signer's private key (PEM: EC P-256 signs ES256, RSA signs RS256), whose
                                certificate the attestation service lists in CLOISTER_POLICY_SIGNERS
     [--out FILE]               writes the envelope to FILE (for CLOISTER_POLICIES_DIR name it
                                <SgxEnclave|OpenEnclave|TdxVm|SevSnpVm>.jws); without it, to standard output

Exit codes: 0 done, 1 the policy does not parse or the key cannot sign, 2 usage.`;

/** MAA's policy envelope for `policyText`, signed with `privateKeyPem`. */
export async function signPolicyEnvelope(policyText: string, privateKeyPem: string): Promise<string> {
  parsePolicy(policyText);
  const key = createPrivateKey(privateKeyPem);
  const type = key.asymmetricKeyType;
  const curve = key.asymmetricKeyDetails?.namedCurve;
  const alg = type === "rsa" ? "RS256" : type === "ec" && curve === "prime256v1" ? "ES256" : undefined;
  if (alg === undefined) {
    throw new Error("the signing key is neither RSA nor EC P-256");
  }
  const payload = JSON.stringify({
    AttestationPolicy: Buffer.from(policyText, "utf8").toString("base64url"),
  });
  return new CompactSign(new TextEncoder().encode(payload)).setProtectedHeader({ alg }).sign(key);
}

export async function runPolicy(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseCommandLine(
    argv,
    {
      policy: { type: "string" },
      key: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    policyUsage,
    io,
  );
  if (typeof parsed === "number") {
    return parsed;
  }
  const { values, positionals } = parsed;
  try {
    if (positionals.length !== 1 || positionals[0] !== "sign") {
      throw new UsageError(policyUsage);
    }
    const envelope = await signPolicyEnvelope(
      readFileSync(requiredOption(values, "policy"), "utf8"),
      readFileSync(requiredOption(values, "key"), "utf8"),
    );
    if (values.out === undefined) {
      io.stdout(`${envelope}\n`);
    } else {
      writeFileSync(resolve(values.out), `${envelope}\n`);
      io.stderr(`wrote the signed policy to ${values.out}\n`);
    }
    return ExitCode.ok;
  } catch (error) {
    const message =
      error instanceof PolicySyntaxError
        ? `the policy does not parse: ${error.message}`
        : (error as Error).message;
    io.stderr(`cloister policy: ${message}\n`);
    return error instanceof UsageError ? ExitCode.usage : ExitCode.rejected;
  }
}
