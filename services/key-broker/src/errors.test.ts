import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { brokerErrors } from "./app.js";

test("the README's error table lists every broker error with its status", () => {
  const readme = readFileSync(new URL("../README.md", import.meta.url), "utf8");
  const rows = [...readme.matchAll(/^\| `(ERR_[A-Z_]+)`\s*\|\s*(\d{3})\s*\|/gm)].map((match) => [
    match[1],
    Number(match[2]),
  ]);
  assert.deepEqual(
    rows,
    Object.entries(brokerErrors).map(([code, entry]) => [code, entry.status]),
  );
});
