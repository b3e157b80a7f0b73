import assert from "node:assert/strict";
import { test } from "node:test";
import { BrokerError, parseReleasePolicy, satisfiesReleasePolicy } from "./app.js";

const authority = "https://attest.example";
const policy = parseReleasePolicy({
  version: "1.0.0",
  anyOf: [
    {
      authority: `${authority}/`,
      allOf: [
        { claim: "x-ms-sgx-mrenclave", equals: "AB" },
        { claim: "x-ms-sgx-svn", greaterOrEquals: 2 },
      ],
    },
    { authority: "https://other.example", allOf: [{ claim: "x-ms-runtime.service", equals: "api" }] },
  ],
});

test("conditions: equals (hex case-insensitive), numeric comparisons, dotted paths, per authority", () => {
  assert.ok(satisfiesReleasePolicy(policy, authority, { "x-ms-sgx-mrenclave": "ab", "x-ms-sgx-svn": 2 }));
  assert.ok(!satisfiesReleasePolicy(policy, authority, { "x-ms-sgx-mrenclave": "ab", "x-ms-sgx-svn": 1 }));
  assert.ok(!satisfiesReleasePolicy(policy, authority, { "x-ms-sgx-mrenclave": "ab", "x-ms-sgx-svn": "3" }));
  assert.ok(!satisfiesReleasePolicy(policy, authority, { "x-ms-runtime": { service: "api" } }));
  assert.ok(satisfiesReleasePolicy(policy, "https://other.example", { "x-ms-runtime": { service: "api" } }));
  assert.ok(
    !satisfiesReleasePolicy(policy, "https://other.example", {
      "x-ms-sgx-mrenclave": "ab",
      "x-ms-sgx-svn": 9,
    }),
  );
});

test("malformed policies are refused with ERR_BAD_REQUEST", () => {
  for (const bad of [
    null,
    {},
    { version: "1.0.0", anyOf: [] },
    { version: "2", anyOf: [{}] },
    { version: "1.0.0", anyOf: [{ authority: "ftp://x", allOf: [{ claim: "a", equals: 1 }] }] },
    { version: "1.0.0", anyOf: [{ authority: authority, allOf: [{ claim: "a", greaterOrEquals: "x" }] }] },
    { version: "1.0.0", anyOf: [{ authority: authority, allOf: [{ claim: "a" }] }] },
  ]) {
    assert.throws(
      () => parseReleasePolicy(bad),
      (error: unknown) => error instanceof BrokerError && error.code === "ERR_BAD_REQUEST",
      JSON.stringify(bad),
    );
  }
});
