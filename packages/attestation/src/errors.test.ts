import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { AttestationError, attestationErrorCodes } from "./index.js";

test("the README's error table lists exactly the codes of AttestationError", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const documented = [...readme.matchAll(/^\| `(ERR_[A-Z_]+)`\s*\|/gm)].map((match) => match[1]);
  assert.deepEqual(documented, [...attestationErrorCodes]);
});

test("AttestationError carries its code and name", () => {
  const error = new AttestationError("ERR_QUOTE_FORMAT", "x");
  assert.equal(error.code, "ERR_QUOTE_FORMAT");
  assert.equal(error.name, "AttestationError");
  assert.ok(error instanceof Error);
});
