// The signed-in user, kept in memory only: no token, name or MRN is ever written to localStorage,
// sessionStorage, cookies or the URL. Reloading the page signs out (and attests the platform again).
import { useEffect, useRef } from "react";

export interface Session {
  readonly accessToken: string;
  readonly role: "clerk" | "clinician" | "admin";
  readonly email: string;
  readonly expiresAt: number;
}

/** The role and expiry from the platform's access token (display only; the platform verifies it). */
export function sessionFromToken(accessToken: string, email: string): Session {
  const payload = accessToken.split(".")[1] ?? "";
  const claims = JSON.parse(atob(payload.replace(/-/g, "+").replace(/_/g, "/"))) as {
    role?: Session["role"];
    exp?: number;
  };
  return {
    accessToken,
    role: claims.role ?? "clerk",
    email,
    expiresAt: (claims.exp ?? 0) * 1000,
  };
}

/** Calls `onIdle` after `minutes` without keyboard, pointer or scroll input, or when the token expires. */
export function useIdleSignOut(session: Session | undefined, minutes: number, onIdle: () => void): void {
  const last = useRef(Date.now());
  useEffect(() => {
    if (session === undefined) {
      return;
    }
    last.current = Date.now();
    const touch = (): void => {
      last.current = Date.now();
    };
    const events = ["keydown", "pointerdown", "wheel", "touchstart"] as const;
    for (const name of events) {
      window.addEventListener(name, touch, { passive: true });
    }
    const timer = window.setInterval(() => {
      if (Date.now() - last.current > minutes * 60_000 || Date.now() > session.expiresAt) {
        onIdle();
      }
    }, 1000);
    return () => {
      window.clearInterval(timer);
      for (const name of events) {
        window.removeEventListener(name, touch);
      }
    };
  }, [session, minutes, onIdle]);
}
