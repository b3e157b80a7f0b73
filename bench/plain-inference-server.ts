// The benchmark's baseline: a plain HTTPS Open Inference Protocol server with no OHTTP and no token
// checks, running the same decoding, preprocessing and onnxruntime session as the inference server, on the
// same service app (request metrics and error handling), so the ratio prices confidentiality alone.
// Benchmark code only; nothing in the product uses it.
import { decodeImage, preprocess } from "@cloister/imaging";
import { runModel, type LoadedModel } from "@cloister/inference-server";
import { createServiceApp } from "@cloister/service-kit";
import type { FastifyInstance } from "fastify";

export function buildPlainInferenceServer(
  models: readonly LoadedModel[],
  https: { cert: string; key: string },
): FastifyInstance {
  const { app } = createServiceApp({ logger: false, bodyLimit: 32 * 1024 * 1024, https });
  app.post<{ Params: { name: string }; Body: { id?: string; image: { contentType: string; data: string } } }>(
    "/v2/models/:name/infer",
    async (request, reply) => {
      const model = models.find((candidate) => candidate.config.name === request.params.name);
      if (model === undefined) {
        return reply.status(404).send({ error: "no such model" });
      }
      const { image } = request.body;
      const tensor = preprocess(
        decodeImage(image.contentType, Buffer.from(image.data, "base64")),
        model.config.preprocessing,
      );
      const output = await runModel(model, tensor, 1);
      const probabilities = Array.from(output);
      const best = probabilities.indexOf(Math.max(...probabilities));
      return {
        model_name: model.config.name,
        model_version: model.config.version,
        id: request.body.id,
        outputs: [
          {
            name: model.config.output.name,
            shape: [1, probabilities.length],
            datatype: "FP32",
            data: probabilities,
          },
        ],
        parameters: {
          predicted_index: best,
          predicted_label: model.config.labels[best],
          model_sha256: model.sha256,
        },
      };
    },
  );
  return app;
}
