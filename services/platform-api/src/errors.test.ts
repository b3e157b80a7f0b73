import assert from "node:assert/strict";
import { test } from "node:test";
import { readErrorTable } from "@cloister/service-kit";
import { platformErrors } from "./errors.js";

test("the README's error table lists every platform error with its status", () => {
  assert.deepEqual(
    readErrorTable(new URL("../README.md", import.meta.url)),
    Object.entries(platformErrors).map(([code, entry]) => [code, entry.status]),
  );
});
