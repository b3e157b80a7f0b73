// AuthorityKeySets: a kid the cached set lacks refetches the authority's /certs at once if no fetch was made
// for it yet (a new replica's key, a rotation), and otherwise waits the interval (a flood of made-up kids).
import assert from "node:assert/strict";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { after, test } from "node:test";
import { SignJWT } from "jose";
import { AuthorityKeySets } from "./authorities.js";

let served = ["k1"];
let fetches = 0;
const server = createServer((_request, response) => {
  fetches++;
  response.setHeader("content-type", "application/json");
  response.end(JSON.stringify({ keys: served.map((kid) => ({ kty: "oct", kid })) }));
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
after(() => server.close());
const authority = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
const tokenWithKid = (kid: string): Promise<string> =>
  new SignJWT({}).setProtectedHeader({ alg: "HS256", kid }).sign(new Uint8Array(32));
const kidsOf = async (sets: AuthorityKeySets, kid: string): Promise<string[]> =>
  (await sets.forToken(authority, await tokenWithKid(kid))).keys.map((key) => key.kid ?? "");

test("a new kid refetches at once, once; a kid already fetched for waits the interval", async () => {
  const sets = new AuthorityKeySets(undefined, { refetchMs: 3_600_000, newKidMs: 0 });
  assert.deepEqual(await kidsOf(sets, "k1"), ["k1"]);
  assert.deepEqual(await kidsOf(sets, "k1"), ["k1"]);
  assert.equal(fetches, 1, "a known kid is served from the cache");
  // A new replica's key: fetched at once.
  served = ["k1", "k2"];
  assert.deepEqual(await kidsOf(sets, "k2"), ["k1", "k2"]);
  assert.equal(fetches, 2);
  // A kid the authority does not serve: one fetch, then the cache until the interval has passed.
  for (let attempt = 0; attempt < 3; attempt++) {
    assert.deepEqual(await kidsOf(sets, "k9"), ["k1", "k2"]);
  }
  assert.equal(fetches, 3);
});
