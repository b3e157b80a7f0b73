// Starts a service on a free loopback port when the service must know its own URL before it is built
// (an attestation service's issuer): reserve the port, then build for that URL and listen on it.
import { createServer } from "node:net";
import type { FastifyInstance } from "fastify";

async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) =>
    server.close(() => {
      resolve();
    }),
  );
  if (address === null || typeof address === "string") {
    throw new Error("no loopback port");
  }
  return address.port;
}

export async function listenOnLoopback(
  build: (url: string) => Promise<FastifyInstance>,
  protocol: "https" | "http" = "https",
): Promise<{ app: FastifyInstance; url: string }> {
  const port = await freeLoopbackPort();
  const url = `${protocol}://127.0.0.1:${port}`;
  const app = await build(url);
  await app.listen({ port, host: "127.0.0.1" });
  return { app, url };
}
