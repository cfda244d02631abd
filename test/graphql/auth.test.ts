import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, type KeyObject, sign } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { GraphQLObjectType, GraphQLSchema, GraphQLString } from "graphql";
import { isFraiseqlError } from "../../src/errors.js";
import {
  type AuthConfig,
  createAuthorizer,
  createGraphqlHandler,
  type StartedHttpServer,
  startHttpServer,
} from "../../src/graphql/index.js";

const schema = new GraphQLSchema({
  query: new GraphQLObjectType({
    name: "Query",
    fields: { hello: { type: GraphQLString, resolve: () => "world" } },
  }),
});

const NOW = Date.UTC(2024, 4, 1, 12) / 1000;

function b64(value: unknown): string {
  return Buffer.from(JSON.stringify(value)).toString("base64url");
}

function hsToken(secret: string, claims: Record<string, unknown>, alg = "HS256"): string {
  const head = `${b64({ alg, typ: "JWT" })}.${b64(claims)}`;
  const hash = { HS256: "sha256", HS384: "sha384", HS512: "sha512" }[alg] ?? "sha256";
  return `${head}.${createHmac(hash, secret).update(head).digest("base64url")}`;
}

function asymToken(
  key: KeyObject,
  alg: "RS256" | "ES256" | "EdDSA",
  claims: Record<string, unknown>,
): string {
  const head = `${b64({ alg, typ: "JWT" })}.${b64(claims)}`;
  const signature = sign(
    alg === "EdDSA" ? null : "sha256",
    Buffer.from(head),
    alg === "ES256" ? { key, dsaEncoding: "ieee-p1363" } : key,
  );
  return `${head}.${signature.toString("base64url")}`;
}

function auth(overrides: Partial<AuthConfig>): AuthConfig {
  return {
    mode: "none",
    tokens: [],
    secret: undefined,
    publicKey: undefined,
    issuer: undefined,
    audience: undefined,
    ...overrides,
  };
}

describe("GraphQL endpoint authentication", () => {
  const servers: StartedHttpServer[] = [];

  async function endpoint(config: AuthConfig): Promise<(authorization?: string) => Promise<number>> {
    const authorize = createAuthorizer(config, { now: () => NOW * 1000 });
    const srv = await startHttpServer({
      port: 0,
      graphql: createGraphqlHandler(schema, authorize === undefined ? {} : { authorize }),
    });
    servers.push(srv);
    return async (authorization) => {
      const res = await fetch(`${srv.url}/graphql`, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          ...(authorization === undefined ? {} : { authorization }),
        },
        body: JSON.stringify({ query: "{ hello }" }),
      });
      const body = (await res.json()) as { data?: { hello: string } };
      if (res.status === 200) assert.equal(body.data?.hello, "world");
      return res.status;
    };
  }

  after(async () => {
    for (const srv of servers) await srv.close();
  });

  it("mode none lets every request through", async () => {
    assert.equal(createAuthorizer(auth({ mode: "none" })), undefined);
    const call = await endpoint(auth({ mode: "none" }));
    assert.equal(await call(), 200);
  });

  describe("bearer", () => {
    let call: (authorization?: string) => Promise<number>;
    before(async () => {
      call = await endpoint(auth({ mode: "bearer", tokens: ["first-token", "second-token"] }));
    });

    it("accepts any configured token", async () => {
      assert.equal(await call("Bearer first-token"), 200);
      assert.equal(await call("bearer second-token"), 200);
    });

    it("answers 401 without a token, with a wrong one or another scheme", async () => {
      assert.equal(await call(), 401);
      assert.equal(await call("Bearer first-toke"), 401);
      assert.equal(await call("Bearer first-token-and-more"), 401);
      assert.equal(await call("Basic Zmlyc3QtdG9rZW4="), 401);
    });

    it("leaves /health open", async () => {
      const srv = servers.at(-1)!;
      assert.equal((await fetch(`${srv.url}/health`)).status, 200);
    });
  });

  describe("jwt with a secret", () => {
    const secret = "a-long-shared-secret";
    let call: (authorization?: string) => Promise<number>;
    before(async () => {
      call = await endpoint(
        auth({ mode: "jwt", secret, issuer: "https://issuer.example", audience: "fraiseql" }),
      );
    });
    const good = { iss: "https://issuer.example", aud: "fraiseql", exp: NOW + 60, sub: "user-1" };

    it("accepts a valid HS256/HS512 token", async () => {
      assert.equal(await call(`Bearer ${hsToken(secret, good)}`), 200);
      assert.equal(
        await call(`Bearer ${hsToken(secret, { ...good, aud: ["other", "fraiseql"] }, "HS512")}`),
        200,
      );
    });

    it("refuses a bad signature, expiry, not-before, issuer, audience, alg none", async () => {
      assert.equal(await call(`Bearer ${hsToken("wrong-secret", good)}`), 401);
      assert.equal(await call(`Bearer ${hsToken(secret, { ...good, exp: NOW - 31 })}`), 401);
      assert.equal(await call(`Bearer ${hsToken(secret, { ...good, nbf: NOW + 31 })}`), 401);
      assert.equal(await call(`Bearer ${hsToken(secret, { ...good, iss: "https://evil.example" })}`), 401);
      assert.equal(await call(`Bearer ${hsToken(secret, { ...good, aud: "someone-else" })}`), 401);
      assert.equal(await call(`Bearer ${b64({ alg: "none" })}.${b64(good)}.`), 401);
      assert.equal(await call("Bearer not.a.jwt"), 401);
    });

    it("tolerates 30 s of clock difference", async () => {
      assert.equal(await call(`Bearer ${hsToken(secret, { ...good, exp: NOW - 29 })}`), 200);
    });
  });

  describe("jwt with a public key", () => {
    it("verifies RS256, ES256 and EdDSA, and refuses HS256 signed with the public key", async () => {
      for (const [type, alg] of [
        ["rsa", "RS256"],
        ["ec", "ES256"],
        ["ed25519", "EdDSA"],
      ] as const) {
        const pair =
          type === "rsa"
            ? generateKeyPairSync("rsa", { modulusLength: 2048 })
            : type === "ec"
              ? generateKeyPairSync("ec", { namedCurve: "P-256" })
              : generateKeyPairSync("ed25519");
        const pem = pair.publicKey.export({ type: "spki", format: "pem" }).toString();
        const call = await endpoint(auth({ mode: "jwt", publicKey: pem }));
        assert.equal(await call(`Bearer ${asymToken(pair.privateKey, alg, { exp: NOW + 10 })}`), 200, alg);
        const other = type === "rsa" ? generateKeyPairSync("rsa", { modulusLength: 2048 }) : pair;
        if (other !== pair) assert.equal(await call(`Bearer ${asymToken(other.privateKey, alg, {})}`), 401);
        assert.equal(
          await call(`Bearer ${hsToken(pem, { exp: NOW + 10 })}`),
          401,
          `${alg}: HS256 with the public key`,
        );
      }
    });

    it("refuses a public_key that is not PEM with a config error", () => {
      assert.throws(
        () => createAuthorizer(auth({ mode: "jwt", publicKey: "not a key" })),
        (err: unknown) =>
          isFraiseqlError(err, "FQL_CONFIG_INVALID") && err.location.key === "server.auth.public_key",
      );
    });
  });
});
