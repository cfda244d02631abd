/**
 * Payload encryption (SPEC §7): AES-256-GCM, each encrypted value is the string
 * `enc:v1:<base64(iv || ciphertext || tag)>` where iv is a fresh 12-byte nonce, tag the 16-byte GCM
 * tag and the plaintext the UTF-8 JSON text of the value; no associated data. Pure functions apart
 * from drawing random nonces.
 *
 * Field paths: a name in `fields` is a top-level key; when the object has no such key and the name
 * contains dots, it is followed as a path into nested objects (`customer.card.number`). A field
 * that is absent is left absent. When the body is an array (a batch), the fields are applied to
 * each element.
 */

import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { FraiseqlError } from "../errors.js";

/** Prefix of every encrypted value; the version names the format above. */
export const ENCRYPTED_PREFIX = "enc:v1:";

const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEX_KEY_RE = /^[0-9a-fA-F]{64}$/;
const BASE64_KEY_RE = /^[A-Za-z0-9+/_-]{43}=?$/;

/**
 * Decodes an encryption key given as base64 (standard or URL-safe alphabet, 43 or 44 characters)
 * or hex (64 characters) into its 32 bytes. Surrounding whitespace (a trailing newline from a
 * secrets file) is ignored.
 *
 * @throws FraiseqlError FQL_CONFIG_INVALID for anything else; the message gives the length seen but
 *   never the key text.
 */
export function parseEncryptionKey(text: string): Buffer {
  const t = text.trim();
  if (HEX_KEY_RE.test(t)) return Buffer.from(t, "hex");
  if (BASE64_KEY_RE.test(t)) {
    const key = Buffer.from(t.replace(/-/g, "+").replace(/_/g, "/"), "base64");
    if (key.length === KEY_BYTES) return key;
  }
  throw new FraiseqlError(
    "FQL_CONFIG_INVALID",
    `the encryption key must be 32 bytes written as base64 (44 characters) or hex (64 characters); got ${t.length} characters`,
    { hint: "generate one with: openssl rand -base64 32" },
  );
}

function checkKey(key: Buffer): Buffer {
  if (key.length !== KEY_BYTES) {
    throw new FraiseqlError(
      "FQL_CONFIG_INVALID",
      `an AES-256-GCM key is 32 bytes; this one is ${key.length} bytes`,
      { hint: "generate one with: openssl rand -base64 32" },
    );
  }
  return key;
}

/**
 * Encrypts one value: `enc:v1:<base64(iv || ciphertext || tag)>` over the JSON text of `value`
 * (`undefined` is encrypted as `null`).
 */
export function encryptValue(value: unknown, key: Buffer): string {
  checkKey(key);
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv);
  const head = cipher.update(JSON.stringify(value) ?? "null", "utf8");
  const tail = cipher.final();
  return ENCRYPTED_PREFIX + Buffer.concat([iv, head, tail, cipher.getAuthTag()]).toString("base64");
}

/**
 * Decrypts one `enc:v1:` string back to the value it held.
 *
 * @param key the 32-byte key, or its base64/hex text (see {@link parseEncryptionKey}).
 * @throws FraiseqlError FQL_DECRYPT_FAILED when the text is not an `enc:v1:` value, is truncated,
 *   was tampered with or the key is wrong (GCM authentication fails).
 */
