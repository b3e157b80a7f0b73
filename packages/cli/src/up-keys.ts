// The key broker's keys for the local stack, bound by release policy to the measurements `cloister up` just
// computed. A key that exists keeps its value; its policy is replaced when the code (and so the measurement)
// changed since the last run, so records written by the previous build stay readable.
import { readFileSync } from "node:fs";
import { approveKeyChange, requestJson, type KeyChange } from "@cloister/enclave";

type Jwk = Parameters<typeof approveKeyChange>[1];

/** Approvers' private keys from their JWK files. */
export function readApproverKeys(paths: readonly string[]): Jwk[] {
  return paths.map((path) => JSON.parse(readFileSync(path, "utf8")) as Jwk);
}

export interface KeySpec {
  readonly name: string;
  /** Allowed MRENCLAVE values: the services that may receive the key. */
  readonly measurements: readonly string[];
  readonly signer: string;
}

export interface KeyBrokerAdmin {
  readonly url: string;
  readonly adminToken: string;
  readonly ca: string;
  /** The attestation service whose tokens the key broker accepts. */
  readonly authority: string;
  /** Private keys of a quorum of the broker's policy approvers (the local stack's demo approvers), if any. */
  readonly approverKeys?: readonly Jwk[];
}

/** The admin's request options, with the approvals of `change` when the stack has approvers. */
async function adminOptions(
  admin: KeyBrokerAdmin,
  change?: KeyChange,
): Promise<{ ca: string; headers: Record<string, string> }> {
  const headers: Record<string, string> = { authorization: `Bearer ${admin.adminToken}` };
  if (change !== undefined && (admin.approverKeys?.length ?? 0) > 0) {
    const approvals = await Promise.all(
      (admin.approverKeys ?? []).map((key) => approveKeyChange(change, key, { validSeconds: 300 })),
    );
    headers["cloister-approvals"] = approvals.join(",");
  }
  return { ca: admin.ca, headers };
}

function releasePolicy(admin: KeyBrokerAdmin, spec: KeySpec): object {
  return {
    version: "1.0.0",
    anyOf: spec.measurements.map((measurement) => ({
      authority: admin.authority,
      allOf: [
        { claim: "x-ms-sgx-mrenclave", equals: measurement },
        { claim: "x-ms-sgx-mrsigner", equals: spec.signer },
      ],
    })),
  };
}

/**
 * Creates the key (a generated secret, or a named secret holding `value`, base64), or replaces its policy
 * when it differs. Returns what it did.
 */
export async function ensureKey(
  admin: KeyBrokerAdmin,
  spec: KeySpec,
  value?: string,
): Promise<"created" | "policy-replaced" | "unchanged"> {
  const options = await adminOptions(admin);
  const url = new URL(`/keys/${spec.name}`, admin.url);
  const policy = releasePolicy(admin, spec);
  const existing = await requestJson("GET", url, undefined, options);
  if (existing.status === 404) {
    const created = await requestJson(
      "PUT",
      url,
      value === undefined ? { policy } : { policy, value },
      await adminOptions(admin, { action: "create", key: spec.name, policy }),
    );
    if (created.status !== 201) {
      throw new Error(`the key broker refused to create ${spec.name} (HTTP ${created.status})`);
    }
    return "created";
  }
  if (existing.status !== 200) {
    throw new Error(`the key broker answered HTTP ${existing.status} for ${spec.name}`);
  }
  if (JSON.stringify((existing.body as { policy?: unknown }).policy) === JSON.stringify(policy)) {
    return "unchanged";
  }
  const replaced = await requestJson(
    "PUT",
    new URL(`/keys/${spec.name}/policy`, admin.url),
    { policy },
    await adminOptions(admin, { action: "set-policy", key: spec.name, policy }),
  );
  if (replaced.status !== 200) {
    throw new Error(`the key broker refused the new policy of ${spec.name} (HTTP ${replaced.status})`);
  }
  return "policy-replaced";
}

/**
 * A named secret (e.g. Redis credentials) holding exactly `value`: created with it, or rotated to it with
 * the older versions destroyed, so the workload releases the current value and no stale copy is kept.
 */
export async function ensureNamedSecret(
  admin: KeyBrokerAdmin,
  spec: KeySpec,
  value: string,
): Promise<"created" | "rotated"> {
  const options = await adminOptions(admin);
  const encoded = Buffer.from(value, "utf8").toString("base64");
  if ((await ensureKey(admin, spec, encoded)) === "created") {
    return "created";
  }
  const rotated = await requestJson(
    "POST",
    new URL(`/keys/${spec.name}/rotate`, admin.url),
    { value: encoded },
    options,
  );
  const versions = (rotated.body ?? {}) as { version?: number; versions?: { version: number }[] };
  if (rotated.status !== 201 || versions.version === undefined) {
    throw new Error(`the key broker refused to rotate ${spec.name} (HTTP ${rotated.status})`);
  }
  for (const { version } of versions.versions ?? []) {
    if (version !== versions.version) {
      const destroyed = await requestJson(
        "DELETE",
        new URL(`/keys/${spec.name}/${version}`, admin.url),
        undefined,
        await adminOptions(admin, { action: "destroy-version", key: spec.name, version }),
      );
      if (destroyed.status !== 200) {
        throw new Error(
          `the key broker refused to destroy ${spec.name} version ${version} (HTTP ${destroyed.status})`,
        );
      }
    }
  }
  return "rotated";
}
