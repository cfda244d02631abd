/**
 * Loading: `fraiseql.toml` text -> TOML table -> (plus the modules it includes) -> the schema ->
 * a frozen {@link ResolvedConfig}.
 */

import { readFile } from "node:fs/promises";
import { register } from "node:module";
import { extname, isAbsolute, relative, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { parse as parseToml, TomlError } from "smol-toml";
import { FraiseqlError } from "../errors.js";
import { type ConfigInput, defineEntity, isDefinition, observer, withSource } from "./define.js";
import { locateKey } from "./locate.js";
import { resolveConfig, resolveIncludes } from "./schema.js";
import type { ResolvedConfig } from "./types.js";

/** The config file looked for in the working directory. */
export const CONFIG_FILE_NAME = "fraiseql.toml";

/** Entities and observers declared in TypeScript, resolved with the TOML ones. */
export interface ExtraDefinitions {
  /** Values made by `defineEntity`. */
  readonly entities?: readonly unknown[];
  /** Values made by `observer`. */
  readonly observers?: readonly unknown[];
}

/** Options of {@link parseConfig}. */
export interface ParseConfigOptions {
  /** The file the text came from, as named in errors; relative paths resolve against the working directory. (Default: none) */
  readonly file?: string;
  /** Variables for `${NAME}`. (Default: `process.env`) */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** Entities and observers from TypeScript modules. (Default: none) */
  readonly extra?: ExtraDefinitions;
}

/**
 * Parses and resolves TOML config text, synchronously. `include` paths are checked but their
 * modules are not imported: {@link loadConfig} does that and passes their definitions as `extra`.
 * @throws FraiseqlError FQL_CONFIG_SYNTAX (with line, column and a caret), FQL_CONFIG_INVALID,
 *   FQL_ENV_MISSING, or a condition/template error located at its key.
 */
export function parseConfig(input: string, options: ParseConfigOptions = {}): ResolvedConfig {
  const text = stripBom(input);
  const raw = parseTomlText(text, options.file);
  return resolveConfig(raw, {
    file: options.file,
    source: text,
    ...(options.env === undefined ? {} : { env: options.env }),
    ...(options.extra === undefined ? {} : { extra: options.extra }),
  });
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** Config file; a missing file is an error. (Default: `fraiseql.toml` in `cwd`, all defaults when absent) */
  readonly path?: string;
  /** (Default: `process.cwd()`) */
  readonly cwd?: string;
  /** Variables for `${NAME}`. (Default: `process.env`) */
  readonly env?: Readonly<Record<string, string | undefined>>;
  /** More entities and observers, after those of the file and its includes. (Default: none) */
  readonly extra?: ExtraDefinitions;
  /** Allow an unauthenticated API on a non-loopback host (`serve --insecure`). (Default: false) */
  readonly insecure?: boolean;
}

/**
 * Finds, reads and resolves the config: the TOML file, every module it names in `include`
 * (TypeScript through tsx), and `extra`.
 * @throws FraiseqlError FQL_CONFIG_NOT_FOUND for a missing `path` or include, and everything
 *   {@link parseConfig} throws.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const cwd = options.cwd ?? process.cwd();
  const env = options.env ?? process.env;
  const absolute = resolve(cwd, options.path ?? CONFIG_FILE_NAME);
  // Errors name the file as the user would: relative to the working directory when inside it.
  const shown =
    options.path !== undefined && isAbsolute(options.path) ? absolute : relative(cwd, absolute) || absolute;
  let text = "";
  let found = true;
  try {
    text = stripBom(await readFile(absolute, "utf8"));
  } catch (cause) {
    const code = (cause as NodeJS.ErrnoException).code;
    if (code !== "ENOENT" && code !== "ENOTDIR") throw cause;
    if (options.path !== undefined) {
      throw new FraiseqlError("FQL_CONFIG_NOT_FOUND", `config file ${absolute} does not exist`, {
        file: shown,
        cause,
        hint: 'run "fraiseql init" to write one, or check the --config path',
      });
    }
    found = false;
  }
  const fileOptions = found ? { file: absolute, displayFile: shown } : { baseDir: cwd };

  let raw = parseTomlText(text, found ? shown : undefined);
  const includes = resolveIncludes(raw, { ...fileOptions, source: text, env });
  const entities: unknown[] = [];
  const observers: unknown[] = [];
  const fromModules: { path: string; file: string }[] = [];
  for (const [i, modulePath] of includes.entries()) {
    const where = { file: shown, key: `include[${i}]`, ...locateKey(text, ["include", i]) };
    const exports = await importModule(modulePath, where);
    const moduleFile = relative(cwd, modulePath) || modulePath;
    const defs = collectDefinitions(exports, moduleFile);
    entities.push(...defs.entities);
    observers.push(...defs.observers);
    if (defs.config !== undefined) {
      raw = mergeConfig(raw, defs.config, moduleFile, shown, (path) =>
        fromModules.push({ path, file: moduleFile }),
      );
    }
  }
  entities.push(...(options.extra?.entities ?? []));
  observers.push(...(options.extra?.observers ?? []));

  try {
    return resolveConfig(raw, {
      ...fileOptions,
      source: text,
      env,
      extra: { entities, observers },
      ...(options.insecure ? { insecure: true } : {}),
    });
  } catch (err) {
    throw relocate(err, fromModules);
  }
}

/** An error at a key that only a module's `defineConfig` set is named in that module, without a TOML line. */
function relocate(err: unknown, fromModules: readonly { path: string; file: string }[]): unknown {
  if (!(err instanceof FraiseqlError) || err.location.key === undefined) return err;
  const key = err.location.key;
  const owner = fromModules.find(
    ({ path }) => key === path || key.startsWith(`${path}.`) || key.startsWith(`${path}[`),
  );
  if (owner === undefined) return err;
  const { line: _line, column: _column, ...location } = err.location;
  return new FraiseqlError(err.code, err.message, {
    ...location,
    file: owner.file,
    cause: err.cause,
    retryable: err.retryable,
    ...(err.hint === undefined ? {} : { hint: err.hint }),
  });
}

// A byte-order mark is legal at the start of a UTF-8 file; the TOML parser and the key locator need it gone.
function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function parseTomlText(text: string, file: string | undefined): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (err) {
    if (!(err instanceof TomlError)) throw err;
    const firstLine = err.message.replace(/^Invalid TOML document: /, "").split("\n")[0] ?? err.message;
    const offending = text.split(/\r?\n/)[err.line - 1] ?? "";
    // The offending line, with describe()'s caret under the column; none past the end of the text.
    const excerpt = offending.trim() === "" ? {} : { expression: offending, position: err.column - 1 };
    // smol-toml reports an unclosed string as a control character (the line break) inside it.
    const unclosed = /control character/.test(firstLine) && /^[^#]*=\s*("[^"]*|'[^']*)$/.test(offending);
    const hint = unclosed ? { hint: "is a string missing its closing quote?" } : {};
    throw new FraiseqlError("FQL_CONFIG_SYNTAX", `not valid TOML: ${firstLine}`, {
      ...(file === undefined ? {} : { file }),
      line: err.line,
      column: err.column,
      ...excerpt,
      ...hint,
      cause: err,
    });
  }
}

const TYPESCRIPT = new Set([".ts", ".mts", ".cts", ".tsx"]);

/**
 * A module resolution hook: `fraiseql` and `fraiseql/testing`, when nothing else resolves them
 * (an included module in a directory without its own install of the package), are this running
 * package. A local install still wins. Definitions are recognised by `Symbol.for` brands, so a
 * second copy of the package's code would work too.
 */
const SELF_RESOLVE_HOOK = `
let targets = {};
export function initialize(data) { targets = data.targets; }
export async function resolve(specifier, context, next) {
  try {
    return await next(specifier, context);
  } catch (err) {
    const url = Object.hasOwn(targets, specifier) ? targets[specifier] : undefined;
    if (url !== undefined && err && err.code === "ERR_MODULE_NOT_FOUND") return { url, shortCircuit: true };
    throw err;
  }
}
`;
let selfResolving = false;

function resolvePackageNameToSelf(): void {
  if (selfResolving) return;
  selfResolving = true;
  // This file is src/config/load.ts (through tsx) or dist/config/load.js: the entry points sit
  // beside it, with its own extension.
  const ext = extname(new URL(import.meta.url).pathname);
  const targets = {
    fraiseql: new URL(`../index${ext}`, import.meta.url).href,
    "fraiseql/testing": new URL(`../testing/index${ext}`, import.meta.url).href,
  };
  register(`data:text/javascript,${encodeURIComponent(SELF_RESOLVE_HOOK)}`, { data: { targets } });
}

async function importModule(
  path: string,
  where: { file: string; key: string; line?: number; column?: number },
): Promise<Record<string, unknown>> {
  const url = pathToFileURL(path).href;
  try {
    await readFile(path);
  } catch (cause) {
    throw new FraiseqlError("FQL_CONFIG_NOT_FOUND", `included module ${path} does not exist`, {
      ...where,
      cause,
    });
  }
  resolvePackageNameToSelf();
  try {
    if (TYPESCRIPT.has(extname(path))) await registerTsx(where);
    return (await import(url)) as Record<string, unknown>;
  } catch (cause) {
    if (cause instanceof FraiseqlError) throw cause;
    const message = loadFailure(cause);
    const unresolved = /Cannot find (module|package) 'fraiseql(\/[^']*)?'/.test(message);
    throw new FraiseqlError("FQL_CONFIG_INVALID", `included module ${path} failed to load: ${message}`, {
      ...where,
      cause,
      ...(unresolved
        ? {
            hint: 'Install fraiseql in the project (npm install fraiseql), or make it an ES module package ("type": "module" in its package.json, as fraiseql init writes): there the command line provides its own fraiseql.',
          }
        : {}),
    });
  }
}

