// The simulation platform: a locally generated stand-in for Intel's PKI (Root CA, PCK CA, PCK leaf with the
// SGX extension, TCB signing), a QE attestation key, and collateral signed as Intel signs it. Quotes it
// makes are byte-exact SGX ECDSA quote v3 and pass the same verifier; only the trust anchor differs.
import {
  createHash,
  createPrivateKey,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  sign,
  type KeyObject,
} from "node:crypto";
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AttestationError } from "../errors.js";
import { concatBytes, fromHex, toHex } from "../lib/bytes.js";
import { der } from "../lib/der.js";
import { parseCertificate, pemBlocks, spkiSha256, toPem, type Certificate } from "../lib/x509.js";
import type { CollateralBundle, TcbStatus } from "../sgx/collateral.js";
import { sgxExtensionOid } from "../sgx/pck-extension.js";
import { attestationKeyTypeEcdsaP256, intelQeVendorIdHex, teeTypeSgx } from "../sgx/quote.js";
import {
  basicConstraintsExtension,
  buildCertificate,
  buildRevocationList,
  extension,
  keyUsageExtension,
  type DistinguishedName,
} from "./certificates.js";

const organization = "Cloister Simulation";
const names = {
  root: { commonName: "Cloister SGX Simulation Root CA", organization, country: "US" },
  pckCa: { commonName: "Cloister SGX Simulation PCK Processor CA", organization, country: "US" },
  pck: { commonName: "Cloister SGX Simulation PCK Certificate", organization, country: "US" },
  tcbSigning: { commonName: "Cloister SGX Simulation TCB Signing", organization, country: "US" },
} satisfies Record<string, DistinguishedName>;

/** The simulated quoting enclave's identity (stands in for Intel's QE: MRSIGNER, ISVPRODID 1). */
const qeIsvProdId = 1;
const qeIsvSvn = 8;
const qeAttributes = "11000000000000000000000000000000";
const qeAttributesMask = "FBFFFFFFFFFFFFFF0000000000000000";
const collateralLifetimeMs = 30 * 24 * 3600 * 1000;
const formatVersion = 1;

export interface SimulatedEnclave {
  /** 32 bytes (hex or bytes). */
  readonly mrenclave: Uint8Array | string;
  /** 32 bytes (hex or bytes). */
  readonly mrsigner: Uint8Array | string;
  readonly productId: number;
  readonly svn: number;
  /** Up to 64 bytes; zero-padded to 64. */
  readonly reportData: Uint8Array;
}

export interface CollateralOptions {
  /** Issue time of the TCB info, QE identity and CRLs (default: now). They stay valid for 30 days. */
  readonly now?: Date;
  /** Serials (hex) to list in the PCK CRL, for revocation tests. */
  readonly revokedPckSerials?: readonly string[];
  /** Status of the platform's TCB level (default "UpToDate"). */
  readonly tcbStatus?: TcbStatus;
  /** Issue the TCB info for another FMSPC (hex), for mismatch tests. */
  readonly fmspc?: string;
}

interface PlatformState {
  readonly version: number;
  readonly createdAt: string;
  readonly fmspc: string;
  readonly pceId: string;
  readonly cpuSvn: string;
  readonly pceSvn: number;
  readonly ppid: string;
  readonly qeId: string;
  readonly qeMrEnclave: string;
  readonly qeMrSigner: string;
  readonly certificates: {
    readonly root: string;
    readonly pckCa: string;
    readonly pck: string;
    readonly tcbSigning: string;
  };
  readonly keys: {
    readonly root: string;
    readonly pckCa: string;
    readonly pck: string;
    readonly tcbSigning: string;
    readonly attestation: string;
  };
}

function newKey(): KeyObject {
  return generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey;
}

function pem(key: KeyObject): string {
  return key.export({ format: "pem", type: "pkcs8" }).toString();
}

function serial(): Uint8Array {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] as number) & 0x7f;
  return bytes;
}