export function decryptValue(s: string, key: Buffer | string): unknown {
  const k = checkKey(typeof key === "string" ? parseEncryptionKey(key) : key);
  if (!s.startsWith(ENCRYPTED_PREFIX)) {
    throw new FraiseqlError("FQL_DECRYPT_FAILED", `an encrypted value must start with "${ENCRYPTED_PREFIX}"`);
  }
  const raw = Buffer.from(s.slice(ENCRYPTED_PREFIX.length), "base64");
  if (raw.length < IV_BYTES + TAG_BYTES) {
    throw new FraiseqlError(
      "FQL_DECRYPT_FAILED",
      "the encrypted value is too short to hold a nonce and a tag",
    );
  }
  let plaintext: string;
  try {
    const decipher = createDecipheriv("aes-256-gcm", k, raw.subarray(0, IV_BYTES), {
      authTagLength: TAG_BYTES,
    });
    decipher.setAuthTag(raw.subarray(raw.length - TAG_BYTES));
    plaintext =
      decipher.update(raw.subarray(IV_BYTES, raw.length - TAG_BYTES), undefined, "utf8") +
      decipher.final("utf8");
  } catch (cause) {
    throw new FraiseqlError(
      "FQL_DECRYPT_FAILED",
      "the encrypted value does not authenticate: wrong key, or the value was altered",
      { cause },
    );
  }
  try {
    return JSON.parse(plaintext);
  } catch (cause) {
    throw new FraiseqlError("FQL_DECRYPT_FAILED", "the decrypted value is not JSON text", { cause });
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Returns a copy of `obj` with the value at `path` passed through `fn`; `obj` is not modified.
 * Absent paths leave the copy as it is.
 */
function mapField(
  obj: Record<string, unknown>,
  path: string,
  fn: (v: unknown, path: string) => unknown,
): Record<string, unknown> {
  if (Object.hasOwn(obj, path)) return { ...obj, [path]: fn(obj[path], path) };
  const dot = path.indexOf(".");
  if (dot <= 0) return obj;
  const head = path.slice(0, dot);
  const child = obj[head];
  if (!Object.hasOwn(obj, head) || !isPlainObject(child)) return obj;
  const mapped = mapField(child, path.slice(dot + 1), (v) => fn(v, path));
  return mapped === child ? obj : { ...obj, [head]: mapped };
}

function mapFields(
  body: unknown,
  fields: readonly string[],
  fn: (v: unknown, path: string) => unknown,
): unknown {
  if (Array.isArray(body)) return body.map((el) => mapFields(el, fields, fn));
  if (!isPlainObject(body)) return body;
  let out = body;
  for (const f of fields) out = mapField(out, f, fn);
  return out;
}

/**
 * Encrypts a webhook body before it is signed and sent. Without `fields` (or with an empty list)
 * the whole body becomes `{"encrypted": "enc:v1:..."}`; with `fields` each named field present in
 * the body (or in each element of an array body) is replaced by its `enc:v1:` string, and a body
 * that is neither an object nor an array is returned as it is. The input is never modified.
 *
 * @throws FraiseqlError FQL_CONFIG_INVALID when the key is not 32 bytes.
 */
export function encryptBody(body: unknown, key: Buffer, fields?: readonly string[]): unknown {
  checkKey(key);
  if (fields === undefined || fields.length === 0) return { encrypted: encryptValue(body, key) };
  return mapFields(body, fields, (v) => encryptValue(v, key));
}

function decryptDeep(v: unknown, key: Buffer): unknown {
  if (typeof v === "string") return v.startsWith(ENCRYPTED_PREFIX) ? decryptValue(v, key) : v;
  if (Array.isArray(v)) return v.map((el) => decryptDeep(el, key));
  if (isPlainObject(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, el] of Object.entries(v)) out[k] = decryptDeep(el, key);
    return out;
  }
  return v;
}

/**
 * Receiver side: the inverse of {@link encryptBody}, on the parsed JSON body (verify the signature
 * over the raw bytes first).
 *
 * - With `fields`: each named field present must be an `enc:v1:` string and is decrypted; a named
 *   field holding anything else is refused, so a sender cannot downgrade a field to plaintext.
 * - Without `fields`: a body that is exactly `{"encrypted": "enc:v1:..."}` becomes the decrypted
 *   body; any other body has every `enc:v1:` string inside it decrypted, wherever it is.
 * - A bare `enc:v1:` string is decrypted.
 *
 * @param key the 32-byte key, or its base64/hex text.
 * @throws FraiseqlError FQL_DECRYPT_FAILED when a value does not decrypt (wrong key, tampered).
 */
export function decryptPayload(body: unknown, key: Buffer | string, fields?: readonly string[]): unknown {
  const k = checkKey(typeof key === "string" ? parseEncryptionKey(key) : key);
  if (typeof body === "string") return body.startsWith(ENCRYPTED_PREFIX) ? decryptValue(body, k) : body;
  if (fields !== undefined && fields.length > 0) {
    return mapFields(body, fields, (v, path) => {
      if (typeof v !== "string" || !v.startsWith(ENCRYPTED_PREFIX)) {
        throw new FraiseqlError("FQL_DECRYPT_FAILED", `field "${path}" should be encrypted but is not`);
      }
      return decryptValue(v, k);
    });
  }
  if (isPlainObject(body)) {
    const keys = Object.keys(body);
    const only = body.encrypted;
    if (keys.length === 1 && typeof only === "string" && only.startsWith(ENCRYPTED_PREFIX)) {
      return decryptValue(only, k);
    }
  }
  return decryptDeep(body, k);
}