/**
 * The first line of a module's load error, and for a TypeScript syntax error (esbuild's
 * "Transform failed with N errors:") the first errors' `file:line:column: ERROR: ...` lines too.
 */
function loadFailure(cause: unknown): string {
  if (!(cause instanceof Error)) return String(cause);
  const [first = "", ...rest] = cause.message.split("\n");
  const located = rest.filter((line) => /:\d+:\d+: ERROR: /.test(line)).slice(0, 3);
  return located.length > 0 ? `${first} ${located.join("; ")}` : first;
}

let tsxRegistered: Promise<void> | undefined;

/**
 * Lets this process import TypeScript, once: tsx's loader hooks (ES module and CommonJS),
 * registered for the whole process. An included module then shares every module already loaded
 * (this package, undici, pg, ...) instead of loading second copies in a namespace of its own, as
 * `tsImport` would (a second undici fails at load, with "Illegal constructor", once the first is
 * loaded). Like any import, a module is loaded once per process: loading the config again does
 * not read an edited module again.
 */
async function registerTsx(where: { file: string; key: string }): Promise<void> {
  tsxRegistered ??= Promise.all([import("tsx/esm/api"), import("tsx/cjs/api")]).then(
    ([esm, cjs]) => {
      // Both: a .ts module in a CommonJS package scope is loaded through require().
      esm.register();
      cjs.register();
    },
    (cause: unknown) => {
      tsxRegistered = undefined;
      throw new FraiseqlError("FQL_CONFIG_INVALID", "including a TypeScript module needs the tsx package", {
        ...where,
        cause,
        hint: "npm install tsx, or include the compiled .js module",
      });
    },
  );
  await tsxRegistered;
}

