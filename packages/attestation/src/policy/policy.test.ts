import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { evaluatePolicy, parsePolicy, policyHash, PolicySyntaxError } from "../index.js";
import { assertAttestationError } from "../test-support/assert-error.js";

const evidence = {
  "x-ms-attestation-type": "sgx",
  "x-ms-sgx-is-debuggable": false,
  "x-ms-sgx-mrenclave": "AB".repeat(32).toLowerCase(),
  "x-ms-sgx-mrsigner": "cd".repeat(32),
  "x-ms-sgx-product-id": 4639,
  "x-ms-sgx-svn": 3,
};

describe("MAA policy language: parsing", () => {
  test("parses all three sections, bindings, && and every action", () => {
    const policy = parsePolicy(`version= 1.0;
configurationrules { => issueproperty(type="require_valid_aik_cert", value=false); };
authorizationrules {
  c:[type=="x-ms-sgx-is-debuggable", value==true] => deny();
  [type=="x-ms-sgx-svn", value>=2] && [type=="x-ms-sgx-product-id", value==4639] => permit();
};
issuancerules {
  c1:[type=="x-ms-sgx-mrsigner"] && c2:[type=="x-ms-sgx-svn", issuer=="AttestationService"] => issue(type="signer", value=c1.value);
  => add(type="stage", value="prod");
  c:[type=="stage", valueType=="String"] => issue(type="stage-seen", value=c.value);
};`);
    assert.equal(policy.configurationRules.length, 1);
    assert.equal(policy.authorizationRules.length, 2);
    assert.equal(policy.issuanceRules.length, 3);
    assert.equal(policy.authorizationRules[1]?.conditions.length, 2);
  });

  const syntaxErrors: [string, number, number, RegExp][] = [
    ["version=2.0; authorizationrules{}; issuancerules{};", 1, 9, /version=1.0/],
    [
      'version=1.0;\nauthorizationrules{\n  [type=="a"] => permit()\n};\nissuancerules{};',
      4,
      1,
      /expected ";"/,
    ],
    ["version=1.0; authorizationrules{ => allow(); }; issuancerules{};", 1, 37, /expected permit/],
    [
      'version=1.0; authorizationrules{ => permit(); };\nissuancerules{ => issue(type="x", value=c.value); };',
      2,
      41,
      /not bound/,
    ],
    ['version=1.0; authorizationrules{ [type=="a] => permit(); }; issuancerules{};', 1, 41, /unterminated/],
    [
      'version=1.0; authorizationrules{ => permit(); }; issuancerules{ => issueproperty(type="a", value=1); };',
      1,
      1,
      /configurationrules/,
    ],
    ["version=1.0; authorizationrules{ => permit(); }", 1, 48, /expected ";"/],
    ["version=1.0; authorizationrules{ [foo==1] => permit(); }; issuancerules{};", 1, 35, /expected type/],
  ];
  for (const [text, line, column, message] of syntaxErrors) {
    test(`syntax error at ${line}:${column} (${message.source})`, () => {
      let thrown: unknown;
      try {
        parsePolicy(text);
      } catch (error) {
        thrown = error;
      }
      assert.ok(thrown instanceof PolicySyntaxError, String(thrown));
      assert.equal(thrown.code, "ERR_POLICY_SYNTAX");
      assert.match(thrown.message, message);
      assert.deepEqual([thrown.line, thrown.column], [line, column], thrown.message);
    });
  }
});

describe("MAA policy language: evaluation", () => {
  test("permit, issue with bindings, add then issue, properties and the hash", () => {
    const text = `version=1.0;
configurationrules{ => issueproperty(type="require_valid_aik_cert", value=false); };
authorizationrules{
  c:[type=="x-ms-sgx-is-debuggable", value==true] => deny();
  [type=="x-ms-sgx-svn", value>=2] && [type=="x-ms-sgx-product-id", value==4639] => permit();
};
issuancerules{
  c1:[type=="x-ms-sgx-mrsigner"] && c2:[type=="x-ms-sgx-svn"] => issue(type="signer", value=c1.value);
  => add(type="stage", value="prod");
  c:[type=="stage"] => issue(type="stage-seen", value=c.value);
  c:[type=="x-ms-sgx-mrenclave", value=="${"ab".repeat(32).toUpperCase()}"] => issue(type="known-enclave", value=true);
};`;
    const result = evaluatePolicy(text, evidence);
    assert.deepEqual(result.issuedClaims, {
      signer: "cd".repeat(32),
      "stage-seen": "prod",
      "known-enclave": true,
    });
    assert.deepEqual(result.properties, { require_valid_aik_cert: false });
    assert.equal(result.policyHash, policyHash(text));
  });

  test("deny() wins over permit()", async () => {
    const text = `version=1.0; authorizationrules{
      => permit();
      [type=="x-ms-sgx-is-debuggable", value==true] => deny();
    }; issuancerules{};`;
    assert.doesNotThrow(() => evaluatePolicy(text, evidence));
    await assertAttestationError(
      () => evaluatePolicy(text, { ...evidence, "x-ms-sgx-is-debuggable": true }),
      "ERR_POLICY_DENIED",
      /denied/,
    );
  });

  test("no matching permit → ERR_POLICY_DENIED", async () => {
    const text = `version=1.0; authorizationrules{ [type=="x-ms-sgx-svn", value>3] => permit(); }; issuancerules{};`;
    await assertAttestationError(
      () => evaluatePolicy(text, evidence),
      "ERR_POLICY_DENIED",
      /no authorization rule/,
    );
  });

  test("comparisons never cross types, and a missing claim does not match", async () => {
    const text = `version=1.0; authorizationrules{ [type=="x-ms-sgx-svn", value>="3"] => permit(); }; issuancerules{};`;
    await assertAttestationError(() => evaluatePolicy(text, evidence), "ERR_POLICY_DENIED");
    const missing = `version=1.0; authorizationrules{ [type=="x-ms-tdx-thing"] => permit(); }; issuancerules{};`;
    await assertAttestationError(() => evaluatePolicy(missing, evidence), "ERR_POLICY_DENIED");
  });

  test("the production rule rejects debuggable (simulation) evidence", async () => {
    const production = `version=1.0;
authorizationrules{ [type=="x-ms-sgx-is-debuggable", value==false] => permit(); };
issuancerules{};`;
    assert.doesNotThrow(() => evaluatePolicy(production, evidence));
    await assertAttestationError(
      () => evaluatePolicy(production, { ...evidence, "x-ms-sgx-is-debuggable": true }),
      "ERR_POLICY_DENIED",
    );
  });

  test("a rule fires once per matching combination; repeated values become a list", () => {
    const text = `version=1.0; authorizationrules{ => permit(); };
issuancerules{ c:[type=="x-ms-sgx-svn"] || => issue(type="x", value=1); };`;
    assert.throws(() => parsePolicy(text), PolicySyntaxError);
    const multi = `version=1.0; authorizationrules{ => permit(); };
issuancerules{
  => add(type="role", value="a");
  => add(type="role", value="b");
  c:[type=="role"] => issue(type="roles", value=c.value);
};`;
    assert.deepEqual(evaluatePolicy(multi, evidence).issuedClaims, { roles: ["a", "b"] });
  });
});
