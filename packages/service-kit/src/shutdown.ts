// Graceful stop: on SIGTERM or SIGINT a service stops accepting connections, finishes what it is doing
// (Fastify's onClose hooks: workers, stores, token refresh) and exits. A second signal exits at once.
import type { FastifyInstance } from "fastify";

export function closeOnSignals(
  app: FastifyInstance,
  signals: readonly NodeJS.Signals[] = ["SIGTERM", "SIGINT"],
): void {
  let closing = false;
  for (const signal of signals) {
    process.on(signal, () => {
      if (closing) {
        process.exit(1);
      }
      closing = true;
      app.log.info({ signal }, "stopping");
      app.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    });
  }
}
