// Roots of trust, pinned by the SHA-256 of their DER SubjectPublicKeyInfo (hex). Certificates themselves
// are not shipped: Intel quotes carry their root in the PCK chain, and SNP chains come from the caller.

/** Intel SGX Root CA ("Intel SGX Root CA", valid until 2049). */
export const intelSgxRootCaSpkiSha256 = "a0af031289f5d5d4132f9186068a7fc13628633ba235777472e29b6b6c67a49e";

/** AMD Root Keys (ARK) for SEV-SNP, one per product line. */
export const amdArkSpkiSha256 = {
  Milan: "9f056bee44377e29308cb5ffa895bdfb62d18881fa6bed8d6f075b0204089cb9",
  Genoa: "429a69c9422aa258ee4d8db5fcda9c6470ef15f8cd5a9cebd6cbc7d90b863831",
  Turin: "4f125410563a2ab9a50356f9243f6fe0b6f73de98603f53f90339c70e9d7ad08",
} as const;

export type AmdProduct = keyof typeof amdArkSpkiSha256;
