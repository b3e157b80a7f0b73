// Runs every *.test.ts under packages/, services/ and bench/ with node's test runner.
// Node 20's `--test` does not expand globs, so this script collects the files.
import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

const roots = ["packages", "services", "bench", "deploy"];
const skip = new Set(["node_modules", "dist"]);

function collect(dir, out) {
  let names;
  try {
    names = readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) {
    if (skip.has(name)) continue;
    const path = join(dir, name);
    if (statSync(path).isDirectory()) collect(path, out);
    else if (name.endsWith(".test.ts")) out.push(path);
  }
}

const only = process.argv.slice(2);
const files = [];
for (const root of roots) collect(root, files);
const selected = only.length > 0 ? files.filter((f) => only.some((o) => f.includes(o))) : files;
selected.sort();
if (selected.length === 0) {
  console.error("run-tests: no test files found");
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  // A test that hangs fails after 5 minutes instead of holding CI until its limit (the slowest test takes
  // about 30 s here).
  [
    "--conditions=@cloister/source",
    "--import",
    "tsx",
    "--test",
    "--test-concurrency=2",
    "--test-timeout=300000",
    ...selected,
  ],
  { stdio: "inherit" },
);
process.exit(result.status ?? 1);
