// biome-ignore-all lint/suspicious/noTemplateCurlyInString: BitBake's ${VAR} expansions, written in plain strings
/**
 * A strict parser for the subset of BitBake syntax the layer uses, and a
 * small evaluator of its variables. Without bitbake (and its oe-core
 * classes) on the host, this is what proves that every line of the layer is
 * a well-formed BitBake statement and what the variables come to.
 *
 * Accepted, as BitBake reads them: comments; `VAR = "..."` with `=`, `?=`,
 * `??=`, `:=`, `+=`, `=+`, `.=`, `=.` (either quote); variable flags
 * (`VAR[flag] = ...`); overrides (`VAR:${PN}`, `:append`, `:prepend`,
 * `:remove`, conditional overrides after them); `${VAR}` expansions; line
 * continuations with a trailing backslash; `inherit`; `require`/`include`;
 * shell functions (`do_install() {` ... a line `}`). Anything else is an
 * error naming the file and line: python functions and inline python,
 * `export`, `addtask`, the pre-honister `_append` syntax, a comment
 * continued by a backslash, an unbalanced `${`, a stray quote.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export class BitbakeSyntaxError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(`${file}:${line}: ${reason}`);
  }
}

export type AssignmentOperator = '=' | '?=' | '??=' | ':=' | '+=' | '=+' | '.=' | '=.';
export type OverrideOperation = 'append' | 'prepend' | 'remove';

export type Statement =
  | {
      kind: 'assignment';
      line: number;
      /** The variable as written, overrides included ("SYSTEMD_SERVICE:${PN}"). */
      name: string;
      flag: string | null;
      operator: AssignmentOperator;
      value: string;
    }
  | { kind: 'inherit'; line: number; classes: string[] }
  | { kind: 'require' | 'include'; line: number; path: string }
  | { kind: 'function'; line: number; name: string; body: string };

const ASSIGNMENT =
  /^(?<name>[A-Za-z0-9_\-+.${}/~:]+?)(?:\[(?<flag>[A-Za-z0-9_\-+.][A-Za-z0-9_\-+.@/]*)\])?\s*(?<op>\?\?=|\?=|:=|\+=|=\+|\.=|=\.|=)\s*(?<rest>.*)$/;
