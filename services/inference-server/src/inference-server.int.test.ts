// The inference server over HTTPS with real attestation on both sides: the platform verifies the server
// before sending anything, the server verifies the platform inside every sealed request, and the host in
// between (logs, metrics, the wire) sees sizes, timings and outcome codes only.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { Writable } from "node:stream";
import { after, before, describe, it } from "node:test";
import { verifyPeer, requestBytes, type ConfidentialResponse } from "@cloister/enclave";
import { encodeDicom, grayImageFromBytes, preprocess, readMedMnistSplit } from "@cloister/imaging";
import {
  decodeResponse,
  encapsulateRequest,
  encodeRequest,
  ohttpRequestMediaType,
  parseKeyConfigList,
} from "@cloister/ohttp";
import { PNG } from "pngjs";
import { buildApp } from "./app.js";
import { runModel } from "./inference.js";
import {
  inferenceMeasurement,
  platformMeasurement,
  startConfidentialStack,
  type ConfidentialStack,
} from "./test-support/confidential-stack.js";

const medmnist = new URL("../../../../shared/data/medmnist/pneumoniamnist_trainval.npz", import.meta.url)
  .pathname;
const validation = readMedMnistSplit(medmnist, "val");
const modelName = "chest-xray-pneumonia";

let logged = "";
const logStream = new Writable({
  write(chunk: Buffer, _encoding, done) {
    logged += chunk.toString();
    done();
  },
});
let stack: ConfidentialStack;
before(async () => {
  stack = await startConfidentialStack({ logStream });
});
after(async () => {
  await stack.close();
});

function pngOf(index: number): Buffer {
  const png = new PNG({ width: 28, height: 28, colorType: 0, inputColorType: 0, bitDepth: 8 });
  const pixels = validation.images.subarray(index * 784, (index + 1) * 784);
  pixels.forEach((value, i) => {
    png.data.set([value, value, value, 255], i * 4);
  });
  return PNG.sync.write(png);
}

function body(response: ConfidentialResponse): Record<string, unknown> {
  return JSON.parse(Buffer.from(response.body).toString("utf8")) as Record<string, unknown>;
}

async function infer(
  image: { contentType: string; data: Uint8Array },
  id = "req-1",
): Promise<ConfidentialResponse> {
  return stack.client.request({
    method: "POST",
    path: `/v2/models/${modelName}/infer`,
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      id,
      image: { contentType: image.contentType, data: Buffer.from(image.data).toString("base64") },
    }),
  });
}

/** Sends a hand-made sealed request (for headers the client would never send) and opens the answer. */
async function sealedExchange(headers: Record<string, string>, path = "/v2/models") {
  const keyConfig = parseKeyConfigList(
    (await requestBytes("GET", new URL("/ohttp-keys", stack.inferenceUrl), undefined, { ca: stack.caPem }))
      .body,
  )[0];
  assert.ok(keyConfig);
  const sealed = await encapsulateRequest(keyConfig, encodeRequest({ method: "GET", path, headers }));
  const reply = await requestBytes(
    "POST",
    new URL("/ohttp", stack.inferenceUrl),
    { bytes: sealed.encapsulatedRequest, contentType: ohttpRequestMediaType },
    { ca: stack.caPem },
  );
  assert.equal(reply.status, 200);
  const response = decodeResponse(await sealed.openResponse(reply.body));
  return {
    status: response.status,
    body: JSON.parse(Buffer.from(response.body).toString()) as { code?: string },
  };
}

