import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  decodeRequest,
  decodeResponse,
  encapsulateRequest,
  encodeRequest,
  encodeRequestParts,
  encodeResponse,
  generateOhttpKeyPair,
  importOhttpKeyPair,
  OhttpError,
  OhttpGateway,
  parseKeyConfig,
  parseKeyConfigList,
  webHpke,
  type EncapsulateOptions,
  type OhttpErrorCode,
  type OhttpGatewayOptions,
} from "./index.js";
import { concatBytes } from "./bytes.js";
import { nodeHpke } from "./node.js";

const hex = (text: string): Uint8Array => new Uint8Array(Buffer.from(text.replace(/\s/g, ""), "hex"));
const toHex = (bytes: Uint8Array): string => Buffer.from(bytes).toString("hex");

// RFC 9458 Appendix A.
const rfc = {
  serverPrivateKey: hex("3c168975674b2fa8e465970b79c8dcf09f1c741626480bd4c6162fc5b6a98e1a"),
  keyConfig: hex(
    "01002031e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e79815500080001000100010003",
  ),
  request: hex("00034745540568747470730b6578616d706c652e636f6d012f"),
  ephemeralPrivateKey: hex("bc51d5e930bda26589890ac7032f70ad12e4ecb37abb1b65b1256c9c48999c73"),
  ephemeralPublicKey: hex("4b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b472"),
  encapsulatedRequest: hex(
    `010020000100014b28f881333e7c164ffc499ad9796f877f4e1051ee6d31bad19dec96c208b4726374e469135906992e1268c594d2a10c695d858c40a026e7965e7d86b83dd440b2c0185204b4d63525`,
  ),
  response: hex("0140c8"),
  responseNonce: hex("c789e7151fcba46158ca84b04464910d"),
  encapsulatedResponse: hex("c789e7151fcba46158ca84b04464910d86f9013e404feea014e7be4a441f234f857fbd"),
};

async function rejects(promise: Promise<unknown>, code: OhttpErrorCode): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof OhttpError, `expected OhttpError, got ${String(error)}`);
    assert.equal(error.code, code);
    return true;
  });
}

function throws(run: () => unknown, code: OhttpErrorCode): void {
  assert.throws(run, (error: unknown) => error instanceof OhttpError && error.code === code);
}

