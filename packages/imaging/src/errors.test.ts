import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { imagingErrorCodes } from "./errors.js";

test("the README's error table lists exactly the error codes", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const documented = [...readme.matchAll(/^\| `(ERR_[A-Z_]+)`/gm)].map((match) => match[1]);
  assert.deepEqual([...documented].sort(), [...imagingErrorCodes].sort());
});