const FUNCTION_START = /^(?<prefix>(?:python|fakeroot)\s+)?(?<name>[A-Za-z0-9_\-+.${}:]+)\s*\(\s*\)\s*\{\s*$/;
const INHERIT = /^inherit\s+(?<classes>.+)$/;
const INCLUSION = /^(?<kind>require|include)\s+(?<path>\S+)$/;
const CLASS_NAME = /^(?:[A-Za-z0-9_\-.]|\$\{[A-Za-z0-9_\-.]+\})+$/;
const VARIABLE_NAME = /^[A-Za-z0-9_\-+.]+$/;
const OVERRIDE_NAME = /^[a-z0-9${}\-+._]+$/i;
const OLD_OVERRIDE_SYNTAX = /_(append|prepend|remove)(_|:|$)|_\$\{/;

/**
 * Checks the `${...}` expansions in text: balanced, each naming a variable
 * (possibly built from nested expansions); inline python (`${@...}`) refused.
 */
function checkExpansions(text: string, fail: (reason: string) => never): void {
  let i = 0;
  const parse = (): void => {
    // At "${": read a name made of plain characters and nested expansions up to "}".
    i += 2;
    if (text[i] === '@') fail('inline python (${@...}) is outside the accepted syntax');
    let name = '';
    while (i < text.length && text[i] !== '}') {
      if (text.startsWith('${', i)) {
        parse();
        name += 'X';
        continue;
      }
      name += text[i];
      i += 1;
    }
    if (i >= text.length) fail(`unbalanced "\${" in ${JSON.stringify(text)}`);
    if (!VARIABLE_NAME.test(name.replace(/:/g, '_'))) fail(`"\${${name}}" does not name a variable`);
    i += 1;
  };
  while (i < text.length) {
    if (text.startsWith('${', i)) parse();
    else i += 1;
  }
}

function checkVariableName(name: string, fail: (reason: string) => never): void {
  checkExpansions(name, fail);
  const [base = '', ...overrides] = name.split(':');
  if (!/^[A-Za-z0-9_\-+.${}/~]+$/.test(base) || base === '') fail(`"${name}" is not a variable name`);
  if (OLD_OVERRIDE_SYNTAX.test(name)) {
    fail(`"${name}" uses the old override syntax (_append, _\${PN}, ...): write ":append", ":\${PN}"`);
  }
  for (const override of overrides) {
    if (!OVERRIDE_NAME.test(override)) fail(`"${name}" has an empty or malformed override`);
  }
}

/** The quoted value of an assignment's right-hand side. */
function quotedValue(rest: string, fail: (reason: string) => never): string {
  const quote = rest[0];
  if ((quote !== '"' && quote !== "'") || rest.length < 2 || !rest.endsWith(quote)) {
    fail(`the value must be one quoted string: ${rest}`);
  }
  const value = rest.slice(1, -1);
  for (let i = 0; i < value.length; i++) {
    if (value[i] === quote && value[i - 1] !== '\\') fail(`stray ${quote} inside the value: ${rest}`);
  }
  checkExpansions(value, fail);
  return value;
}

/** Parses BitBake text into statements, or throws BitbakeSyntaxError at the first line outside the subset. */
export function parseBitbake(text: string, file: string): Statement[] {
  const lines = text.split('\n');
  const statements: Statement[] = [];
  let n = 0;
  while (n < lines.length) {
    const start = n + 1;
    let line = (lines[n] ?? '').replace(/\s+$/, '');
    n += 1;
    const fail = (reason: string): never => {
      throw new BitbakeSyntaxError(file, start, reason);
    };
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      if (line.endsWith('\\')) fail('a comment continued by a backslash (BitBake would join the next line to it)');
      continue;
    }
    while (line.endsWith('\\')) {
      if (n >= lines.length) fail('a line continuation at the end of the file');
      const next = (lines[n] ?? '').replace(/\s+$/, '');
      if (next.trim().startsWith('#'))
        fail(`a comment inside a continued statement (line ${n + 1}), which BitBake refuses`);
      line = line.slice(0, -1) + next;
      n += 1;
    }
    if (/^\s/.test(line)) fail(`a statement must start at the beginning of the line: ${line.trim()}`);

    const fn = FUNCTION_START.exec(line);
    if (fn?.groups) {
      if (fn.groups.prefix) fail(`${fn.groups.prefix.trim()} functions are outside the accepted syntax`);
      const name = fn.groups.name ?? '';
      checkVariableName(name, fail);
      const body: string[] = [];
      for (;;) {
        if (n >= lines.length) fail(`function ${name} has no closing "}" line`);
        const bodyLine = lines[n] ?? '';
        n += 1;
        if (bodyLine.replace(/\s+$/, '') === '}') break;
        body.push(bodyLine);
      }
      statements.push({ kind: 'function', line: start, name, body: body.join('\n') });
      continue;
    }
    const inherit = INHERIT.exec(line);
    if (inherit?.groups) {
      const classes = (inherit.groups.classes ?? '').trim().split(/\s+/);
      for (const name of classes) if (!CLASS_NAME.test(name)) fail(`"${name}" is not a class name`);
      statements.push({ kind: 'inherit', line: start, classes });
      continue;
    }
    const inclusion = INCLUSION.exec(line);
    if (inclusion?.groups) {
      statements.push({
        kind: inclusion.groups.kind === 'require' ? 'require' : 'include',
        line: start,
        path: inclusion.groups.path ?? '',
      });
      continue;
    }
    if (/^(export|unset|addtask|deltask|addhandler|EXPORT_FUNCTIONS|def)\b/.test(line)) {
      fail(`"${line.split(/\s/)[0]}" is outside the accepted syntax`);
    }
    const assignment = ASSIGNMENT.exec(line);
    if (assignment?.groups) {
      const name = assignment.groups.name ?? '';
      checkVariableName(name, fail);
      statements.push({
        kind: 'assignment',
        line: start,
        name,
        flag: assignment.groups.flag ?? null,
        operator: assignment.groups.op as AssignmentOperator,
        value: quotedValue(assignment.groups.rest ?? '', fail),
      });
      continue;
    }
    fail(`not a BitBake statement: ${line}`);
  }
  return statements;
}

export function parseBitbakeFile(path: string): Statement[] {
  return parseBitbake(readFileSync(path, 'utf8'), path);
}

interface Operation {
  operation: OverrideOperation;
  value: string;
  /** Overrides after the operation (":append:arm"): applied only when all are active. */
  conditions: string[];
}

interface Variable {
  value: string | undefined;
  weakDefault: string | undefined;
  operations: Operation[];
}

/**
 * What the statements make of the variables, with BitBake's semantics for the
 * operators: `=`/`?=`/`??=` and the immediate `:=`, the `+=`-family applied
 * in order, `:append`/`:prepend`/`:remove` applied when a variable is read,
 * `${VAR}` expanded when read (an unknown variable stays `${VAR}`, as in
 * BitBake). An override-qualified name ("USERADD_PARAM:${PN}") is its own
 * variable, read by its expanded name ("USERADD_PARAM:dmx-agent").
 */
export class BitbakeData {
  private readonly variables = new Map<string, Variable>();
  private readonly flags = new Map<string, string>();
  readonly inherits: string[] = [];
  readonly functions = new Map<string, { body: string; file: string; line: number }>();
  /** Every file read, the recipe first, then what it required or included. */
  readonly files: string[] = [];

  constructor(initial: Record<string, string> = {}) {
    for (const [name, value] of Object.entries(initial)) this.set(name, value);
  }

  private entry(name: string): Variable {
    let variable = this.variables.get(name);
    if (!variable) {
      variable = { value: undefined, weakDefault: undefined, operations: [] };
      this.variables.set(name, variable);
    }
    return variable;
  }

  set(name: string, value: string): void {
    this.entry(name).value = value;
  }

  isSet(name: string): boolean {
    const variable = this.variables.get(name);
    return variable !== undefined && (variable.value !== undefined || variable.weakDefault !== undefined);
  }

  /** The variable's value with its override operations applied and expanded; undefined when never set. */
  get(name: string, activeOverrides: readonly string[] = []): string | undefined {
    const variable = this.variables.get(name);
    if (!variable) return undefined;
    let value = variable.value ?? variable.weakDefault;
    const applicable = variable.operations.filter((op) => op.conditions.every((c) => activeOverrides.includes(c)));
    if (value === undefined && applicable.length === 0) return undefined;
    value ??= '';
    for (const op of applicable) {
      if (op.operation === 'append') value += op.value;
      if (op.operation === 'prepend') value = op.value + value;
    }
    let expanded = this.expand(value, activeOverrides);
    const removals = applicable
      .filter((op) => op.operation === 'remove')
      .flatMap((op) => this.expand(op.value, activeOverrides).split(/\s+/))
      .filter(Boolean);
    if (removals.length > 0) {
      expanded = expanded
        .split(/\s+/)
        .filter((word) => word !== '' && !removals.includes(word))
        .join(' ');
    }
    return expanded;
  }

  getFlag(name: string, flag: string): string | undefined {
    const value = this.flags.get(`${name}[${flag}]`);
    return value === undefined ? undefined : this.expand(value);
  }

  /** Expands `${VAR}` references (nested ones first); unknown variables are left as written. */
  expand(text: string, activeOverrides: readonly string[] = [], depth = 0): string {
    if (depth > 20) throw new Error(`expansion too deep (a variable refers to itself?): ${text}`);
    let out = '';
    let i = 0;
    while (i < text.length) {
      if (!text.startsWith('${', i)) {
        out += text[i];
        i += 1;
        continue;
      }
      // Find the matching "}", expanding nested references in the name.
      let level = 0;
      let j = i;
      for (; j < text.length; j++) {
        if (text.startsWith('${', j)) {
          level += 1;
          j += 1;
        } else if (text[j] === '}') {
          level -= 1;
          if (level === 0) break;
        }
      }
      const inner = this.expand(text.slice(i + 2, j), activeOverrides, depth + 1);
      const value = this.get(inner, activeOverrides);
      out += value === undefined ? `\${${inner}}` : this.expand(value, activeOverrides, depth + 1);
      i = j + 1;
    }
    return out;
  }

  /** Applies one file's statements; require/include read files relative to it (as BitBake does first). */
  apply(statements: Statement[], file: string): void {
    this.files.push(file);
    for (const statement of statements) {
      switch (statement.kind) {
        case 'inherit':
          this.inherits.push(...statement.classes.map((name) => this.expand(name)));
          break;
        case 'require':
        case 'include': {
          const path = join(dirname(file), this.expand(statement.path));
          if (!existsSync(path)) {
            if (statement.kind === 'require') {
              throw new BitbakeSyntaxError(file, statement.line, `required file ${path} does not exist`);
            }
            break;
          }
          this.apply(parseBitbakeFile(path), path);
          break;
        }
        case 'function':
          this.functions.set(this.expand(statement.name), { body: statement.body, file, line: statement.line });
          break;
        case 'assignment':
          this.assign(statement);
          break;
      }
    }
  }

  private assign(statement: Extract<Statement, { kind: 'assignment' }>): void {
    const parts = this.expand(statement.name).split(':');
    const at = parts.findIndex((part) => part === 'append' || part === 'prepend' || part === 'remove');
    if (statement.flag !== null) {
      if (at >= 0)
        throw new Error(`${statement.name}[${statement.flag}]: override operations on flags are not modelled`);
      const key = `${parts.join(':')}[${statement.flag}]`;
      this.flags.set(
        key,
        combine(statement.operator, this.flags.get(key), statement.value, (v) => this.expand(v)),
      );
      return;
    }
    if (at >= 0) {
      this.entry(parts.slice(0, at).join(':')).operations.push({
        operation: parts[at] as OverrideOperation,
        // "VAR:append := ..." expands at once, like any :=.
        value: statement.operator === ':=' ? this.expand(statement.value) : statement.value,
        conditions: parts.slice(at + 1),
      });
      return;
    }
    const variable = this.entry(parts.join(':'));
    if (statement.operator === '??=') {
      variable.weakDefault = statement.value;
      return;
    }
    if (statement.operator === '?=') {
      if (variable.value === undefined) variable.value = statement.value;
      return;
    }
    if (statement.operator === ':=') {
      variable.value = this.expand(statement.value);
      return;
    }
    variable.value = combine(statement.operator, variable.value, statement.value, (v) => this.expand(v));
  }
}

function combine(
  operator: AssignmentOperator,
  current: string | undefined,
  value: string,
  expand: (text: string) => string,
): string {
  switch (operator) {
    case '+=':
      return `${current ?? ''} ${value}`;
    case '=+':
      return `${value} ${current ?? ''}`;
    case '.=':
      return `${current ?? ''}${value}`;
    case '=.':
      return `${value}${current ?? ''}`;
    case ':=':
      return expand(value);
    case '?=':
    case '??=':
      return current ?? value;
    case '=':
      return value;
  }
}

/** Reads a recipe (or conf file) and what it requires, over the given predefined variables. */
export function loadBitbake(path: string, initial: Record<string, string> = {}): BitbakeData {
  const data = new BitbakeData(initial);
  data.apply(parseBitbakeFile(path), path);
  return data;
}

/** The entries of a space-separated list variable (SRC_URI, LIC_FILES_CHKSUM), each split into URL and parameters. */
export function uriList(value: string | undefined): Array<{ url: string; params: Record<string, string> }> {
  return (value ?? '')
    .split(/\s+/)
    .filter(Boolean)
    .map((entry) => {
      const [url = '', ...rest] = entry.split(';');
      const params: Record<string, string> = {};
      for (const param of rest) {
        const eq = param.indexOf('=');
        if (eq <= 0) throw new Error(`malformed URL parameter "${param}" in ${entry}`);
        params[param.slice(0, eq)] = param.slice(eq + 1);
      }
      return { url, params };
    });
}