describe("confidential inference over OHTTP", () => {
  it("binds the OHTTP key and the served models' hashes into the server's attestation", async () => {
    const evidence = (
      await requestBytes("GET", new URL("/attestation", stack.inferenceUrl), undefined, { ca: stack.caPem })
    ).body;
    const attestation = JSON.parse(Buffer.from(evidence).toString()) as {
      token: string;
      quote: string;
      runtimeData: { data: string; dataType: string };
      keyConfig: string;
    };
    assert.equal(attestation.runtimeData.dataType, "JSON");
    const jwks = (await stack.attestationService.inject({ method: "GET", url: "/certs" })).json<{
      keys: never[];
    }>();
    const peer = await verifyPeer(attestation.token, {
      jwks,
      issuer: stack.attestationUrl,
      measurements: [inferenceMeasurement],
      allowDebug: true,
      allowSimulation: true,
      ohttpKeyConfig: attestation.keyConfig,
    });
    assert.deepEqual(
      peer.runtime.models,
      stack.models.map((model) => ({
        model: model.config.name,
        version: model.config.version,
        sha256: model.sha256,
      })),
    );
    assert.ok((peer.runtime.models as { model: string }[]).some((entry) => entry.model === modelName));
    // The runtime data in the response is the one hashed into the quote's report data.
    const runtime = Buffer.from(attestation.runtimeData.data, "base64url");
    const reportData = Buffer.from(attestation.quote, "base64url").subarray(48 + 320, 48 + 384);
    assert.equal(
      reportData.subarray(0, 32).toString("hex"),
      createHash("sha256").update(runtime).digest("hex"),
    );
  });

  it("serves the Open Inference Protocol: health, list, metadata", async () => {
    assert.equal((await stack.client.request({ path: "/v2/health/ready" })).status, 200);
    const list = body(await stack.client.request({ path: "/v2/models" })) as { models: { name: string }[] };
    assert.ok(list.models.some((model) => model.name === modelName));
    const metadata = body(await stack.client.request({ path: `/v2/models/${modelName}` })) as {
      inputs: { name: string; shape: number[] }[];
      parameters: { labels: string[]; intended_patients?: unknown };
    };
    assert.deepEqual(metadata.inputs[0], { name: "image", datatype: "FP32", shape: [-1, 1, 28, 28] });
    assert.deepEqual(metadata.parameters.labels, ["normal", "pneumonia"]);
    // Whom it is for (config.json's intendedPatients): the platform analyses no one else's images.
    assert.deepEqual(metadata.parameters.intended_patients, { minAgeYears: 1, maxAgeYears: 5 });
    assert.equal((await stack.client.request({ path: "/v2/models/no-such-model" })).status, 404);
  });

  it("returns, for a PNG, exactly what onnxruntime gives for the same preprocessed image", async () => {
    const model = stack.models.find((candidate) => candidate.config.name === modelName);
    assert.ok(model);
    for (const index of [0, 1, 2, 3]) {
      const response = await infer({ contentType: "image/png", data: pngOf(index) });
      assert.equal(response.status, 200);
      const result = body(response) as {
        outputs: { data: number[]; shape: number[] }[];
        parameters: { predicted_label: string; model_sha256: string };
        id: string;
      };
      const pixels = validation.images.subarray(index * 784, (index + 1) * 784);
      const direct = await runModel(
        model,
        preprocess(grayImageFromBytes(28, 28, pixels), model.config.preprocessing),
        1,
      );
      const [output] = result.outputs;
      assert.ok(output);
      assert.deepEqual(output.shape, [1, 2]);
      for (const [i, value] of output.data.entries()) {
        assert.ok(Math.abs(value - (direct[i] ?? 0)) < 1e-6);
      }
      assert.equal(result.parameters.model_sha256, model.sha256);
      assert.equal(result.id, "req-1");
      assert.match(
        response.headers.find(([name]) => name === "server-timing")?.[1] ?? "",
        /decode;dur=.*infer;dur=/,
      );
    }
  });

  it("accepts JSON tensors and a 512×512 DICOM, and refuses bad images with typed errors", async () => {
    const model = stack.models.find((candidate) => candidate.config.name === modelName);
    assert.ok(model);
    const tensor = preprocess(
      grayImageFromBytes(28, 28, validation.images.subarray(0, 784)),
      model.config.preprocessing,
    );
    const byTensor = await stack.client.request({
      method: "POST",
      path: `/v2/models/${modelName}/versions/1/infer`,
      body: JSON.stringify({
        inputs: [{ name: "image", shape: [1, 1, 28, 28], datatype: "FP32", data: Array.from(tensor) }],
      }),
    });
    assert.equal(byTensor.status, 200);

    const big = new Uint16Array(512 * 512).map(
      (_, i) => (validation.images[Math.floor(i / 512 / 18.3) * 28 + Math.floor((i % 512) / 18.3)] ?? 0) * 16,
    );
    const dicom = encodeDicom({
      rows: 512,
      columns: 512,
      pixels: big,
      bitsStored: 12,
      window: { center: 2048, width: 4096 },
      modality: "DX",
    });
    const byDicom = await infer({ contentType: "application/dicom", data: dicom });
    assert.equal(byDicom.status, 200, Buffer.from(byDicom.body).toString());

    const corrupt = pngOf(0).subarray(0, 60);
    const refused = [
      [await infer({ contentType: "image/png", data: corrupt }), 422, "ERR_IMAGE_DECODE"],
      [await infer({ contentType: "image/gif", data: pngOf(0) }), 415, "ERR_IMAGE_UNSUPPORTED"],
      [await infer({ contentType: "application/dicom", data: pngOf(0) }), 422, "ERR_IMAGE_DECODE"],
      [
        await stack.client.request({
          method: "POST",
          path: `/v2/models/${modelName}/infer`,
          body: "{not json",
        }),
        400,
        "ERR_BAD_REQUEST",
      ],
    ] as const;
    for (const [response, status, code] of refused) {
      assert.equal(response.status, status);
      assert.equal(body(response).code, code);
    }
  });

  it("refuses callers without a token, with another measurement, or with a stale Date — inside the encryption", async () => {
    const now = new Date().toUTCString();
    assert.deepEqual(await sealedExchange({ date: now }), {
      status: 401,
      body: { error: "the request carries no caller attestation token", code: "ERR_CALLER_UNAUTHENTICATED" },
    });
    const stranger = await stack.attestWorkload("66".repeat(32));
    const forbidden = await sealedExchange({ date: now, authorization: `Attestation ${stranger.token()}` });
    assert.equal(forbidden.status, 403);
    assert.equal(forbidden.body.code, "ERR_CALLER_FORBIDDEN");
    const stale = await sealedExchange({
      date: new Date(Date.now() - 3_600_000).toUTCString(),
      authorization: `Attestation ${stack.caller.token()}`,
    });
    assert.equal(stale.body.code, "ERR_REQUEST_STALE");
    const allowed = await sealedExchange({ date: now, authorization: `Attestation ${stack.caller.token()}` });
    assert.equal(allowed.status, 200);
    assert.equal(platformMeasurement.length, 64);
  });

  it("rejects replays, unknown keys and tampering at the gateway with RFC 9458 problem details", async () => {
    const keyConfig = Buffer.from(stack.client.keyConfig(), "base64url");
    const sealed = await encapsulateRequest(
      keyConfig,
      encodeRequest({
        path: "/v2/health/ready",
        headers: { date: new Date().toUTCString(), authorization: `Attestation ${stack.caller.token()}` },
      }),
    );
    const send = async (bytes: Uint8Array) =>
      requestBytes(
        "POST",
        new URL("/ohttp", stack.inferenceUrl),
        { bytes, contentType: ohttpRequestMediaType },
        { ca: stack.caPem },
      );
    assert.equal((await send(sealed.encapsulatedRequest)).status, 200);
    const replay = await send(sealed.encapsulatedRequest);
    assert.equal(replay.status, 400);
    assert.equal(
      (JSON.parse(Buffer.from(replay.body).toString()) as { code: string }).code,
      "ERR_OHTTP_REPLAY",
    );
    const wrongKey = sealed.encapsulatedRequest.slice();
    wrongKey[0] = (wrongKey[0] ?? 0) ^ 0xff;
    const unknown = JSON.parse(Buffer.from((await send(wrongKey)).body).toString()) as {
      code: string;
      type: string;
    };
    assert.equal(unknown.code, "ERR_OHTTP_UNKNOWN_KEY");
    assert.equal(unknown.type, "https://iana.org/assignments/http-problem-types#ohttp-key");
    const flipped = sealed.encapsulatedRequest.slice();
    flipped[flipped.length - 3] = (flipped[flipped.length - 3] ?? 0) ^ 1;
    assert.equal(
      (JSON.parse(Buffer.from((await send(flipped)).body).toString()) as { code: string }).code,
      "ERR_OHTTP_DECRYPT",
    );
    const plain = await requestBytes(
      "POST",
      new URL("/ohttp", stack.inferenceUrl),
      { bytes: new Uint8Array(10), contentType: "application/octet-stream" },
      { ca: stack.caPem },
    );
    assert.equal(plain.status, 415);
  });

  it("lets no sentinel PHI, image byte, token or key reach logs, metrics or the wire in plain text", async () => {
    const sentinelName = "SENTINEL^ZAPHOD^BEEBLEBROX";
    const sentinelMrn = "MRN-SENTINEL-424242";
    const sentinelId = "order-SENTINEL-777";
    const pixels = new Uint16Array(64 * 64).map((_, i) => 1000 + (i % 300));
    const dicom = encodeDicom({
      rows: 64,
      columns: 64,
      pixels,
      patientName: sentinelName,
      patientId: sentinelMrn,
      modality: "DX",
    });
    const base64 = Buffer.from(dicom).toString("base64");
    // Watch the wire too: what the host's proxy would see, in both directions.
    const keyConfig = Buffer.from(stack.client.keyConfig(), "base64url");
    const sealed = await encapsulateRequest(
      keyConfig,
      encodeRequest({
        method: "POST",
        path: `/v2/models/${modelName}/infer`,
        headers: { date: new Date().toUTCString(), authorization: `Attestation ${stack.caller.token()}` },
        body: JSON.stringify({ id: sentinelId, image: { contentType: "application/dicom", data: base64 } }),
      }),
    );
    const reply = await requestBytes(
      "POST",
      new URL("/ohttp", stack.inferenceUrl),
      { bytes: sealed.encapsulatedRequest, contentType: ohttpRequestMediaType },
      { ca: stack.caPem },
    );
    const opened = decodeResponse(await sealed.openResponse(reply.body));
    assert.equal(opened.status, 200);
    assert.ok(
      Buffer.from(opened.body).toString().includes(sentinelId),
      "the caller gets its id back, encrypted",
    );
    const through = await infer({ contentType: "application/dicom", data: dicom }, sentinelId);
    assert.equal(through.status, 200);

    const metrics = (await stack.inference.inject({ method: "GET", url: "/metrics" })).body;
    const secrets = [
      sentinelName,
      "BEEBLEBROX",
      sentinelMrn,
      sentinelId,
      base64.slice(200, 260),
      stack.caller.token().split(".")[2] ?? "",
      stack.caller.token().split(".")[1]?.slice(0, 40) ?? "",
    ];
    const wire = [
      Buffer.from(sealed.encapsulatedRequest).toString("latin1"),
      Buffer.from(reply.body).toString("latin1"),
    ];
    for (const secret of secrets) {
      assert.ok(secret.length > 8);
      assert.ok(!logged.includes(secret), `a log line contains ${secret.slice(0, 12)}…`);
      assert.ok(!metrics.includes(secret), "the metrics contain a secret");
      for (const bytes of wire) {
        assert.ok(!bytes.includes(secret), "the wire carries a secret in plain text");
      }
    }
    assert.match(logged, /"outcome":"OK"/);
    assert.match(logged, /"requestBytes":\d+/);
    assert.match(metrics, /inference_requests_total\{outcome="OK"\}/);
  });
});

describe("overload", () => {
  it("answers 503 with Retry-After, before opening anything, when too many requests are in flight", async () => {
    const busy = await buildApp({
      attestation: stack.inferenceAttestation,
      models: stack.models,
      callers: { verify: async () => Promise.reject(new Error("never reached")) },
      maxInFlight: 0,
    });
    after(() => busy.close());
    const response = await busy.inject({
      method: "POST",
      url: "/ohttp",
      headers: { "content-type": ohttpRequestMediaType },
      payload: Buffer.alloc(100),
    });
    assert.equal(response.statusCode, 503);
    assert.equal(response.headers["retry-after"], "1");
    assert.equal(response.json<{ code: string }>().code, "ERR_OVERLOADED");
  });
});
