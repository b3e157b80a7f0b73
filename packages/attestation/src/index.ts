export { AttestationError, attestationErrorCodes, type AttestationErrorCode } from "./errors.js";
export {
  parseQuote,
  type Quote,
  type SgxQuote,
  type TdxQuote,
  type QuoteHeader,
  type EnclaveReport,
  type TdReport,
  type QuoteSignatureData,
} from "./sgx/quote.js";
export {
  verifyQuote,
  quoteFmspc,
  type VerifyQuoteOptions,
  type VerifiedEvidence,
  type EvidenceTcbStatus,
  type TrustedRoot,
} from "./sgx/verify-quote.js";
export type { CollateralBundle, TcbStatus } from "./sgx/collateral.js";
export { parseSnpReport, type SnpReport, type SnpTcbVersion, type SnpGuestPolicy } from "./snp/report.js";
export { verifySnpReport, type VerifySnpReportOptions } from "./snp/verify-report.js";
export {
  sgxClaims,
  tdxClaims,
  snpClaims,
  runtimeDataClaims,
  verifyRuntimeDataBinding,
  type Claims,
  type ClaimValue,
} from "./claims.js";
export { intelSgxRootCaSpkiSha256, amdArkSpkiSha256, type AmdProduct } from "./trusted-roots.js";
export { parsePolicy, PolicySyntaxError, type Policy, type Rule } from "./policy/syntax.js";
export {
  evaluatePolicy,
  policyHash,
  toPolicyClaims,
  evidenceIssuer,
  policyIssuer,
  type PolicyResult,
  type PolicyClaim,
} from "./policy/evaluate.js";
export { issueAttestationToken, type TokenSigner, type IssueTokenOptions } from "./token/issue-token.js";
export {
  verifyAttestationToken,
  attestationTokenAlgorithms,
  type VerifyAttestationTokenOptions,
  type AttestationTokenClaims,
} from "./token/verify-token.js";
export {
  createSimulationPlatform,
  loadSimulationPlatform,
  simulateQuote,
  SimulationPlatform,
  type SimulatedEnclave,
  type CollateralOptions,
} from "./sim/platform.js";
export {
  buildCertificate,
  buildRevocationList,
  basicConstraintsExtension,
  keyUsageExtension,
  subjectAltNameExtension,
  type CertificateTemplate,
  type RevocationListTemplate,
  type DistinguishedName,
} from "./sim/certificates.js";
export { simulationClaim } from "./claim-names.js";
export { pemBlocks, toPem } from "./lib/x509.js";
export { parseCertificate, type Certificate } from "./lib/x509.js";
export { createVerificationCache, VerificationCache } from "./lib/verification-cache.js";
