import {
  constants,
  createHash,
  createHmac,
  createPublicKey,
  type KeyObject,
  timingSafeEqual,
  verify,
} from "node:crypto";
import type { IncomingMessage } from "node:http";
import type { ResolvedConfig } from "../config/types.js";
import { FraiseqlError } from "../errors.js";

/** `[server.auth]` as resolved. */
export type AuthConfig = ResolvedConfig["server"]["auth"];

/** Options of {@link createAuthorizer}. */
export interface AuthorizerOptions {
  /** Clock for JWT `exp`/`nbf`, ms since the epoch. (Default: Date.now) */
  now?: () => number;
  /** Tolerated clock difference for JWT `exp`/`nbf`, seconds. (Default: 30) */
  clockToleranceSeconds?: number;
}

function bearerToken(req: IncomingMessage): string | undefined {
  const header = req.headers.authorization;
  const match = header === undefined ? null : /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header);
  return match?.[1];
}

// Hashing both sides first makes the comparison constant-time whatever the lengths.
function sameSecret(a: string, b: string): boolean {
  return timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest());
}

const HMAC: Readonly<Record<string, string>> = { HS256: "sha256", HS384: "sha384", HS512: "sha512" };
const ASYMMETRIC: Readonly<Record<string, { hash: string | null; pss?: boolean; ecdsa?: boolean }>> = {
  RS256: { hash: "sha256" },
  RS384: { hash: "sha384" },
  RS512: { hash: "sha512" },
  PS256: { hash: "sha256", pss: true },
  PS384: { hash: "sha384", pss: true },
  PS512: { hash: "sha512", pss: true },
  ES256: { hash: "sha256", ecdsa: true },
  ES384: { hash: "sha384", ecdsa: true },
  ES512: { hash: "sha512", ecdsa: true },
  EdDSA: { hash: null },
};

function decodeJson(part: string): Record<string, unknown> | undefined {
  try {
    const value: unknown = JSON.parse(Buffer.from(part, "base64url").toString("utf8"));
    return typeof value === "object" && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Verifies a compact JWS token: signature (HS* with `secret`, or RS*, PS*, ES*, EdDSA with
 * `publicKey`; `alg: none` and an algorithm family other than the configured key's are refused),
 * then `exp`, `nbf`, and `iss`/`aud` when configured.
 * @returns true when the token is acceptable.
 */
export function verifyJwt(
  token: string,
  keys: {
    secret?: string | undefined;
    publicKey?: KeyObject | undefined;
    issuer?: string | undefined;
    audience?: string | undefined;
  },
  options: AuthorizerOptions = {},
): boolean {
  const parts = token.split(".");
  if (parts.length !== 3) return false;
  const [headerPart, payloadPart, signaturePart] = parts as [string, string, string];
  const header = decodeJson(headerPart);
  const claims = decodeJson(payloadPart);
  if (header === undefined || claims === undefined || typeof header.alg !== "string") return false;
  const signed = Buffer.from(`${headerPart}.${payloadPart}`);
  const signature = Buffer.from(signaturePart, "base64url");

  const hmac = HMAC[header.alg];
  const asymmetric = ASYMMETRIC[header.alg];
  if (hmac !== undefined && keys.secret !== undefined) {
    const expected = createHmac(hmac, keys.secret).update(signed).digest();
    if (expected.length !== signature.length || !timingSafeEqual(expected, signature)) return false;
  } else if (asymmetric !== undefined && keys.publicKey !== undefined) {
    try {
      const ok = verify(
        asymmetric.hash,
        signed,
        {
          key: keys.publicKey,
          ...(asymmetric.pss
            ? { padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }
            : {}),
          ...(asymmetric.ecdsa ? { dsaEncoding: "ieee-p1363" as const } : {}),
        },
        signature,
      );
      if (!ok) return false;
    } catch {
      return false;
    }
  } else {
    return false;
  }

  const now = (options.now ?? Date.now)() / 1000;
  const tolerance = options.clockToleranceSeconds ?? 30;
  if (claims.exp !== undefined && (typeof claims.exp !== "number" || now - tolerance >= claims.exp))
    return false;
  if (claims.nbf !== undefined && (typeof claims.nbf !== "number" || now + tolerance < claims.nbf))
    return false;
  if (keys.issuer !== undefined && claims.iss !== keys.issuer) return false;
  if (keys.audience !== undefined) {
    const aud = claims.aud;
    const audiences = Array.isArray(aud) ? aud : [aud];
    if (!audiences.includes(keys.audience)) return false;
  }
  return true;
}

/**
 * The `authorize` function of `createGraphqlHandler` for `[server.auth]`:
 * - `none`: undefined (no check; the config only allows it on a loopback host);
 * - `bearer`: `Authorization: Bearer <token>` must equal one of `tokens` (compared in constant time);
 * - `jwt`: `Authorization: Bearer <jwt>` must verify with `secret` (HS256/384/512) or `public_key`
 *   (PEM; RS*, PS*, ES*, EdDSA), be within `exp`/`nbf` (30 s tolerance), and match `issuer` and
 *   `audience` when they are set.
 * @throws FraiseqlError FQL_CONFIG_INVALID when `public_key` is not a PEM public key.
 */
export function createAuthorizer(
  auth: AuthConfig,
  options: AuthorizerOptions = {},
): ((req: IncomingMessage) => boolean) | undefined {
  if (auth.mode === "none") return undefined;
  if (auth.mode === "bearer") {
    const tokens = [...auth.tokens];
    return (req) => {
      const token = bearerToken(req);
      // Every configured token is compared, so timing does not reveal which one matched.
      return token !== undefined && tokens.map((t) => sameSecret(t, token)).includes(true);
    };
  }
  let publicKey: KeyObject | undefined;
  if (auth.publicKey !== undefined) {
    try {
      publicKey = createPublicKey(auth.publicKey);
    } catch (err) {
      throw new FraiseqlError("FQL_CONFIG_INVALID", "public_key is not a PEM public key", {
        key: "server.auth.public_key",
        cause: err,
        hint: 'give the key as "-----BEGIN PUBLIC KEY-----\n...\n-----END PUBLIC KEY-----"',
      });
    }
  }
  const keys = { secret: auth.secret, publicKey, issuer: auth.issuer, audience: auth.audience };
  return (req) => {
    const token = bearerToken(req);
    return token !== undefined && verifyJwt(token, keys, options);
  };
}
