import assert from "node:assert/strict";
import { describe, it } from "node:test";
import fc from "fast-check";
import {
  allowedHostProblem,
  createAddressPolicy,
  hostIsTemplated,
  refusedAddressRange,
} from "../../src/delivery/address-policy.js";
import { compileStringTemplate } from "../../src/observers/template.js";

describe("outbound address policy: refused ranges", () => {
  const refused: [string, string][] = [
    ["127.0.0.1", "loopback"],
    ["127.255.0.9", "loopback"],
    ["10.0.0.1", "private network"],
    ["172.16.0.1", "private network"],
    ["172.31.255.255", "private network"],
    ["192.168.1.1", "private network"],
    ["169.254.169.254", "link-local (cloud metadata)"],
    ["100.64.0.1", "shared address space (CGNAT)"],
    ["100.100.100.200", "shared address space (CGNAT)"],
    ["0.0.0.0", "unspecified address"],
    ["224.0.0.1", "multicast"],
    ["255.255.255.255", "reserved (broadcast included)"],
    ["::1", "loopback"],
    ["[::1]", "loopback"],
    ["::", "unspecified address"],
    ["fc00::1", "private network (unique local)"],
    ["fd00:ec2::254", "private network (unique local)"],
    ["fe80::1", "link-local"],
    ["fe80::1%eth0", "link-local"],
    ["ff02::1", "multicast"],
    ["::ffff:127.0.0.1", "loopback, IPv4-mapped"],
    ["::ffff:7f00:1", "loopback, IPv4-mapped"],
    ["::ffff:169.254.169.254", "link-local (cloud metadata), IPv4-mapped"],
    ["::ffff:10.1.2.3", "private network, IPv4-mapped"],
    ["64:ff9b::a9fe:a9fe", "link-local (cloud metadata), NAT64"],
    ["2002:7f00:1::", "loopback, 6to4"],
  ];
  for (const [address, rule] of refused) {
    it(`refuses ${address} (${rule})`, () => {
      assert.equal(refusedAddressRange(address)?.rule, rule);
    });
  }

  const allowed = [
    "93.184.216.34",
    "8.8.8.8",
    "172.32.0.1",
    "100.128.0.1",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
  ];
  for (const address of allowed) {
    it(`allows the public address ${address}`, () => {
      assert.equal(refusedAddressRange(address), undefined);
    });
  }

  it("an IPv4 address and its IPv4-mapped IPv6 form are judged alike", () => {
    fc.assert(
      fc.property(fc.ipV4(), (v4) => {
        const a = refusedAddressRange(v4);
        const b = refusedAddressRange(`::ffff:${v4}`);
        assert.equal(a === undefined, b === undefined);
        if (a && b) assert.equal(b.cidr, a.cidr);
      }),
    );
  });

  it("every address of 10/8, 172.16/12, 192.168/16 and 127/8 is refused", () => {
    const octet = fc.integer({ min: 0, max: 255 });
    fc.assert(
      fc.property(octet, octet, octet, fc.integer({ min: 16, max: 31 }), (a, b, c, second) => {
        for (const ip of [
          `10.${a}.${b}.${c}`,
          `172.${second}.${b}.${c}`,
          `192.168.${b}.${c}`,
          `127.${a}.${b}.${c}`,
        ])
          assert.ok(refusedAddressRange(ip), ip);
      }),
    );
  });
});

describe("outbound address policy: allowed_hosts", () => {
  it("validates entries: names, wildcards, addresses and CIDR ranges", () => {
    for (const ok of [
      "hooks.internal",
      "localhost",
      "*.internal.example",
      "10.1.2.3",
      "10.0.0.0/8",
      "::1",
      "[::1]",
      "fd00::/8",
    ])
      assert.equal(allowedHostProblem(ok), undefined, ok);
    for (const bad of ["", "10.0.0.0/33", "host:8080", "http://x", "exa mple.com", "1.2.3.4/x", "[nope]"])
      assert.notEqual(allowedHostProblem(bad), undefined, bad);
  });

  it("a listed address or range is no longer refused; names match whole or by wildcard", () => {
    const policy = createAddressPolicy({
      allowedHosts: ["10.0.0.0/8", "::1", "hooks.internal", "*.corp.example", "127.0.0.1"],
    });
    assert.equal(policy.refusal("10.9.8.7"), undefined);
    assert.equal(policy.refusal("::1"), undefined);
    assert.equal(policy.refusal("::ffff:127.0.0.1"), undefined, "mapped form of a listed IPv4");
    assert.equal(policy.refusal("192.168.0.1")?.rule, "private network");
    assert.equal(policy.allowsHost("HOOKS.internal."), true);
    assert.equal(policy.allowsHost("a.b.corp.example"), true);
    assert.equal(policy.allowsHost("corp.example"), false, "a wildcard covers subdomains only");
    assert.equal(policy.allowsHost("evilcorp.example"), false);
    assert.equal(policy.allowsHost("[::1]"), true);
  });
});

describe("which url templates let event data choose the host", () => {
  it("a placeholder in the authority is untrusted; in the path or query it is not", () => {
    assert.equal(hostIsTemplated("http://{{ host }}/x"), true);
    assert.equal(hostIsTemplated("https://{{ tenant }}.example.com/hook"), true);
    assert.equal(hostIsTemplated("http://127.0.0.1:{{ port }}/x"), true);
    assert.equal(hostIsTemplated("https://{{ user }}@api.example.com/"), true);
    assert.equal(hostIsTemplated("https://api.example.com/orders/{{ id }}?t={{ tenant }}#{{ x }}"), false);
    assert.equal(hostIsTemplated("http://127.0.0.1:8080/notify"), false);
  });

  it("values in the path and query are percent-encoded and cannot move the request to another host", () => {
    const url = compileStringTemplate("https://api.example.com/orders/{{ id }}?note={{ note }}", {
      encode: "uri-component",
      fields: [
        { name: "id", type: "String", nullable: false },
        { name: "note", type: "String", nullable: false },
      ],
    });
    const rendered = url.render({
      event: "INSERT",
      old: null,
      new: { id: "../../admin@evil.example/x?y=1#z", note: "a&b=c d/e" },
      entity: "Order",
      observer: "o",
      eventId: "1",
      timestamp: "2025-01-01T00:00:00Z",
    });
    const parsed = new URL(rendered);
    assert.equal(parsed.host, "api.example.com");
    assert.equal(parsed.pathname, "/orders/..%2F..%2Fadmin%40evil.example%2Fx%3Fy%3D1%23z");
    assert.equal(parsed.searchParams.get("note"), "a&b=c d/e");
    assert.equal([...parsed.searchParams.keys()].length, 1);
    assert.equal(parsed.hash, "");
  });
});
