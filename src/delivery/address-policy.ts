/**
 * Outbound address policy (server-side request forgery protection). A webhook whose host comes
 * from event data (`url = "https://{{ tenant }}.example.com/hook"`) lets whoever writes a row
 * choose where the request goes; such requests may not reach loopback, private, link-local,
 * shared (CGNAT), unspecified, multicast or reserved addresses, unless `[webhooks] allowed_hosts`
 * lists the host or address. With `[webhooks] block_private_networks = true` every request is
 * checked, hosts written in the config included.
 *
 * The check runs in the connection step, on the address the socket is opened to (see
 * {@link guardConnector}): a DNS name that answers a public address to a first lookup and a
 * private one to the next (DNS rebinding) gains nothing, because there is only one lookup per
 * connection and its answer is both checked and used.
 *
 * The address arithmetic is pure; only {@link systemLookup} and the connector do I/O.
 */

import { lookup as dnsLookup } from "node:dns/promises";
import { isIP, isIPv4, isIPv6 } from "node:net";
import type { buildConnector } from "undici";

/** A range of addresses and why it is refused. */
export interface AddressRange {
  /** CIDR text, e.g. `"127.0.0.0/8"`. */
  readonly cidr: string;
  /** What the range is, e.g. `"loopback"`, `"private network"`. */
  readonly rule: string;
}

interface Cidr {
  readonly version: 4 | 6;
  readonly base: bigint;
  readonly prefix: number;
}

interface Range extends Cidr, AddressRange {}

/** One parsed address: the version and its value as an unsigned integer. */
interface Ip {
  readonly version: 4 | 6;
  readonly value: bigint;
}

function parseIPv4(text: string): bigint | undefined {
  if (!isIPv4(text)) return undefined;
  let value = 0n;
  for (const part of text.split(".")) value = (value << 8n) | BigInt(Number(part));
  return value;
}

