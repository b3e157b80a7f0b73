// For tests: a key broker on loopback in this process, attested by and trusting the confidential stack's
// attestation service, whose keys are released to one measurement each.
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import { buildApp as buildKeyBroker, createBrokerSigningKey } from "@cloister/key-broker";
import {
  attestAtStart,
  PeerVerifier,
  simulationProvider,
  type KeyBrokerClient,
  type PeerExpectations,
} from "@cloister/enclave";
import { listenOnLoopback } from "@cloister/service-kit";
import type { LoadContext } from "./confidential-stack.js";

export interface TestKeyBroker {
  readonly url: string;
  /** The broker's simulated measurement. */
  readonly measurement: string;
  /**
   * A workload's client of this broker, verifying its attestation (by default: its measurement, simulated
   * and debuggable evidence allowed).
   */
  readonly client: (expectations?: Partial<Omit<PeerExpectations, "issuer">>) => KeyBrokerClient;
  /** Creates `name` for `measurement`: with `value`, that value; without, 32 bytes the broker generates. */
  readonly createKey: (name: string, measurement: string, value?: Uint8Array) => Promise<void>;
  /** Adds a new generated version of `name`; answers its number. */
  readonly rotateKey: (name: string) => Promise<number>;
  /** Destroys one older version of `name`. */
  readonly destroyKeyVersion: (name: string, version: number) => Promise<void>;
  readonly close: () => Promise<void>;
}

const adminToken = "test-key-broker-admin-token-0123456789";

export async function startTestKeyBroker(
  context: Omit<LoadContext, "attestation">,
  directory: string,
): Promise<TestKeyBroker> {
  const measurement = "b0".repeat(32);
  const provider = simulationProvider(context.platform, {
    mrenclave: measurement,
    mrsigner: "51".repeat(32),
    productId: 2,
    svn: 1,
  });
  const signing = await createBrokerSigningKey();
  const attestation = await attestAtStart({
    provider,
    attestationService: { url: context.attestationUrl, ca: context.caPem },
    runtime: { service: "key-broker" },
    boundKeys: [signing.publicJwk],
  });
  const { app, url } = await listenOnLoopback(async () =>
    buildKeyBroker({
      provider,
      identity: { signing, token: attestation.token },
      dataDirectory: join(directory, `keys-${randomBytes(4).toString("hex")}`),
      adminToken,
      authorityCa: context.caPem,
      https: context.tls,
    }),
  );
  return {
    url,
    measurement,
    client: (expectations = {}) => ({
      url,
      ca: context.caPem,
      identity: new PeerVerifier({
        attestationService: { url: context.attestationUrl, ca: context.caPem },
        expectations: {
          measurements: [measurement],
          allowSimulation: true,
          allowDebug: true,
          ...expectations,
        },
      }),
    }),
    createKey: async (name, measurement, value) => {
      const created = await app.inject({
        method: "PUT",
        url: `/keys/${name}`,
        headers: { authorization: `Bearer ${adminToken}` },
        payload: {
          ...(value === undefined ? {} : { value: Buffer.from(value).toString("base64") }),
          policy: {
            version: "1.0.0",
            anyOf: [
              {
                authority: context.attestationUrl,
                allOf: [{ claim: "x-ms-sgx-mrenclave", equals: measurement }],
              },
            ],
          },
        },
      });
      if (created.statusCode !== 201) {
        throw new Error(`the key broker did not create ${name}: ${created.body}`);
      }
    },
    rotateKey: async (name) => {
      const rotated = await app.inject({
        method: "POST",
        url: `/keys/${name}/rotate`,
        headers: { authorization: `Bearer ${adminToken}` },
        payload: {},
      });
      if (rotated.statusCode !== 201) {
        throw new Error(`the key broker did not rotate ${name}: ${rotated.body}`);
      }
      return rotated.json<{ version: number }>().version;
    },
    destroyKeyVersion: async (name, version) => {
      const destroyed = await app.inject({
        method: "DELETE",
        url: `/keys/${name}/${version}`,
        headers: { authorization: `Bearer ${adminToken}` },
      });
      if (destroyed.statusCode !== 200) {
        throw new Error(`the key broker did not destroy ${name} version ${version}: ${destroyed.body}`);
      }
    },
    close: async () => {
      attestation.stop();
      await app.close();
    },
  };
}
