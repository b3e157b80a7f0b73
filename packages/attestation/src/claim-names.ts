// Claim names of our own, shared by the attestation service and every verifier. Browser-safe.

/**
 * `true` in every token whose evidence chained to a simulation root rather than Intel's or AMD's.
 * Production verifiers reject such tokens (and production policies deny the debuggable evidence).
 */
export const simulationClaim = "x-cloister-simulation";