function parseIPv6(text: string): bigint | undefined {
  const bare = text.split("%", 1)[0] ?? "";
  if (!isIPv6(bare)) return undefined;
  let groups = bare;
  // A trailing dotted quad (::ffff:127.0.0.1) stands for the last two 16-bit groups.
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(groups);
  if (dotted) {
    const v4 = parseIPv4(dotted[1] as string);
    if (v4 === undefined) return undefined;
    groups = `${groups.slice(0, dotted.index)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = "", tail] = groups.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const missing = 8 - left.length - right.length;
  const all = tail === undefined ? left : [...left, ...Array<string>(missing).fill("0"), ...right];
  if (all.length !== 8) return undefined;
  let value = 0n;
  for (const group of all) value = (value << 16n) | BigInt(Number.parseInt(group, 16));
  return value;
}

/** Parses an IPv4 or IPv6 address (brackets and a zone id allowed); undefined when it is not one. */
function parseIp(text: string): Ip | undefined {
  const bare = text.startsWith("[") && text.endsWith("]") ? text.slice(1, -1) : text;
  const v4 = parseIPv4(bare);
  if (v4 !== undefined) return { version: 4, value: v4 };
  const v6 = parseIPv6(bare);
  if (v6 !== undefined) return { version: 6, value: v6 };
  return undefined;
}

function parseCidr(text: string): Cidr | undefined {
  const slash = text.lastIndexOf("/");
  const ip = parseIp(slash < 0 ? text : text.slice(0, slash));
  if (ip === undefined) return undefined;
  const bits = ip.version === 4 ? 32 : 128;
  let prefix = bits;
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(p) || Number(p) > bits) return undefined;
    prefix = Number(p);
  }
  return { version: ip.version, base: ip.value, prefix };
}

function contains(cidr: Cidr, ip: Ip): boolean {
  if (cidr.version !== ip.version) return false;
  const shift = BigInt((cidr.version === 4 ? 32 : 128) - cidr.prefix);
  return cidr.base >> shift === ip.value >> shift;
}

function range(cidr: string, rule: string): Range {
  const parsed = parseCidr(cidr);
  if (parsed === undefined) throw new Error(`bad built-in range ${cidr}`);
  return { ...parsed, cidr, rule };
}

/** Addresses refused for untrusted hosts, most specific first. */
const REFUSED_RANGES: readonly Range[] = [
  range("0.0.0.0/8", "unspecified address"),
  range("127.0.0.0/8", "loopback"),
  range("10.0.0.0/8", "private network"),
  range("172.16.0.0/12", "private network"),
  range("192.168.0.0/16", "private network"),
  range("169.254.0.0/16", "link-local (cloud metadata)"),
  range("100.64.0.0/10", "shared address space (CGNAT)"),
  range("192.0.0.0/24", "IETF protocol assignments"),
  range("198.18.0.0/15", "benchmarking network"),
  range("224.0.0.0/4", "multicast"),
  range("240.0.0.0/4", "reserved (broadcast included)"),
  range("::/128", "unspecified address"),
  range("::1/128", "loopback"),
  range("fc00::/7", "private network (unique local)"),
  range("fe80::/10", "link-local"),
  range("fec0::/10", "private network (site-local)"),
  range("ff00::/8", "multicast"),
];

/** IPv6 ranges that carry an IPv4 address, and where it sits (bits from the right). */
const EMBEDDING_V4: readonly { readonly range: Cidr; readonly shift: bigint; readonly what: string }[] = [
  { range: parseCidr("::ffff:0:0/96") as Cidr, shift: 0n, what: "IPv4-mapped" },
  { range: parseCidr("64:ff9b::/96") as Cidr, shift: 0n, what: "NAT64" },
  { range: parseCidr("2002::/16") as Cidr, shift: 80n, what: "6to4" },
  { range: parseCidr("::/96") as Cidr, shift: 0n, what: "IPv4-compatible" },
];

/** The IPv4 address an IPv6 address carries (mapped, NAT64, 6to4, compatible), if any. */
function embeddedV4(ip: Ip): { ip: Ip; what: string } | undefined {
  if (ip.version !== 6 || ip.value <= 1n) return undefined;
  for (const e of EMBEDDING_V4) {
    if (contains(e.range, ip))
      return { ip: { version: 4, value: (ip.value >> e.shift) & 0xffffffffn }, what: e.what };
  }
  return undefined;
}

function refusedRange(ip: Ip): AddressRange | undefined {
  const inner = embeddedV4(ip);
  if (inner !== undefined) {
    const r = refusedRange(inner.ip);
    return r === undefined ? undefined : { cidr: r.cidr, rule: `${r.rule}, ${inner.what}` };
  }
  const found = REFUSED_RANGES.find((r) => contains(r, ip));
  return found === undefined ? undefined : { cidr: found.cidr, rule: found.rule };
}

/**
 * The refused range an address belongs to (loopback, private, link-local, CGNAT, unspecified,
 * multicast, reserved, and the IPv6 equivalents, IPv4-mapped/NAT64/6to4 forms included), or
 * undefined for a public address. Text that is not an IP address gives undefined.
 */
export function refusedAddressRange(address: string): AddressRange | undefined {
  const ip = parseIp(address);
  return ip === undefined ? undefined : refusedRange(ip);
}

const HOST_NAME =
  /^(\*\.)?([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*\.?$/i;

/**
 * Checks one `[webhooks] allowed_hosts` entry: a host name (`hooks.internal`), a wildcard for
 * its subdomains (`*.internal.example`), an IP address (`10.1.2.3`, `::1`, `[::1]`) or a CIDR
 * range (`10.0.0.0/8`, `fd00::/8`). Returns what is wrong with it, or undefined when valid.
 */
export function allowedHostProblem(entry: string): string | undefined {
  const text = entry.trim();
  if (text === "") return "must not be empty";
  if (text.includes("/") || isIP(text) !== 0 || text.startsWith("[")) {
    return parseCidr(text) === undefined ? "is not a valid IP address or CIDR range" : undefined;
  }
  if (text.includes(":")) return "must be a host name or an address, without a port";
  return HOST_NAME.test(text) ? undefined : "is not a valid host name, IP address or CIDR range";
}

/** How a connection is to be checked. */
export interface AddressPolicyOptions {
  /**
   * Host names (`hooks.internal`, `*.internal.example`), addresses and CIDR ranges that may be
   * reached even when they are private. (Default: [])
   */
  readonly allowedHosts?: readonly string[];
  /** Check every request, also those to hosts written in the config. (Default: false) */
  readonly blockPrivateNetworks?: boolean;
}

/** A compiled {@link AddressPolicyOptions}. */
export interface AddressPolicy {
  /** (Default: false) */
  readonly blockPrivateNetworks: boolean;
  /** True when the host name itself is listed in `allowed_hosts` (then its addresses are not checked). */
  allowsHost(hostname: string): boolean;
  /** Why `address` may not be connected to, or undefined when it may (public, or listed). */
  refusal(address: string): AddressRange | undefined;
}

function normalHost(hostname: string): string {
  let h = hostname.trim().toLowerCase();
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1);
  if (h.endsWith(".")) h = h.slice(0, -1);
  return h;
}

/**
 * Compiles the policy.
 * @throws Error when an `allowedHosts` entry is not valid (the config schema reports it first).
 */
export function createAddressPolicy(options: AddressPolicyOptions = {}): AddressPolicy {
  const names = new Set<string>();
  const suffixes: string[] = [];
  const cidrs: Cidr[] = [];
  for (const entry of options.allowedHosts ?? []) {
    const problem = allowedHostProblem(entry);
    if (problem !== undefined) throw new Error(`allowed_hosts entry ${JSON.stringify(entry)} ${problem}`);
    const text = entry.trim();
    const cidr = text.includes("/") || isIP(text) !== 0 || text.startsWith("[") ? parseCidr(text) : undefined;
    if (cidr !== undefined) cidrs.push(cidr);
    else if (text.startsWith("*.")) suffixes.push(normalHost(text.slice(1)));
    else names.add(normalHost(text));
  }
  const listed = (ip: Ip): boolean => {
    if (cidrs.some((c) => contains(c, ip))) return true;
    // ::ffff:127.0.0.1 is 127.0.0.1: an entry in either notation covers both.
    const inner = embeddedV4(ip);
    return inner !== undefined && cidrs.some((c) => contains(c, inner.ip));
  };
  return {
    blockPrivateNetworks: options.blockPrivateNetworks ?? false,
    allowsHost(hostname) {
      const h = normalHost(hostname);
      if (names.has(h)) return true;
      if (suffixes.some((s) => h.endsWith(s) && h.length > s.length)) return true;
      const ip = parseIp(h);
      return ip !== undefined && listed(ip);
    },
    refusal(address) {
      const ip = parseIp(address);
      if (ip === undefined || listed(ip)) return undefined;
      return refusedRange(ip);
    },
  };
}

/**
 * True when the host part (between `://` and the path) of a url template holds a `{{ }}`
 * placeholder, i.e. event data chooses where the request goes. Userinfo and port count as part
 * of the host. Results are cached: the argument is an action's url, a bounded set.
 */
export function hostIsTemplated(urlTemplate: string): boolean {
  let known = templatedCache.get(urlTemplate);
  if (known === undefined) {
    const start = urlTemplate.indexOf("://");
    const rest = start < 0 ? urlTemplate : urlTemplate.slice(start + 3);
    // Placeholders hold paths (`a.b`), never "/", "?" or "#": the first of these ends the host.
    const end = rest.search(/[/?#]/);
    known = (end < 0 ? rest : rest.slice(0, end)).includes("{{");
    templatedCache.set(urlTemplate, known);
  }
  return known;
}
const templatedCache = new Map<string, boolean>();

/** One resolved address, as `dns.lookup(host, { all: true })` gives it. */
export interface LookupAddress {
  readonly address: string;
  readonly family: number;
}

/** Resolves a host name to its addresses. */
export type HostLookup = (hostname: string) => Promise<readonly LookupAddress[]>;

/** The system resolver (`dns.lookup`, which reads /etc/hosts too), every address. */
export const systemLookup: HostLookup = (hostname) => dnsLookup(hostname, { all: true });

/**
 * A connection refused by the address policy. The sender reports it as an `invalid_request`
 * outcome (never retried: the same host resolves the same way on the next attempt).
 */
export class AddressRefused extends Error {
  override readonly name = "AddressRefused";
  constructor(
    message: string,
    /** The host as written in the request URL. */
    readonly host: string,
    /** The address that was refused. */
    readonly address: string,
    readonly range: AddressRange,
  ) {
    super(message);
  }
}

/**
 * Resolves `hostname` and returns the address to connect to: the first resolved address the
 * policy allows (any of them when the name itself is listed in `allowed_hosts`).
 * @param why names the rule in the error text, e.g. "the host comes from event data".
 * @throws AddressRefused when every address is refused; the lookup's own error when it fails.
 */
export async function checkedAddress(
  hostname: string,
  policy: AddressPolicy,
  lookup: HostLookup,
  why: string,
): Promise<string> {
  const host = normalHost(hostname);
  const addresses = isIP(host) !== 0 ? [host] : (await lookup(host)).map((a) => a.address);
  const listed = policy.allowsHost(host);
  let first: { address: string; range: AddressRange } | undefined;
  for (const address of addresses) {
    const refused = listed ? undefined : policy.refusal(address);
    if (refused === undefined) return address;
    first ??= { address, range: refused };
  }
  if (first === undefined) {
    throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: "ENOTFOUND", hostname: host });
  }
  const via = first.address === host ? "" : ` (resolved to ${first.address})`;
  throw new AddressRefused(
    `refused to connect to ${host}${via}: ${first.range.rule} address, ${first.range.cidr}; ${why}. ` +
      "List the host in [webhooks] allowed_hosts to allow it.",
    host,
    first.address,
    first.range,
  );
}

/**
 * Wraps an undici connector so that every new connection first goes through
 * {@link checkedAddress}, then opens the socket to the very address that was checked (TLS still
 * verifies the certificate against the host name: undici derives the SNI name from the
 * request's host, not from the address).
 */
export function guardConnector(
  base: buildConnector.connector,
  policy: AddressPolicy,
  lookup: HostLookup,
  why: string,
): buildConnector.connector {
  return (options, callback) => {
    checkedAddress(options.hostname, policy, lookup, why).then(
      (address) => base({ ...options, hostname: address }, callback),
      (err: Error) => callback(err, null),
    );
  };
}
