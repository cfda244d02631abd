import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createCipheriv, randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  decryptPayload,
  decryptValue,
  ENCRYPTED_PREFIX,
  encryptBody,
  encryptValue,
  parseEncryptionKey,
} from "../../src/delivery/encryption.js";
import { isFraiseqlError } from "../../src/errors.js";

const KEY = Buffer.from("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f", "hex");
const ORDER = {
  order_id: "42",
  card: { number: "4111 1111 1111 1111", cvc: "123" },
  total: 99.99,
  tags: ["a"],
};

const isDecryptError = (e: unknown) => isFraiseqlError(e, "FQL_DECRYPT_FAILED");

function pythonCryptography(): false | string {
  const r = spawnSync("python3", ["-c", "import cryptography"]);
  if (r.error !== undefined) return "python3 is not installed";
  return r.status === 0 ? false : "the Python package cryptography is not installed";
}

describe("parseEncryptionKey", () => {
  it("accepts 32 bytes as hex, base64 and URL-safe base64, ignoring surrounding whitespace", () => {
    assert.deepEqual(parseEncryptionKey(KEY.toString("hex")), KEY);
    assert.deepEqual(parseEncryptionKey(KEY.toString("hex").toUpperCase()), KEY);
    assert.deepEqual(parseEncryptionKey(`${KEY.toString("base64")}\n`), KEY);
    assert.deepEqual(parseEncryptionKey(KEY.toString("base64url")), KEY);
  });

  it("rejects other lengths and text with FQL_CONFIG_INVALID, never echoing the key", () => {
    const bad = [
      randomBytes(16).toString("base64"),
      randomBytes(31).toString("hex"),
      randomBytes(33).toString("base64"),
      "correct horse battery staple",
      "",
    ];
    for (const text of bad) {
      assert.throws(
        () => parseEncryptionKey(text),
        (e: unknown) =>
          isFraiseqlError(e, "FQL_CONFIG_INVALID") && (text === "" || !e.describe().includes(text.trim())),
        text,
      );
    }
  });
});

describe("encryptBody / decryptPayload", () => {
  it("without fields, the whole body becomes {encrypted} and round-trips", () => {
    const enc = encryptBody(ORDER, KEY) as { encrypted: string };
    assert.deepEqual(Object.keys(enc), ["encrypted"]);
    assert.ok(enc.encrypted.startsWith(ENCRYPTED_PREFIX));
    assert.deepEqual(decryptPayload(enc, KEY), ORDER);
    assert.deepEqual(decryptPayload(enc, KEY.toString("base64")), ORDER);
  });

  it("the format is iv(12) || ciphertext || tag(16) over the JSON text", () => {
    const v = encryptValue({ a: 1 }, KEY);
    const raw = Buffer.from(v.slice(ENCRYPTED_PREFIX.length), "base64");
    assert.equal(raw.length, 12 + Buffer.byteLength('{"a":1}') + 16);
    // A value built independently with node:crypto decrypts.
    const iv = randomBytes(12);
    const c = createCipheriv("aes-256-gcm", KEY, iv);
    const ct = Buffer.concat([c.update('"hé"', "utf8"), c.final()]);
    const handmade = ENCRYPTED_PREFIX + Buffer.concat([iv, ct, c.getAuthTag()]).toString("base64");
    assert.equal(decryptValue(handmade, KEY), "hé");
  });

  it("a fresh nonce each time: the same value encrypts differently", () => {
    assert.notEqual(encryptValue("x", KEY), encryptValue("x", KEY));
  });

  it("fields: top-level and dotted paths are replaced, others untouched, input not modified", () => {
    const snapshot = structuredClone(ORDER);
    type Encrypted = { order_id: string; card: { number: unknown; cvc: string }; total: unknown };
    const enc = encryptBody(ORDER, KEY, ["total", "card.number", "missing", "card.nope.deeper"]) as Encrypted;
    assert.deepEqual(ORDER, snapshot);
    assert.equal(enc.order_id, "42");
    assert.equal(enc.card.cvc, "123");
    assert.ok(typeof enc.total === "string" && enc.total.startsWith(ENCRYPTED_PREFIX));
    assert.ok(typeof enc.card.number === "string" && enc.card.number.startsWith(ENCRYPTED_PREFIX));
    assert.equal("missing" in enc, false);
    assert.deepEqual(decryptPayload(enc, KEY, ["total", "card.number"]), ORDER);
    // Without the list, every enc:v1: string is found.
    assert.deepEqual(decryptPayload(enc, KEY), ORDER);
  });

  it("a top-level key containing a dot wins over the path", () => {
    const enc = encryptBody({ "a.b": 1, a: { b: 2 } }, KEY, ["a.b"]) as Record<string, unknown>;
    assert.ok(String(enc["a.b"]).startsWith(ENCRYPTED_PREFIX));
    assert.deepEqual(enc.a, { b: 2 });
  });

  it("fields apply to each element of an array (batch) body", () => {
    const batch = [
      { id: 1, card: "x" },
      { id: 2, card: "y" },
    ];
    const enc = encryptBody(batch, KEY, ["card"]) as Array<{ id: number; card: string }>;
    assert.deepEqual(
      enc.map((e) => e.id),
      [1, 2],
    );
    assert.ok(enc.every((e) => e.card.startsWith(ENCRYPTED_PREFIX)));
    assert.deepEqual(decryptPayload(enc, KEY, ["card"]), batch);
  });

  it("round-trips any JSON value", () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        // JSON text is what travels; -0 becomes 0 there, as in any JSON body.
        const normal = JSON.parse(JSON.stringify(value));
        assert.deepEqual(decryptPayload(encryptBody(value, KEY), KEY), normal);
      }),
    );
  });

  it("decryptPayload refuses a named field that is not encrypted (no silent downgrade)", () => {
    assert.throws(() => decryptPayload({ card: "plain" }, KEY, ["card"]), isDecryptError);
  });
});

