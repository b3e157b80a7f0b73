// The key broker's keys for the local stack, bound by release policy to the measurements `cloister up` just
// computed. A key that exists keeps its value; its policy is replaced when the code (and so the measurement)
// changed since the last run, so records written by the previous build stay readable.
import { requestJson } from "@cloister/enclave";

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
  const options = { ca: admin.ca, headers: { authorization: `Bearer ${admin.adminToken}` } };
  const url = new URL(`/keys/${spec.name}`, admin.url);
  const policy = releasePolicy(admin, spec);
  const existing = await requestJson("GET", url, undefined, options);
  if (existing.status === 404) {
    const created = await requestJson(
      "PUT",
      url,
      value === undefined ? { policy } : { policy, value },
      options,
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
    options,
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
  const options = { ca: admin.ca, headers: { authorization: `Bearer ${admin.adminToken}` } };
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
      await requestJson("DELETE", new URL(`/keys/${spec.name}/${version}`, admin.url), undefined, options);
    }
  }
  return "rotated";
}