for (const hpke of [webHpke, nodeHpke]) {
  describe(`with ${hpke.name}`, () => {
    const seal = async (
      config: Parameters<typeof encapsulateRequest>[0],
      request: Uint8Array | readonly Uint8Array[],
      options: EncapsulateOptions = {},
    ) => encapsulateRequest(config, request, { ...options, hpke });
    const newGateway = (options: OhttpGatewayOptions): OhttpGateway => new OhttpGateway({ ...options, hpke });

    async function rfcGateway(now?: () => number): Promise<OhttpGateway> {
      const config = parseKeyConfig(rfc.keyConfig);
      const key = await importOhttpKeyPair({
        keyId: config.keyId,
        privateKey: rfc.serverPrivateKey,
        publicKey: config.publicKey,
      });
      return newGateway({ keys: [key], ...(now === undefined ? {} : { now }) });
    }

    describe("RFC 9458 Appendix A", () => {
      it("parses the key configuration with both symmetric algorithms", () => {
        const config = parseKeyConfig(rfc.keyConfig);
        assert.equal(config.keyId, 1);
        assert.equal(config.kemId, 0x20);
        assert.equal(
          toHex(config.publicKey),
          "31e1f05a740102115220e9af918f738674aec95f54db6e04eb705aae8e798155",
        );
        assert.deepEqual(config.symmetricAlgorithms, [
          { kdfId: 1, aeadId: 1 },
          { kdfId: 1, aeadId: 3 },
        ]);
      });

      it("encodes the example's Binary HTTP request byte for byte", () => {
        const encoded = encodeRequest({
          method: "GET",
          scheme: "https",
          authority: "example.com",
          path: "/",
        });
        assert.equal(toHex(encoded), toHex(rfc.request));
        assert.equal(toHex(encodeResponse({ status: 200 })), toHex(rfc.response));
      });

      it("reproduces the encapsulated request and response byte for byte", async () => {
        const sealed = await seal(rfc.keyConfig, rfc.request, {
          ephemeralKeyPair: { privateKey: rfc.ephemeralPrivateKey, publicKey: rfc.ephemeralPublicKey },
        });
        assert.equal(toHex(sealed.encapsulatedRequest), toHex(rfc.encapsulatedRequest));

        const gateway = await rfcGateway();
        const opened = await gateway.decapsulate(rfc.encapsulatedRequest);
        assert.equal(toHex(opened.request), toHex(rfc.request));
        assert.deepEqual(decodeRequest(opened.request), {
          method: "GET",
          scheme: "https",
          authority: "example.com",
          path: "/",
          headers: [],
          body: new Uint8Array(0),
          trailers: [],
        });
        const response = await opened.sealResponse(rfc.response, { responseNonce: rfc.responseNonce });
        assert.equal(toHex(response), toHex(rfc.encapsulatedResponse));
        assert.equal(toHex(await sealed.openResponse(rfc.encapsulatedResponse)), toHex(rfc.response));
        assert.equal(decodeResponse(await sealed.openResponse(response)).status, 200);
      });
    });

    describe("OHTTP round trips", () => {
      for (const suite of ["X25519-SHA256-AES128GCM", "P384-SHA384-AES256GCM"] as const) {
        it(`carries a request and a response with ${suite}`, async () => {
          const key = await generateOhttpKeyPair({ keyId: 7, suite });
          const gateway = newGateway({ keys: [key] });
          const [config] = parseKeyConfigList(gateway.keyConfigList());
          assert.ok(config);
          const body = new Uint8Array(70_000).map((_, i) => i % 251);
          const sealed = await seal(
            config,
            encodeRequest({
              method: "POST",
              path: "/v2/models/m/infer",
              headers: { "Content-Type": "application/json" },
              body,
            }),
          );
          const opened = await gateway.decapsulate(sealed.encapsulatedRequest);
          const request = decodeRequest(opened.request);
          assert.equal(request.method, "POST");
          assert.deepEqual(request.headers, [["content-type", "application/json"]]);
          assert.deepEqual(request.body, body);
          const reply = await opened.sealResponse(encodeResponse({ status: 201, body: "done" }));
          const response = decodeResponse(await sealed.openResponse(reply));
          assert.equal(response.status, 201);
          assert.equal(new TextDecoder().decode(response.body), "done");
        });
      }

      it("seals a request given in parts, a large body encrypted where it lies", async () => {
        const key = await generateOhttpKeyPair();
        const gateway = newGateway({ keys: [key] });
        // Several AES slices and a ragged end, so slicing and joining are both exercised.
        const body = new Uint8Array(100_003).map((_, i) => (i * 7) % 256);
        const init = {
          method: "POST",
          path: "/v2/models/m/infer",
          headers: [["content-type", "application/json"]] as const,
          body,
        };
        const parts = encodeRequestParts(init);
        assert.equal(toHex(concatBytes(...parts)), toHex(encodeRequest(init)));
        assert.ok(
          parts.some((part) => part.buffer === body.buffer),
          "the body is a view of the caller's bytes, not a copy",
        );
        const sealed = await seal(key.keyConfig, parts);
        assert.equal(
          toHex(concatBytes(...sealed.encapsulatedRequestParts)),
          toHex(sealed.encapsulatedRequest),
        );
        const opened = await gateway.decapsulate(sealed.encapsulatedRequest);
        assert.equal(toHex(opened.request), toHex(encodeRequest(init)));
        assert.deepEqual(decodeRequest(opened.request).body, body);
        // A flipped bit in a late slice fails the whole message, not just its slice.
        const again = await seal(key.keyConfig, encodeRequestParts(init));
        const tampered = again.encapsulatedRequest.slice();
        tampered[90_000] = (tampered[90_000] ?? 0) ^ 0x80;
        await rejects(gateway.decapsulate(tampered), "ERR_OHTTP_DECRYPT");
        // A large response through the single-buffer path too.
        const reply = await opened.sealResponse(encodeResponse({ status: 200, body }));
        assert.deepEqual(decodeResponse(await sealed.openResponse(reply)).body, body);
      });

      it("uses a fresh nonce, and so a fresh key and IV, for every response", async () => {
        const key = await generateOhttpKeyPair();
        const gateway = newGateway({ keys: [key] });
        const sealed = await seal(key.keyConfig, encodeRequest({ path: "/" }));
        const opened = await gateway.decapsulate(sealed.encapsulatedRequest);
        const same = encodeResponse({ status: 200, body: "identical plaintext" });
        const first = await opened.sealResponse(same);
        const second = await opened.sealResponse(same);
        // Nonce (16 bytes) differs, so the derived key and IV differ, so the ciphertexts differ.
        assert.notEqual(toHex(first.subarray(0, 16)), toHex(second.subarray(0, 16)));
        assert.notEqual(toHex(first.subarray(16)), toHex(second.subarray(16)));
        const nonces = new Set<string>();
        for (let i = 0; i < 200; i++) {
          const next = await seal(key.keyConfig, encodeRequest({ path: `/${i}` }));
          const reply = await (await gateway.decapsulate(next.encapsulatedRequest)).sealResponse(same);
          nonces.add(toHex(reply.subarray(0, 16)));
        }
        assert.equal(nonces.size, 200);
      });
    });

    describe("OHTTP rejects", () => {
      it("a bit flip anywhere in the ciphertext, the encapsulated key or the header", async () => {
        const key = await generateOhttpKeyPair({ keyId: 3 });
        const gateway = newGateway({ keys: [key] });
        const sealed = await seal(key.keyConfig, encodeRequest({ path: "/x", body: "secret" }));
        const bytes = sealed.encapsulatedRequest;
        for (const position of [7, 20, 38, 40, bytes.length - 1]) {
          const tampered = bytes.slice();
          tampered[position] = (tampered[position] ?? 0) ^ 0x01;
          await rejects(gateway.decapsulate(tampered), "ERR_OHTTP_DECRYPT");
        }
        const wrongSuite = bytes.slice();
        wrongSuite[6] = 0x02;
        await rejects(gateway.decapsulate(wrongSuite), "ERR_OHTTP_UNSUPPORTED_SUITE");
      });

      it("the wrong key id", async () => {
        const key = await generateOhttpKeyPair({ keyId: 3 });
        const gateway = newGateway({ keys: [key] });
        const sealed = await seal(key.keyConfig, encodeRequest({ path: "/x" }));
        const wrongId = sealed.encapsulatedRequest.slice();
        wrongId[0] = 4;
        await rejects(gateway.decapsulate(wrongId), "ERR_OHTTP_UNKNOWN_KEY");
        const other = await generateOhttpKeyPair({ keyId: 3 });
        const forOther = await seal(other.keyConfig, encodeRequest({ path: "/x" }));
        await rejects(gateway.decapsulate(forOther.encapsulatedRequest), "ERR_OHTTP_DECRYPT");
      });

      it("a rotated key: the previous version still opens but is not listed; a clash of key ids is refused", async () => {
        const previous = await generateOhttpKeyPair({ keyId: 1 });
        const current = await generateOhttpKeyPair({ keyId: 2 });
        const gateway = newGateway({ keys: [current], previousKeys: [previous] });
        assert.deepEqual(
          parseKeyConfigList(gateway.keyConfigList()).map((config) => config.keyId),
          [2],
          "only the current key is offered",
        );
        for (const key of [previous, current]) {
          const sealed = await seal(key.keyConfig, encodeRequest({ path: `/k${key.keyId}` }));
          const opened = await gateway.decapsulate(sealed.encapsulatedRequest);
          assert.equal(opened.keyId, key.keyId);
          assert.equal(decodeRequest(opened.request).path, `/k${key.keyId}`);
          const reply = await opened.sealResponse(encodeResponse({ status: 204 }));
          assert.equal(decodeResponse(await sealed.openResponse(reply)).status, 204);
        }
        // A gateway without the previous key refuses requests sealed to it.
        const sealedToPrevious = await seal(previous.keyConfig, encodeRequest({ path: "/x" }));
        await rejects(
          newGateway({ keys: [current] }).decapsulate(sealedToPrevious.encapsulatedRequest),
          "ERR_OHTTP_UNKNOWN_KEY",
        );
        assert.throws(
          () => newGateway({ keys: [current], previousKeys: [current] }),
          (error: unknown) => error instanceof OhttpError && error.code === "ERR_OHTTP_KEY_CONFIG",
        );
      });

      it("truncation at every length", async () => {
        const key = await generateOhttpKeyPair();
        const gateway = newGateway({ keys: [key] });
        const sealed = await seal(key.keyConfig, encodeRequest({ path: "/x" }));
        for (let length = 0; length < sealed.encapsulatedRequest.length; length++) {
          await assert.rejects(
            gateway.decapsulate(sealed.encapsulatedRequest.subarray(0, length)),
            (error: unknown) => {
              assert.ok(error instanceof OhttpError);
              assert.ok(["ERR_OHTTP_MALFORMED", "ERR_OHTTP_DECRYPT"].includes(error.code), error.code);
              return true;
            },
          );
        }
        const opened = await gateway.decapsulate(sealed.encapsulatedRequest);
        const reply = await opened.sealResponse(encodeResponse({ status: 200, body: "ok" }));
        for (const length of [0, 16, 31, reply.length - 1]) {
          await assert.rejects(sealed.openResponse(reply.subarray(0, length)), OhttpError);
        }
      });

      it("a replayed request, and not a fresh one", async () => {
        let clock = 1_000_000;
        const key = await generateOhttpKeyPair();
        const gateway = newGateway({ keys: [key], replayWindowMs: 60_000, now: () => clock });
        const sealed = await seal(key.keyConfig, encodeRequest({ path: "/x" }));
        await gateway.decapsulate(sealed.encapsulatedRequest);
        await rejects(gateway.decapsulate(sealed.encapsulatedRequest), "ERR_OHTTP_REPLAY");
        const fresh = await seal(key.keyConfig, encodeRequest({ path: "/x" }));
        await gateway.decapsulate(fresh.encapsulatedRequest);
        clock += 61_000;
        // Past the window the cache forgets; the horizon tells the server to refuse inner requests that old.
        assert.equal(gateway.replayHorizon(), clock - 60_000);
      });

      it("a response opened with another request's context", async () => {
        const key = await generateOhttpKeyPair();
        const gateway = newGateway({ keys: [key] });
        const first = await seal(key.keyConfig, encodeRequest({ path: "/a" }));
        const second = await seal(key.keyConfig, encodeRequest({ path: "/b" }));
        const reply = await (
          await gateway.decapsulate(first.encapsulatedRequest)
        ).sealResponse(encodeResponse({ status: 200 }));
        await rejects(second.openResponse(reply), "ERR_OHTTP_DECRYPT");
      });

      it("malformed key configurations", () => {
        throws(() => parseKeyConfig(rfc.keyConfig.subarray(0, 20)), "ERR_OHTTP_KEY_CONFIG");
        throws(() => parseKeyConfig(new Uint8Array([...rfc.keyConfig, 0])), "ERR_OHTTP_KEY_CONFIG");
        const unknownKem = rfc.keyConfig.slice();
        unknownKem[2] = 0x99;
        throws(() => parseKeyConfig(unknownKem), "ERR_OHTTP_UNSUPPORTED_SUITE");
        throws(() => parseKeyConfigList(new Uint8Array(0)), "ERR_OHTTP_KEY_CONFIG");
      });
    });
  });
}

