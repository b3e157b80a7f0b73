import { readFileSync } from "node:fs";

/**
 * The `| \`ERR_…\` | status |` rows of a service README's error table, in order: each service's test
 * compares them with its error table in code, so the documentation cannot drift.
 */
export function readErrorTable(readme: URL | string): [code: string, status: number][] {
  const text = readFileSync(readme, "utf8");
  return [...text.matchAll(/^\| `(ERR_[A-Z_]+)`\s*\|\s*(\d{3})\s*\|/gm)].map((match) => [
    match[1] ?? "",
    Number(match[2]),
  ]);
}
