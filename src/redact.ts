/**
 * Keeps secrets (every value read from `${ENV}`, plus credential-bearing headers) out of what
 * leaves the process: logs, metrics, delivery history and the DLQ.
 */

export const REDACTED = "[REDACTED]";

/** Header names whose values are always credentials, whatever they contain. */
const SENSITIVE_HEADERS = new Set([
  "authorization",
  "proxy-authorization",
  "cookie",
  "set-cookie",
  "x-api-key",
  "api-key",
]);

export interface Redactor {
  text(value: string): string;
  /** Deep copy of a JSON value with secret substrings replaced. */
  json<T>(value: T): T;
  headers(headers: Readonly<Record<string, string>>): Record<string, string>;
}

export function createRedactor(secrets: readonly string[]): Redactor {
  // Longest first so a secret containing another is replaced whole; very short values would
  // blank out ordinary text, so they are left alone (a 1-3 character secret is no secret).
  const list = [...new Set(secrets)].filter((s) => s.length >= 4).sort((a, b) => b.length - a.length);
  const text = (value: string): string => {
    if (list.length === 0) return value;
    let out = value;
    for (const secret of list) if (out.includes(secret)) out = out.replaceAll(secret, REDACTED);
    return out;
  };
  const json = <T>(value: T): T => {
    if (list.length === 0) return value;
    if (typeof value === "string") return text(value) as T;
    if (Array.isArray(value)) return value.map(json) as T;
    if (value !== null && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, json(v)])) as T;
    }
    return value;
  };
  return {
    text,
    json,
    headers(headers) {
      const out: Record<string, string> = {};
      for (const [name, value] of Object.entries(headers)) {
        out[name] = SENSITIVE_HEADERS.has(name.toLowerCase()) ? REDACTED : text(value);
      }
      return out;
    },
  };
}