describe("the two HPKE backends interoperate", () => {
  for (const [sender, receiver] of [
    [webHpke, nodeHpke],
    [nodeHpke, webHpke],
  ] as const) {
    it(`${sender.name} seals, ${receiver.name} opens, and back`, async () => {
      const key = await generateOhttpKeyPair();
      const gateway = new OhttpGateway({ keys: [key], hpke: receiver });
      const sealed = await encapsulateRequest(
        key.keyConfig,
        encodeRequest({ path: "/i", body: "both ways" }),
        { hpke: sender },
      );
      const opened = await gateway.decapsulate(sealed.encapsulatedRequest);
      assert.equal(new TextDecoder().decode(decodeRequest(opened.request).body), "both ways");
      const reply = await opened.sealResponse(encodeResponse({ status: 200, body: "back" }));
      assert.equal(new TextDecoder().decode(decodeResponse(await sealed.openResponse(reply)).body), "back");
    });
  }
});

describe("Binary HTTP", () => {
  // RFC 9292 §5, Figures 8, 9, 11 and 13.
  const figure8 = hex(
    "0003474554056874747073000a2f68656c6c6f2e747874406c0a757365722d6167656e74346375726c2f372e31362e33206c69626375726c2f372e31362e33204f70656e53534c2f302e392e376c207a6c69622f312e322e3304686f73740f7777772e6578616d706c652e636f6d0f6163636570742d6c616e677561676506656e2c206d690000",
  );
  const figure9 = hex(
    "0203474554056874747073000a2f68656c6c6f2e7478740a757365722d6167656e74346375726c2f372e31362e33206c69626375726c2f372e31362e33204f70656e53534c2f302e392e376c207a6c69622f312e322e3304686f73740f7777772e6578616d706c652e636f6d0f6163636570742d6c616e677561676506656e2c206d6900000000000000000000000000",
  );
  const figure11 = hex(
    "0340660772756e6e696e670a22736c65657020313522004067046c696e6b233c2f7374796c652e6373733e3b2072656c3d7072656c6f61643b2061733d7374796c65046c696e6b243c2f7363726970742e6a733e3b2072656c3d7072656c6f61643b2061733d7363726970740040c804646174651d4d6f6e2c203237204a756c20323030392031323a32383a353320474d5406736572766572064170616368650d6c6173742d6d6f6469666965641d5765642c203232204a756c20323030392031393a31353a353620474d5404657461671422333461613338372d642d3135363865623030220d6163636570742d72616e6765730562797465730e636f6e74656e742d6c656e67746802353104766172790f4163636570742d456e636f64696e670c636f6e74656e742d747970650a746578742f706c61696e003348656c6c6f20576f726c6421204d7920636f6e74656e7420696e636c75646573206120747261696c696e672043524c462e0d0a0000",
  );
  const figure13 = hex(
    "0140c8001d5468697320636f6e74656e7420636f6e7461696e732043524c462e0d0a0d07747261696c65720474657874",
  );
  const helloHeaders: [string, string][] = [
    ["user-agent", "curl/7.16.3 libcurl/7.16.3 OpenSSL/0.9.7l zlib/1.2.3"],
    ["host", "www.example.com"],
    ["accept-language", "en, mi"],
  ];

  it("decodes Figure 8 (known length) and re-encodes it byte for byte, and Figure 9 means the same", () => {
    const request = decodeRequest(figure8);
    assert.equal(request.method, "GET");
    assert.equal(request.path, "/hello.txt");
    assert.deepEqual(request.headers, helloHeaders);
    // Our encoder leaves out the empty content and trailers (RFC 9292 §3.8), so compare without them.
    assert.equal(
      toHex(encodeRequest({ method: "GET", authority: "", path: "/hello.txt", headers: helloHeaders })),
      toHex(figure8.subarray(0, figure8.length - 2)),
    );
    assert.deepEqual(decodeRequest(figure9), request);
  });

  it("decodes Figure 11 (indeterminate length, 102 and 103 first) and Figure 13 (a trailer)", () => {
    const response = decodeResponse(figure11);
    assert.deepEqual(
      response.informational.map((entry) => entry.status),
      [102, 103],
    );
    assert.equal(response.status, 200);
    assert.equal(
      new TextDecoder().decode(response.body),
      "Hello World! My content includes a trailing CRLF.\r\n",
    );
    const withTrailer = decodeResponse(figure13);
    assert.deepEqual(withTrailer.trailers, [["trailer", "text"]]);
    assert.equal(new TextDecoder().decode(withTrailer.body), "This content contains CRLF.\r\n");
  });

  it("rejects malformed messages with a typed error", () => {
    throws(() => decodeRequest(hex("01")), "ERR_BHTTP_MALFORMED");
    throws(() => decodeRequest(hex("0003474554")), "ERR_BHTTP_MALFORMED");
    throws(() => decodeResponse(hex("0140")), "ERR_BHTTP_MALFORMED");
    throws(() => decodeResponse(hex("0100")), "ERR_BHTTP_MALFORMED");
    throws(() => decodeRequest(new Uint8Array([...rfc.request, 0x05])), "ERR_BHTTP_MALFORMED");
    throws(() => encodeRequest({ path: "/", headers: { "x-a": "bad\r\nvalue" } }), "ERR_BHTTP_MALFORMED");
    throws(() => encodeResponse({ status: 99 }), "ERR_BHTTP_MALFORMED");
    throws(() => decodeRequest(figure8.subarray(0, 40)), "ERR_BHTTP_MALFORMED");
    // Upper-case names, pseudo-fields and padded values would change meaning in HTTP/2 and HTTP/1.1.
    const withField = (name: string, value: string): Uint8Array => {
      const field = new Uint8Array([name.length, ...Buffer.from(name), value.length, ...Buffer.from(value)]);
      return new Uint8Array([...hex("000347455405687474707300022f78"), field.length, ...field]);
    };
    assert.deepEqual(decodeRequest(withField("accept", "*/*")).headers, [["accept", "*/*"]]);
    for (const [name, value] of [
      ["Accept", "x"],
      [":method", "POST"],
      ["x", " a"],
      ["x", "a\t"],
      ["x", "a\nb"],
    ]) {
      throws(() => decodeRequest(withField(name ?? "", value ?? "")), "ERR_BHTTP_MALFORMED");
    }
  });

  it("round-trips headers, bodies and padding", () => {
    const body = new TextEncoder().encode('{"a":1}');
    const encoded = encodeResponse({ status: 404, headers: [["content-type", "application/json"]], body });
    const padded = new Uint8Array([...encoded, 0, 0, 0]);
    const decoded = decodeResponse(padded);
    assert.equal(decoded.status, 404);
    assert.deepEqual(decoded.body, body);
  });
});

