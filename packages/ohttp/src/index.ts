export { OhttpError, ohttpErrorCodes, type OhttpErrorCode } from "./errors.js";
export { defaultSuiteName, findSuite, suites, type OhttpSuite, type OhttpSuiteName } from "./suites.js";
export {
  encodeKeyConfig,
  encodeKeyConfigList,
  ohttpKeysMediaType,
  parseKeyConfig,
  parseKeyConfigList,
  selectSuite,
  type KeyConfig,
  type SymmetricAlgorithm,
} from "./key-config.js";
export {
  encapsulateRequest,
  ohttpRequestMediaType,
  ohttpResponseMediaType,
  type EncapsulatedRequest,
  type EncapsulateOptions,
} from "./client.js";
export {
  decapsulationProblem,
  ohttpKeyProblemType,
  generateOhttpKeyPair,
  importOhttpKeyPair,
  OhttpGateway,
  type DecapsulatedRequest,
  type OhttpGatewayOptions,
  type OhttpKeyPair,
  type SealResponseOptions,
} from "./gateway.js";
export { ReplayCache, type ReplayCacheOptions } from "./replay-cache.js";
export {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeRequestParts,
  encodeResponse,
  fieldValue,
  type BinaryRequest,
  type BinaryResponse,
  type FieldLine,
  type RequestInit,
  type ResponseInit,
} from "./bhttp.js";
export { webHpke, type HpkeBackend, type HpkeReceiver, type HpkeSender } from "./hpke-backend.js";
