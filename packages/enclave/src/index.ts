export { EnclaveError, enclaveErrorCodes, type EnclaveErrorCode } from "./errors.js";
export { measureCode, measureSigner, type MeasureOptions } from "./measurement.js";
export { reportDataFor, type Evidence, type SealingPolicy, type TeeProvider } from "./providers/provider.js";
export { simulationProvider, type SimulatedIdentity } from "./providers/sim-provider.js";
export { gramineProvider, type GramineProviderOptions } from "./providers/gramine-provider.js";
export { tsmProvider, vcekFromCertificateTable, type TsmProviderOptions } from "./providers/tsm-provider.js";
export {
  requestBytes,
  requestJson,
  type BytesResponse,
  type HttpsClientOptions,
  type JsonResponse,
} from "./https-client.js";
export {
  attestAtStart,
  attestRequestBody,
  backoffMs,
  refreshDelayMs,
  type Attestation,
  type AttestAtStartOptions,
  type AttestationServiceClient,
  type WorkloadKeys,
} from "./attest-at-start.js";
export {
  verifyPeer,
  type PeerExpectations,
  type PeerIdentity,
  type PeerAttestationType,
} from "./verify-peer.js";
export {
  createDevCertificateAuthority,
  issueServerCertificate,
  type DevCertificateAuthority,
  type ServerCertificate,
} from "./dev-tls.js";
export {
  keyBrokerExpectationsFromEnv,
  releaseKey,
  releaseKeyVersion,
  type KeyBrokerClient,
  type ReleasedKey,
} from "./key-release.js";
export {
  logSharedOhttpKey,
  maxPreviousOhttpKeys,
  releaseSharedOhttpKey,
  type SharedOhttpKeys,
} from "./shared-ohttp-key.js";
export { retryAtStart, retryWhileUnreachable, type RetryWhileUnreachableOptions } from "./start-retry.js";
export { PeerVerifier, type PeerBinding, type PeerVerifierOptions } from "./peer-verifier.js";
export {
  connectConfidentialService,
  type ConfidentialResponse,
  type ConfidentialService,
  type ConfidentialServiceOptions,
} from "./confidential-client.js";
export {
  cloisterServices,
  devSigner,
  measureService,
  serviceCodeFolders,
  serviceTee,
  simulatedServiceTee,
  type CloisterService,
} from "./service-identity.js";
export {
  approveKeyChange,
  approverId,
  canonicalJson,
  checkKeyChangeApprovals,
  keyApprovalType,
  maxApprovalSeconds,
  policyDigest,
  type ApprovalCheck,
  type KeyChange,
} from "./key-approvals.js";
export {
  combineShares,
  createRecoveryBackup,
  openCustodianShare,
  openRecoveryBackup,
  openSubmittedShare,
  parseRecoveryBackup,
  recoveryBackupDigest,
  recoveryBackupFormat,
  recoveryCustodianId,
  splitSecret,
  submitRecoveryShare,
  type RecoveryBackup,
  type RecoveryExchange,
  type RecoveryShare,
  type SubmitRecoveryShareOptions,
} from "./key-recovery.js";
