import assert from "node:assert/strict";
import { test } from "node:test";
import { readErrorTable } from "@cloister/service-kit";
import { serviceErrors } from "./app.js";

test("the README's error table lists every service error with its status", () => {
  assert.deepEqual(
    readErrorTable(new URL("../README.md", import.meta.url)),
    Object.entries(serviceErrors).map(([code, entry]) => [code, entry.status]),
  );
});