describe("OHTTP under mutation", () => {
  const runs = Number(process.env.CLOISTER_PROPERTY_RUNS ?? 500);

  it("every mutated or truncated encapsulated request fails with an OhttpError, never anything else", async () => {
    const key = await generateOhttpKeyPair({ keyId: 5 });
    const gateway = new OhttpGateway({ keys: [key] });
    const sealed = await encapsulateRequest(
      key.keyConfig,
      encodeRequest({ method: "POST", path: "/p", body: "x" }),
    );
    const length = sealed.encapsulatedRequest.length;
    await fc.assert(
      fc.asyncProperty(
        // Distinct positions: two flips of one byte with the same mask would cancel out and leave
        // the request intact (CI found exactly that counterexample).
        fc.uniqueArray(fc.tuple(fc.nat({ max: length - 1 }), fc.integer({ min: 1, max: 255 })), {
          minLength: 1,
          maxLength: 4,
          selector: ([position]) => position,
        }),
        fc.option(fc.nat()),
        async (flips, cut) => {
          const bytes = sealed.encapsulatedRequest.slice();
          for (const [position, mask] of flips) {
            bytes[position] = (bytes[position] ?? 0) ^ mask;
          }
          const input = cut === null ? bytes : bytes.subarray(0, cut % bytes.length);
          await assert.rejects(gateway.decapsulate(input), OhttpError);
        },
      ),
      { numRuns: Math.ceil(runs / 5) },
    );
  });

  it("Binary HTTP decoding of arbitrary bytes yields a message or an OhttpError", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 96 }), (bytes) => {
        for (const decode of [decodeRequest, decodeResponse]) {
          try {
            decode(bytes);
          } catch (error) {
            assert.ok(error instanceof OhttpError, String(error));
          }
        }
      }),
      { numRuns: runs * 4 },
    );
  });
});
