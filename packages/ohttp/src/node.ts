// `@cloister/ohttp/node`: the node:crypto HPKE backend for servers and Node clients.
export { nodeHpke } from "./node-hpke.js";