function pckExtension(
  state: Pick<PlatformState, "ppid" | "cpuSvn" | "pceSvn" | "pceId" | "fmspc">,
): Uint8Array {
  const entry = (suffix: string, value: Uint8Array): Uint8Array =>
    der.sequence(der.oid(`${sgxExtensionOid}.${suffix}`), value);
  const cpuSvn = fromHex(state.cpuSvn) ?? new Uint8Array(16);
  const components = Array.from(cpuSvn, (svn, i) => entry(`2.${i + 1}`, der.integer(svn)));
  return der.sequence(
    entry("1", der.octetString(fromHex(state.ppid) ?? new Uint8Array(16))),
    entry(
      "2",
      der.sequence(
        ...components,
        entry("2.17", der.integer(state.pceSvn)),
        entry("2.18", der.octetString(cpuSvn)),
      ),
    ),
    entry("3", der.octetString(fromHex(state.pceId) ?? new Uint8Array(2))),
    entry("4", der.octetString(fromHex(state.fmspc) ?? new Uint8Array(6))),
    entry("5", der.integer(0, 0x0a)),
  );
}

function createState(now: Date): PlatformState {
  const keys = {
    root: newKey(),
    pckCa: newKey(),
    pck: newKey(),
    tcbSigning: newKey(),
    attestation: newKey(),
  };
  const notBefore = new Date(now.getTime() - 24 * 3600 * 1000);
  const notAfter = new Date(now.getTime() + 10 * 365 * 24 * 3600 * 1000);
  const identity = {
    fmspc: toHex(Uint8Array.of(0x00, 0xc1, 0x05, 0x7e, 0x00, 0x00)),
    pceId: "0000",
    cpuSvn: toHex(Uint8Array.of(12, 12, 3, 3, 255, 255, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
    pceSvn: 13,
    ppid: toHex(randomBytes(16)),
  };
  const certificate = (
    subject: DistinguishedName,
    issuer: DistinguishedName,
    key: KeyObject,
    signingKey: KeyObject,
    extensions: Uint8Array[],
  ): string =>
    toPem(
      buildCertificate({
        serial: serial(),
        issuer,
        subject,
        notBefore,
        notAfter,
        publicKey: key,
        signingKey,
        extensions,
      }),
    );
  return {
    version: formatVersion,
    createdAt: now.toISOString(),
    ...identity,
    qeId: toHex(randomBytes(16)),
    qeMrEnclave: toHex(createHash("sha256").update("cloister-simulated-quoting-enclave").digest()),
    qeMrSigner: toHex(createHash("sha256").update("cloister-simulated-qe-signer").digest()),
    certificates: {
      root: certificate(names.root, names.root, keys.root, keys.root, [
        basicConstraintsExtension(true, 1),
        keyUsageExtension([5, 6]),
      ]),
      pckCa: certificate(names.pckCa, names.root, keys.pckCa, keys.root, [
        basicConstraintsExtension(true, 0),
        keyUsageExtension([5, 6]),
      ]),
      pck: certificate(names.pck, names.pckCa, keys.pck, keys.pckCa, [
        basicConstraintsExtension(false),
        keyUsageExtension([0, 1]),
        extension(sgxExtensionOid, false, pckExtension(identity)),
      ]),
      tcbSigning: certificate(names.tcbSigning, names.root, keys.tcbSigning, keys.root, [
        basicConstraintsExtension(false),
        keyUsageExtension([0, 1]),
      ]),
    },
    keys: {
      root: pem(keys.root),
      pckCa: pem(keys.pckCa),
      pck: pem(keys.pck),
      tcbSigning: pem(keys.tcbSigning),
      attestation: pem(keys.attestation),
    },
  };
}

function enclaveReportBody(fields: {
  cpuSvn: Uint8Array;
  attributes: Uint8Array;
  mrEnclave: Uint8Array;
  mrSigner: Uint8Array;
  isvProdId: number;
  isvSvn: number;
  reportData: Uint8Array;
}): Uint8Array {
  const body = new Uint8Array(384);
  const view = new DataView(body.buffer);
  body.set(fields.cpuSvn, 0);
  body.set(fields.attributes, 48);
  body.set(fields.mrEnclave, 64);
  body.set(fields.mrSigner, 128);
  view.setUint16(256, fields.isvProdId, true);
  view.setUint16(258, fields.isvSvn, true);
  body.set(fields.reportData, 320);
  return body;
}

function certificateOf(pemText: string): Certificate {
  const [der] = pemBlocks(pemText);
  if (der === undefined) {
    throw new AttestationError("ERR_SIM_PLATFORM", "simulation platform certificate is unreadable");
  }
  return parseCertificate(der);
}

function littleEndian(value: number, size: 2 | 4): Uint8Array {
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  if (size === 2) {
    view.setUint16(0, value, true);
  } else {
    view.setUint32(0, value, true);
  }
  return out;
}

function bytes32(value: Uint8Array | string, what: string): Uint8Array {
  const out = typeof value === "string" ? fromHex(value) : value;
  if (out?.length !== 32) {
    throw new AttestationError("ERR_SIM_PLATFORM", `${what} must be 32 bytes`);
  }
  return out;
}

function u16(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffff) {
    throw new AttestationError("ERR_SIM_PLATFORM", `${what} must be an integer from 0 to 65535`);
  }
  return value;
}

/** A simulated SGX platform and its PKI. Holds private keys: keep it inside the TEE's data directory. */
export class SimulationPlatform {
  private readonly state: PlatformState;
  private readonly attestationKey: KeyObject;
  private readonly pckKey: KeyObject;
  private readonly collateralCache = new Map<string, CollateralBundle>();

  constructor(state: PlatformState) {
    if (state.version !== formatVersion) {
      throw new AttestationError(
        "ERR_SIM_PLATFORM",
        `simulation platform format ${state.version} is not supported`,
      );
    }
    this.state = state;
    try {
      this.attestationKey = createPrivateKey(state.keys.attestation);
      this.pckKey = createPrivateKey(state.keys.pck);
    } catch (cause) {
      throw new AttestationError("ERR_SIM_PLATFORM", "simulation platform keys are unreadable", { cause });
    }
  }

  /** The Sim Root CA certificate, PEM. Trust it explicitly (`trustedRoots`) to accept simulated quotes. */
  get rootCertificatePem(): string {
    return this.state.certificates.root;
  }

  /** SHA-256 of the Sim Root CA's SubjectPublicKeyInfo, the form `trustedRoots` and policies pin. */
  get rootSpkiSha256(): string {
    return spkiSha256(certificateOf(this.state.certificates.root));
  }

  get fmspc(): string {
    return this.state.fmspc;
  }

  /** The PCK leaf's serial number (hex), for revocation tests. */
  get pckSerialHex(): string {
    return certificateOf(this.state.certificates.pck).serialHex;
  }

  /** The PEM chain a quote carries: PCK leaf, PCK CA, root. */
  get pckCertificateChainPem(): string {
    const { pck, pckCa, root } = this.state.certificates;
    return pck + pckCa + root;
  }

  /**
   * A byte-exact SGX ECDSA quote v3 for the given enclave identity. The DEBUG attribute is always set:
   * a simulated enclave offers no confidentiality, and production policies reject debuggable enclaves.
   */
  quote(enclave: SimulatedEnclave): Uint8Array {
    if (!(enclave.reportData instanceof Uint8Array) || enclave.reportData.length > 64) {
      throw new AttestationError("ERR_SIM_PLATFORM", "reportData must be at most 64 bytes");
    }
    const reportData = new Uint8Array(64);
    reportData.set(enclave.reportData);
    const cpuSvn = fromHex(this.state.cpuSvn) ?? new Uint8Array(16);
    const header = new Uint8Array(48);
    header.set(littleEndian(3, 2), 0);
    header.set(littleEndian(attestationKeyTypeEcdsaP256, 2), 2);
    header.set(littleEndian(teeTypeSgx, 4), 4);
    header.set(littleEndian(qeIsvSvn, 2), 8);
    header.set(littleEndian(this.state.pceSvn, 2), 10);
    header.set(fromHex(intelQeVendorIdHex) ?? new Uint8Array(16), 12);
    header.set(fromHex(this.state.qeId) ?? new Uint8Array(16), 28);
    // ATTRIBUTES.FLAGS: INIT | DEBUG | MODE64BIT; XFRM: x87 | SSE.
    const attributes = new Uint8Array(16);
    attributes[0] = 0x07;
    attributes[8] = 0x03;
    const body = enclaveReportBody({
      cpuSvn,
      attributes,
      mrEnclave: bytes32(enclave.mrenclave, "mrenclave"),
      mrSigner: bytes32(enclave.mrsigner, "mrsigner"),
      isvProdId: u16(enclave.productId, "productId"),
      isvSvn: u16(enclave.svn, "svn"),
      reportData,
    });
    const signed = concatBytes(header, body);
    const signature = sign("sha256", signed, { key: this.attestationKey, dsaEncoding: "ieee-p1363" });
    const jwk = this.attestationKey.export({ format: "jwk" });
    const attestationPublicKey = concatBytes(
      Buffer.from(jwk.x ?? "", "base64url"),
      Buffer.from(jwk.y ?? "", "base64url"),
    );
    const qeAuthData = Uint8Array.from({ length: 32 }, (_, i) => i);
    const qeReportData = new Uint8Array(64);
    qeReportData.set(createHash("sha256").update(attestationPublicKey).update(qeAuthData).digest());
    const qeReport = enclaveReportBody({
      cpuSvn,
      attributes: fromHex(qeAttributes) ?? new Uint8Array(16),
      mrEnclave: fromHex(this.state.qeMrEnclave) ?? new Uint8Array(32),
      mrSigner: fromHex(this.state.qeMrSigner) ?? new Uint8Array(32),
      isvProdId: qeIsvProdId,
      isvSvn: qeIsvSvn,
      reportData: qeReportData,
    });
    const qeReportSignature = sign("sha256", qeReport, { key: this.pckKey, dsaEncoding: "ieee-p1363" });
    // Certification data type 5: the PEM chain, NUL-terminated as Intel's QE writes it.
    const chain = new TextEncoder().encode(`${this.pckCertificateChainPem}\0`);
    const signatureData = concatBytes(
      signature,
      attestationPublicKey,
      qeReport,
      qeReportSignature,
      littleEndian(qeAuthData.length, 2),
      qeAuthData,
      littleEndian(5, 2),
      littleEndian(chain.length, 4),
      chain,
    );
    return concatBytes(signed, littleEndian(signatureData.length, 4), signatureData);
  }

  /**
   * The collateral bundle for this platform (DESIGN.md §4 format): TCB info, QE identity and CRLs issued at
   * `now` and valid for 30 days, signed by the simulation TCB-signing key and CAs.
   */
  collateral(options: CollateralOptions = {}): CollateralBundle {
    const issued = options.now ?? new Date();
    // One bundle per hour and option set: fresh enough, and verification can reuse parsed collateral.
    const hour = new Date(Math.floor(issued.getTime() / 3_600_000) * 3_600_000);
    const key = JSON.stringify([
      hour.toISOString(),
      options.revokedPckSerials ?? [],
      options.tcbStatus ?? "UpToDate",
      options.fmspc ?? this.state.fmspc,
    ]);
    const cached = this.collateralCache.get(key);
    if (cached !== undefined) {
      return cached;
    }
    const nextUpdate = new Date(hour.getTime() + collateralLifetimeMs);
    const isoSeconds = (date: Date): string => `${date.toISOString().slice(0, 19)}Z`;
    const cpuSvn = Array.from(fromHex(this.state.cpuSvn) ?? new Uint8Array(16));
    const tcbInfo = JSON.stringify({
      id: "SGX",
      version: 3,
      issueDate: isoSeconds(hour),
      nextUpdate: isoSeconds(nextUpdate),
      fmspc: (options.fmspc ?? this.state.fmspc).toUpperCase(),
      pceId: this.state.pceId,
      tcbType: 0,
      tcbEvaluationDataNumber: 1,
      tcbLevels: [
        {
          tcb: { sgxtcbcomponents: cpuSvn.map((svn) => ({ svn })), pcesvn: this.state.pceSvn },
          tcbDate: isoSeconds(new Date(this.state.createdAt)),
          tcbStatus: options.tcbStatus ?? "UpToDate",
        },
      ],
    });
    const qeIdentity = JSON.stringify({
      id: "QE",
      version: 2,
      issueDate: isoSeconds(hour),
      nextUpdate: isoSeconds(nextUpdate),
      tcbEvaluationDataNumber: 1,
      miscselect: "00000000",
      miscselectMask: "FFFFFFFF",
      attributes: qeAttributes,
      attributesMask: qeAttributesMask,
      mrsigner: this.state.qeMrSigner.toUpperCase(),
      isvprodid: qeIsvProdId,
      tcbLevels: [
        {
          tcb: { isvsvn: qeIsvSvn },
          tcbDate: isoSeconds(new Date(this.state.createdAt)),
          tcbStatus: "UpToDate",
        },
      ],
    });
    const tcbSigningKey = createPrivateKey(this.state.keys.tcbSigning);
    const signText = (text: string): string =>
      toHex(
        sign("sha256", new TextEncoder().encode(text), { key: tcbSigningKey, dsaEncoding: "ieee-p1363" }),
      );
    const crl = (
      issuer: DistinguishedName,
      signingKeyPem: string,
      revokedSerials: readonly string[],
    ): string =>
      toHex(
        buildRevocationList({
          issuer,
          thisUpdate: hour,
          nextUpdate,
          revokedSerials,
          crlNumber: 1,
          signingKey: createPrivateKey(signingKeyPem),
        }),
      );
    const { root, pckCa, tcbSigning } = this.state.certificates;
    const bundle: CollateralBundle = {
      pck_crl_issuer_chain: pckCa + root,
      root_ca_crl: crl(names.root, this.state.keys.root, []),
      pck_crl: crl(names.pckCa, this.state.keys.pckCa, options.revokedPckSerials ?? []),
      tcb_info_issuer_chain: tcbSigning + root,
      tcb_info: tcbInfo,
      tcb_info_signature: signText(tcbInfo),
      qe_identity_issuer_chain: tcbSigning + root,
      qe_identity: qeIdentity,
      qe_identity_signature: signText(qeIdentity),
    };
    this.collateralCache.set(key, bundle);
    return bundle;
  }

  /**
   * A 256-bit sealing key for an enclave, like SGX EGETKEY with the MRENCLAVE policy: bound to this platform
   * and to the measurement, so other code (or the same code on another platform) derives another key.
   */
  sealingKey(mrenclave: Uint8Array | string, label: string): Uint8Array {
    const measurement = bytes32(mrenclave, "mrenclave");
    const platformSecret = createPrivateKey(this.state.keys.pck).export({ format: "der", type: "pkcs8" });
    return new Uint8Array(hkdfSync("sha256", platformSecret, measurement, `cloister-sim-seal:${label}`, 32));
  }

  /** Writes the platform (certificates and private keys) to `directory/sim-platform.json`, mode 0600. */
  save(directory: string): string {
    mkdirSync(directory, { recursive: true, mode: 0o700 });
    const path = join(directory, "sim-platform.json");
    writeFileSync(path, `${JSON.stringify(this.state, null, 2)}\n`, { mode: 0o600 });
    chmodSync(path, 0o600);
    return path;
  }
}

/**
 * Creates a new simulation platform with a fresh PKI.
 *
 * @example
 * ```ts
 * const platform = createSimulationPlatform();
 * const quote = simulateQuote(platform, { mrenclave, mrsigner, productId: 1, svn: 1, reportData });
 * verifyQuote(quote, { collateral: platform.collateral(), trustedRoots: [platform.rootCertificatePem] });
 * ```
 */
export function createSimulationPlatform(options: { now?: Date } = {}): SimulationPlatform {
  return new SimulationPlatform(createState(options.now ?? new Date()));
}

/** Loads a platform saved with {@link SimulationPlatform.save}. */
export function loadSimulationPlatform(directory: string): SimulationPlatform {
  let state: PlatformState;
  try {
    state = JSON.parse(readFileSync(join(directory, "sim-platform.json"), "utf8")) as PlatformState;
  } catch (cause) {
    throw new AttestationError("ERR_SIM_PLATFORM", "no readable simulation platform in that directory", {
      cause,
    });
  }
  return new SimulationPlatform(state);
}

/** A byte-exact SGX ECDSA quote v3 from the simulation platform (DEBUG attribute always set). */
export function simulateQuote(platform: SimulationPlatform, enclave: SimulatedEnclave): Uint8Array {
  return platform.quote(enclave);
}