/**
 * The definitions exported by a module: values made by `defineEntity` and `observer` (also in
 * exported arrays), and a default export made by `defineConfig`.
 */
export function collectDefinitions(
  exports: Record<string, unknown>,
  file: string,
): { entities: unknown[]; observers: unknown[]; config: ConfigInput | undefined } {
  const entities: unknown[] = [];
  const observers: unknown[] = [];
  let config: ConfigInput | undefined;
  const take = (value: unknown): void => {
    if (isDefinition(value, "entity")) entities.push(withSource(value, file));
    else if (isDefinition(value, "observer")) observers.push(withSource(value, file));
  };
  for (const [name, exported] of Object.entries(exports)) {
    // A .ts file outside a "type": "module" package loads as CommonJS: its default export then
    // sits one level down, under the module.exports object.
    const value =
      name === "default" && !isDefinition(exported) && typeof exported === "object" && exported !== null
        ? (exported as { default?: unknown }).default
        : exported;
    if (name === "default" && isDefinition(value, "config")) {
      const { kind: _kind, entities: moreEntities, observers: moreObservers, ...rest } = value;
      // Plain objects are tagged too, so that their errors name this module.
      for (const e of moreEntities ?? [])
        entities.push(withSource(isDefinition(e) ? e : defineEntity(e), file));
      for (const o of moreObservers ?? [])
        observers.push(withSource(isDefinition(o) ? o : observer(o), file));
      config = rest;
    } else if (Array.isArray(value)) {
      value.forEach(take);
    } else {
      take(value);
    }
  }
  return { entities, observers, config };
}

/**
 * Merges a `defineConfig` default export (without its entities and observers) into the TOML
 * table; a key set in both is an error (one place per setting). `onAdded` receives each key
 * path the module added.
 */
function mergeConfig(
  toml: Record<string, unknown>,
  extra: ConfigInput,
  moduleFile: string,
  tomlFile: string,
  onAdded: (path: string) => void,
): Record<string, unknown> {
  if (extra.include !== undefined) {
    throw new FraiseqlError("FQL_CONFIG_INVALID", "include is only read from the TOML file", {
      file: moduleFile,
      key: "include",
      hint: "list every module in the TOML file's include",
    });
  }
  const merge = (a: unknown, b: unknown, path: string): unknown => {
    if (b === undefined) return a;
    if (a === undefined) {
      onAdded(path);
      return b;
    }
    if (isTable(a) && isTable(b)) {
      const out: Record<string, unknown> = { ...a };
      for (const [key, value] of Object.entries(b))
        out[key] = merge(a[key], value, path === "" ? key : `${path}.${key}`);
      return out;
    }
    throw new FraiseqlError("FQL_CONFIG_INVALID", `${path} is set both in ${tomlFile} and in ${moduleFile}`, {
      file: moduleFile,
      key: path,
      hint: "set each key in one place",
    });
  };
  return merge(toml, extra, "") as Record<string, unknown>;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}