describe("tampering and wrong keys", () => {
  const enc = encryptValue({ secret: "data" }, KEY);
  const raw = Buffer.from(enc.slice(ENCRYPTED_PREFIX.length), "base64");

  it("flipping any byte (iv, ciphertext or tag) fails with FQL_DECRYPT_FAILED", () => {
    for (let i = 0; i < raw.length; i++) {
      const t = Buffer.from(raw);
      t[i] = t[i]! ^ 0x01;
      assert.throws(
        () => decryptValue(ENCRYPTED_PREFIX + t.toString("base64"), KEY),
        isDecryptError,
        `byte ${i}`,
      );
    }
  });

  it("a wrong key fails with FQL_DECRYPT_FAILED", () => {
    assert.throws(() => decryptValue(enc, randomBytes(32)), isDecryptError);
    assert.throws(() => decryptPayload({ encrypted: enc }, randomBytes(32)), isDecryptError);
  });

  it("truncated or foreign values fail with FQL_DECRYPT_FAILED", () => {
    assert.throws(() => decryptValue(`${ENCRYPTED_PREFIX}AAAA`, KEY), isDecryptError);
    assert.throws(() => decryptValue("enc:v2:AAAA", KEY), isDecryptError);
  });

  it("a key of the wrong length is a config error", () => {
    assert.throws(
      () => encryptBody(ORDER, randomBytes(16)),
      (e: unknown) => isFraiseqlError(e, "FQL_CONFIG_INVALID"),
    );
    assert.throws(
      () => decryptValue(enc, randomBytes(24)),
      (e: unknown) => isFraiseqlError(e, "FQL_CONFIG_INVALID"),
    );
  });
});

describe("decryption with Python's cryptography package", () => {
  it("decrypts what we encrypt (AESGCM, no associated data)", { skip: pythonCryptography() }, () => {
    const script = `
import base64, json, sys
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
req = json.load(sys.stdin)
key = base64.b64decode(req["key"])
def decrypt(value):
    raw = base64.b64decode(value[len("enc:v1:"):])
    return json.loads(AESGCM(key).decrypt(raw[:12], raw[12:], None))
body = req["body"]
body["card"] = decrypt(body["card"])
print(json.dumps(body))
`;
    const body = encryptBody({ id: "7", card: { number: "4242", name: "Zoë" } }, KEY, ["card"]);
    const r = spawnSync("python3", ["-c", script], {
      input: JSON.stringify({ key: KEY.toString("base64"), body }),
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { id: "7", card: { number: "4242", name: "Zoë" } });
  });
});

describe("the Python decryption in docs/signing.md", () => {
  it("decrypts what we encrypt", { skip: pythonCryptography() }, () => {
    const docs = readFileSync(new URL("../../docs/signing.md", import.meta.url), "utf8");
    const block = [...docs.matchAll(/```python\n([\s\S]*?)```/g)]
      .map((m) => m[1]!)
      .find((b) => b.includes("def decrypt_value("));
    assert.ok(block, "docs/signing.md has a Python block defining decrypt_value");
    const script = `${block}\nimport sys\nreq = json.load(sys.stdin)\nprint(json.dumps(decrypt_value(req["value"], req["key"])))\n`;
    const value = { ssn: "078-05-1120", n: 1.5 };
    const r = spawnSync("python3", ["-c", script], {
      input: JSON.stringify({ value: encryptValue(value, KEY), key: KEY.toString("base64") }),
      encoding: "utf8",
    });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), value);
  });
});
