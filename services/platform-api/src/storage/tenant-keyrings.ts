// Tenant keyrings from the key broker: the newest version of `tenant-<id>` and every older version it still
// holds, so records sealed before a rotation stay readable until re-encrypted. Keyrings are cached and asked
// for again after `refreshAfterMs` (the old one serves meanwhile), or at once by `refresh` (an admin's
// re-encryption, or a record under a version this replica has not seen yet).
import { PlatformError } from "../errors.js";
import { deriveTenantKeyringGenerations, type TenantKeyring } from "./record-crypto.js";

export interface ReleasedDataKey {
  readonly value: Uint8Array;
  readonly version: number;
  readonly versions: readonly number[];
}

export type ReleaseDataKey = (name: string, version?: number) => Promise<ReleasedDataKey>;

/** Releases the newest version of `name` and every other version the broker lists. */
export async function releaseKeyring(
  release: ReleaseDataKey,
  name: string,
  tenantId: string,
): Promise<TenantKeyring> {
  const newest = await release(name);
  const keys = new Map<number, Uint8Array>([[newest.version, newest.value]]);
  for (const version of newest.versions) {
    if (version !== newest.version) {
      keys.set(version, (await release(name, version)).value);
    }
  }
  return deriveTenantKeyringGenerations(keys, tenantId);
}

export interface TenantKeyrings {
  readonly keyring: (tenantId: string) => Promise<TenantKeyring>;
  readonly refresh: (tenantId: string) => Promise<TenantKeyring>;
}

export function createTenantKeyrings(options: {
  readonly release: ReleaseDataKey;
  /** The key broker's name for a tenant's data key (default `tenant-<id>`). */
  readonly keyName?: (tenantId: string) => string;
  /** Default 5 minutes: how long another replica's rotation can go unseen when nothing forces a refresh. */
  readonly refreshAfterMs?: number;
  readonly now?: () => number;
}): TenantKeyrings {
  const refreshAfterMs = options.refreshAfterMs ?? 5 * 60_000;
  const keyName = options.keyName ?? ((tenantId: string) => `tenant-${tenantId}`);
  const now = options.now ?? Date.now;
  const cached = new Map<string, { keyring: TenantKeyring; fetchedAt: number }>();
  const pending = new Map<string, Promise<TenantKeyring>>();

  const refresh = (tenantId: string): Promise<TenantKeyring> => {
    const running = pending.get(tenantId);
    if (running !== undefined) {
      return running;
    }
    const fetching = releaseKeyring(options.release, keyName(tenantId), tenantId);
    pending.set(tenantId, fetching);
    // A failed release is not cached: the previous keyring (if any) keeps serving, the next call asks again.
    return fetching.then(
      (keyring) => {
        pending.delete(tenantId);
        cached.set(tenantId, { keyring, fetchedAt: now() });
        return keyring;
      },
      (error: unknown) => {
        pending.delete(tenantId);
        throw error;
      },
    );
  };

  return {
    refresh,
    keyring: async (tenantId) => {
      const entry = cached.get(tenantId);
      if (entry === undefined) {
        return refresh(tenantId);
      }
      if (now() - entry.fetchedAt >= refreshAfterMs) {
        refresh(tenantId).catch(() => undefined);
      }
      return entry.keyring;
    },
  };
}

/** One keyring that can change under a running replica: the platform's own (`platform-system`). */
export interface KeyringSource {
  /** The keyring to use now (asked for again in the background once it is older than the refresh interval). */
  readonly keyring: () => Promise<TenantKeyring>;
  /** Asks the key broker again at once: a record named a version this replica has not seen yet. */
  readonly refresh: () => Promise<TenantKeyring>;
}

export const systemTenantId = "_system";

/** The platform's system keyring (`platform-system` at the key broker), refreshed like a tenant's. */
export function createSystemKeyringSource(options: {
  readonly release: ReleaseDataKey;
  readonly refreshAfterMs?: number;
  readonly now?: () => number;
}): KeyringSource {
  const keyrings = createTenantKeyrings({ ...options, keyName: () => "platform-system" });
  return {
    keyring: () => keyrings.keyring(systemTenantId),
    refresh: () => keyrings.refresh(systemTenantId),
  };
}

/** A keyring that never changes (tests, and callers given a keyring rather than a source). */
export function keyringSource(keyring: TenantKeyring | KeyringSource): KeyringSource {
  if ("keyring" in keyring) {
    return keyring;
  }
  return { keyring: async () => keyring, refresh: async () => keyring };
}

/**
 * Runs `work` with the keyring `keyrings.keyring` gives; when it meets a record under a key version this
 * replica has not fetched yet (ERR_KEY_UNAVAILABLE: another replica rotated first), runs it once more with
 * the keyring `keyrings.refresh` fetches. For work where no client's retry after a 503 can follow.
 */
export async function withKeyringRetry<T>(
  keyrings: { keyring: () => Promise<TenantKeyring>; refresh?: (() => Promise<TenantKeyring>) | undefined },
  work: (keyring: TenantKeyring) => Promise<T>,
): Promise<T> {
  try {
    return await work(await keyrings.keyring());
  } catch (error) {
    if (
      !(error instanceof PlatformError && error.code === "ERR_KEY_UNAVAILABLE") ||
      keyrings.refresh === undefined
    ) {
      throw error;
    }
    return work(await keyrings.refresh());
  }
}
