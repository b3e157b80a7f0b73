// Collateral from an Intel PCS or PCCS (API v4): TCB info, QE identity, PCK CRL and root CA CRL, assembled
// into the collateral bundle. The signed JSON documents are kept byte-exact (their signatures cover those
// bytes). Responses are cached per (TEE type, FMSPC, PCK CA) until the collateral's own nextUpdate.
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import type { CollateralBundle } from "@cloister/attestation";

export interface PccsClientOptions {
  /** e.g. `https://pccs.example:8081` (PCCS) or `https://api.trustedservices.intel.com` (PCS). */
  readonly baseUrl: string;
  readonly ca?: string;
  /** Per request (default 5 s). */
  readonly timeoutMs?: number;
}

interface RawResponse {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: Buffer;
}

function get(url: URL, options: PccsClientOptions): Promise<RawResponse> {
  const send = url.protocol === "https:" ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const outgoing = send(
      url,
      {
        method: "GET",
        timeout: options.timeoutMs ?? 5000,
        ...(options.ca === undefined ? {} : { ca: options.ca }),
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () => {
          resolve({
            status: response.statusCode ?? 0,
            headers: response.headers,
            body: Buffer.concat(chunks),
          });
        });
        response.on("error", reject);
      },
    );
    outgoing.on("timeout", () => outgoing.destroy(new Error("PCCS request timed out")));
    outgoing.on("error", reject);
    outgoing.end();
  });
}

function header(response: RawResponse, name: string): string {
  const value = response.headers[name.toLowerCase()];
  const text = Array.isArray(value) ? value[0] : value;
  if (text === undefined) {
    throw new Error(`PCCS response lacks ${name}`);
  }
  return decodeURIComponent(text);
}

/** Splits `{"<field>":{…},"signature":"<hex>"}` without re-serializing the signed object. */
function signedDocument(body: string, field: string): { text: string; signature: string } {
  const match = new RegExp(
    `^\\s*\\{\\s*"${field}"\\s*:\\s*(\\{[\\s\\S]*\\})\\s*,\\s*"signature"\\s*:\\s*"([0-9a-fA-F]+)"\\s*\\}\\s*$`,
  ).exec(body);
  if (match?.[1] === undefined || match[2] === undefined) {
    throw new Error(`PCCS ${field} response is not {${field}, signature}`);
  }
  return { text: match[1], signature: match[2] };
}

function crlText(response: RawResponse): string {
  const text = response.body.toString("latin1").trim();
  // PCCS answers hex (or PEM); PCS with encoding=der answers DER bytes.
  return /^[0-9a-fA-F]+$/.test(text) || text.startsWith("-----BEGIN") ? text : response.body.toString("hex");
}

export class PccsClient {
  private readonly options: PccsClientOptions;
  private readonly cache = new Map<string, { bundle: CollateralBundle; until: number }>();

  constructor(options: PccsClientOptions) {
    this.options = options;
  }

  /** Fetches (or reuses) the collateral for a platform; throws a plain Error when the PCCS fails. */
  async collateral(
    tee: "sgx" | "tdx",
    fmspc: string,
    pckCa: "processor" | "platform",
    now: Date,
  ): Promise<CollateralBundle> {
    const key = `${tee}:${fmspc.toLowerCase()}:${pckCa}`;
    const cached = this.cache.get(key);
    if (cached !== undefined && now.getTime() <= cached.until) {
      return cached.bundle;
    }
    const base = this.options.baseUrl.replace(/\/+$/, "");
    const url = (path: string): URL => new URL(`${base}${path}`);
    const checked = async (path: string): Promise<RawResponse> => {
      const response = await get(url(path), this.options);
      if (response.status !== 200) {
        throw new Error(`PCCS ${path.split("?")[0] ?? path} answered ${response.status}`);
      }
      return response;
    };
    const [tcb, identity, pckCrl, rootCrl] = await Promise.all([
      checked(`/${tee}/certification/v4/tcb?fmspc=${encodeURIComponent(fmspc.toUpperCase())}`),
      checked(`/${tee}/certification/v4/qe/identity`),
      checked(`/sgx/certification/v4/pckcrl?ca=${pckCa}&encoding=der`),
      checked("/sgx/certification/v4/rootcacrl"),
    ]);
    const tcbInfo = signedDocument(tcb.body.toString("utf8"), "tcbInfo");
    const qeIdentity = signedDocument(identity.body.toString("utf8"), "enclaveIdentity");
    const bundle: CollateralBundle = {
      pck_crl_issuer_chain: header(pckCrl, "SGX-PCK-CRL-Issuer-Chain"),
      root_ca_crl: crlText(rootCrl),
      pck_crl: crlText(pckCrl),
      tcb_info_issuer_chain: header(tcb, "TCB-Info-Issuer-Chain"),
      tcb_info: tcbInfo.text,
      tcb_info_signature: tcbInfo.signature,
      qe_identity_issuer_chain: header(identity, "SGX-Enclave-Identity-Issuer-Chain"),
      qe_identity: qeIdentity.text,
      qe_identity_signature: qeIdentity.signature,
    };
    const nextUpdate = Date.parse((JSON.parse(tcbInfo.text) as { nextUpdate?: string }).nextUpdate ?? "");
    this.cache.set(key, { bundle, until: Number.isNaN(nextUpdate) ? now.getTime() : nextUpdate });
    return bundle;
  }
}
