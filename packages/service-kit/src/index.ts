export { createServiceApp, isClientError, type ServiceApp, type ServiceAppOptions } from "./service-app.js";
export { listenOnLoopback } from "./loopback.js";
export { readErrorTable } from "./error-table.js";
export { requiredEnv } from "./required-env.js";
export { closeOnSignals } from "./shutdown.js";
